"""Atomic file writes: every file the package writes (records, checkpoints,
caches) goes to a temporary file in the destination folder and is then
``os.replace``d over the destination, so a reader never sees half a file and a
killed process leaves the previous version intact.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

_UMASK = os.umask(0)
os.umask(_UMASK)

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_torch_save", "check_writable_dir"]


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, rename).

    The parent folder is created if missing. Returns the destination path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual file mode
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def check_writable_dir(path: str | Path, what: str = "output folder") -> Path:
    """Check, leaving nothing behind, that ``path`` is or can become a writable
    folder: its nearest existing ancestor must be a folder in which this process
    can create a file.  That is tried (a temporary file, removed at once) rather
    than read from the permission bits, which do not stop root, and say nothing of
    read-only mounts or of /proc-like folders.  ValueError naming the folder otherwise."""
    path = Path(path).absolute()
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"cannot write to the {what} {str(path)!r}: {str(existing)!r} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".kps-write-check.", dir=existing)
    except OSError as err:
        raise ValueError(f"cannot write to the {what} {str(path)!r}: {str(existing)!r} is not writable "
                         f"({err.strerror or err})") from err
    os.close(fd)
    os.unlink(probe)
    return path
