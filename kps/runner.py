"""Many runs on one machine, the one mechanism above the trainer: worker processes
that take configurations of a list in its order until every one has its record.

Each worker walks the whole list: a configuration whose record exists is done; one
that another live worker has claimed is passed over; any other it claims (a claim
file beside the run's checkpoint, created exclusively), trains, resuming from its
checkpoint when there is one, and releases.  So N workers keep N cores busy, the
list is filled in its order, a worker stopped by SIGINT (Ctrl-C, or a job's
deadline) or killed loses at most the epoch in flight (the trainer checkpoints
after every epoch), and a later call, in this session or another, picks up where
the last stopped: claims of dead processes are taken over.

With ``stack`` = K > 1 (GPU) a worker claims, with each configuration, up to K - 1
later ones of equal :func:`kps.stack.stack_key` and trains those that stand at the
same epoch as one network (:func:`kps.stack.fit_stack`); the others alone.

On a CPU each worker runs single-threaded by default: on our 2-core machine a second
thread adds only 10-20 % to a small network, a second process nearly 100 %.

:data:`GRIDS` names the lists that the site's results come from; ``python -m kps
train-grid --grid cpu --jobs 2`` (or ``notebooks/grid.ipynb``) runs one.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from kps.configs import RunConfig, authors_code_overrides, fast_path, make_config

__all__ = ["GRIDS", "CPU_GRID_ROWS", "cpu_grid", "PAPER_HEADLINE_ROWS", "PAPER_OTHER_ROWS", "paper_grid", "gpu_grid", "claim", "release", "claim_path",
           "run_worker", "spawn_workers"]

# The rows of the CPU-scale grid, in the order they are filled: (method, config overrides).
# The three KPS-GA rows: eq. 25 as written, the authors' per-sample row scale alone,
# and the authors' whole CIFAR setting (--authors-code).
CPU_GRID_ROWS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("ce", {}),
    ("ldam_drw", {}),
    ("kps", {}),
    ("kps_drw", {}),
    ("kps_ga", {}),
    ("kps_ga", {"ga_variant": "official"}),
    ("kps_ga", authors_code_overrides("cifar10-jpeg")),
    ("focal", {}),
    ("cb_focal", {}),
    ("cosface", {}),
    ("arcface", {}),
    ("la", {}),
    ("eql", {}),
    ("kps_ga_mixup", {}),
)
CPU_GRID_SEEDS = (0, 1, 2)
CPU_GRID_IMBALANCES = (100.0,)  # its rho=50 half was stopped: those cores train the paper protocol


def cpu_grid(imbalances: Sequence[float] = CPU_GRID_IMBALANCES, seeds: Sequence[int] = CPU_GRID_SEEDS,
             dataset: str = "cifar10-jpeg") -> list[RunConfig]:
    """The CPU-scale protocol's grid (preset ``cifar10_lt_small``) in its order: per
    imbalance, each row of :data:`CPU_GRID_ROWS` for every seed, then the next row.
    In fp32 with channels_last, as its records were made (the bf16 check pairs bf16
    runs with them), on any CPU."""
    return [make_config(dataset, method, preset="cifar10_lt_small", imbalance=imbalance, seed=seed,
                        channels_last=True, **overrides)
            for imbalance in imbalances for method, overrides in CPU_GRID_ROWS for seed in seeds]


# The paper protocol's grid (preset ``cifar10_lt``, Table 2, 200 epochs), in the order it
# is filled, on a CPU or a GPU alike: seeds 0-2 of the four headline rows (seed-major,
# so that each seed completes the four-way comparison), then seed 0 of the ten others.
# The two KPS-GA rows: eq. 25 as written, and the authors' per-sample row scale.
PAPER_HEADLINE_ROWS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("ce", {}),
    ("ldam_drw", {}),
    ("kps_ga", {}),
    ("kps_ga", {"ga_variant": "official"}),
)
PAPER_OTHER_ROWS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("kps", {}),
    ("kps_drw", {}),
    ("kps_ga", authors_code_overrides("cifar10-jpeg")),
    ("kps_ga_mixup", {}),
    ("focal", {}),
    ("cb_focal", {}),
    ("cosface", {}),
    ("arcface", {}),
    ("la", {}),
    ("eql", {}),
)
PAPER_GRID_SEEDS = (0, 1, 2)
# Evaluation every 10 epochs, and every epoch from the first lr decay (epoch 160,
# 0-indexed) on, where the best epoch lies (both paper-protocol GPU records, evaluated
# every epoch, have their best after it); the site's Speed page measures the cost.
PAPER_GRID_EVAL: dict[str, Any] = {"eval_every": 10, "eval_dense_from": 160}


def paper_grid(device_type: str = "cpu", imbalance: float = 100.0, dataset: str = "cifar10-jpeg"
               ) -> list[RunConfig]:
    """The paper protocol's grid at ``imbalance``, in its order, with the fast path
    measured on ``device_type`` (:func:`kps.configs.fast_path`) and :data:`PAPER_GRID_EVAL`."""
    def config(method: str, seed: int, overrides: dict[str, Any]) -> RunConfig:
        return make_config(dataset, method, imbalance=imbalance, seed=seed, **fast_path(device_type),
                           **PAPER_GRID_EVAL, **overrides)

    return ([config(m, seed, o) for seed in PAPER_GRID_SEEDS for m, o in PAPER_HEADLINE_ROWS]
            + [config(m, 0, o) for m, o in PAPER_OTHER_ROWS])


def gpu_grid(seeds: Sequence[int] = PAPER_GRID_SEEDS, dataset: str = "cifar10-jpeg") -> list[RunConfig]:
    """A GPU job's list: the paper protocol's grid at rho=100 (:func:`paper_grid`), then
    seeds 0-2 of every row at rho=50."""
    rows = PAPER_HEADLINE_ROWS + PAPER_OTHER_ROWS
    rho50 = [make_config(dataset, m, imbalance=50.0, seed=seed, **fast_path("cuda"), **PAPER_GRID_EVAL, **o)
             for seed in seeds for m, o in rows]
    return paper_grid("cuda", dataset=dataset) + rho50


def bf16_check() -> list[RunConfig]:
    """bf16 autocast on a CPU against fp32 (book/results.md): seeds 0-2 of ce and
    kps_ga at the CPU-scale protocol in bf16, each paired with the CPU-scale grid's
    fp32 record of its seed, and the first 10 epochs of ce seed 0 at the paper's
    protocol in bf16 (its fp32 twin: the same config with bf16 off).  Its records
    go to a root of their own (``--out results/bf16-check/bf16``), since precision
    is not part of a record's name."""
    reduced = [make_config("cifar10-jpeg", m, preset="cifar10_lt_small", seed=s, channels_last=True, bf16=True)
               for m in ("ce", "kps_ga") for s in CPU_GRID_SEEDS]
    return reduced + [bf16_check_paper(bf16=True)]


def bf16_check_paper(bf16: bool) -> RunConfig:
    """The precision check's paper-protocol pair: ce seed 0, its first 10 epochs."""
    return make_config("cifar10-jpeg", "ce", seed=0, epochs=10, eval_every=10, channels_last=True, bf16=bf16)


GRIDS: dict[str, Callable[[], list[RunConfig]]] = {"paper": paper_grid, "cpu": cpu_grid, "gpu": gpu_grid, "bf16-check": bf16_check}


# --------------------------------------------------------------------------- claims

def claim_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.name + ".claim")


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc), None if it is gone:
    a pid alone may be reused by another process after a restart."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _owner() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _start_time(os.getpid())}


def _alive(owner: dict[str, Any]) -> bool:
    if owner.get("host") != socket.gethostname():
        return True  # another machine's claim: we cannot tell, so it stands
    return owner.get("start") is not None and _start_time(int(owner.get("pid", -1))) == owner["start"]


def claim(checkpoint: Path) -> bool:
    """Claim the run whose checkpoint is ``checkpoint`` for this process; False if a
    live process holds it.  A claim of a process that is gone is taken over."""
    path = claim_path(checkpoint)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                owner = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                owner = {}
            if owner and _alive(owner):
                return False
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # a stale (or unreadable, half-written) claim
            continue
        with os.fdopen(fd, "w") as handle:
            json.dump(_owner(), handle)
        return True
    return False


def release(checkpoint: Path) -> None:
    """Drop this process's claim on the run (another's is left alone)."""
    path = claim_path(checkpoint)
    with contextlib.suppress(OSError, json.JSONDecodeError):
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()


# --------------------------------------------------------------------------- workers

def run_worker(configs: Sequence[RunConfig], *, data_root: str | Path, out: str | Path,
               checkpoint_dir: str | Path | None = None, device: str = "cpu", stack: int = 1,
               force: bool = False, resume: bool = True, quiet: bool = True,
               log: Callable[[str], None] = print) -> int:
    """One worker: train every configuration of ``configs`` that has no record (any,
    with ``force``) and no live claim, in order, resuming checkpoints (replacing them
    if not ``resume``); with ``stack``
    > 1 up to that many at once as one network (module docstring).  Returns the number
    of runs that failed (a diverged run is reported and passed over; its checkpoint
    stays).  SIGINT ends the worker with TrainingInterrupted, claims released."""
    from kps.batches import data_key, load_data, to_device
    from kps.checkpoints import checkpoint_path, default_checkpoint_dir
    from kps.results import config_record_path
    from kps.stack import stack_key

    import torch

    checkpoint_dir = default_checkpoint_dir(out) if checkpoint_dir is None else checkpoint_dir
    done = set() if force else {i for i, c in enumerate(configs) if config_record_path(out, c).exists()}
    cache: dict[tuple, Any] = {}
    failed = 0
    for i, config in enumerate(configs):
        if i in done or (not force and config_record_path(out, config).exists()):
            continue
        unit = [i]
        key = stack_key(config) if stack > 1 else None
        for j in range(i + 1, len(configs)) if key is not None else ():
            if len(unit) < stack and j not in done and stack_key(configs[j]) == key:
                unit.append(j)
        claimed = [j for j in unit if claim(checkpoint_path(checkpoint_dir, configs[j]))]
        try:
            claimed = [j for j in claimed if force or not config_record_path(out, configs[j]).exists()]
            if not claimed:
                continue
            done.update(claimed)
            if data_key(config) not in cache:
                cache.clear()  # one dataset in memory at a time
                cache[data_key(config)] = to_device(load_data(config, data_root), torch.device(device))
            names = ", ".join(str(config_record_path(out, configs[j])) for j in claimed)
            log(f"[{i + 1}/{len(configs)}] {time.strftime('%H:%M:%S')} {names}")
            failed += _train_unit([configs[j] for j in claimed], cache[data_key(config)], out=out, device=device,
                                  checkpoint_dir=checkpoint_dir, force=force, resume=resume, quiet=quiet,
                                  log=lambda line: log(f"[{i + 1}/{len(configs)}] {time.strftime('%H:%M:%S')} {line}"))
        finally:
            for j in claimed:
                release(checkpoint_path(checkpoint_dir, configs[j]))
    return failed


def _train_unit(configs: Sequence[RunConfig], data: Any, *, out: str | Path, device: str,
                checkpoint_dir: str | Path, force: bool, resume: bool, quiet: bool,
                log: Callable[[str], None]) -> int:
    """Train ``configs`` on ``data`` in this process: those that can share a network
    stacked, the others one after another; write their records.  Returns the number of
    runs that diverged (each reported; its checkpoint stays)."""
    from kps.results import write_record
    from kps.stack import fit_stack, stack_groups
    from kps.train import TrainingDiverged, check_outputs, make_trainer, train

    failed = 0
    if len(configs) == 1:  # the plain run
        try:
            results: list[Any] = [train(configs[0], out=out, device=device, resume=resume, quiet=quiet, force=force,
                                        checkpoint_dir=checkpoint_dir, data=data)]
        except TrainingDiverged as err:
            results = [err]
    else:
        made = []
        for c in configs:
            check_outputs(c, out, checkpoint_dir, force)
            made.append(make_trainer(c, data, device, checkpoint_dir, resume=resume, finished_ok=not force))
        checkpoint_of = {id(t): ckpt for t, ckpt in made}
        results = []
        for group in stack_groups([t for t, _ in made]):
            if len(group) == 1:
                try:
                    results.append(group[0].fit(checkpoint_of[id(group[0])], quiet=quiet))
                except TrainingDiverged as err:
                    results.append(err)
            else:
                results += fit_stack(group, [checkpoint_of[id(t)] for t in group])
            for r in results[len(results) - len(group):]:
                if isinstance(r, dict):
                    write_record(r, out, force=force)
    for r in results:
        if isinstance(r, TrainingDiverged):
            failed += 1
            log(f"diverged, passed over: {r}")
            continue
        stacked = r["segments"][-1].get("stacked_runs")
        log(f"done: {r['config']['method']} seed {r['config']['seed']}: final {r['top1_error']:.2f}, "
            f"best {r['best_top1_error']:.2f}, {r['wall_time_s']:.0f} s" + (f" ({stacked} stacked)" if stacked else ""))
    return failed


def spawn_workers(argv: Sequence[str], jobs: int, threads: int) -> int:
    """Start ``jobs`` workers (``python -m kps <argv> --worker``), each with ``threads``
    threads, and wait for them; the largest exit status.  SIGINT (Ctrl-C, a job's
    deadline) reaches every worker, which stops after checkpointing (exit 130)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    procs = [subprocess.Popen([sys.executable, "-m", "kps", *argv, "--worker"], env=env) for _ in range(jobs)]
    try:
        # a worker killed by signal n (returncode -n) counts as the shell's 128 + n, never as success
        return max(code if code >= 0 else 128 - code for code in (p.wait() for p in procs))
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait()
        raise
