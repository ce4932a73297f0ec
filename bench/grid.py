"""The Tables 3 and 5 grid of one GPU job: full runs of every (method, GA
variant) on CIFAR-10 (JPEG copy), imbalance 100, seed 0, side by side on one
GPU, within a fixed wall-clock budget.

``python bench/grid.py one --run A [--run B ...]`` trains one or several
configurations side by side in one process (:func:`kps.together.train_together`,
one CUDA stream each; the trainer's own code path, fast-path switches on:
channels_last, fused SGD, and on CUDA bf16 autocast and the ``--compile``
mode), quietly (no progress bar, so no read-back of the loss during an epoch),
with a checkpoint every ``--checkpoint-every`` epochs (and after the last).
A run whose stop file (:func:`stop_path`) appears is checkpointed after its
epoch in flight and dropped; the others go on.  With ``--stack`` the runs that
may share one network (equal :func:`kps.stack.stack_key`, same epoch reached,
same random-generator states: e.g. every fresh run of seed 0) are trained as
one (``train_together(stack=True)``: their ResNet-32 bodies concatenated along
channels, one kernel does their work); the others side by side.  A stacked run
stopped by its stop file is checkpointed after its epoch; its stack goes on.

``python bench/grid.py run ...`` schedules the runs in processes of at most
``--per-process`` runs each (a failure stops only its own run), in the given
priority order (with ``--stack``, runs of equal stack key go into one process
where they can: :func:`plan_processes`), at most ``--concurrency`` runs at a time.
It follows each run's progress through the trainer's per-epoch progress file (``kps.train.read_progress``: ``next_epoch``,
and ``checkpoint_next_epoch`` of the checkpoint it would resume from), estimates the aggregate rate
(epochs/s over the running runs) and the single-run rate (from the benchmark's
result or the fastest run seen), and predicts the finish times by processor
sharing (:func:`predict_finish`).  Time guard: a run starts only if it and the
running ones are predicted to finish before the deadline; when a running run
is predicted to miss it, the lowest-priority running run is stopped ("shed")
so the others speed up; at the deadline whatever still runs is stopped (stop
files first, so each run is checkpointed after its epoch in flight).  With
``--retry-compile MODE`` a run that fails (an error or a crash, not a diverged
loss) is queued once more, in its place of priority, to train alone in its own
process in MODE, not stacked, from its last checkpoint: the fast paths a job
chooses from its bench are measured for a few epochs only, and a failure of one
late in a run (a graph recaptured at the DRW or GA switch, say) should cost that
run its last checkpoint interval, not the run.  After
every finished run the records are packed into ``<out>/results.tar`` (layout of
``results/``), so an interrupted job still returns them; at the end it writes
``<out>/runs.json`` (status of every run), ``<out>/logs.tar`` and, for runs that
did not finish, their checkpoints in ``<out>/checkpoints.tar`` (and
``checkpoints-2.tar``, ``checkpoints-3.tar``: the device returns files of at
most 16 MiB) for a later ``--resume``, the furthest-trained first.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make the kps package importable
    sys.path.insert(0, str(REPO))

from kps.configs import COMPILE_MODES, STYLES, RunConfig, authors_code_overrides, make_config  # noqa: E402
from kps.data import LTData, TensorSplit, build_dataset  # noqa: E402
from kps.io import atomic_write_bytes, atomic_write_text  # noqa: E402
from kps.results import config_record_path, load_record  # noqa: E402
from kps.together import Outcome, train_together  # noqa: E402
from kps.train import TrainingDiverged, checkpoint_path, progress_path, read_progress  # noqa: E402

__all__ = ["GridRun", "parse_runs", "make_run_config", "shrink", "predict_finish", "plan_processes", "Scheduler",
           "main"]

DATASET = "cifar10-jpeg"
VARIANTS = (*STYLES, "authors")  # GA variants, and "authors": the authors' code in every switch
EXIT_DIVERGED, EXIT_BAD_INPUT, EXIT_FAILED = 1, 2, 4
CHECKPOINT_TAR_LIMIT = 15 * 2**20   # the device tool returns files of at most 16 MiB,
CHECKPOINT_TAR_PARTS = 3            # at most 8 of them: 5 are the bench JSON, records, runs, logs, job log
DEFAULT_STARTUP_S = {"cuda": 90.0, "cpu": 20.0}  # import + data + compile + first epoch, until measured


# --------------------------------------------------------------------------- what to run


@dataclass(frozen=True)
class GridRun:
    """One entry of the grid: a method of kps.configs.METHODS and a GA variant, or
    "authors": every switch of the authors' code (kps.configs.authors_code_overrides)."""

    method: str
    ga_variant: str = "paper"

    @property
    def name(self) -> str:
        return self.method if self.ga_variant == "paper" else f"{self.method}:{self.ga_variant}"


def parse_runs(text: str) -> list[GridRun]:
    """``"kps_ga:paper kps_ga:official ce"`` -> GridRuns (variant defaults to paper);
    ValueError on an unknown variant, an empty list or a repeated entry."""
    runs = []
    for word in text.split():
        method, _, variant = word.partition(":")
        variant = variant or "paper"
        if variant not in VARIANTS:
            raise ValueError(f"{word!r}: unknown GA variant {variant!r}; valid: {', '.join(VARIANTS)}")
        runs.append(GridRun(method, variant))
    if not runs:
        raise ValueError("the run list is empty")
    if len(set(runs)) != len(runs):
        raise ValueError(f"the run list repeats an entry: {text!r}")
    return runs


def make_run_config(run: GridRun, *, device: str, imbalance: float = 100.0, seed: int = 0,
                    epochs: int | None = None, compile_mode: str = "default") -> RunConfig:
    """The RunConfig of ``run``: the preset's Table 2 values, the fast-path switches
    (channels_last, fused SGD; bf16 and ``compile_mode`` on CUDA only) and, for the
    authors' GA variant, ``ga_variant="official"``, for "authors" every switch of the
    authors' code (their records carry those keys in their names)."""
    cuda = torch.device(device).type == "cuda"
    overrides: dict[str, Any] = dict(imbalance=imbalance, seed=seed, channels_last=True, fused_sgd=True,
                                     bf16=cuda, compile=compile_mode if cuda else "none")
    if epochs is not None:
        overrides["epochs"] = epochs
    if run.ga_variant == "authors":
        overrides.update(authors_code_overrides(DATASET))
    elif run.ga_variant != "paper":
        overrides["ga_variant"] = run.ga_variant
    return make_config(DATASET, run.method, **overrides)


def shrink(data: LTData, every: int) -> LTData:
    """A smoke-test copy of ``data``: every ``every``-th training image of each class
    (at least one) and every ``every``-th test image; counts recomputed."""
    if every < 1:
        raise ValueError(f"shrink factor must be >= 1, got {every}")
    targets = data.train.targets
    keep = [torch.nonzero(targets == c).flatten()[::every] for c in range(data.num_classes)]
    train_idx = torch.cat(keep)
    test_idx = torch.arange(0, len(data.test), every)
    return replace(
        data, counts=[len(k) for k in keep],
        train=TensorSplit(data.train.images[train_idx], targets[train_idx]),
        test=TensorSplit(data.test.images[test_idx], data.test.targets[test_idx]),
        indices=None if data.indices is None else data.indices[train_idx.numpy()],
    )


def stop_path(checkpoint: Path) -> Path:
    """The file whose existence asks the process training a run to stop it (checkpointed
    after its epoch in flight): how the scheduler sheds one run of a process that trains
    several."""
    return checkpoint.with_suffix(".stop")


def failed_path(checkpoint: Path) -> Path:
    """The file a process training several runs writes when one of them fails (its
    error), so the scheduler learns of it before the process ends."""
    return checkpoint.with_suffix(".failed")


def cmd_one(args: argparse.Namespace) -> int:
    """Train one or several grid entries together in this process (kps.together: one
    CUDA stream each) and write their records; prints a one-line JSON summary per run."""
    runs = parse_runs(" ".join(args.run))
    try:
        configs = [make_run_config(run, device=args.device, imbalance=args.imbalance, seed=args.seed,
                                   epochs=args.epochs, compile_mode=args.compile) for run in runs]
        stops = {config: stop_path(checkpoint_path(args.checkpoints, config)) for config in configs}
        data = None
        if args.shrink > 1:
            data = shrink(build_dataset(DATASET, args.data_root, configs[0].imbalance, seed=configs[0].subset_seed),
                          args.shrink)
        outcomes = train_together(configs, data_root=args.data_root, out=args.out, device=args.device,
                                  resume=args.resume, checkpoint_dir=args.checkpoints, data=data,
                                  checkpoint_every=args.checkpoint_every, stop=lambda c: stops[c].exists(),
                                  on_end=_report_failure(args.checkpoints), quiet=True, stack=args.stack)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    codes = [0]
    for run, config, outcome in zip(runs, configs, outcomes):
        summary: dict[str, Any] = {"run": run.name, "epochs_done": outcome.epochs_done}
        if outcome.record is not None:
            summary.update(record=str(config_record_path(args.out, config)),
                           **{k: outcome.record[k] for k in ("top1_error", "best_top1_error", "wall_time_s", "device")},
                           stacked_runs=stacked_runs(outcome.record))
        elif outcome.stopped:
            summary["stopped"] = True
        else:
            print(f"error: {run.name}: {outcome.error}", file=sys.stderr)
            summary["error"] = str(outcome.error)
            codes.append(EXIT_DIVERGED if isinstance(outcome.error, TrainingDiverged) else EXIT_FAILED)
        print(json.dumps(summary))
    return max(codes)


# --------------------------------------------------------------------------- prediction


def predict_finish(now: float, jobs: Sequence[tuple[float, float]], capacity: float, cap: float) -> list[float]:
    """Finish times of ``jobs`` = (startup seconds left, epochs left) sharing the device.

    Processor sharing: a job past its startup runs at ``min(cap, capacity / k)``
    epochs/s while k jobs are past startup (``capacity``: aggregate epochs/s the
    device sustains, ``math.inf`` if unsaturated; ``cap``: one job alone).  A job
    in startup uses no share.  Returns one time per job, in order."""
    if cap <= 0 or capacity <= 0:
        raise ValueError(f"rates must be > 0, got capacity {capacity}, cap {cap}")
    startup = [max(s, 0.0) for s, _ in jobs]
    left = [max(e, 0.0) for _, e in jobs]
    finish = [now if left[i] == 0 and startup[i] == 0 else math.nan for i in range(len(jobs))]
    t = now
    while any(math.isnan(f) for f in finish):
        active = [i for i in range(len(jobs)) if math.isnan(finish[i]) and startup[i] == 0]
        waiting = [i for i in range(len(jobs)) if math.isnan(finish[i]) and startup[i] > 0]
        rate = min(cap, capacity / len(active)) if active else 0.0
        steps = [left[i] / rate for i in active] + [startup[i] for i in waiting]
        dt = min(steps)
        t += dt
        for i in active:
            left[i] -= rate * dt
            if left[i] <= 1e-9:
                left[i], finish[i] = 0.0, t
        for i in waiting:
            startup[i] = max(startup[i] - dt, 0.0)
            if startup[i] == 0 and left[i] == 0:
                finish[i] = t
    return finish


# --------------------------------------------------------------------------- grouping


def plan_processes(items: Sequence[Any], per_process: int, key: Callable[[Any], Any] | None = None,
                   resumed: Callable[[Any], bool] = lambda item: False,
                   max_units: int | None = None) -> list[list[Any]]:
    """``items`` (in priority order) into processes of at most ``per_process`` each.

    Without ``key``: consecutive chunks, as they come.  With ``key`` (the stack key;
    None: the item cannot stack): items of a key that two or more share go into
    processes of their own, that key's items in order, chunked; items left alone by
    their key (None, a key of one, or one left over from chunking) are packed together
    in order, side by side as without stacking.
    ``max_units`` caps a stacking process's units (each CUDA stream of
    kps.together.fit_together): a ``resumed`` item (from a checkpoint, at an epoch of its
    own) may train beside the stack rather than in it, so it counts one unit; the fresh
    items of a key stack (same epoch 0, same seed) and count one together.  Processes
    are returned in order of their first item's priority."""
    if per_process < 1:
        raise ValueError(f"per_process must be >= 1, got {per_process}")
    order = {id(item): k for k, item in enumerate(items)}
    if key is None:
        return [list(items[i:i + per_process]) for i in range(0, len(items), per_process)]
    buckets: dict[Any, list[Any]] = {}
    alone: list[Any] = []
    for item in items:
        k = key(item)
        if k is None:  # it cannot stack at all (kps.stack.stack_key)
            alone.append(item)
        else:
            buckets.setdefault(k, []).append(item)
    groups: list[list[Any]] = []
    for bucket in buckets.values():
        if len(bucket) == 1:
            alone.extend(bucket)
            continue
        chunk: list[Any] = []
        for item in bucket:
            units = sum(resumed(x) for x in [*chunk, item]) + any(not resumed(x) for x in [*chunk, item])
            if len(chunk) == per_process or (max_units is not None and chunk and units > max_units):
                groups.append(chunk)
                chunk = []
            chunk.append(item)
        if len(chunk) == 1:
            alone.extend(chunk)
        else:
            groups.append(chunk)
    alone.sort(key=lambda item: order[id(item)])
    step = per_process if max_units is None else min(per_process, max_units)
    groups += [alone[i:i + step] for i in range(0, len(alone), step)]
    return sorted(groups, key=lambda group: order[id(group[0])])


def stacked_runs(record: dict[str, Any]) -> int:
    """How many runs the last process of a record trained as one network (its last
    segment's ``stacked_runs``; 1: not stacked, or a record from before stacking)."""
    segments = record.get("segments") or [{}]
    return int(segments[-1].get("stacked_runs") or 1)


# --------------------------------------------------------------------------- scheduling


@dataclass
class Slot:
    """A grid entry's state in the scheduler."""

    run: GridRun
    priority: int
    config: RunConfig
    record: Path
    checkpoint: Path
    log: Path
    status: str = "queued"  # queued, running, done, failed, shed, killed, skipped, not started
    reason: str = ""
    proc: subprocess.Popen | None = None
    started: float | None = None
    ended: float | None = None
    first_epoch_at: float | None = None
    epochs_done: int = 0
    checkpoint_epochs: int = 0
    samples: list[tuple[float, int]] = field(default_factory=list)
    progress_mtime: float = 0.0
    result: dict[str, Any] | None = None
    attempts: int = 0  # processes started for it
    retried_after: str = ""  # why its first attempt failed, if it was retried


class Scheduler:
    """Runs the grid as separate processes under the time guard (module docstring)."""

    def __init__(self, runs: Sequence[GridRun], args: argparse.Namespace, deadline: float,
                 clock=time.time) -> None:
        self.args, self.deadline, self.clock = args, deadline, clock
        self.work = Path(args.work)
        self.records, self.checkpoints, self.logs = self.work / "results", self.work / "checkpoints", self.work / "logs"
        for folder in (self.records, self.checkpoints, self.logs):
            folder.mkdir(parents=True, exist_ok=True)
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.device_type = torch.device(args.device).type
        self.slots = []
        for k, run in enumerate(runs):
            config = make_run_config(run, device=args.device, imbalance=args.imbalance, seed=args.seed,
                                     epochs=args.epochs, compile_mode=args.compile)
            self.slots.append(Slot(run, k, config, config_record_path(self.records, config),
                                   checkpoint_path(self.checkpoints, config),
                                   self.logs / f"{run.name.replace(':', '-')}.log"))
        self.single_rate = _bench_rate(args.bench, args.compile) if args.bench else None
        self.t0 = clock()
        self.last_change = -math.inf

    # ---- small helpers

    def log(self, message: str) -> None:
        print(f"[grid {time.strftime('%H:%M:%S')} +{self.clock() - self.t0:5.0f}s] {message}", flush=True)

    def running(self) -> list[Slot]:
        return [s for s in self.slots if s.status == "running"]

    def _epochs(self, slot: Slot) -> int:
        return slot.config.epochs

    def startup_estimate(self) -> float:
        seen = [s.first_epoch_at - s.started for s in self.slots if s.first_epoch_at is not None]
        return statistics.median(seen) if seen else DEFAULT_STARTUP_S.get(self.device_type, 60.0)

    def rate(self, slot: Slot, window: float = 30.0) -> float | None:
        """Epochs/s of ``slot`` since its first sample in the last ``window`` seconds and
        after the last start/stop of any run (else its last two samples), counted up to
        now, so a stalled run slows down; only epochs after the first (compilation)
        count; None before two samples."""
        now = self.clock()
        steady = [(t, e) for t, e in slot.samples if e >= 1]
        recent = [(t, e) for t, e in steady if t >= max(now - window, self.last_change)]
        if len(recent) < 2:
            recent = steady[-2:]
        if len(recent) < 2 or now - recent[0][0] < 1.0:
            return None
        return (recent[-1][1] - recent[0][1]) / (now - recent[0][0])

    # ---- progress

    def poll_progress(self, slot: Slot) -> None:
        """Read ``next_epoch`` from the run's progress file when it changed (a small
        JSON written atomically after every epoch; the checkpoint is not loaded)."""
        try:
            mtime = progress_path(slot.checkpoint).stat().st_mtime
        except FileNotFoundError:
            return
        if mtime == slot.progress_mtime:
            return
        progress = read_progress(slot.checkpoint)
        if progress is None:
            return
        slot.progress_mtime = mtime
        now = self.clock()
        slot.epochs_done = progress["next_epoch"]
        slot.checkpoint_epochs = progress.get("checkpoint_next_epoch") or 0
        slot.samples.append((now, slot.epochs_done))
        if slot.epochs_done >= 1 and slot.first_epoch_at is None:
            slot.first_epoch_at = now

    def estimates(self) -> tuple[float, float] | None:
        """(capacity, single-run cap) in epochs/s, or None before any rate is known."""
        rates = [r for r in (self.rate(s) for s in self.running()) if r is not None]
        if not rates:
            return None
        cap = max([*rates, self.single_rate or 0.0])
        aggregate = sum(rates)
        if aggregate <= 0:
            return None
        saturated = len(rates) >= 2 and aggregate < 0.85 * len(rates) * cap
        return (aggregate if saturated else math.inf), cap

    def jobs(self, slots: Sequence[Slot], extra: int = 0) -> list[tuple[float, float]]:
        now, startup = self.clock(), self.startup_estimate()
        out = []
        for s in slots:
            pending = 0.0 if s.first_epoch_at is not None else max(startup - (now - s.started), 1.0)
            out.append((pending, self._epochs(s) - s.epochs_done))
        return out + [(startup, float(self._epochs(self.slots[0])))] * extra

    # ---- actions

    def start(self, group: Sequence[Slot]) -> None:
        """One process training ``group`` side by side (``one --run A --run B ...``); the
        group shares the first run's log.  A retried run (:meth:`retry`) is a group of
        its own, in ``--retry-compile``, not stacked."""
        a = self.args
        retry = any(slot.retried_after for slot in group)
        assert not retry or len(group) == 1, "a retried run trains alone"
        cmd = [sys.executable, str(Path(__file__).resolve()), "one"]
        for slot in group:
            cmd += ["--run", slot.run.name]
        cmd += ["--device", a.device, "--imbalance", str(a.imbalance), "--seed", str(a.seed),
                "--data-root", a.data_root, "--out", str(self.records), "--checkpoints", str(self.checkpoints),
                "--compile", a.retry_compile if retry else a.compile, "--shrink", str(a.shrink),
                "--checkpoint-every", str(a.checkpoint_every), "--resume"]
        if a.stack and not retry:
            cmd.append("--stack")
        if a.epochs is not None:
            cmd += ["--epochs", str(a.epochs)]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.setdefault("OMP_NUM_THREADS", "1")
        for slot in group:  # a request to (or a failure of) an earlier process of this run is not this one's
            stop_path(slot.checkpoint).unlink(missing_ok=True)
            failed_path(slot.checkpoint).unlink(missing_ok=True)
        log = group[0].log
        handle = open(log, "ab")
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                                start_new_session=True)
        handle.close()
        now = self.clock()
        for slot in group:
            slot.proc, slot.log, slot.status, slot.started = proc, log, "running", now
            slot.attempts += 1
        self.last_change = now
        names = ", ".join(slot.run.name for slot in group)
        how = ", one process" if len(group) > 1 else f", retry in {a.retry_compile}" if retry else ""
        self.log(f"start {names} (pid {proc.pid}{how})")

    def stop(self, slot: Slot, status: str, reason: str) -> None:
        """Stop ``slot``'s run: through its stop file if its process trains other runs
        still (the process checkpoints it after its epoch in flight and goes on), else
        by ending the process (:meth:`end_processes`); a run that finished meanwhile is
        collected as done."""
        assert slot.proc is not None
        if any(s.proc is slot.proc and s is not slot for s in self.running()):
            _request_stop(slot)
        else:
            self.end_processes([slot], self.stop_lead())
        self._mark_stopped(slot, status, reason)

    def _mark_stopped(self, slot: Slot, status: str, reason: str) -> None:
        """Book a stopped run: done if its record is there after all, else ``status``."""
        if slot.record.is_file():
            self._collect(slot, 0)
        else:
            self.poll_progress(slot)
            slot.status, slot.reason, slot.ended = status, reason, self.clock()
            self.log(f"{status} {slot.run.name} after {slot.epochs_done}/{self._epochs(slot)} epochs: {reason}")
        self.last_change = self.clock()

    def stop_lead(self) -> float:
        """Seconds a run may need to stop by its stop file: up to one epoch in flight
        (the slowest running run's epoch interval) twice over, plus 3 s for the
        checkpoint and the exit; 10 s before any rate is known; at most 60 s."""
        rates = [r for r in (self.rate(s) for s in self.running()) if r]
        if not rates:
            return 10.0
        return min(60.0, 2.0 / min(rates) + 3.0)

    def end_processes(self, slots: Sequence[Slot], grace_s: float = 5.0) -> None:
        """End the processes of ``slots``: stop files for all their runs (each is
        checkpointed after its epoch in flight, then the process exits by itself); after
        ``grace_s``, SIGTERM to every process group still there, SIGKILL 5 s later."""
        procs = {id(s.proc): s.proc for s in slots if s.proc is not None}
        for s in self.slots:
            if id(s.proc) in procs and s.status == "running":
                _request_stop(s)
        for signum, wait_s in ((None, grace_s), (signal.SIGTERM, 5.0), (signal.SIGKILL, None)):
            alive = [proc for proc in procs.values() if proc.poll() is None]
            if signum is not None:
                for proc in alive:
                    with _suppress_lookup():
                        os.killpg(proc.pid, signum)
            until = None if wait_s is None else time.monotonic() + wait_s
            for proc in alive:
                try:
                    proc.wait(timeout=None if until is None else max(until - time.monotonic(), 0.0))
                except subprocess.TimeoutExpired:
                    pass
            if all(proc.poll() is not None for proc in procs.values()):
                return

    def collect_ended_run(self, slot: Slot) -> None:
        """A run of a process that trains others may end before its process: its record
        (done) or its failure file (failed) says so; collect it now, so it frees its place."""
        failure = failed_path(slot.checkpoint)
        if slot.record.is_file():
            self._collect(slot, 0)
            self.pack_records()
        elif failure.is_file() and slot.proc is not None and slot.proc.poll() is None:  # else reap() books it
            slot.ended = self.clock()
            self._fail(slot, f"failed in its process (which goes on): {_failure_text(failure)}")
        if slot.status != "running":
            self.last_change = self.clock()

    def reap(self, slot: Slot) -> bool:
        """Collect a finished process: each run of it still running is done if its record
        is there, else failed; True if it ended."""
        assert slot.proc is not None
        code = slot.proc.poll()
        if code is None:
            return False
        # a run shed in its last epoch finishes anyway (kps.train.Trainer.epochs): done
        for other in [s for s in self.slots if s.proc is slot.proc
                      and (s.status == "running" or (s.status == "shed" and s.record.is_file()))]:
            self._collect(other, code)
        self.pack_records()
        return True

    def _collect(self, slot: Slot, code: int) -> None:
        slot.ended = self.clock()
        self.poll_progress(slot)
        if slot.record.is_file():
            try:
                record = load_record(slot.record)
                slot.status = "done"
                slot.result = {k: record[k] for k in ("top1_error", "best_top1_error", "best_epoch",
                                                       "top1_error_rcos", "wall_time_s", "device")}
                slot.result["stacked_runs"] = stacked_runs(record)
                self.log(f"done {slot.run.name}: final {record['top1_error']:.2f}, best "
                         f"{record['best_top1_error']:.2f}, {record['wall_time_s']:.0f} s of training")
            except (OSError, ValueError) as err:
                self._fail(slot, f"no valid record: {err}", retry=False)
        elif (failure := failed_path(slot.checkpoint)).is_file():
            self._fail(slot, f"exit status {code}: {_failure_text(failure)}")
        else:
            self._fail(slot, f"exit status {code}, no record; last lines: {_tail(slot.log)}")

    def _fail(self, slot: Slot, reason: str, retry: bool = True) -> None:
        """Book ``slot`` as failed, or queue it once more (:meth:`retry`) where ``retry``
        and ``--retry-compile`` allow, it has not been retried yet and it did not
        diverge (a loss that is not finite belongs to the run: retrying hides it)."""
        slot.status, slot.reason = "failed", reason
        self.log(f"failed {slot.run.name}: {reason}")
        if retry and self.args.retry_compile and not slot.retried_after and TrainingDiverged.__name__ not in reason:
            self.retry(slot)

    def retry(self, slot: Slot) -> None:
        """Queue the failed ``slot`` again, in its place of priority: alone in its own
        process, in ``--retry-compile``, from its last checkpoint (epochs since are lost)."""
        self.poll_progress(slot)
        slot.retried_after, slot.reason = slot.reason, ""
        slot.status, slot.proc, slot.started, slot.ended, slot.first_epoch_at = "queued", None, None, None, None
        slot.samples, slot.epochs_done = [], slot.checkpoint_epochs
        self.log(f"retry {slot.run.name}: once more, alone in {self.args.retry_compile} and not stacked, "
                 f"from epoch {slot.checkpoint_epochs}")

    # ---- the loop

    def step(self) -> bool:
        """One scheduling round; False when nothing is left to do."""
        now = self.clock()
        for slot in self.running():
            if slot.status == "running":  # a process's end collects all its runs at once
                self.poll_progress(slot)
                self.collect_ended_run(slot)
            if slot.status == "running":
                self.reap(slot)
        lead = self.stop_lead()
        if now >= self.deadline - lead:  # stop files early enough for every run to checkpoint
            self.stop_all("killed", "deadline reached", lead)
            return False
        est = self.estimates()
        running = self.running()
        settled = now - self.last_change >= self.args.settle_s
        # Shedding helps only when the device is saturated (finite capacity): then
        # stopping the lowest-priority run speeds up the others.  Unsaturated, a run
        # that will miss costs the others nothing and leaves a checkpoint to resume.
        sheddable = [s for s in running if not self.stacked_with_another(s)]
        if est is not None and math.isfinite(est[0]) and settled and len(running) >= 2 and sheddable:
            finish = predict_finish(now, self.jobs(running), *est)
            if max(finish) > self.deadline and self.shedding_helps(running, est, sheddable):
                victim = max(sheddable, key=lambda s: s.priority)
                self.stop(victim, "shed", f"a run was predicted to miss the deadline by "
                                          f"{max(finish) - self.deadline:.0f} s (device saturated at "
                                          f"{est[0]:.2f} epochs/s, one run alone {est[1]:.2f} epochs/s)")
                return True
        queued = [s for s in self.slots if s.status == "queued"]
        wave: list[Slot] = []
        while queued and len(self.running()) + len(wave) < self.args.concurrency and self.fits(est, len(wave) + 1):
            wave.append(queued.pop(0))
        for group in self.process_groups(wave):
            self.start(group)
        return bool(self.running() or (queued and self.clock() < self.deadline and self.may_start_later(est)))

    def process_groups(self, wave: Sequence[Slot]) -> list[list[Slot]]:
        """``wave`` into processes of at most ``--per-process`` runs (:func:`plan_processes`):
        in order, or with ``--stack`` the runs of equal stack key together (on CUDA at
        most kps.together.MAX_CUDA_RUNS units a process, a run with a checkpoint to
        resume from counting one).  A retried run goes alone (:meth:`start`)."""
        retried = [[slot] for slot in wave if slot.retried_after]
        wave = [slot for slot in wave if not slot.retried_after]
        if not self.args.stack:
            groups = plan_processes(wave, self.args.per_process)
        else:
            from kps.stack import stack_key
            from kps.together import MAX_CUDA_RUNS

            groups = plan_processes(wave, self.args.per_process, key=lambda s: stack_key(s.config),
                                    resumed=lambda s: s.checkpoint.is_file(),
                                    max_units=MAX_CUDA_RUNS if self.device_type == "cuda" else None)
        return sorted(retried + groups, key=lambda group: group[0].priority)

    def stacked_with_another(self, slot: Slot) -> bool:
        """With ``--stack``: does ``slot`` seem to train in one network with another running
        run (same process, same stack key, within one epoch of it)?  Shedding it would not
        speed its stack up (the stack's kernels do its work anyway), so it is not shed."""
        if not self.args.stack:
            return False
        from kps.stack import stack_key

        key = stack_key(slot.config)
        if key is None:  # it cannot stack
            return False
        return any(s is not slot and s.proc is slot.proc and abs(s.epochs_done - slot.epochs_done) <= 1
                   and stack_key(s.config) == key for s in self.running())

    def shedding_helps(self, running: Sequence[Slot], est: tuple[float, float],
                       sheddable: Sequence[Slot] | None = None) -> bool:
        """True if stopping the lowest-priority runs of ``sheddable`` (default: all
        ``running``) one by one reaches a set that all finish in time (else every run is
        late anyway: keep them for their checkpoints)."""
        candidates = sorted(running if sheddable is None else sheddable, key=lambda s: s.priority)
        keep = list(running)
        while candidates and len(keep) > 1:
            keep.remove(candidates.pop())
            if max(predict_finish(self.clock(), self.jobs(keep), *est)) <= self.deadline:
                return True
        return False

    def fits(self, est: tuple[float, float] | None, extra: int = 1) -> bool:
        """Would ``extra`` more runs (and the running ones) finish before the deadline?"""
        now = self.clock()
        if est is None:
            if self.running() and not self.settled_start():
                return True   # the first wave: start it, measure, shed if needed
            cap = self.single_rate
            if cap is None or self.args.partial:
                return True
            return now + self.startup_estimate() + self._epochs(self.slots[0]) / cap <= self.deadline
        finish = predict_finish(now, self.jobs(self.running(), extra=extra), *est)
        return max(finish) <= self.deadline

    def settled_start(self) -> bool:
        return any(s.first_epoch_at is not None for s in self.slots)

    def may_start_later(self, est: tuple[float, float] | None) -> bool:
        """A queued run could still start: the time for one run alone is left."""
        cap = (est[1] if est else None) or self.single_rate
        if cap is None:
            return True
        return self.clock() + self.startup_estimate() + self._epochs(self.slots[0]) / cap <= self.deadline

    def run(self) -> list[Slot]:
        for slot in self.slots:
            if self.args.existing:
                self.skip_if_recorded(slot, Path(self.args.existing))
            if slot.status == "queued" and self.full_record(slot.record, slot):
                self._collect(slot, 0)  # an earlier call in this work folder finished it
                slot.reason = "finished by an earlier call in this work folder"
        try:
            while self.step():
                if int(self.clock() - self.t0) % 30 < self.args.poll_s:
                    self.log(self.progress_line())
                time.sleep(self.args.poll_s)
        finally:
            self.stop_all("killed", "scheduler stopped")
            for slot in self.slots:
                if slot.status == "queued":
                    slot.status, slot.reason = "not started", "time guard: it could not finish before the deadline"
            self.finish()
        return self.slots

    def stop_all(self, status: str, reason: str, grace_s: float = 5.0) -> None:
        """Stop every running run (all processes at once, ``grace_s`` to stop by their
        stop files); a run that finished meanwhile is collected as done."""
        running = self.running()
        if not running:
            return
        self.end_processes(running, grace_s)
        for slot in running:
            self._mark_stopped(slot, status, reason)

    def skip_if_recorded(self, slot: Slot, existing: Path) -> None:
        """Skip ``slot`` if ``existing`` holds its record of a full run (as many epochs);
        a shorter run's record at that path does not count (the job runs it; committing
        then meets the clash, see bench/README.md)."""
        path = config_record_path(existing, slot.config)
        if self.full_record(path, slot):
            slot.status, slot.reason = "skipped", f"{path} holds a {slot.config.epochs}-epoch record"
            self.log(f"skip {slot.run.name}: {slot.reason}")

    def full_record(self, path: Path, slot: Slot) -> bool:
        """True if ``path`` holds a record of ``slot``'s run with all its epochs."""
        if not path.exists():
            return False
        try:
            epochs = load_record(path)["epochs"]
        except (OSError, ValueError) as err:
            self.log(f"{slot.run.name}: unreadable record {path} ({err}); running it")
            return False
        if epochs < slot.config.epochs:
            self.log(f"{slot.run.name}: {path} holds a short ({epochs}-epoch) record; running the full run")
        return epochs >= slot.config.epochs

    def progress_line(self) -> str:
        parts = []
        for s in self.running():
            r = self.rate(s)
            parts.append(f"{s.run.name} {s.epochs_done}/{self._epochs(s)}" + (f" @{r:.2f}/s" if r else ""))
        done = sum(s.status == "done" for s in self.slots)
        queued = sum(s.status == "queued" for s in self.slots)
        est = self.estimates()
        model = "no rate yet" if est is None else (
            f"device {'unsaturated' if math.isinf(est[0]) else f'saturated at {est[0]:.2f} epochs/s'}, "
            f"one run {est[1]:.2f} epochs/s")
        gpu = f"; {_gpu_load()}" if self.device_type == "cuda" else ""
        return f"running: {', '.join(parts) or '-'}; done {done}, queued {queued}; {model}{gpu}"

    # ---- output

    def pack_records(self) -> None:
        """results.tar: the work folder's records, less those already under ``--existing``
        (a follow-up call in the same work folder returns only what is new)."""
        existing = Path(self.args.existing) if self.args.existing else None
        new = [path for path in sorted(self.records.rglob("*.json"))
               if existing is None or not (existing / path.relative_to(self.records)).exists()]
        _write_tar(self.out / "results.tar", self.records, new)

    def finish(self) -> None:
        self.pack_records()
        _write_tar(self.out / "logs.tar", self.logs, sorted(self.logs.glob("*.log")))
        unfinished = sorted((s for s in self.slots if s.status != "done" and s.checkpoint.is_file()),
                            key=lambda s: (-s.checkpoint_epochs, s.priority))  # the most training first
        parts = pack_parts([(s.checkpoint, s.checkpoint.stat().st_size) for s in unfinished],
                           CHECKPOINT_TAR_LIMIT, CHECKPOINT_TAR_PARTS)
        for k, part in enumerate(parts):
            _write_tar(self.out / checkpoint_tar_name(k), self.checkpoints, part)
        kept = [path for part in parts for path in part]
        summary = {
            "deadline_unix": self.deadline,
            "started_unix": self.t0,
            "finished_unix": self.clock(),
            "concurrency": self.args.concurrency,
            "per_process": self.args.per_process,
            "stack": bool(self.args.stack),
            "compile": self.args.compile,
            "retry_compile": self.args.retry_compile,
            "epochs": self._epochs(self.slots[0]),
            "checkpoints_packed": [str(p.relative_to(self.checkpoints)) for p in kept],
            "checkpoints_left_out": [str(s.checkpoint.relative_to(self.checkpoints)) for s in unfinished
                                     if s.checkpoint not in kept],
            "runs": [
                {"run": s.run.name, "method": s.run.method, "ga_variant": s.run.ga_variant, "priority": s.priority,
                 "status": s.status, "reason": s.reason, "epochs_done": s.epochs_done,
                 "checkpoint_epochs": s.checkpoint_epochs, "attempts": s.attempts,
                 "retried_after": s.retried_after or None,
                 "record": str(s.record.relative_to(self.records)),
                 "wall_s": None if s.started is None else round((s.ended or self.clock()) - s.started, 1),
                 "startup_s": None if s.first_epoch_at is None else round(s.first_epoch_at - s.started, 1),
                 **(s.result or {})}
                for s in self.slots
            ],
        }
        atomic_write_text(self.out / "runs.json", json.dumps(summary, indent=1) + "\n")
        width = max(len(s.run.name) for s in self.slots)
        self.log("summary:\n" + "\n".join(
            f"  {s.run.name:<{width}} {s.status:<11} {s.epochs_done:>4}/{self._epochs(s)} epochs"
            + (f"  final {s.result['top1_error']:.2f}  best {s.result['best_top1_error']:.2f}"
               f"  {s.result['wall_time_s']:.0f} s" if s.result else f"  {s.reason}")
            + (f"  (retried after: {s.retried_after})" if s.retried_after else "")
            for s in self.slots))


def _report_failure(checkpoints: str | Path) -> Callable[[RunConfig, Outcome], None]:
    """``train_together``'s on_end for ``one``: a failed run leaves its failure file."""
    def report(config: RunConfig, outcome: Outcome) -> None:
        if outcome.error is not None:
            path = failed_path(checkpoint_path(checkpoints, config))
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, f"{type(outcome.error).__name__}: {outcome.error}\n")
    return report


def _request_stop(slot: Slot) -> None:
    """Create the run's stop file (its folder too: the process may not have made it yet)."""
    path = stop_path(slot.checkpoint)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


class _suppress_lookup:
    """Ignore ProcessLookupError (the process group has already gone)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, value, tb) -> bool:
        return kind is not None and issubclass(kind, ProcessLookupError)


def _gpu_load() -> str:
    """GPU utilisation and memory in use as nvidia-smi reports them (informative only)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "nvidia-smi unavailable"
    return f"gpu {out}"


def checkpoint_tar_name(k: int) -> str:
    """Part k (0-based) of the unfinished runs' checkpoints: checkpoints.tar, checkpoints-2.tar, ..."""
    return "checkpoints.tar" if k == 0 else f"checkpoints-{k + 1}.tar"


def pack_parts(files: Sequence[tuple[Path, int]], limit: int, parts: int) -> list[list[Path]]:
    """(path, size) in order into at most ``parts`` groups of at most ``limit`` bytes
    each (a file goes into the first group with room; one that fits none is left out)."""
    groups: list[list[Path]] = []
    sizes: list[int] = []
    for path, size in files:
        k = next((k for k, used in enumerate(sizes) if used + size <= limit), None)
        if k is None and len(groups) < parts and size <= limit:
            groups.append([])
            sizes.append(0)
            k = len(groups) - 1
        if k is not None:
            groups[k].append(path)
            sizes[k] += size
    return groups


def _failure_text(path: Path) -> str:
    """The error a run's failure file (:func:`failed_path`) holds, on one line."""
    try:
        return " ".join(path.read_text(errors="replace").split()) or "(empty failure file)"
    except OSError as err:
        return f"(unreadable failure file: {err})"


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


def _write_tar(target: Path, root: Path, files: Sequence[Path]) -> None:
    """An uncompressed tar of ``files`` (paths relative to ``root``), written atomically."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in files:
            tar.add(path, arcname=str(path.relative_to(root)))
    atomic_write_bytes(target, buffer.getvalue())


def _bench_rate(path: str, compile_mode: str) -> float | None:
    """Epochs/s of one run alone from a bench result (fast path in ``compile_mode``)."""
    try:
        doc = json.loads(Path(path).read_text())
        trainer = doc["trainers"][f"fast_{compile_mode}"]
        if doc["config"]["limit_steps"] is not None:
            return None
        return 1.0 / float(trainer["epoch_s"])
    except (OSError, KeyError, TypeError, ValueError, ZeroDivisionError):
        return None


def cmd_run(args: argparse.Namespace) -> int:
    runs = parse_runs(args.runs)
    if args.retry_compile is not None and args.retry_compile not in COMPILE_MODES:
        raise ValueError(f"--retry-compile {args.retry_compile!r}: unknown compile mode; valid: {', '.join(COMPILE_MODES)}")
    if args.concurrency < 1 or args.per_process < 1:
        raise ValueError(f"concurrency and per-process must be >= 1, got {args.concurrency}, {args.per_process}")
    deadline = args.deadline if args.deadline is not None else time.time() + args.budget_s
    slots = Scheduler(runs, args, deadline).run()
    return 0 if all(s.status in ("done", "skipped") for s in slots) else 3


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench/grid.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--device", default="cuda")
        q.add_argument("--imbalance", type=float, default=100.0)
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--epochs", type=int, help="fewer epochs than the preset's 200 (smoke checks)")
        q.add_argument("--data-root", default=str(REPO / "data"))
        q.add_argument("--compile", default="default",
                       help="torch.compile mode of the training step on CUDA (default: default; "
                            "reduce-overhead: also CUDA graphs)")
        q.add_argument("--checkpoint-every", type=int, default=10,
                       help="save the checkpoint every k epochs and after the last (default: 10)")
        q.add_argument("--shrink", type=int, default=1, help="keep every k-th image (smoke checks only)")
        q.add_argument("--stack", action="store_true",
                       help="train the runs of a process that may share one network as one (kps.stack: same "
                            "stack key, epoch and generator states); the others side by side")

    one = sub.add_parser("one", help="train grid entries together in one process")
    one.add_argument("--run", required=True, action="append",
                     help="METHOD or METHOD:VARIANT; repeat it to train several side by side (one CUDA stream each)")
    one.add_argument("--out", required=True, help="records folder")
    one.add_argument("--checkpoints", required=True)
    one.add_argument("--resume", action="store_true")
    common(one)
    one.set_defaults(func=cmd_one)

    run = sub.add_parser("run", help="schedule the grid under a deadline")
    run.add_argument("--runs", required=True, help="space-separated METHOD[:VARIANT] in priority order")
    run.add_argument("--work", required=True, help="folder for records, checkpoints and logs")
    run.add_argument("--out", required=True, help="folder for results.tar, runs.json, logs.tar, checkpoints.tar")
    run.add_argument("--existing", help="skip runs whose record exists under this results folder")
    run.add_argument("--bench", help="bench result JSON (one run's speed alone)")
    run.add_argument("--concurrency", type=int, default=6, help="runs at once (default 6)")
    run.add_argument("--per-process", type=int, default=1,
                     help="runs one process trains side by side, each on its own CUDA stream (default 1)")
    run.add_argument("--retry-compile", metavar="MODE",
                     help="train a run that failed (not diverged) once more, alone in its own process, in this "
                          "compile mode, not stacked, from its last checkpoint (default: no retry)")
    run.add_argument("--partial", action="store_true",
                     help="start the first wave even if the bench predicts no run can finish: "
                          "unfinished runs leave checkpoints that a follow-up job resumes")
    group = run.add_mutually_exclusive_group(required=True)
    group.add_argument("--deadline", type=float, help="unix time by which everything must have finished")
    group.add_argument("--budget-s", type=float, help="seconds from now")
    run.add_argument("--poll-s", type=float, default=2.0)
    run.add_argument("--settle-s", type=float, default=30.0, help="seconds after a start/stop before shedding")
    common(run)
    run.set_defaults(func=cmd_run)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
