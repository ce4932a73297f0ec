"""kps.schedules: lr at key epochs (both styles), GA switch, DRW weights."""

import numpy as np
import pytest

from kps.schedules import GA_SWITCH_EPOCH_CIFAR, drw_weights, ga_active, learning_rate

CIFAR = dict(base_lr=0.1, warmup_epochs=5, decay_epochs=(160, 180), decay_ratio=0.01)
KEY_EPOCHS = (0, 4, 5, 159, 160, 179, 180, 199)


def _authors_cifar_lr(epoch: int, lr: float = 0.1) -> float:
    """Transcription of the authors' cifar_train.py adjust_learning_rate (their epoch is 0-indexed)."""
    epoch = epoch + 1
    if epoch <= 5:
        return lr * epoch / 5
    if epoch > 180:
        return lr * 0.01
    if epoch > 160:
        return lr * 0.1
    return lr


def test_paper_style_cifar_key_epochs():
    # Table 2 read literally: x0.01 at 160, x0.01 again at 180 (cumulative).
    expected = (0.02, 0.1, 0.1, 0.1, 1e-3, 1e-3, 1e-5, 1e-5)
    got = [learning_rate(e, **CIFAR) for e in KEY_EPOCHS]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_official_style_cifar_key_epochs():
    expected = (0.02, 0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001)
    got = [learning_rate(e, **CIFAR, style="official") for e in KEY_EPOCHS]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_official_style_equals_authors_code_every_epoch():
    for epoch in range(200):
        assert learning_rate(epoch, **CIFAR, style="official") == pytest.approx(_authors_cifar_lr(epoch), rel=1e-12)


def test_warmup_is_linear():
    np.testing.assert_allclose([learning_rate(e, **CIFAR) for e in range(5)], [0.02, 0.04, 0.06, 0.08, 0.1])


def test_paper_style_imagenet_no_warmup():
    large = dict(base_lr=0.1, warmup_epochs=0, decay_epochs=(120, 160), decay_ratio=0.1)
    got = [learning_rate(e, **large) for e in (0, 119, 120, 159, 160, 179)]
    np.testing.assert_allclose(got, [0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-12)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(epoch=0, style="cosine"), "unknown learning-rate style 'cosine'"),
        (dict(epoch=-1), "epoch"),
        (dict(epoch=1.5), "epoch"),
    ],
)
def test_bad_schedule_input_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        learning_rate(**kwargs, **CIFAR)


def test_bad_schedule_settings_raise():
    with pytest.raises(ValueError, match="decay_ratio"):
        learning_rate(0, base_lr=0.1, warmup_epochs=5, decay_epochs=(160,), decay_ratio=0.0)
    with pytest.raises(ValueError, match="base_lr"):
        learning_rate(0, base_lr=-0.1, warmup_epochs=5, decay_epochs=(160,), decay_ratio=0.1)


def test_ga_switch():
    assert GA_SWITCH_EPOCH_CIFAR == 120
    assert not ga_active(119, 120)
    assert ga_active(120, 120) and ga_active(199, 120)
    assert not ga_active(199, None)
    with pytest.raises(ValueError, match="epoch"):
        ga_active(-1, 120)


def test_drw_weights_small_case():
    # (1 - 0.9) / (1 - 0.9^100) = 0.1000026562, (1 - 0.9) / (1 - 0.9^10) = 0.1535339933;
    # normalised to sum C = 2: (0.7888615426, 1.2111384574).
    assert drw_weights([100, 10], 159, drw_epoch=160, beta=0.9) is None
    w = drw_weights([100, 10], 160, drw_epoch=160, beta=0.9)
    np.testing.assert_allclose(w, [0.7888615426, 1.2111384574], rtol=1e-9)
    assert w.dtype == np.float64


def test_drw_weights_cifar_defaults():
    counts = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert drw_weights(counts, 0) is None
    w = drw_weights(counts, 160)
    assert w.sum() == pytest.approx(10.0)
    assert np.all(np.diff(w) > 0)  # rarer classes weigh more
    # beta = 0.9999: w_j proportional to 1 / (1 - 0.9999^{n_j}); ratio tail/head = (1 - 0.9999^5000) / (1 - 0.9999^50)
    assert w[-1] / w[0] == pytest.approx((1 - 0.9999**5000) / (1 - 0.9999**50), rel=1e-12)
    assert drw_weights(counts, 199, drw_epoch=None) is None


def test_drw_bad_input_raises():
    with pytest.raises(ValueError, match="positive"):
        drw_weights([10, 0], 160)
    with pytest.raises(ValueError, match="beta"):
        drw_weights([10, 5], 160, beta=1.5)
