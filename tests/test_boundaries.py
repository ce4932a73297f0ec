"""kps.boundaries: the class boundaries of Figs. 2-4 are where the loss's own
softmax core gives the target probability 1/2 (loss = log 2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kps import boundaries as B
from kps.data import long_tailed_counts
from kps.losses import make_loss, margin_softmax_loss

COUNTS = long_tailed_counts(5000, 10, 100)  # CIFAR-10-LT, rho = 100


def pair_loss(cos_own, cos_other, r, m, s):
    """Per-point loss of a class-`own` sample against one competitor, through
    the loss core (column 0 = own class, column 1 = other)."""
    scores = torch.tensor(np.stack([cos_own, cos_other], axis=1), dtype=torch.float64)
    target = torch.zeros(1, dtype=torch.long)
    return np.array([float(margin_softmax_loss(row[None], target, radius=torch.tensor(r), margin=torch.tensor(m),
                                               column_scale=torch.tensor(s))) for row in scores])


@pytest.mark.parametrize("own,other", [(9, 0), (0, 9), (4, 2)])
def test_kps_class_boundary_is_where_loss_is_log2(own, other):
    kps = make_loss("kps", COUNTS)
    r, m = kps.params.r, kps.params.m
    c_other = np.linspace(-0.6, 0.2, 9)
    c_own = B.class_boundary_cos(c_other, r[own], m[own], r[other])
    inside = np.abs(c_own) <= 1
    assert inside.sum() >= 3
    for s in ([15.0, 15.0], [kps.params.s[own], kps.params.s[other]]):
        s_own, s_other = s
        c_own = B.class_boundary_cos(c_other, r[own], m[own], r[other], s_own, s_other)
        loss = pair_loss(c_own, c_other, [r[own], r[other]], [m[own], 0.0], [s_own, s_other])
        np.testing.assert_allclose(loss, math.log(2), rtol=1e-9)
    # GA's column scale (eq. 25) moves the boundary
    moved = B.class_boundary_cos(c_other, r[own], m[own], r[other], kps.params.s[own], kps.params.s[other])
    assert not np.allclose(moved, B.class_boundary_cos(c_other, r[own], m[own], r[other]))


def test_margin_gap_key_vs_non_key_points():
    kps = make_loss("kps", COUNTS)
    r, m = kps.params.r, kps.params.m
    tail, head = 9, 0
    gap = B.margin_gap(np.array([0.0, 0.9]), r[tail], m[tail], r[head])
    assert gap[1] > gap[0] > 0  # the tail class: larger margin at key points (Sec. 3.2.2)
    assert gap[0] == pytest.approx(m[tail] / r[tail])
    ldam = make_loss("ldam", COUNTS).margin.double().numpy()
    flat = B.margin_gap(np.array([-0.5, 0.0, 0.9]), 1.0, ldam[tail], 1.0)
    np.testing.assert_allclose(flat, ldam[tail])  # LDAM: m = m' everywhere


def test_angle_boundaries_and_zones():
    theta = np.linspace(0, np.pi, 7)
    ce = B.class_boundary_angle(theta, 1.0, 0.0, 1.0)
    np.testing.assert_allclose(ce, theta, atol=1e-7)
    outside = B.class_boundary_angle(np.array([0.0]), 1.0, 0.5, 1.0)
    assert np.isnan(outside[0])  # cos_own = 1.5: no boundary there
    ap = B.angle_penalty_boundary(theta, 1.0, 0.2, 1.5)
    cross = 0.2 / (1.5 - 1.0)  # eq. 18 meets theta_1 = theta_2 here (Fig. 4)
    t = B.angle_penalty_boundary(np.array([cross]), 1.0, 0.2, 1.5)
    assert t[0] == pytest.approx(cross) and np.isnan(ap[0])
    z = B.zone(np.array([0.5, -0.5, 0.5, -0.1]), np.array([0.5, -0.5, -0.5, 0.3]))
    assert z.tolist() == ["key", "non-key", "simple", "simple"]
    with pytest.raises(ValueError, match="positive"):
        B.class_boundary_cos(0.0, 0.0, 0.1, 1.0)
