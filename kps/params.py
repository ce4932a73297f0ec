"""Class-count-dependent numbers of KPS loss: radius r, margin m and GA scale s.

Sec. 4.2.3 of the paper (eqs. 26-30) turns the class sizes n = (n_1..n_C) into

    r'_i = log(n_i * n_base / min(n))          (26)
    r_i  = r'_i / min(r')                      (27)   -> min(r) = 1
    m'_i = max(r) + 1 - r_i                    (28)   -> min(m') = 1
    m_i  = m'_i * m_max / max(m')              (29)   -> max(m) = m_max
    s_i  = s_base * m'_i                       (30)

``variant="official"`` reproduces the authors' public code (Keke921/KPSLoss,
``losses.KPSLoss``) instead: the margin list is the r list *reversed*,
m = flip(r) * m_max / max(r), and the GA scale is s = clip(s_base * flip(r),
s_base, 50).  flip(r) only equals m' of eq. 28 when the classes are sorted by
decreasing count *and* the log-counts are symmetric about their midpoint (an
exact exponential profile).  CIFAR-LT's integer-truncated counts are nearly
so: with m_max = 0.5 the official margins differ from eqs. 28-29 by at most
2.9e-4 on CIFAR-10-LT and 8.4e-3 on CIFAR-100-LT at rho = 100 (1.9e-4 and
5.1e-3 at rho = 50).  For unsorted counts (ImageNet-LT, iNaturalist) they give
margins to the wrong classes.

Also here: the effective-number class weights of Cui et al. (CVPR 2019), used
by class-balanced focal loss and by deferred re-weighting (DRW).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "KPSParams",
    "VARIANTS",
    "OFFICIAL_MAX_SCALE",
    "validate_counts",
    "kps_parameters",
    "effective_number_weights",
]

VARIANTS = ("paper", "official")

#: Upper clamp of the per-sample GA scale in the authors' code (``torch.clamp(batch_s, s, 50)``).
OFFICIAL_MAX_SCALE = 50.0


class KPSParams(NamedTuple):
    """Per-class KPS numbers, float64 arrays of shape (C,): radius r (eq. 27),
    margin m (eq. 29) and GA scale s (eq. 30), or their official-code versions."""

    r: np.ndarray
    m: np.ndarray
    s: np.ndarray


def validate_counts(counts) -> np.ndarray:
    """Return per-class training counts as a 1-D int64 array.

    Accepts a list/tuple/NumPy array/torch tensor of positive integers (floats
    are accepted only when integer-valued).  Raises ValueError naming the
    problem for: not 1-D, empty, non-numeric, NaN/inf, non-integer, zero or
    negative entries.
    """
    if hasattr(counts, "detach"):  # torch tensor
        counts = counts.detach().cpu().numpy()
    try:
        arr = np.asarray(counts)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"counts must be a 1-D sequence of positive integers: {exc}") from None
    if arr.ndim != 1:
        raise ValueError(f"counts must be 1-D (one count per class), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("counts is empty: need at least one class count")
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"counts must be integers, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"counts contain NaN or inf at class(es) {np.flatnonzero(~np.isfinite(arr)).tolist()}")
        fractional = arr != np.round(arr)
        if np.any(fractional):
            raise ValueError(f"counts must be integers, got non-integer values {arr[fractional].tolist()}")
    arr = arr.astype(np.int64)
    if np.any(arr <= 0):
        bad = np.flatnonzero(arr <= 0).tolist()
        raise ValueError(f"counts must be positive, class(es) {bad} have count {arr[bad].tolist()}")
    return arr


def kps_parameters(
    counts,
    n_base: float = 50,
    m_max: float = 0.5,
    s_base: float = 15.0,
    variant: str = "paper",
) -> KPSParams:
    """Radius, margin and GA scale per class (eqs. 26-30 of Sec. 4.2.3).

    ``variant="paper"``: eqs. 26-30 exactly.  ``variant="official"``: r as in
    eqs. 26-27, m = flip(r) * m_max / max(r), s = clip(s_base * flip(r),
    s_base, 50) as in the authors' code (see the module docstring).

    Paper defaults: n_base = 50, s_base = 15 for all datasets; m_max = 0.5
    (CIFAR), 0.35 (ImageNet-LT), 0.3 (iNaturalist 2018).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown KPS variant {variant!r}; valid: {', '.join(VARIANTS)}")
    if not np.isfinite(n_base) or n_base <= 1:
        raise ValueError(f"n_base must be a finite number > 1 (eq. 27 divides by log(n_base)), got {n_base!r}")
    if not np.isfinite(m_max) or m_max < 0:
        raise ValueError(f"m_max must be finite and >= 0, got {m_max!r}")
    if not np.isfinite(s_base) or s_base <= 0:
        raise ValueError(f"s_base must be finite and > 0, got {s_base!r}")
    n = validate_counts(counts).astype(np.float64)
    r_prime = np.log(n * (n_base / n.min()))  # eq. 26
    r = r_prime / r_prime.min()  # eq. 27
    if variant == "paper":
        m_prime = r.max() + 1.0 - r  # eq. 28
        m = m_prime * (m_max / m_prime.max())  # eq. 29
        s = s_base * m_prime  # eq. 30
    else:
        flipped = r[::-1].copy()
        m = flipped * (m_max / flipped.max())
        s = np.clip(s_base * flipped, s_base, OFFICIAL_MAX_SCALE)
    return KPSParams(r=r, m=m, s=s)


def effective_number_weights(counts, beta: float) -> np.ndarray:
    """Class-balanced weights of Cui et al. (CVPR 2019, eq. 3 / Sec. 4):
    w_j = (1 - beta) / (1 - beta^{n_j}), normalised so that sum_j w_j = C.

    beta = 0 gives all ones; beta -> 1 approaches inverse class frequency.
    """
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta!r}")
    n = validate_counts(counts).astype(np.float64)
    w = (1.0 - beta) / (1.0 - np.power(beta, n))
    return w * (len(n) / w.sum())
