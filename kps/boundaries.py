"""Class and decision boundaries of Figs. 1-4, for two classes.

Notation of Sec. 3.2 / eq. 20: a sample of class ``own`` competes with class
``other``; its margin-adjusted target score is r_own cos(theta_own) - m_own and
the competitor's score is r_other cos(theta_other). Every loss of the margin
family (CE: r = 1, m = 0; LDAM, eq. 6: r = 1; KPS, eq. 7) puts the sample's
*class boundary* where the two are equal (the sample's softmax probability is
1/2 there for any common scale s, eqs. 15 and 21). With the per-class column
scale of eq. 25 read literally the condition becomes
s_own (r_own cos_own - m_own) = s_other r_other cos_other, so GA moves the
boundary; with the per-sample row scale of the authors' code it does not.

The *decision boundary* is the test rule, cos(theta_1) = cos(theta_2).

The points of Fig. 1: key points lie within pi/2 of both anchors (Zone 1),
non-key points beyond pi/2 of both (Zone 2, Lemma 1), simple points within
pi/2 of exactly one (Zones 3-4). The pi/2 threshold is our reading of Fig. 1
and Lemma 1; the paper draws the zones without numbers.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "ZONES",
    "class_boundary_cos",
    "class_boundary_angle",
    "angle_penalty_boundary",
    "margin_gap",
    "zone",
]

ZONES = ("key", "non-key", "simple")


def class_boundary_cos(
    cos_other: np.ndarray | float,
    r_own: float,
    m_own: float,
    r_other: float,
    s_own: float = 1.0,
    s_other: float = 1.0,
) -> np.ndarray:
    """cos(theta_own) on the class boundary of class ``own`` against ``other``:
    s_own (r_own cos_own - m_own) = s_other r_other cos_other (eq. 7 with s = 1;
    eq. 25's column scale otherwise). May leave [-1, 1] where no boundary exists."""
    if r_own <= 0 or r_other <= 0 or s_own <= 0 or s_other <= 0:
        raise ValueError(f"radii and scales must be positive, got r=({r_own}, {r_other}), s=({s_own}, {s_other})")
    c = np.asarray(cos_other, dtype=np.float64)
    return (s_other * r_other * c / s_own + m_own) / r_own


def class_boundary_angle(theta_other: np.ndarray, *args: float, **kwargs: float) -> np.ndarray:
    """The same boundary in angle space (Figs. 2-3): theta_own for each
    theta_other in radians, NaN where the boundary leaves [0, pi]."""
    c = class_boundary_cos(np.cos(np.asarray(theta_other, dtype=np.float64)), *args, **kwargs)
    out = np.full_like(c, np.nan)
    inside = np.abs(c) <= 1.0
    out[inside] = np.arccos(c[inside])
    return out


def angle_penalty_boundary(theta_other: np.ndarray, r_hat_own: float, m_hat_own: float, r_hat_other: float) -> np.ndarray:
    """Class boundary of the angle penalty of eq. 18, r_own theta_own + m_own =
    r_other theta_other, as theta_own (NaN outside [0, pi]); Fig. 4."""
    if r_hat_own <= 0 or r_hat_other <= 0:
        raise ValueError(f"radii must be positive, got ({r_hat_own}, {r_hat_other})")
    t = (r_hat_other * np.asarray(theta_other, dtype=np.float64) - m_hat_own) / r_hat_own
    return np.where((t >= 0) & (t <= np.pi), t, np.nan)


def margin_gap(cos: np.ndarray | float, r_own: float, m_own: float, r_other: float) -> np.ndarray:
    """Gap between class boundary and decision boundary at the point of the
    decision boundary where both cosines equal ``cos``: how much larger
    cos(theta_own) must be than cos(theta_other), ((r_other - r_own) cos + m_own) / r_own.
    Equal for all points when r_own = r_other (LDAM, eq. 6: m = m'); for KPS it
    grows with ``cos`` when r_own < r_other, i.e. key points (large cosines)
    get larger margins than non-key points (Sec. 3.2.2)."""
    c = np.asarray(cos, dtype=np.float64)
    return class_boundary_cos(c, r_own, m_own, r_other) - c


def zone(cos1: np.ndarray, cos2: np.ndarray) -> np.ndarray:
    """Fig. 1 zone of each point: 'key' (both angles < pi/2), 'non-key' (both
    >= pi/2) or 'simple' (exactly one < pi/2)."""
    near1 = np.asarray(cos1) > 0
    near2 = np.asarray(cos2) > 0
    return np.where(near1 & near2, "key", np.where(~near1 & ~near2, "non-key", "simple"))
