"""Where and from which code a run ran: the device's name and the git commit, as
records and benchmarks state them."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used: kps.configs reads the CPU's flags without it
    import torch

__all__ = ["device_name", "git_state", "cpu_flags", "cpu_bf16_units", "usable_cores", "default_threads",
           "oversubscription", "DEVICES", "check_device_name"]

# CPU units that run bf16 matrix products natively (oneDNN uses them for bf16
# convolutions): Intel AMX tiles, and the AVX512-BF16 dot products of Intel
# Cooper Lake and later and AMD Zen 4 and later.  Without them bf16 is emulated
# in fp32 and slower than fp32 itself.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


# The devices a run may name (--device), in words
DEVICES = "cpu, cuda, cuda:N (the GPU of index N), auto (cuda where a GPU is visible, else cpu)"


def check_device_name(name: str) -> str:
    """``name`` if it is one of :data:`DEVICES`; else ValueError naming the valid choices."""
    if not re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", name):
        raise ValueError(f"unknown device {name!r}; valid: {DEVICES}")
    return name


def device_name(device: torch.device) -> str:
    """The GPU's name, or 'cpu (<processor>)'."""
    if device.type == "cuda":
        import torch

        return torch.cuda.get_device_name(device)
    processor = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                processor = line.split(":", 1)[1].strip()
                break
    return f"cpu ({processor})"


def git_state() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the code this process runs; dirty ignores results/ and
    bench/results/ (records written by runs).

    The environment's KPS_GIT_COMMIT, when set, names the commit: a copy of the
    tree (the GPU machine's) may carry no .git or a stale one (seen 2026-11-26: a
    copy of commit cf36c4a whose .git still said 65a4c88).  Dirty is then known only
    if git there agrees on that commit, else None.  Without KPS_GIT_COMMIT: git's
    HEAD and status, or (None, None) outside git."""
    root = Path(__file__).resolve().parent.parent
    declared = os.environ.get("KPS_GIT_COMMIT", "").strip() or None

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        status = git("status", "--porcelain", "--", ".", ":(exclude)results", ":(exclude)bench/results")
    except (OSError, subprocess.CalledProcessError):
        return declared, None
    if declared is not None and declared != commit:
        return declared, None
    return commit, bool(status.strip())


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as the kernel reports them (/proc/cpuinfo); empty
    where that file is absent (not Linux)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_bf16_units(flags: frozenset[str] | None = None) -> tuple[str, ...]:
    """Which of :data:`BF16_CPU_FLAGS` this CPU (or ``flags``) reports; () for none."""
    flags = cpu_flags() if flags is None else flags
    return tuple(f for f in BF16_CPU_FLAGS if f in flags)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity; all of them where that is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_threads(device_type: str) -> int:
    """Threads of torch's pool for a run on ``device_type`` when none are asked for.

    CPU: 1.  Torch's default, one thread per core, turns a busy neighbour into a
    crawl: every operation waits at a barrier for its slowest thread, and a thread
    that shares its core with another busy process is slow.  Measured on a 2-core
    machine with one other busy process: an epoch of the CPU-scale preset took
    10.5 min with 2 threads and about 10 s with 1; a training step of its network,
    with two busy processes, 3.2-5.5 s with 2 threads against 0.29-0.35 s with 1.
    One thread is never stalled that way; on a machine of one's own, ``--threads N``
    (or ``train-grid --jobs N``, one single-threaded run per core) uses the other
    cores.  CUDA: one per core (the host only feeds the GPU)."""
    return 1 if device_type == "cpu" else usable_cores()


def oversubscription(threads: int, load: float | None = None, cores: int | None = None) -> str | None:
    """A one-line warning when ``threads`` more busy threads would oversubscribe the
    machine: the 1-minute load average (``load``, default this machine's: processes
    running or waiting for a core) rounded, plus ``threads``, is more than ``cores``
    (default :func:`usable_cores`).  None where they fit."""
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # no load average on this system: nothing to say
            return None
    cores = usable_cores() if cores is None else cores
    if round(load) + threads <= cores:
        return None
    advice = ("; --threads 1 keeps a busy neighbour from stalling this run's threads" if threads > 1
              else "; its wall time, in the record, includes the wait")
    plural = "s" if threads > 1 else ""
    return (f"warning: this machine looks oversubscribed (load average {load:.1f} on {cores} core"
            f"{'s' if cores > 1 else ''}, and this run adds {threads} thread{plural}): epochs will be slower than "
            f"on an idle machine{advice}")
