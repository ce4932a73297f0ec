"""kps.toy and kps.gradients: the measured quantities of Fig. 5 and of the
gradient panel, checked on known inputs (the training runs themselves are
the trainer's, tested in test_train.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kps.augment import GPUAugment
from kps.data import long_tailed_counts
from kps.datasets import CIFAR_MEAN, CIFAR_STD
from kps.gradients import gradient_signals
from kps.models import make_model
from kps.params import kps_parameters
from kps.toy import TOY_COUNTS, angles_decidegrees, cosines, toy_config


def test_toy_config():
    c = toy_config("kps")
    assert (c.epochs, c.decay_epochs, c.eval_every, c.imbalance) == (30, (24, 27), 30, 10.0)
    assert max(TOY_COUNTS) / min(TOY_COUNTS) == c.imbalance


def test_angles_and_cosines():
    assert angles_decidegrees(np.array([[1.0, 0.0, -1.0], [0.5, 1.2, -0.5]])) == [[0, 600], [900, 0], [1800, 1200]]
    torch.manual_seed(0)
    model = make_model("resnet32", 3, head="cosine")
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    augment = GPUAugment(CIFAR_MEAN, CIFAR_STD)
    cos = cosines(model, images, augment, torch.device("cpu"), batch=4)
    with torch.no_grad():
        expected = model(augment.normalize(images)).double().numpy()  # the cosine head computes eq. 5
    np.testing.assert_allclose(cos, expected, atol=1e-5)


def test_gradient_signals_match_eq22_and_eq25():
    counts = long_tailed_counts(5000, 10, 100)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 300)
    cos = rng.uniform(-1, 1, (300, 10))
    sig = gradient_signals(cos, labels, counts, batch=128)
    p = kps_parameters(counts)
    onehot = np.eye(10)[labels]
    for name, scale in (("eq22", np.full(10, 15.0)), ("eq25_column", p.s)):
        z = scale * (p.r * cos - onehot * p.m)
        prob = np.exp(z - z.max(1, keepdims=True))
        prob /= prob.sum(1, keepdims=True)
        grad = np.abs(scale * p.r * (prob - onehot))        # eq. 22 / 25 through d zhat / d cos = r
        np.testing.assert_allclose(sig[name]["positive"], (grad * onehot).sum(0), rtol=1e-6)
        np.testing.assert_allclose(sig[name]["negative"], (grad * (1 - onehot)).sum(0), rtol=1e-6)
    assert not np.allclose(sig["authors_row"]["negative"], sig["eq25_column"]["negative"])


def test_toy_run_on_tiny_data():
    from synthetic import synthetic_data

    from kps.toy import run

    data = synthetic_data(counts=(6, 4, 2), n_test=3)
    out = run(data, "kps", torch.device("cpu"), epochs=1, seed=0)
    assert len(out["train_angles"]) == 3 and len(out["train_angles"][0]) == 12
    assert len(out["test_angles"][0]) == 9
    assert all(0 <= a <= 1800 for row in out["test_angles"] for a in row)
    assert out["config"]["method"] == "kps" and out["config"]["epochs"] == 1 and len(out["train_loss"]) == 1
    assert 0.0 <= out["top1_error"] <= 100.0 and len(out["per_class_accuracy"]) == 3
