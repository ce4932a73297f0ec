"""What a run's evaluation reports: per-class test counts under the two test rules,
and the record's error fields from them (overall top-1, per class, head/mid/tail
groups of Figs. 6-7, many/medium/few shots)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

__all__ = ["SHOT_BOUNDS", "class_groups", "shot_masks", "summarize", "count_correct", "eval_errors"]

SHOT_BOUNDS = (100, 20)  # many > 100 >= medium >= 20 > few (training images per class)


def class_groups(counts: list[int] | np.ndarray) -> list[np.ndarray] | None:
    """Figs. 6-7: classes sorted by training count (most frequent first, ties by
    class index) split into 10 consecutive groups (one class each on CIFAR-10,
    10 classes each on CIFAR-100); None with fewer than 10 classes."""
    counts = np.asarray(counts)
    if len(counts) < 10:
        return None
    order = np.argsort(-counts, kind="stable")
    return np.array_split(order, 10)


def shot_masks(counts: list[int] | np.ndarray) -> dict[str, np.ndarray]:
    """many-shot (> 100 training images), medium (20-100), few (< 20)."""
    counts = np.asarray(counts)
    high, low = SHOT_BOUNDS
    return {"many": counts > high, "medium": (counts >= low) & (counts <= high), "few": counts < low}


def _error(correct: np.ndarray, total: np.ndarray, mask: np.ndarray) -> float | None:
    n = total[mask].sum()
    return None if n == 0 else float(100.0 * (1.0 - correct[mask].sum() / n))


def summarize(correct: np.ndarray, total: np.ndarray, counts: list[int]) -> dict[str, Any]:
    """Record fields from per-class test counts (percent): overall top-1 error,
    per-class accuracy, head/mid/tail (3/4/3 groups) and many/medium/few errors."""
    if np.any(total == 0):
        raise ValueError(f"the test set has no images of class(es) {np.flatnonzero(total == 0).tolist()}")
    groups = class_groups(counts)
    every = np.ones(len(counts), dtype=bool)
    if groups is None:
        per_group = None
        head_mid_tail = {"head": None, "mid": None, "tail": None}
    else:
        masks = [np.isin(np.arange(len(counts)), g) for g in groups]
        per_group = [_error(correct, total, m) for m in masks]
        join = lambda ms: np.logical_or.reduce(ms)  # noqa: E731
        head_mid_tail = {
            "head": _error(correct, total, join(masks[:3])),
            "mid": _error(correct, total, join(masks[3:7])),
            "tail": _error(correct, total, join(masks[7:])),
        }
    return {
        "top1_error": _error(correct, total, every),
        "per_class_accuracy": (100.0 * correct / total).tolist(),
        "group_errors": head_mid_tail,
        "per_group_errors": per_group,
        "shot_errors": {k: _error(correct, total, m) for k, m in shot_masks(counts).items()},
    }


def count_correct(batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                  scores_of: Callable[[torch.Tensor], torch.Tensor], radius: torch.Tensor,
                  counts: torch.Tensor) -> None:
    """Add to ``counts`` (3, classes) per class: test images, correct under argmax
    score, correct under argmax r_j * score (``radius`` (classes,); KPS's r_j cos(theta_j)
    of eq. 13, ones for other methods), over ``batches`` of (x, y); ``scores_of(x)`` is
    (B, classes)."""
    for x, y in batches:
        scores = scores_of(x)
        counts[0].scatter_add_(0, y, torch.ones_like(y))
        counts[1].scatter_add_(0, y, (scores.argmax(1) == y).long())
        counts[2].scatter_add_(0, y, ((scores * radius).argmax(1) == y).long())


def eval_errors(result: dict[str, np.ndarray]) -> dict[str, float]:
    """A history row's test errors (percent) from per-class counts."""
    total = result["total"].sum()
    out = {"test_error": float(100.0 * (1 - result["correct"].sum() / total))}
    if "correct_rcos" in result:
        out["test_error_rcos"] = float(100.0 * (1 - result["correct_rcos"].sum() / total))
    return out
