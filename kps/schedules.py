"""Per-epoch switches of training: learning rate, the GA switch (I0 of
Algorithm 1) and deferred re-weighting (DRW).

All epochs are 0-indexed: epoch 0 is the first pass over the data.  "From
epoch e" means epoch index e and every later one use the new setting, i.e. the
change happens after e full epochs have been trained.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from kps.params import effective_number_weights

__all__ = [
    "STYLES",
    "GA_SWITCH_EPOCH_CIFAR",
    "DRW_EPOCH_CIFAR",
    "DRW_BETA",
    "learning_rate",
    "ga_active",
    "drw_weights",
]

STYLES = ("paper", "official")

#: GA switch I0 of Algorithm 1.  The paper does not state it; the authors' code
#: (cifar_train.py, ``train_rule == 'GA'``) uses the plain KPS loss for epochs
#: 0..119 and GA from epoch 120 of 200 on CIFAR-LT.
GA_SWITCH_EPOCH_CIFAR = 120

#: DRW start of LDAM-DRW (Cao et al. 2019) and of the authors' code: epoch 160 of 200.
DRW_EPOCH_CIFAR = 160

#: Effective-number beta of DRW (Cao et al. 2019; Cui et al. 2019).
DRW_BETA = 0.9999

# The authors' code divides the lr by 10 at each decay epoch (x0.1 from 160, x0.01 from 180).
_OFFICIAL_STEP = 0.1


def learning_rate(
    epoch: int,
    *,
    base_lr: float,
    warmup_epochs: int,
    decay_epochs: Sequence[int],
    decay_ratio: float,
    style: str = "paper",
) -> float:
    """Learning rate of a 0-indexed epoch: linear warm-up, then step decay.

    Warm-up (both styles): lr = base_lr * (epoch + 1) / warmup_epochs for
    epoch < warmup_epochs (CIFAR: 0.02, 0.04, ..., 0.1 for epochs 0..4).

    ``style="paper"`` (Sec. 4.2.1 and Table 2, read literally): the lr is
    *multiplied by decay_ratio at each decay epoch*, cumulatively.  CIFAR
    (base 0.1, ratio 0.01, epochs {160, 180}): 0.1 for epochs 5..159, 1e-3 for
    160..179, 1e-5 from 180.  ImageNet-LT (ratio 0.1, {120, 160}): 0.1, 0.01,
    0.001.  "At the 160th epoch" is read as from epoch index 160, as in the
    authors' code.

    ``style="official"`` (authors' cifar_train.py ``adjust_learning_rate``):
    the lr is divided by 10 at each decay epoch whatever decay_ratio says.
    With the CIFAR arguments (warm-up 5, decay epochs {160, 180}) this is
    exactly their schedule: x0.1 for epochs 160..179 and x0.01 from 180.
    """
    if style not in STYLES:
        raise ValueError(f"unknown learning-rate style {style!r}; valid: {', '.join(STYLES)}")
    if int(epoch) != epoch or epoch < 0:
        raise ValueError(f"epoch must be a non-negative integer (0-indexed), got {epoch!r}")
    if not np.isfinite(base_lr) or base_lr <= 0:
        raise ValueError(f"base_lr must be finite and > 0, got {base_lr!r}")
    if int(warmup_epochs) != warmup_epochs or warmup_epochs < 0:
        raise ValueError(f"warmup_epochs must be a non-negative integer, got {warmup_epochs!r}")
    if any(int(e) != e or e < 0 for e in decay_epochs):
        raise ValueError(f"decay_epochs must be non-negative integers, got {list(decay_epochs)!r}")
    if not 0.0 < decay_ratio <= 1.0:
        raise ValueError(f"decay_ratio must be in (0, 1], got {decay_ratio!r}")
    step = decay_ratio if style == "paper" else _OFFICIAL_STEP
    passed = sum(1 for e in decay_epochs if epoch >= e)
    lr = base_lr * step**passed
    if epoch < warmup_epochs:
        lr *= (epoch + 1) / warmup_epochs
    return float(lr)


def ga_active(epoch: int, switch_epoch: int | None) -> bool:
    """Whether the GA loss (eq. 25, Algorithm 1 lines 6-10) is used at this
    0-indexed epoch: from ``switch_epoch`` on; never when it is None."""
    if int(epoch) != epoch or epoch < 0:
        raise ValueError(f"epoch must be a non-negative integer (0-indexed), got {epoch!r}")
    if switch_epoch is None:
        return False
    if int(switch_epoch) != switch_epoch or switch_epoch < 0:
        raise ValueError(f"switch_epoch must be a non-negative integer or None, got {switch_epoch!r}")
    return epoch >= switch_epoch


def drw_weights(
    counts, epoch: int, drw_epoch: int | None = DRW_EPOCH_CIFAR, beta: float = DRW_BETA
) -> np.ndarray | None:
    """Deferred re-weighting (Cao et al. 2019): None (unweighted) before
    ``drw_epoch``; from it on the class-balanced weights of Cui et al.,
    w_j = (1 - beta) / (1 - beta^{n_j}) normalised to sum C (float64, shape (C,)).
    Never weighted when drw_epoch is None."""
    if int(epoch) != epoch or epoch < 0:
        raise ValueError(f"epoch must be a non-negative integer (0-indexed), got {epoch!r}")
    if drw_epoch is not None and (int(drw_epoch) != drw_epoch or drw_epoch < 0):
        raise ValueError(f"drw_epoch must be a non-negative integer or None, got {drw_epoch!r}")
    weights = effective_number_weights(counts, beta)  # validates counts and beta every epoch
    if drw_epoch is None or epoch < drw_epoch:
        return None
    return weights
