#!/usr/bin/env bash
# The one prepared GPU job of issue 6 (how to launch it: bench/README.md).
#
#   1. data:  verify and unpack the carried CIFAR-10 JPEG pack, decode it once (uint8 cache)
#   2. bench: bench/bench.py, reference-style trainer vs the kps fast path -> $OUT/<device>-<date>.json
#   3. grid:  bench/grid.py run, full 200-epoch runs of $RUNS under a deadline -> $OUT/results.tar,
#             $OUT/runs.json, $OUT/logs.tar, $OUT/checkpoints[-2|-3].tar (unfinished runs only)
#   and $OUT/job.log (everything printed).  Each stage and each run fails on its own; the job
#   always ends by the budget (KPS_JOB_BUDGET_S, default 540 s) minus a reserve for packing.
#
# Environment (all optional): OUT (required; the device tool sets it), KPS_JOB_SMOKE=1 (CPU check:
# tiny bench, 1-epoch runs on a shrunk data set), KPS_JOB_BUDGET_S, KPS_JOB_RESERVE_S,
# KPS_JOB_MPS (default 1: run the grid under CUDA MPS if it works there), KPS_JOB_CONCURRENCY (runs at
# once), KPS_JOB_PER_PROCESS (runs one process trains side by side, one CUDA stream each),
# KPS_JOB_COMPILE (compile mode of the runs' training step; default "auto": the bench times eager,
# "reduce-overhead", "cuda-graph" and "cuda-graph-compiled" (CUDA graphs, GPU only), 6 runs side
# by side in one process in "cuda-graph", and 6 copies of one run stacked as one network; see grid_plan),
# KPS_JOB_STACK (with a forced KPS_JOB_COMPILE: 1 trains runs of equal stack key as one network, grid.py
# --stack; default 0; the CPU smoke: default 1), KPS_JOB_CHECKPOINT_EVERY (epochs between
# checkpoints, default 10),
# KPS_JOB_RETRY_COMPILE (the mode a run that failed trains once more in, alone and not stacked, from its
# last checkpoint: grid.py --retry-compile; default reduce-overhead, the mode of job 2's full runs; the smoke:
# none; "" for no retry), KPS_JOB_PARTIAL (default 1: start the first wave even when the bench predicts that no run finishes in
# time; 0: the strict time guard), KPS_JOB_BENCH=0 (skip the bench), KPS_JOB_BENCH_MAX_S, KPS_JOB_RUNS (another run list), KPS_JOB_DATA_ROOT, KPS_JOB_ARCHIVE,
# KPS_JOB_CHECKPOINTS (an earlier job's checkpoints.tar to resume, default data/job-checkpoints.tar, and its
# parts beside it: data/job-checkpoints-2.tar, ...), KPS_JOB_WORK (default data/job-work on the GPU),
# KPS_GIT_COMMIT.
#
# `bash bench/gpu_job.sh --list` prints the run list and exits.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# Tables 3 and 5 on CIFAR-10 (JPEG copy), imbalance 100, seed 0, in priority order, as METHOD[:GA variant],
# then, last, KPS-GA with every switch of the authors' code (m_max 0.2, their lr decay and GA scale, subset
# seed 666): is the gap to the paper's number in the settings?  tests/test_bench.py checks this list against
# kps.configs.METHODS and the paper's tables (book/paper_numbers.csv).
RUNS="kps_ga:paper kps_ga:official kps ldam_drw ce kps_drw la cb_focal focal eql cosface arcface kps_ga:authors"

if [ "${1:-}" = "--list" ]; then
    printf '%s\n' ${KPS_JOB_RUNS:-$RUNS}
    exit 0
fi

: "${OUT:?set OUT to the folder whose files come back (the device tool sets it)}"
SMOKE=${KPS_JOB_SMOKE:-0}
BUDGET=${KPS_JOB_BUDGET_S:-540}
RESERVE=${KPS_JOB_RESERVE_S:-20}
RUNS=${KPS_JOB_RUNS:-$RUNS}
COMPILE=${KPS_JOB_COMPILE:-auto}
CHECKPOINT_EVERY=${KPS_JOB_CHECKPOINT_EVERY:-10}
PARTIAL=${KPS_JOB_PARTIAL:-1}
DATA_ROOT=${KPS_JOB_DATA_ROOT:-data}
ARCHIVE=${KPS_JOB_ARCHIVE:-data/cifar10-jpeg.tar.gz}
CHECKPOINTS_TAR=${KPS_JOB_CHECKPOINTS:-data/job-checkpoints.tar}
if [ "$SMOKE" = 1 ]; then
    DEVICE=cpu
    # (--together and --stack are skipped under --limit-steps: whole epochs; the grid below stacks)
    BENCH_ARGS=(--device cpu --epochs 1 --warmup-epochs 1 --limit-steps 2 --workers 1 --together 2 --stack)
    GRID_ARGS=(--epochs 1 --shrink 50)
    CHECKPOINTS_TAR=${KPS_JOB_CHECKPOINTS:-}  # a GPU job's checkpoints continue on a GPU only
    RETRY_COMPILE=${KPS_JOB_RETRY_COMPILE-none}
    BENCH_MAX=${KPS_JOB_BENCH_MAX_S:-300}
else
    DEVICE=cuda
    RETRY_COMPILE=${KPS_JOB_RETRY_COMPILE-reduce-overhead}
    case "$COMPILE" in
        # cuda-graph first after eager: the side-by-side and stacked measurements follow it, and the
        # grid plan needs them even when the bench's time limit cuts off the later modes
        auto) FAST_MODES="none,cuda-graph,reduce-overhead,cuda-graph-compiled" ;;
        none) FAST_MODES=none ;;
        *) FAST_MODES="none,$COMPILE" ;;
    esac
    BENCH_ARGS=(--device cuda --epochs 3 --warmup-epochs 1 --workers 4 --fast-modes "$FAST_MODES")
    case ",$FAST_MODES," in
        *,cuda-graph,*)  # K runs on streams, and K copies of one run stacked as one network (K >= 2)
            together_k=${KPS_JOB_PER_PROCESS:-6}
            BENCH_ARGS+=(--together "$together_k" --together-mode cuda-graph --stack "$((together_k < 2 ? 2 : together_k))") ;;
    esac
    GRID_ARGS=()
    BENCH_MAX=${KPS_JOB_BENCH_MAX_S:-240}
fi
if [ -x .venv/bin/python ]; then PY=$ROOT/.venv/bin/python; else PY=python3; fi
export PYTHONUNBUFFERED=1 PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
START=$(date +%s)
DEADLINE=$((START + BUDGET - RESERVE))
mkdir -p "$OUT"
# records, checkpoints and logs.  On the GPU: data/job-work (git-ignored), kept, so that a follow-up call
# on the same warm machine (the tool keeps ignored files between calls) resumes from its checkpoints
# without carrying them and skips what it finished.  The CPU smoke: a temporary folder, removed at the end.
if [ -n "${KPS_JOB_WORK:-}" ]; then
    WORK=$KPS_JOB_WORK OWN_WORK=0
elif [ "$SMOKE" = 1 ]; then
    WORK=$(mktemp -d /dev/shm/kps-job.XXXXXX 2>/dev/null || mktemp -d /tmp/kps-job.XXXXXX) OWN_WORK=1
else
    WORK=$ROOT/data/job-work OWN_WORK=0
fi
mkdir -p "$WORK"

log() { printf '[job %s +%ss] %s\n' "$(date -u +%H:%M:%S)" "$(($(date +%s) - START))" "$*"; }

stage_env() {
    log "smoke=$SMOKE device=$DEVICE budget=${BUDGET}s compile=$COMPILE work=$WORK"
    log "git commit: ${KPS_GIT_COMMIT:-unset} (declared; the records use it), git here: $(git rev-parse HEAD 2>/dev/null || echo 'no .git')"
    "$PY" -c 'import sys, torch, torchvision; print(sys.version.split()[0], "torch", torch.__version__,
"torchvision", torchvision.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'
    if [ "$DEVICE" = cuda ]; then
        nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv || true
        "$PY" -c 'import torch; assert torch.cuda.is_available(), "no CUDA device"' || return 1
    fi
    nproc
}

stage_data() {
    if [ ! -d "$DATA_ROOT/cifar10-jpeg/train" ]; then
        log "unpacking $ARCHIVE into $DATA_ROOT"
        "$PY" -c 'import sys; from kps.data import verify_archive; verify_archive(sys.argv[1], "cifar10-jpeg")' \
            "$ARCHIVE" || return 1
        local scratch
        scratch=$(mktemp -d "$DATA_ROOT/.cifar10-jpeg.XXXXXX") || return 1
        tar -xzf "$ARCHIVE" -C "$scratch" && mv "$scratch/cifar10-jpeg" "$DATA_ROOT/cifar10-jpeg" || return 1
        rmdir "$scratch"
    fi
    log "decoding (first time) or reading the uint8 cache"
    "$PY" -c 'import sys, time; from kps.data import build_dataset; t = time.time()
d = build_dataset("cifar10-jpeg", sys.argv[1], 100)
print(f"{d.label}: {len(d.train)} train / {len(d.test)} test images, {time.time() - t:.1f} s")' "$DATA_ROOT"
}

stage_bench() {
    timeout -k 10 "$BENCH_MAX" "$PY" bench/bench.py "${BENCH_ARGS[@]}" --data-root "$DATA_ROOT" --out-dir "$OUT"
}

# The grid's plan, "MODE PER_PROCESS CONCURRENCY STACK", from the bench result $1 (STACK 1: grid.py
# --stack).  Forced (KPS_JOB_COMPILE): that mode, KPS_JOB_PER_PROCESS (default 1) runs per process,
# KPS_JOB_CONCURRENCY (default 8) at once, KPS_JOB_STACK (default 0).  "auto": the whole-step graph mode
# "cuda-graph" must train like the eager fast path (same seed and batches: last epoch's loss within 10%)
# for either plan with several runs per process:
#   streams: K runs side by side in one process reached at least 1.3x the epochs/s of one alone, and their
#     seed-0 run trained like the same run alone (within 10%);
#   stacked: K copies of one run stacked as one network reached at least 1.3x the epochs/s of one alone and
#     more than the streams' K runs (where those qualify), and every copy trained like the run alone
#     (within 10%; they should agree to float noise).
# Stacked wins: "cuda-graph", as many runs per process as the largest group of runs in $RUNS that can
# stack (equal kps.stack.stack_key: all but kps_ga:authors; runs resumed at other epochs train beside the
# stack), KPS_JOB_CONCURRENCY (default 12) but at least every run at once, STACK 1.  Else streams:
# "cuda-graph", KPS_JOB_PER_PROCESS (default 6) runs per process, KPS_JOB_CONCURRENCY (default 12) at once;
# else the fastest compiled mode that trained like eager ("default" without one), one run per process,
# 8 at once (each process compiles its own: several runs in one would compile one after another).
# A mode whose bench trainer failed or was cut off is not in the result.
grid_plan() {
    COMPILE=$COMPILE RUNS=$RUNS "$PY" -c 'import json, os, sys
compile_mode = os.environ.get("COMPILE", "auto")
def env(name, default):
    return int(os.environ.get(name) or default)
if compile_mode != "auto":
    print(compile_mode, env("KPS_JOB_PER_PROCESS", 1), env("KPS_JOB_CONCURRENCY", 8), env("KPS_JOB_STACK", 0))
    sys.exit()
try:
    doc = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    doc = {}
trainers = doc.get("trainers", {})
def close(mine, base):  # last epoch within 10% (no verdict without both)
    return not base or not mine or abs(mine[-1] - base[-1]) <= 0.1 * abs(base[-1])
base = trainers.get("fast_none", {}).get("train_losses") or []
def agrees(t):
    return close(t.get("train_losses") or [], base)
together = doc.get("together") or {}
stacked = doc.get("stacked") or {}
graph = trainers.get("fast_cuda-graph")
graph_ok = bool(graph) and agrees(graph)
alone = (graph or {}).get("train_losses") or []
# the seed-0 run side by side trains as the same run alone (same config and seed)
together_agrees = close((together.get("train_losses") or [[]])[0], alone)
streams = graph_ok and together.get("compile") == "cuda-graph" and together_agrees \
    and (together.get("epoch_rate_vs_alone") or 0) >= 1.3
stacked_agrees = bool(stacked.get("train_losses")) and all(close(run, alone) for run in stacked["train_losses"])
stack = graph_ok and stacked.get("compile") == "cuda-graph" and stacked_agrees \
    and (stacked.get("epoch_rate_vs_alone") or 0) >= 1.3 \
    and (not streams or stacked.get("epochs_per_s", 0) > together.get("epochs_per_s", 0))
if stack:
    from collections import Counter
    sys.path.insert(0, os.path.join(os.environ.get("ROOT") or ".", "bench"))
    from grid import make_run_config, parse_runs
    from kps.stack import stack_key
    runs = parse_runs(os.environ["RUNS"])
    keys = Counter(k for r in runs if (k := stack_key(make_run_config(r, device="cuda", compile_mode="cuda-graph")))
                   is not None)
    if keys and max(keys.values()) >= 2:
        print("cuda-graph", max(keys.values()), max(env("KPS_JOB_CONCURRENCY", 12), len(runs)), 1)
        sys.exit()
if streams:
    print("cuda-graph", env("KPS_JOB_PER_PROCESS", 6), env("KPS_JOB_CONCURRENCY", 12), 0)
    sys.exit()
timed = {m: t["epoch_s"] for m in ("default", "reduce-overhead", "cuda-graph", "cuda-graph-compiled")
         if (t := trainers.get(f"fast_{m}")) and agrees(t)}
print(min(timed, key=timed.get) if timed else "default", 1, env("KPS_JOB_CONCURRENCY", 8), 0)' "${1:-/nonexistent}"
}

# CUDA MPS (KPS_JOB_MPS=1, the default on CUDA): the grid's processes then share the GPU's
# multiprocessors at once instead of taking turns (each run's kernels are small: one alone leaves
# most of the chip idle).  Its own pipe and log folders under $WORK; a CUDA check under it within
# 60 s, else it is stopped and the grid runs without.  It changes no setting of the card.
MPS_ON=0
start_mps() {
    [ "${KPS_JOB_MPS:-1}" = 1 ] && [ "$DEVICE" = cuda ] || return 0
    if ! command -v nvidia-cuda-mps-control >/dev/null; then log "MPS: nvidia-cuda-mps-control not found; without"; return 0; fi
    export CUDA_MPS_PIPE_DIRECTORY=$WORK/mps-pipe CUDA_MPS_LOG_DIRECTORY=$WORK/mps-log
    mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
    if nvidia-cuda-mps-control -d && timeout -k 5 60 "$PY" -c 'import torch
x = torch.arange(1000., device="cuda"); assert float(x.sum()) == 499500.0; print("MPS check: CUDA works")'; then
        MPS_ON=1; log "MPS on"; return 0
    fi
    log "MPS: a CUDA process failed under it; stopping it, the grid runs without"
    stop_mps
    unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
}
stop_mps() {
    [ -n "${CUDA_MPS_PIPE_DIRECTORY:-}" ] || return 0
    echo quit | timeout 20 nvidia-cuda-mps-control || true
    if [ "$MPS_ON" = 1 ]; then tail -n 5 "$CUDA_MPS_LOG_DIRECTORY/control.log" 2>/dev/null || true; fi
    MPS_ON=0
}

stage_grid() {
    local part
    for part in ${CHECKPOINTS_TAR:+"$CHECKPOINTS_TAR" "${CHECKPOINTS_TAR%.tar}"-[0-9]*.tar}; do
        [ -f "$part" ] || continue
        log "resuming from the checkpoints in $part (a newer one already in $WORK is kept)"
        mkdir -p "$WORK/checkpoints" || return 1
        if tar --help 2>/dev/null | grep -q -- --skip-old-files; then
            tar --skip-old-files -xf "$part" -C "$WORK/checkpoints" || return 1
        else  # an old tar: nothing newer can be in a fresh work folder, but keep what is there
            tar --keep-old-files -xf "$part" -C "$WORK/checkpoints" 2>/dev/null || true
        fi
    done
    local bench_json
    bench_json=$(ls -t "$OUT"/*.json 2>/dev/null | grep -v '/runs\.json$' | head -n 1)
    local mode per_process concurrency stack
    if [ "$SMOKE" = 1 ]; then  # the smoke stacks (runs of equal stack key, 2 per process) unless KPS_JOB_STACK=0
        mode=$COMPILE per_process=${KPS_JOB_PER_PROCESS:-2} concurrency=${KPS_JOB_CONCURRENCY:-4} stack=${KPS_JOB_STACK:-1}
        [ "$mode" = auto ] && mode=none
    else
        read -r mode per_process concurrency stack < <(grid_plan "$bench_json")
    fi
    log "grid: compile mode $mode (asked: $COMPILE), $per_process runs per process, $concurrency at once, $([ "${stack:-0}" = 1 ] && echo 'stacked where they can' || echo 'not stacked'), checkpoint every $CHECKPOINT_EVERY epochs, a failed run retried $([ -n "$RETRY_COMPILE" ] && echo "once, alone in $RETRY_COMPILE" || echo never)"
    OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} TORCHINDUCTOR_COMPILE_THREADS=${TORCHINDUCTOR_COMPILE_THREADS:-4} \
        "$PY" bench/grid.py run --runs "$RUNS" --device "$DEVICE" \
        --data-root "$DATA_ROOT" --work "$WORK" --out "$OUT" --existing results --deadline "$DEADLINE" \
        --concurrency "$concurrency" --per-process "$per_process" --compile "$mode" --checkpoint-every "$CHECKPOINT_EVERY" ${RETRY_COMPILE:+--retry-compile "$RETRY_COMPILE"} ${bench_json:+--bench "$bench_json"} $([ "$PARTIAL" = 1 ] && echo --partial) $([ "${stack:-0}" = 1 ] && echo --stack) ${GRID_ARGS[@]+"${GRID_ARGS[@]}"}
}

main() {
    local status=0
    log "stage env"
    stage_env || { log "FAILED: environment (no CUDA device?)"; return 4; }
    log "stage data"
    stage_data || { log "FAILED: data"; return 5; }
    if [ "${KPS_JOB_BENCH:-1}" = 1 ]; then
        log "stage bench (at most ${BENCH_MAX}s)"
        stage_bench || { status=$?; log "FAILED: bench (exit $status); going on with the grid"; }
    else
        log "stage bench skipped (KPS_JOB_BENCH=0)"
    fi
    log "stage grid (deadline in $((DEADLINE - $(date +%s)))s)"
    start_mps
    stage_grid || { status=$?; log "grid: not every run finished (exit $status), see runs.json"; }
    stop_mps
    if [ "$DEVICE" = cuda ]; then nvidia-smi --query-gpu=name,memory.used,clocks.sm --format=csv || true; fi
    if [ "$OWN_WORK" = 1 ]; then rm -rf "$WORK"; fi
    log "files for the caller:"
    ls -l "$OUT"
    log "done (exit $status)"
    return "$status"
}

main 2>&1 | tee "$OUT/job.log"
