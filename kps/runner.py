"""Many runs on one machine, the one mechanism above the trainer: worker processes
that take configurations of a list in its order until every one has its record.

Each worker walks the whole list: a configuration whose record exists is done; one
that another live worker has claimed is passed over; any other it claims (a claim
file beside the run's checkpoint, created exclusively), trains, resuming from its
checkpoint when there is one, and releases.  So N workers keep N cores (or one
GPU: the GPU job, bench/gpu_job.sh, measures how many it takes) busy, the list is
filled in its order, a worker stopped by SIGINT (Ctrl-C, or a job's
deadline) or killed loses at most the epoch in flight (the trainer checkpoints
after every epoch), and a later call, in this session or another, picks up where
the last stopped: claims of dead processes are taken over.

On a CPU each worker runs single-threaded by default: on our 2-core machine a second
thread adds only 10-20 % to a small network, a second process nearly 100 %.

The lists that the site's results come from are named in :data:`kps.grids.GRIDS`;
``python -m kps train-grid --grid cpu --jobs 2`` (or ``notebooks/grid.ipynb``) runs one.
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

from kps.configs import RunConfig

__all__ = ["claim", "release", "claim_path", "run_worker", "spawn_workers"]


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
               checkpoint_dir: str | Path | None = None, device: str = "cpu", force: bool = False,
               resume: bool = True, quiet: bool = True, log: Callable[[str], None] = print) -> int:
    """One worker: train every configuration of ``configs`` that has no record (any,
    with ``force``) and no live claim, in order, resuming checkpoints (replacing them
    if not ``resume``), with the data of consecutive runs loaded once.  Returns the
    number of runs that failed (a diverged run is reported and passed over; its
    checkpoint stays).  SIGINT ends the worker with TrainingInterrupted, its claim
    released."""
    import torch

    from kps.batches import data_key, load_data, to_device
    from kps.checkpoints import checkpoint_path, default_checkpoint_dir
    from kps.results import RecordError, config_record_path, read_record_file
    from kps.train import TrainingDiverged, train

    checkpoint_dir = default_checkpoint_dir(out) if checkpoint_dir is None else checkpoint_dir
    cache: dict[tuple, Any] = {}
    failed = 0
    for i, config in enumerate(configs):
        record = config_record_path(out, config)
        if record.exists() and not force:
            try:
                read_record_file(record)
            except RecordError as err:  # not done: said, counted as failed, the others go on
                failed += 1
                log(f"[{i + 1}/{len(configs)}] damaged record, passed over: {err.path}: {err.problem}; restore it "
                    "from git, or delete it and the same command trains its run")
            continue
        checkpoint = checkpoint_path(checkpoint_dir, config)
        if not claim(checkpoint):
            continue  # another live worker trains it
        try:
            if record.exists() and not force:
                continue  # finished by another worker since the look above
            key = data_key(config)
            if key not in cache:
                cache.clear()  # one dataset in memory at a time
                cache[key] = to_device(load_data(config, data_root), torch.device(device))

            def say(line: str) -> None:
                log(f"[{i + 1}/{len(configs)}] {time.strftime('%H:%M:%S')} {line}")

            say(str(record))
            try:
                r = train(config, out=out, device=device, resume=resume, quiet=quiet, force=force,
                          checkpoint_dir=checkpoint_dir, data=cache[key])
            except TrainingDiverged as err:
                failed += 1
                say(f"diverged, passed over: {err}")
                continue
            say(f"done: {config.method} seed {config.seed}: final {r['top1_error']:.2f}, "
                f"best {r['best_top1_error']:.2f}, {r['wall_time_s']:.0f} s")
        finally:
            release(checkpoint)
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
