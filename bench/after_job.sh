#!/usr/bin/env bash
# After a GPU job (bench/gpu_job.sh): put what came back where it belongs, in seconds, so that a
# follow-up call can go out while the device machine is still warm (bench/README.md).
#
#   bash bench/after_job.sh FILES_AT STEM      e.g. STEM=nvidia-h200-2026-11-27-job3
#
#   FILES_AT/results.tar        -> results/ (a record is never replaced: the same one again is skipped, a
#                                  different one at the same path is an error, after everything else)
#   FILES_AT/workers.json, runs.json, job.log
#                               -> bench/results/STEM.workers.json, STEM.runs.json, STEM.log
#   FILES_AT/checkpoints*.tar   -> data/job-checkpoints*.tar      (the previous ones are removed)
# Nothing is committed; the script ends by listing what changed.
set -euo pipefail
F=${1:?usage: bash bench/after_job.sh FILES_AT STEM}
STEM=${2:?usage: bash bench/after_job.sh FILES_AT STEM}
[ -d "$F" ] || { echo "error: $F is not a folder" >&2; exit 2; }
cd "$(dirname "$0")/.."
if compgen -G "bench/results/$STEM.*" >/dev/null; then
    echo "error: bench/results/$STEM.* exists; choose another STEM" >&2
    exit 2
fi

status=0
if [ -f "$F/results.tar" ]; then
    unpacked=$(mktemp -d)
    tar -xf "$F/results.tar" -C "$unpacked"
    new=0
    while IFS= read -r rel; do
        if [ ! -e "results/$rel" ]; then
            mkdir -p "results/$(dirname "$rel")" && cp "$unpacked/$rel" "results/$rel" && new=$((new + 1))
        elif cmp -s "$unpacked/$rel" "results/$rel"; then
            echo "already there: results/$rel"
        else  # records are immutable: a different one at the same path needs a decision
            echo "error: results/$rel exists and differs from the returned one (kept in $unpacked)" >&2
            status=1
        fi
    done < <(cd "$unpacked" && find . -name '*.json' | sed 's|^\./||' | sort)
    [ "$status" = 0 ] && rm -rf "$unpacked"
    echo "records: $new new"
fi
[ -f "$F/workers.json" ] && cp "$F/workers.json" "bench/results/$STEM.workers.json"
[ -f "$F/runs.json" ] && cp "$F/runs.json" "bench/results/$STEM.runs.json"
[ -f "$F/job.log" ] && cp "$F/job.log" "bench/results/$STEM.log"
rm -f data/job-checkpoints.tar data/job-checkpoints-[0-9]*.tar
for part in "$F"/checkpoints*.tar; do
    [ -f "$part" ] || continue
    name=$(basename "$part")
    cp "$part" "data/job-${name}"
    echo "checkpoints: data/job-${name} ($(tar -tf "$part" | grep -c '\.pt$' || true) runs)"
done
chmod u+w data/job-checkpoints*.tar 2>/dev/null || true
git status --short -- results bench/results
exit "$status"
