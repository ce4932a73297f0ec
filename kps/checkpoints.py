"""Where a run's checkpoint and its progress file live, and how far a run is.

A checkpoint is a plain dict saved with ``torch.save`` (:meth:`kps.train.Trainer.state`),
replaced atomically after every ``checkpoint_every`` epochs.  Beside it a small
JSON progress file, rewritten every epoch, tells a watcher how far the run is
without loading the checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kps.configs import RunConfig, format_imbalance, setting_tag
from kps.io import atomic_write_text

__all__ = ["default_checkpoint_dir", "checkpoint_path", "progress_path", "read_progress", "write_progress",
           "saved_epochs", "epochs_held", "load_checkpoint", "unreadable_checkpoint"]


def default_checkpoint_dir(out: str | Path) -> Path:
    """Where a run's checkpoints go unless told: beside its record, in ``<out>/.checkpoints``
    (hidden, git-ignored), so that runs into different folders never share one."""
    return Path(out) / ".checkpoints"


def checkpoint_path(checkpoint_dir: str | Path, config: RunConfig) -> Path:
    """``<checkpoint_dir>/<dataset>/<method>/imb<ratio>/seed<k>[.<tag>].pt``, beside where
    the record goes (one file per run, replaced after every epoch)."""
    tag = setting_tag(config)
    name = f"seed{config.seed}.{tag}.pt" if tag else f"seed{config.seed}.pt"
    return Path(checkpoint_dir) / config.dataset / config.method / format_imbalance(config.imbalance) / name


def progress_path(checkpoint: str | Path) -> Path:
    """The progress file beside ``checkpoint``: ``seed0.pt`` -> ``seed0.progress.json``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.name.removesuffix(".pt") + ".progress.json")


def read_progress(checkpoint: str | Path) -> dict[str, Any] | None:
    """The progress of the run whose checkpoint is ``checkpoint``: {"next_epoch",
    "epochs", "elapsed_s", "checkpoint_next_epoch" (the next_epoch of the checkpoint
    on disk, None before the first)}; None if there is no readable progress file."""
    try:
        progress = json.loads(progress_path(checkpoint).read_text())
    except (OSError, ValueError):
        return None
    return progress if isinstance(progress, dict) and isinstance(progress.get("next_epoch"), int) else None


def write_progress(checkpoint: str | Path, next_epoch: int, epochs: int, elapsed_s: float,
                   saved: int | None) -> None:
    """The progress file of :func:`read_progress` (atomic)."""
    progress = {"next_epoch": next_epoch, "epochs": epochs, "elapsed_s": round(elapsed_s, 3),
                "checkpoint_next_epoch": saved}
    atomic_write_text(progress_path(checkpoint), json.dumps(progress) + "\n")


def saved_epochs(checkpoint: str | Path) -> int | None:
    """How many epochs the checkpoint holds (its progress file), None if unknown."""
    return (read_progress(checkpoint) or {}).get("checkpoint_next_epoch")


def epochs_held(saved: int | None) -> str:
    """What a checkpoint of ``saved`` epochs holds, in words: 'epoch 1', 'epochs 1-5' ('epochs unknown' for None)."""
    if saved is None:
        return "epochs unknown"
    return "epoch 1" if saved == 1 else f"epochs 1-{saved}"


def unreadable_checkpoint(checkpoint: str | Path, problem: str | BaseException) -> ValueError:
    """The one-line error for a checkpoint that cannot be continued from, and the way out;
    an exception ``problem`` is named by its type and its message's first sentence."""
    if isinstance(problem, BaseException):
        detail = (str(problem).strip().splitlines() or ["no detail"])[0].split(". ")[0][:120]
        problem = f"{type(problem).__name__}: {detail}"
    return ValueError(f"checkpoint {checkpoint} cannot be read ({problem}); it is damaged or not a checkpoint of "
                      "this code: --restart starts the run again at epoch 1 and replaces it")


def load_checkpoint(checkpoint: str | Path) -> dict[str, Any]:
    """The state saved at ``checkpoint`` (kps.train.Trainer.state); a truncated or
    foreign file is a ValueError naming it and ``--restart``."""
    import torch

    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except Exception as err:  # torch.load fails in many ways on a damaged file (zip, pickle, EOF, ...)
        raise unreadable_checkpoint(checkpoint, err) from err
    if not isinstance(state, dict) or not {"config", "next_epoch", "model", "optimizer", "rng"} <= set(state):
        raise unreadable_checkpoint(checkpoint, "not the dict a run saves")
    return state
