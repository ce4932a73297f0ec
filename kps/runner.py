"""Many runs on one machine: worker processes that take configurations of a list
in its order, one at a time, until every one has its record.

Each worker walks the whole list: a configuration whose record exists is done; one
that another live worker has claimed is passed over; any other it claims (a claim
file beside the run's checkpoint, created exclusively), trains, resuming from its
checkpoint when there is one, and releases.  So N workers keep N cores busy, the
list is filled in its order, a killed worker loses at most the epoch in flight
(the trainer checkpoints after every epoch), and a later call, in this session or
another, picks up where the last stopped: claims of dead processes are taken over.

On a CPU each worker runs single-threaded by default: on our 2-core machine a second
thread adds only 10-20 % to a small network, a second process nearly 100 %.

:data:`GRIDS` names the lists that the site's results come from; ``python -m kps
train-grid --grid cpu --jobs 2`` (or ``notebooks/grid.ipynb``) runs one.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from kps.configs import RunConfig, authors_code_overrides, make_config

__all__ = ["GRIDS", "CPU_GRID_ROWS", "cpu_grid", "claim", "release", "claim_path", "run_worker", "spawn_workers"]

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
CPU_GRID_IMBALANCES = (100.0, 50.0)


def cpu_grid(imbalances: Sequence[float] = CPU_GRID_IMBALANCES, seeds: Sequence[int] = CPU_GRID_SEEDS,
             dataset: str = "cifar10-jpeg") -> list[RunConfig]:
    """The CPU-scale protocol's grid (preset ``cifar10_lt_small``) in its order: per
    imbalance, each row of :data:`CPU_GRID_ROWS` for every seed, then the next row.
    channels_last: the fastest CPU path measured (bench/cpu_bench.py)."""
    return [make_config(dataset, method, preset="cifar10_lt_small", imbalance=imbalance, seed=seed,
                        channels_last=True, **overrides)
            for imbalance in imbalances for method, overrides in CPU_GRID_ROWS for seed in seeds]


GRIDS: dict[str, Callable[[], list[RunConfig]]] = {"cpu": cpu_grid}


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
               checkpoint_dir: str | Path | None = None, device: str = "cpu", quiet: bool = True,
               log: Callable[[str], None] = print) -> int:
    """One worker: train every configuration of ``configs`` that has no record and no
    live claim, in order, resuming checkpoints.  Returns the number of runs that
    failed (a diverged run is reported and passed over; its checkpoint stays)."""
    from kps.results import config_record_path
    from kps.train import (TrainingDiverged, checkpoint_path, data_key, default_checkpoint_dir, load_data,
                           to_device, train)

    import torch

    checkpoint_dir = default_checkpoint_dir(out) if checkpoint_dir is None else checkpoint_dir
    cache: dict[tuple, Any] = {}
    failed = 0
    for i, config in enumerate(configs):
        record = config_record_path(out, config)
        ckpt = checkpoint_path(checkpoint_dir, config)
        if record.exists() or not claim(ckpt):
            continue
        try:
            if record.exists():  # written by another worker between the check and the claim
                continue
            key = data_key(config)
            if key not in cache:
                cache.clear()  # one dataset in memory at a time
                cache[key] = to_device(load_data(config, data_root), torch.device(device))
            log(f"[{i + 1}/{len(configs)}] {time.strftime('%H:%M:%S')} {record}")
            result = train(config, out=out, device=device, resume=True, quiet=quiet,
                           checkpoint_dir=checkpoint_dir, data=cache[key])
            log(f"[{i + 1}/{len(configs)}] {time.strftime('%H:%M:%S')} done: final {result['top1_error']:.2f}, "
                f"best {result['best_top1_error']:.2f}, {result['wall_time_s']:.0f} s")
        except TrainingDiverged as err:
            failed += 1
            log(f"[{i + 1}/{len(configs)}] diverged, passed over: {err}")
        finally:
            release(ckpt)
    return failed


def spawn_workers(argv: Sequence[str], jobs: int, threads: int) -> int:
    """Start ``jobs`` workers (``python -m kps <argv> --worker``), each with ``threads``
    threads, and wait for them; the largest exit status.  Ctrl-C stops them all
    (each keeps its last checkpoint)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    procs = [subprocess.Popen([sys.executable, "-m", "kps", *argv, "--worker"], env=env) for _ in range(jobs)]
    try:
        return max(p.wait() for p in procs)
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
        raise
