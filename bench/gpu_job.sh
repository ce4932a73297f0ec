#!/usr/bin/env bash
# The one GPU job (how to launch it and what comes back: bench/README.md).
#
#   1. env:     versions; fails without a CUDA device                          (bench/grid.py env)
#   2. data:    verify, unpack and decode the carried JPEG pack                 (bench/grid.py data)
#   3. workers: K worker processes of python -m kps train-grid at once, K = 1, 2, 4, 8 (smoke: 1, 2):
#               the runs' aggregate epochs per second -> $OUT/workers.json      (bench/grid.py workers)
#   4. grid:    python -m kps train-grid --jobs K (the K of the largest rate) on the grid, SIGINT at
#               the deadline -> $OUT/results.tar, runs.json, checkpoints[-2|-3].tar  (bench/grid.py run)
#   and $OUT/job.log (everything printed).  A failed workers stage leaves the grid to one worker.
#
# Environment (all optional but OUT, which the device tool sets):
#   KPS_JOB_SMOKE=1       CPU check: K = 1, 2 of a shrunk network (4 channels, 8 px, batch 512) read over
#                         20 s, then the grid's runs 1 epoch each, a temporary work folder; budget 300 s
#   KPS_JOB_BUDGET_S      seconds from the start to the grid's deadline plus the reserve (540)
#   KPS_JOB_RESERVE_S     seconds kept after the deadline for the interruption and packing (40)
#   KPS_JOB_WORKERS=0     no workers stage (a follow-up job on a card already measured: give KPS_JOB_JOBS)
#   KPS_JOB_WORKERS_MAX_S the workers stage's time limit (240; smoke 200)
#   KPS_JOB_COUNTS        the K the workers stage times (1,2,4,8; smoke 1,2)
#   KPS_JOB_JOBS          force the grid's worker processes
#   KPS_JOB_GRID          the grid of kps.runner.GRIDS (gpu)
#   KPS_JOB_DATA_ROOT (data), KPS_JOB_ARCHIVE (data/cifar10-jpeg.tar.gz)
#   KPS_JOB_CHECKPOINTS   an earlier job's checkpoints to resume (data/job-checkpoints.tar and its parts
#                         beside it, -2.tar, -3.tar; the smoke: none)
#   KPS_JOB_WORK          records and checkpoints (data/job-work, kept for a second call on the warm machine)
#   KPS_GIT_COMMIT        the commit the records name (the device's copy may lack .git)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
: "${OUT:?set OUT to the folder whose files come back (the device tool sets it)}"
SMOKE=${KPS_JOB_SMOKE:-0}
GRID=${KPS_JOB_GRID:-gpu}
DATA_ROOT=${KPS_JOB_DATA_ROOT:-data}
RESERVE=${KPS_JOB_RESERVE_S:-40}
if [ "$SMOKE" = 1 ]; then
    DEVICE=cpu BUDGET=${KPS_JOB_BUDGET_S:-300} WORKERS_MAX=${KPS_JOB_WORKERS_MAX_S:-200}
    COUNTS=${KPS_JOB_COUNTS:-1,2} WINDOW=20 THREADS=(--threads 1)
    SHRUNK='"width": 4, "image_size": 8, "batch_size": 512'
    WORKERS_OVERRIDES="{$SHRUNK}" GRID_OVERRIDES="{$SHRUNK, \"epochs\": 1}"
    CHECKPOINTS=${KPS_JOB_CHECKPOINTS:-}  # a GPU job's checkpoints continue on a GPU only
    WORK=${KPS_JOB_WORK:-$(mktemp -d /tmp/kps-job.XXXXXX)}
else
    DEVICE=cuda BUDGET=${KPS_JOB_BUDGET_S:-540} WORKERS_MAX=${KPS_JOB_WORKERS_MAX_S:-240}
    COUNTS=${KPS_JOB_COUNTS:-1,2,4,8} WINDOW=20 THREADS=()
    WORKERS_OVERRIDES='{}' GRID_OVERRIDES='{}'
    CHECKPOINTS=${KPS_JOB_CHECKPOINTS:-data/job-checkpoints.tar}
    WORK=${KPS_JOB_WORK:-$ROOT/data/job-work}
fi
if [ -x .venv/bin/python ]; then PY=$ROOT/.venv/bin/python; else PY=python3; fi
export PYTHONUNBUFFERED=1 PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
START=$(date +%s)
DEADLINE=$((START + BUDGET - RESERVE))
mkdir -p "$OUT" "$WORK/checkpoints"
COMMON=(--grid "$GRID" --device "$DEVICE" --data-root "$DATA_ROOT" ${THREADS[@]+"${THREADS[@]}"})

log() { printf '[job %s +%ss] %s\n' "$(date -u +%H:%M:%S)" "$(($(date +%s) - START))" "$*"; }

main() {
    local status=0 part
    log "smoke=$SMOKE device=$DEVICE grid=$GRID budget=${BUDGET}s work=$WORK"
    log "git commit: ${KPS_GIT_COMMIT:-unset} (declared; the records use it), here: $(git rev-parse HEAD 2>/dev/null || echo 'no .git')"
    [ "$DEVICE" = cuda ] && { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true; }
    "$PY" bench/grid.py env --device "$DEVICE" || { log "FAILED: environment"; return 4; }
    "$PY" bench/grid.py data --archive "${KPS_JOB_ARCHIVE:-data/cifar10-jpeg.tar.gz}" --data-root "$DATA_ROOT" \
        || { log "FAILED: data"; return 5; }
    if [ "${KPS_JOB_WORKERS:-1}" = 1 ]; then
        log "stage workers: K = $COUNTS (at most ${WORKERS_MAX}s)"
        timeout -k 30 "$WORKERS_MAX" "$PY" bench/grid.py workers "${COMMON[@]}" --overrides "$WORKERS_OVERRIDES" \
            --counts "$COUNTS" --window-s "$WINDOW" --work "$WORK/bench" --out "$OUT/workers.json" \
            || { status=$?; log "FAILED: workers (exit $status)"; }
    fi
    for part in ${CHECKPOINTS:+"$CHECKPOINTS" "${CHECKPOINTS%.tar}"-[0-9]*.tar}; do
        [ -f "$part" ] || continue  # an earlier job's unfinished runs; a newer checkpoint already here is kept
        log "resuming the checkpoints of $part"
        tar --skip-old-files -xf "$part" -C "$WORK/checkpoints" || return 1
    done
    log "stage grid (deadline in $((DEADLINE - $(date +%s)))s)"
    "$PY" bench/grid.py run "${COMMON[@]}" --overrides "$GRID_OVERRIDES" --work "$WORK" --out "$OUT" \
        --deadline "$DEADLINE" --bench "$OUT/workers.json" --existing results ${KPS_JOB_JOBS:+--jobs "$KPS_JOB_JOBS"} \
        || { status=$?; log "grid: not every run finished (exit $status), see runs.json"; }
    [ "$SMOKE" = 1 ] && [ -z "${KPS_JOB_WORK:-}" ] && rm -rf "$WORK"
    log "files for the caller:"
    ls -l "$OUT"
    log "done (exit $status)"
    return "$status"
}

main 2>&1 | tee "$OUT/job.log"
