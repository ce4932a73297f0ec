"""kps.params: eqs. 26-30 pinned on CIFAR-10-LT, the official-code variant, bad counts."""

import math

import numpy as np
import pytest
import torch

from kps.params import KPSParams, effective_number_weights, kps_parameters, validate_counts

# CIFAR-10-LT, imbalance 100: n_i = int(5000 * 100^(-i/9)).
CIFAR10_LT_100 = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def test_cifar10_lt_counts_are_the_ones_pinned():
    assert [int(5000 * 100 ** (-i / 9)) for i in range(10)] == CIFAR10_LT_100


def test_paper_parameters_cifar10_lt_100():
    # By hand: min n = 50 = n_base, so r'_i = log(n_i), min r' = log 50 = 3.912023.
    # r_0 = log 5000 / log 50 = 8.517193 / 3.912023 = 2.177184.
    # m'_0 = max(r) + 1 - r_0 = 1 -> m_0 = 1 * 0.5 / max(m') = 0.5 / 2.177184 = 0.229654.
    # m'_9 = 2.177184 = max(m') -> m_9 = 0.5;  s_9 = 15 * 2.177184 = 32.657757;  s_0 = 15.
    p = kps_parameters(CIFAR10_LT_100)
    assert isinstance(p, KPSParams)
    assert all(a.dtype == np.float64 and a.shape == (10,) for a in p)
    assert round(p.r[0], 4) == 2.1772
    assert round(p.m[0], 4) == 0.2297
    assert round(p.m[-1], 4) == 0.5
    assert round(p.s[-1], 3) == 32.658
    assert p.r[-1] == pytest.approx(1.0)
    assert p.s[0] == pytest.approx(15.0)
    assert p.r[0] == pytest.approx(math.log(5000) / math.log(50), rel=1e-12)
    # Monotone: head has the largest radius, the tail the largest margin and scale.
    assert np.all(np.diff(p.r) < 0) and np.all(np.diff(p.m) > 0) and np.all(np.diff(p.s) > 0)


def test_paper_parameters_follow_the_equations_for_other_hyperparameters():
    n = np.array([300, 20, 7], dtype=float)
    p = kps_parameters(n, n_base=10, m_max=0.35, s_base=20.0)
    r_prime = np.log(n * 10 / 7)  # eq. 26
    r = r_prime / r_prime.min()  # eq. 27
    m_prime = r.max() + 1 - r  # eq. 28
    np.testing.assert_allclose(p.r, r, rtol=1e-12)
    np.testing.assert_allclose(p.m, m_prime * 0.35 / m_prime.max(), rtol=1e-12)  # eq. 29
    np.testing.assert_allclose(p.s, 20.0 * m_prime, rtol=1e-12)  # eq. 30


def test_official_variant_matches_paper_at_the_ends_for_sorted_counts():
    paper = kps_parameters(CIFAR10_LT_100)
    official = kps_parameters(CIFAR10_LT_100, variant="official")
    np.testing.assert_allclose(official.r, paper.r)
    assert round(official.m[0], 4) == 0.2297 and round(official.m[-1], 4) == 0.5
    assert round(official.s[-1], 3) == 32.658
    # Sorted but integer-truncated counts: flip(r) and max(r)+1-r agree only approximately.
    np.testing.assert_allclose(official.m, paper.m, atol=1e-3)
    assert np.max(np.abs(official.m - paper.m)) > 1e-5


def test_official_variant_differs_from_paper_for_unsorted_counts():
    # n = (50, 5000, 500): r = log n / log 50 = (1, 2.177184, 1.588592).
    # Paper (eq. 28): m' = (2.177184, 1, 1.588592) -> m = m' * 0.5 / 2.177184 = (0.5, 0.229654, 0.364827):
    #   the tail class 0 gets the largest margin.
    # Official: flip(r) = (1.588592, 2.177184, 1) -> m = (0.364827, 0.5, 0.229654): the head class 1
    #   gets the largest margin, and the GA scale 15 * flip(r) = (23.83, 32.66, 15) is largest for the head.
    counts = [50, 5000, 500]
    paper = kps_parameters(counts)
    official = kps_parameters(counts, variant="official")
    np.testing.assert_allclose(paper.m, [0.5, 0.229654, 0.364827], atol=1e-6)
    np.testing.assert_allclose(official.m, [0.364827, 0.5, 0.229654], atol=1e-6)
    np.testing.assert_allclose(paper.s, [32.657757, 15.0, 23.828879], atol=1e-6)
    np.testing.assert_allclose(official.s, [23.828879, 32.657757, 15.0], atol=1e-6)
    assert int(np.argmax(paper.m)) == 0 and int(np.argmax(official.m)) == 1


def test_official_scale_is_clamped_to_50():
    # n = (1, 125000): r' = log(50 n) = (log 50, 4 log 50) -> r = (1, 4).
    # Paper: s = 15 * (max(r) + 1 - r) = (60, 15).  Official: clip(15 * flip(r), 15, 50) = (50, 15).
    np.testing.assert_allclose(kps_parameters([1, 125000]).s, [60.0, 15.0])
    np.testing.assert_allclose(kps_parameters([1, 125000], variant="official").s, [50.0, 15.0])


def test_validate_counts_accepts_integer_like_input():
    for counts in ([3, 1], (3, 1), np.array([3.0, 1.0]), torch.tensor([3, 1])):
        out = validate_counts(counts)
        assert out.dtype == np.int64 and out.tolist() == [3, 1]


@pytest.mark.parametrize(
    "counts, message",
    [
        ([], "empty"),
        ([[1, 2], [3, 4]], "1-D"),
        ([1.5, 2], "non-integer"),
        ([0, 5], "positive"),
        ([-3, 5], "positive"),
        ([float("nan"), 5], "NaN"),
        ([float("inf"), 5], "NaN or inf"),
        (["a", "b"], "integers"),
        ([True, False], "integers"),
    ],
)
def test_bad_counts_raise(counts, message):
    with pytest.raises(ValueError, match=message):
        validate_counts(counts)
    with pytest.raises(ValueError, match=message):
        kps_parameters(counts)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"variant": "authors"}, "unknown KPS variant 'authors'"),
        ({"n_base": 1}, "n_base"),
        ({"m_max": -0.1}, "m_max"),
        ({"s_base": 0}, "s_base"),
    ],
)
def test_bad_hyperparameters_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kps_parameters([10, 5], **kwargs)


def test_effective_number_weights():
    # (1 - 0.9) / (1 - 0.9^100) = 0.1000026562, (1 - 0.9) / (1 - 0.9^10) = 0.1535339933;
    # normalised to sum 2: (0.7888615426, 1.2111384574).
    np.testing.assert_allclose(effective_number_weights([100, 10], 0.9), [0.7888615426, 1.2111384574], rtol=1e-9)
    np.testing.assert_allclose(effective_number_weights([100, 10], 0.0), [1.0, 1.0])
    with pytest.raises(ValueError, match="beta"):
        effective_number_weights([100, 10], 1.0)
