"""kps.losses: KPS eq. 15 / eq. 25 / official GA on hand-worked numbers, eq. 22 vs
autograd, reductions to CE, baselines against their formulas, soft targets, bad input."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kps.losses import LOSSES, KPSLoss, make_loss, margin_softmax_loss
from kps.params import kps_parameters

CIFAR10_LT_100 = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]

# Hand-worked 3-class example.  counts (2500, 50, 1), n_base 50, m_max 0.3, s_base 1:
#   r'_i = log(50 n_i) = (3, 2, 1) * log 50 -> r = (3, 2, 1)
#   m' = 3 + 1 - r = (1, 2, 3) -> m = m' * 0.3 / 3 = (0.1, 0.2, 0.3);  s = 1 * m' = (1, 2, 3)
#   official: flip(r) = (1, 2, 3) -> same m; s = clip((1, 2, 3), 1, 50) = (1, 2, 3).
HAND_COUNTS = [2500, 50, 1]
HAND_OPTIONS = dict(n_base=50, m_max=0.3, s_base=1.0)
HAND_COS = [[0.2, 0.5, 0.1], [0.3, 0.1, 0.4]]
HAND_TARGET = [1, 2]
# Row 1 (y = 1): zhat = (3*0.2, 2*0.5 - 0.2, 1*0.1) = (0.6, 0.8, 0.1)
#   stage 1 (eq. 15, s = 1): log(e^0.6 + e^0.8 + e^0.1) - 0.8
#                           = log(1.822119 + 2.225541 + 1.105171) - 0.8 = log 5.152831 - 0.8 = 0.839546
#   GA paper (eq. 25): logits s_j zhat_j = (0.6, 1.6, 0.3)
#                           log(1.822119 + 4.953032 + 1.349859) - 1.6 = log 8.125010 - 1.6 = 0.494947
#   GA official: row scale s_y = 2: logits (1.2, 1.6, 0.2)
#                           log(3.320117 + 4.953032 + 1.221403) - 1.6 = log 9.494552 - 1.6 = 0.650718
# Row 2 (y = 2): zhat = (3*0.3, 2*0.1, 1*0.4 - 0.3) = (0.9, 0.2, 0.1)
#   stage 1: log(2.459603 + 1.221403 + 1.105171) - 0.1 = log 4.786177 - 0.1 = 1.465732
#   GA paper: logits (0.9, 0.4, 0.3):  log(2.459603 + 1.491825 + 1.349859) - 0.3 = log 5.301287 - 0.3 = 1.367950
#   GA official: s_y = 3: logits (2.7, 0.6, 0.3):
#                           log(14.879732 + 1.822119 + 1.349859) - 0.3 = log 18.051709 - 0.3 = 2.593240
# Batch means: stage 1 (0.839546 + 1.465732) / 2 = 1.152639; paper (0.494947 + 1.367950) / 2 = 0.931449;
#              official (0.650718 + 2.593240) / 2 = 1.621979.


def _hand_inputs():
    return torch.tensor(HAND_COS, dtype=torch.float64), torch.tensor(HAND_TARGET)


def test_hand_example_parameters():
    p = kps_parameters(HAND_COUNTS, **HAND_OPTIONS)
    np.testing.assert_allclose(p.r, [3, 2, 1], rtol=1e-12)
    np.testing.assert_allclose(p.m, [0.1, 0.2, 0.3], rtol=1e-12)
    np.testing.assert_allclose(p.s, [1, 2, 3], rtol=1e-12)


@pytest.mark.parametrize(
    "ga, variant, expected",
    [
        (False, "paper", 1.152639),
        (False, "official", 1.152639),
        (True, "paper", 0.931449),
        (True, "official", 1.621979),
    ],
)
def test_kps_hand_worked_three_classes(ga, variant, expected):
    cos, y = _hand_inputs()
    loss = KPSLoss(HAND_COUNTS, **HAND_OPTIONS, ga=ga, variant=variant)
    assert loss(cos, y).item() == pytest.approx(expected, abs=2e-6)


def test_kps_ga_attribute_switches_stage():
    cos, y = _hand_inputs()
    loss = make_loss("kps", HAND_COUNTS, **HAND_OPTIONS)
    assert loss.ga is False and loss.input_kind == "cosine"
    assert loss(cos, y).item() == pytest.approx(1.152639, abs=2e-6)
    loss.ga = True
    assert loss(cos, y).item() == pytest.approx(0.931449, abs=2e-6)


def _zhat_and_onehot(cos, y, p):
    onehot = F.one_hot(y, cos.shape[1]).double()
    r = torch.tensor(p.r)
    m = torch.tensor(p.m)
    return r * cos - onehot * m, onehot, r  # eq. 20


def test_eq22_gradient_wrt_final_scores_matches_autograd():
    torch.manual_seed(0)
    cos = (torch.rand(6, 10, dtype=torch.float64) * 2 - 1).requires_grad_()
    y = torch.tensor([0, 3, 9, 9, 5, 1])
    loss_fn = KPSLoss(CIFAR10_LT_100)
    loss = loss_fn(cos, y)
    loss.backward()
    p = kps_parameters(CIFAR10_LT_100)
    zhat, onehot, r = _zhat_and_onehot(cos.detach(), y, p)
    prob = torch.softmax(15.0 * zhat, dim=1)  # eq. 21
    # Forward is eq. 21: mean of -log p_y.
    assert loss.item() == pytest.approx(-torch.log(prob[torch.arange(6), y]).mean().item(), rel=1e-12)
    # dL/dzhat_i = s (p_i - [i = y]) (eq. 22); chain rule: dL/dcos_i = r_i dL/dzhat_i; mean over 6 rows.
    expected_dzhat = 15.0 * (prob - onehot)
    torch.testing.assert_close(cos.grad * 6 / r, expected_dzhat, rtol=1e-10, atol=1e-12)


def test_core_gradient_wrt_zhat_is_eq22():
    torch.manual_seed(1)
    zhat = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([4, 0, 2, 2])
    margin_softmax_loss(zhat, y, column_scale=7.0).backward()
    expected = 7.0 * (torch.softmax(7.0 * zhat.detach(), 1) - F.one_hot(y, 5).double()) / 4
    torch.testing.assert_close(zhat.grad, expected, rtol=1e-10, atol=1e-12)


def test_ga_paper_gradient_wrt_cos_scaled_by_column_scale():
    # eq. 25: dL/dcos_j = s_j r_j (phat_j - [j = y]), phat = softmax(s * zhat): class j's gradient carries its own s_j.
    torch.manual_seed(2)
    cos = (torch.rand(5, 10, dtype=torch.float64) * 2 - 1).requires_grad_()
    y = torch.tensor([0, 0, 1, 8, 9])
    KPSLoss(CIFAR10_LT_100, ga=True)(cos, y).backward()
    p = kps_parameters(CIFAR10_LT_100)
    zhat, onehot, r = _zhat_and_onehot(cos.detach(), y, p)
    s = torch.tensor(p.s)
    phat = torch.softmax(s * zhat, dim=1)
    torch.testing.assert_close(cos.grad * 5, s * r * (phat - onehot), rtol=1e-10, atol=1e-12)


def test_ga_official_gradient_wrt_cos_scaled_by_row_scale():
    # Official GA: dL/dcos_j = s_y r_j (p_j - [j = y]), p = softmax(s_y * zhat): every column scaled by the target's s_y.
    torch.manual_seed(3)
    cos = (torch.rand(5, 10, dtype=torch.float64) * 2 - 1).requires_grad_()
    y = torch.tensor([0, 0, 1, 8, 9])
    KPSLoss(CIFAR10_LT_100, ga=True, variant="official")(cos, y).backward()
    p = kps_parameters(CIFAR10_LT_100, variant="official")
    zhat, onehot, r = _zhat_and_onehot(cos.detach(), y, p)
    s_y = torch.tensor(p.s)[y][:, None]
    prob = torch.softmax(s_y * zhat, dim=1)
    torch.testing.assert_close(cos.grad * 5, s_y * r * (prob - onehot), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- reductions to CE


def _random_batch(b=8, c=10, seed=0, cosine=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, generator=g, dtype=torch.float64)
    if cosine:
        x = torch.tanh(x)
    return x, torch.randint(0, c, (b,), generator=g)


def test_kps_with_unit_radius_zero_margin_unit_scale_is_ce():
    cos, y = _random_batch(c=3, cosine=True)
    ce = F.cross_entropy(cos, y)
    # Equal counts -> r = 1; m_max = 0 -> m = 0; s_base = 1 (and GA s = s_base * m' = 1).
    for ga in (False, True):
        loss = KPSLoss([7, 7, 7], m_max=0.0, s_base=1.0, ga=ga)
        np.testing.assert_allclose(loss.params.r, 1.0)
        assert loss(cos, y).item() == pytest.approx(ce.item(), rel=1e-12)
    core = margin_softmax_loss(cos, y, radius=torch.ones(3), margin=torch.zeros(3), column_scale=1.0)
    assert core.item() == pytest.approx(ce.item(), rel=1e-12)


@pytest.mark.parametrize("name, options", [("ce", {}), ("la", {"tau": 0.0}), ("focal", {"gamma": 0.0}), ("eql", {"gamma": 0.0})])
def test_reductions_to_ce(name, options):
    x, y = _random_batch()
    loss = make_loss(name, CIFAR10_LT_100, **options)
    assert loss(x, y).item() == pytest.approx(F.cross_entropy(x, y).item(), rel=1e-12)


# ---------------------------------------------------------------- baselines vs their formulas


def test_logit_adjustment_adds_tau_log_prior():
    x, y = _random_batch()
    n = np.array(CIFAR10_LT_100, dtype=float)
    expected = F.cross_entropy(x + 1.5 * torch.tensor(np.log(n / n.sum())), y)
    assert make_loss("la", CIFAR10_LT_100, tau=1.5)(x, y).item() == pytest.approx(expected.item(), rel=1e-12)


def test_focal_formula():
    x, y = _random_batch()
    p_y = torch.softmax(x, 1)[torch.arange(8), y]
    expected = (-(1 - p_y) ** 2 * torch.log(p_y)).mean()
    assert make_loss("focal", CIFAR10_LT_100, gamma=2.0)(x, y).item() == pytest.approx(expected.item(), rel=1e-10)


def test_ldam_margins_and_formula():
    # m_j = C / n_j^(1/4), max 0.5: (5000, 50) -> (0.5 * (50 / 5000)^(1/4), 0.5) = (0.158114, 0.5).
    loss = make_loss("ldam", [5000, 50])
    assert loss.input_kind == "cosine"
    np.testing.assert_allclose(loss.margin.numpy(), [0.158114, 0.5], atol=1e-6)
    cos, y = _random_batch(c=2, cosine=True)
    m = torch.tensor([0.5 * 0.01**0.25, 0.5], dtype=torch.float64)
    expected = F.cross_entropy(30 * (cos - F.one_hot(y, 2).double() * m), y)
    assert loss(cos, y).item() == pytest.approx(expected.item(), rel=1e-12)


def test_cosface_formula():
    cos, y = _random_batch(cosine=True)
    expected = F.cross_entropy(20 * (cos - 0.4 * F.one_hot(y, 10).double()), y)
    assert make_loss("cosface", CIFAR10_LT_100, scale=20.0, margin=0.4)(cos, y).item() == pytest.approx(expected.item(), rel=1e-12)


def test_arcface_formula_and_safe_gradient():
    cos, y = _random_batch(cosine=True)
    cos = cos * 0.8  # keep theta + m < pi (cos > cos(pi - 0.5) = -0.8776) for this check
    onehot = F.one_hot(y, 10).bool()
    logits = torch.where(onehot, torch.cos(torch.acos(cos) + 0.5), cos) * 30
    loss = make_loss("arcface", CIFAR10_LT_100)
    assert loss(cos, y).item() == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-9)
    # At |cos| = 1 the gradient stays finite; past theta + m > pi the target logit is cos - m sin m.
    edge = torch.tensor([[1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([0, 0])
    out = make_loss("arcface", [5, 5], scale=1.0)(edge, target)
    out.backward()
    assert torch.isfinite(edge.grad).all()
    # Row 1: target cos = 1 -> cos(0 + 0.5) = 0.877583; row 2: target cos = -1 -> -1 - 0.5 sin 0.5 = -1.239713.
    row1 = math.log(math.exp(0.877583) + math.exp(-1.0)) - 0.877583
    row2 = math.log(math.exp(-1.239713) + math.exp(1.0)) + 1.239713
    assert out.item() == pytest.approx((row1 + row2) / 2, abs=1e-6)


def test_cb_focal_formula():
    x, y = _random_batch(b=6, c=3)
    counts = [100, 10, 1]
    beta, gamma = 0.9, 2.0
    eff = (1 - beta) / (1 - beta ** np.array(counts, dtype=float))
    w = torch.tensor(eff * 3 / eff.sum())
    onehot = F.one_hot(y, 3).double()
    p_t = torch.where(onehot.bool(), torch.sigmoid(x), torch.sigmoid(-x))
    per_row = (-(1 - p_t) ** gamma * torch.log(p_t)).sum(1) * w[y]
    loss = make_loss("cb_focal", counts, beta=beta, gamma=gamma)
    assert loss(x, y).item() == pytest.approx(per_row.mean().item(), rel=1e-9)
    # beta = 0, gamma = 0: plain sigmoid cross-entropy summed over classes, mean over the batch.
    plain = F.binary_cross_entropy_with_logits(x, onehot, reduction="sum") / 6
    assert make_loss("cb_focal", counts, beta=0.0, gamma=0.0)(x, y).item() == pytest.approx(plain.item(), rel=1e-12)


def test_eql_drops_rare_negative_columns():
    # Frequencies (1000, 1000, 5) / 2005: class 2 (0.0025) is below lambda = 0.01.
    counts = [1000, 1000, 5]
    loss = make_loss("eql", counts, threshold=0.01, gamma=1.0)
    x = torch.tensor([[1.0, 0.5, 2.0], [1.0, 0.5, 2.0]], dtype=torch.float64)
    y = torch.tensor([0, 2])
    # Row 1 (y = 0): rare column 2 is removed: log(e^1 + e^0.5) - 1.  Row 2 (y = 2): the target is never removed.
    row1 = math.log(math.e + math.exp(0.5)) - 1.0
    row2 = math.log(math.e + math.exp(0.5) + math.exp(2.0)) - 2.0
    assert loss(x, y).item() == pytest.approx((row1 + row2) / 2, rel=1e-12)


def test_eql_gamma_is_a_drop_probability():
    counts = [1000, 1000, 5]
    x = torch.tensor([[1.0, 0.5, 2.0]], dtype=torch.float64).repeat(4000, 1)
    y = torch.zeros(4000, dtype=torch.long)
    torch.manual_seed(0)
    half = make_loss("eql", counts, threshold=0.01, gamma=0.5)(x, y).item()
    kept = math.log(math.e + math.exp(0.5) + math.exp(2.0)) - 1.0
    dropped = math.log(math.e + math.exp(0.5)) - 1.0
    assert half == pytest.approx(0.5 * kept + 0.5 * dropped, rel=0.02)


# ---------------------------------------------------------------- weights and soft targets


def test_weight_attribute_is_drw():
    x, y = _random_batch()
    w = np.linspace(0.5, 2.0, 10)
    loss = make_loss("ce", CIFAR10_LT_100)
    assert loss.weight is None
    loss.weight = w
    expected = F.cross_entropy(x, y, weight=torch.tensor(w))
    assert loss(x, y).item() == pytest.approx(expected.item(), rel=1e-12)
    loss.weight = torch.tensor(w, dtype=torch.float32)  # as the trainer sets it
    assert loss.weight.dtype == torch.float64
    assert loss(x, y).item() == pytest.approx(expected.item(), rel=1e-6)
    loss.weight = None
    assert loss(x, y).item() == pytest.approx(F.cross_entropy(x, y).item(), rel=1e-12)


def test_weighted_kps_matches_weighted_cross_entropy_of_its_logits():
    cos, y = _random_batch(cosine=True)
    w = torch.linspace(0.5, 2.0, 10, dtype=torch.float64)
    p = kps_parameters(CIFAR10_LT_100)
    zhat, _, _ = _zhat_and_onehot(cos, y, p)
    loss = KPSLoss(CIFAR10_LT_100)
    loss.weight = w
    expected = F.cross_entropy(15.0 * zhat, y, weight=w)
    assert loss(cos, y).item() == pytest.approx(expected.item(), rel=1e-12)


@pytest.mark.parametrize("value, message", [(np.ones(3), r"shape \(10,\)"), (-np.ones(10), "> 0"), (np.full(10, np.nan), "finite")])
def test_bad_weight_raises(value, message):
    loss = make_loss("ldam", CIFAR10_LT_100)
    with pytest.raises(ValueError, match=message):
        loss.weight = value


ALL_CONFIGS = [
    ("ce", {}),
    ("focal", {"gamma": 2.0}),
    ("cb_focal", {}),
    ("ldam", {}),
    ("la", {}),
    ("cosface", {}),
    ("arcface", {}),
    ("eql", {"gamma": 1.0}),  # deterministic
    ("kps", {}),
    ("kps", {"ga": True}),
    ("kps", {"ga": True, "variant": "official"}),
]


def test_every_registered_loss_is_configured_here():
    assert {name for name, _ in ALL_CONFIGS} == set(LOSSES)


@pytest.mark.parametrize("name, options", ALL_CONFIGS)
def test_soft_targets_are_mixtures_of_hard_targets(name, options):
    loss = make_loss(name, CIFAR10_LT_100, **options)
    assert loss.input_kind in ("logits", "cosine")
    x, y_a = _random_batch(seed=5, cosine=loss.input_kind == "cosine")
    y_b = torch.roll(y_a, 1)
    hard_a, hard_b = loss(x, y_a), loss(x, y_b)
    assert loss(x, F.one_hot(y_a, 10).double()).item() == pytest.approx(hard_a.item(), rel=1e-12)
    lam = 0.3
    soft = lam * F.one_hot(y_a, 10).double() + (1 - lam) * F.one_hot(y_b, 10).double()
    assert loss(x, soft).item() == pytest.approx(lam * hard_a.item() + (1 - lam) * hard_b.item(), rel=1e-10)


@pytest.mark.parametrize("name, options", ALL_CONFIGS)
def test_losses_backpropagate_finite_gradients(name, options):
    loss = make_loss(name, CIFAR10_LT_100, **options)
    x, y = _random_batch(cosine=loss.input_kind == "cosine")
    x = x.float().requires_grad_()
    value = loss(x, y)
    value.backward()
    assert value.ndim == 0 and torch.isfinite(value) and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("name, options", ALL_CONFIGS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_scores_raise(name, options, bad):
    x, y = _random_batch(cosine=True)
    x[2, 3] = bad
    with pytest.raises(ValueError, match="scores contain NaN or inf"):
        make_loss(name, CIFAR10_LT_100, **options)(x, y)


@pytest.mark.parametrize("name, options", ALL_CONFIGS)
@pytest.mark.parametrize("bad_class", [-1, 10])
def test_target_out_of_range_raises(name, options, bad_class):
    x, y = _random_batch(cosine=True)
    y[0] = bad_class
    with pytest.raises(ValueError, match=r"target out of range \[0, 9\]"):
        make_loss(name, CIFAR10_LT_100, **options)(x, y)


@pytest.mark.parametrize("name, options", ALL_CONFIGS)
def test_unchecked_values_same_loss_and_nan_passes_through(name, options):
    """check_values=False (the trainer's fast path): the same values and gradients as
    the checked path, hard and soft targets; NaN scores give a NaN loss, no ValueError."""
    checked, unchecked = (make_loss(name, CIFAR10_LT_100, **options) for _ in range(2))
    unchecked.check_values = False
    assert checked.check_values is True
    x, y = _random_batch(seed=3, cosine=True)
    soft = 0.3 * F.one_hot(y, 10).double() + 0.7 * F.one_hot(torch.roll(y, 1), 10).double()
    for target in (y, soft):
        xs = [x.clone().requires_grad_() for _ in range(2)]
        values = [loss(xi, target) for loss, xi in zip((checked, unchecked), xs)]
        for v in values:
            v.backward()
        assert torch.equal(values[0], values[1]) and torch.equal(xs[0].grad, xs[1].grad)
    x[2, 3] = float("nan")
    with pytest.raises(ValueError, match="scores contain NaN"):
        checked(x, y)
    assert torch.isnan(unchecked(x, y)) and torch.isnan(unchecked(x, soft))


def test_unchecked_values_keep_structural_checks():
    loss = make_loss("kps", CIFAR10_LT_100)
    loss.check_values = False
    x, y = _random_batch(cosine=True)
    with pytest.raises(ValueError, match=r"hard target must have shape \(8,\)"):
        loss(x, y[:5])
    with pytest.raises(ValueError, match="7 columns"):
        loss(x[:, :7], y)
    with pytest.raises(ValueError, match="integer dtype"):
        loss(x, y.bool())
    with pytest.raises(ValueError, match="scores contain NaN"):
        margin_softmax_loss(x.fill_(float("nan")), y)  # the function's own default stays checked
    assert torch.isnan(margin_softmax_loss(x, y, validate=False))


@pytest.mark.parametrize(
    "target, message",
    [
        (torch.zeros(8, 1, dtype=torch.long), r"hard target must have shape \(8,\)"),
        (torch.zeros(9, dtype=torch.long), r"hard target must have shape \(8,\)"),
        (torch.zeros(8, dtype=torch.bool), "integer dtype"),
        (torch.zeros(8, dtype=torch.float64), "soft target must have the shape"),
        (torch.full((8, 10), 0.5, dtype=torch.float64), "sum to 1"),
        (torch.eye(10, dtype=torch.float64)[:8] * 2 - torch.eye(10, dtype=torch.float64)[1:9], "negative"),
        (torch.full((8, 10), float("nan"), dtype=torch.float64), "soft target contains NaN"),
        ([0, 1, 2, 3, 4, 5, 6, 7], "target must be a tensor"),
    ],
)
def test_bad_target_raises(target, message):
    x, _ = _random_batch(cosine=True)
    with pytest.raises(ValueError, match=message):
        make_loss("kps", CIFAR10_LT_100)(x, target)


@pytest.mark.parametrize(
    "scores, message",
    [
        (torch.zeros(10), r"shape \(B, C\)"),
        (torch.zeros(8, 7), "7 columns but the loss was built for 10 classes"),
        (torch.zeros(8, 10, dtype=torch.long), "float tensor"),
        (torch.zeros(0, 10), "empty"),
    ],
)
def test_bad_scores_raise(scores, message):
    with pytest.raises(ValueError, match=message):
        make_loss("ce", CIFAR10_LT_100)(scores, torch.zeros(8, dtype=torch.long))


def test_unknown_names_and_options_raise():
    with pytest.raises(ValueError, match="unknown loss 'softmax'; valid: ce, focal, cb_focal, ldam, la, cosface, arcface, eql, kps"):
        make_loss("softmax", CIFAR10_LT_100)
    with pytest.raises(ValueError, match="unknown KPS variant 'authors'"):
        make_loss("kps", CIFAR10_LT_100, variant="authors")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['gamma'\] for loss 'kps'"):
        make_loss("kps", CIFAR10_LT_100, gamma=1.0)
    with pytest.raises(ValueError, match="counts must be positive"):
        make_loss("ce", [10, 0])
    with pytest.raises(ValueError, match="counts is empty"):
        make_loss("kps", [])


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("focal", {"gamma": -1.0}, "gamma"),
        ("cb_focal", {"beta": 1.0}, "beta"),
        ("ldam", {"scale": 0.0}, "scale"),
        ("arcface", {"margin": 2.0}, "margin"),
        ("eql", {"gamma": 1.5}, "gamma"),
        ("kps", {"n_base": 1}, "n_base"),
    ],
)
def test_bad_options_raise(name, options, message):
    with pytest.raises(ValueError, match=message):
        make_loss(name, CIFAR10_LT_100, **options)
