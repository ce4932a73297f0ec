"""What gradient adjustment changes, measured per class (eq. 22 vs eq. 25).

A short run of KPS loss (stage 1 of Algorithm 1, eq. 15) on CIFAR-10-LT gives
a network; on its cosines for every training image (no augmentation) the
gradient each class's cosine receives is measured by autograd through
``kps.losses.KPSLoss`` in three forms:

- ``eq22``: stage 1, one scale s_base for every class (eqs. 15 and 22);
- ``eq25_column``: GA as eq. 25 reads, class i's score scaled by its own s_i;
- ``authors_row``: GA as the authors' code computes it, every score of a
  sample scaled by its target's s_y, clamped to [s_base, 50].

Per class i the output holds the summed magnitude of the *positive* gradient
(from class-i images, on cos(theta_i)) and of the *negative* gradient (from
all other images, on cos(theta_i)), and their counts.

    python -m kps.gradients --data-root data --out results/toy/gradients.json --epochs 5
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from kps.augment import GPUAugment
from kps.configs import make_config
from kps.data import build_dataset
from kps.datasets import DATASETS
from kps.io import atomic_write_text
from kps.losses import make_loss
from kps.toy import cosines
from kps.env import device_name, git_state
from kps.train import Trainer

__all__ = ["FORMS", "gradient_signals", "main"]

FORMS = {  # name -> KPSLoss options
    "eq22": {"ga": False, "variant": "paper"},
    "eq25_column": {"ga": True, "variant": "paper"},
    "authors_row": {"ga": True, "variant": "official"},
}


def gradient_signals(cos: np.ndarray, labels: np.ndarray, counts: Sequence[int], *, m_max: float = 0.5,
                     s_base: float = 15.0, batch: int = 1024) -> dict[str, dict[str, list[float]]]:
    """For each form of ``FORMS``: per class i, the summed |dL/dcos(theta_i)| of
    the samples of class i ("positive") and of all other samples ("negative").
    Per-sample gradients are exact: each row of the batch loss depends only on
    its own sample, so the gradient of the mean times the batch size is the
    per-sample gradient."""
    c = len(counts)
    y_all = torch.as_tensor(labels, dtype=torch.long)
    x_all = torch.as_tensor(cos, dtype=torch.float64)
    out = {}
    for name, options in FORMS.items():
        loss_fn = make_loss("kps", counts, m_max=m_max, s_base=s_base, **options)
        pos, neg = torch.zeros(c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64)
        for start in range(0, len(y_all), batch):
            x = x_all[start:start + batch].clone().requires_grad_(True)
            y = y_all[start:start + batch]
            loss_fn(x, y).backward()
            g = x.grad.abs() * len(y)
            own = torch.nn.functional.one_hot(y, c).double()
            pos += (g * own).sum(0)
            neg += (g * (1 - own)).sum(0)
        out[name] = {"positive": pos.tolist(), "negative": neg.tolist()}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kps.gradients", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default="data")
    p.add_argument("--dataset", default="cifar10-jpeg", choices=("cifar10", "cifar10-jpeg"))
    p.add_argument("--imbalance", type=float, default=100.0)
    p.add_argument("--out", default="results/toy/gradients.json")
    p.add_argument("--device", default="auto")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    config = make_config(args.dataset, "kps", imbalance=args.imbalance, seed=args.seed, epochs=args.epochs,
                         eval_every=args.epochs)
    data = build_dataset(args.dataset, args.data_root, args.imbalance, seed=config.subset_seed)
    commit, dirty = git_state()  # the code as loaded now, before HEAD can move during the run
    trainer = Trainer(config, data, device, num_workers=0)
    started, t0 = datetime.now(timezone.utc).isoformat(timespec="seconds"), time.perf_counter()
    losses = [trainer.train_epoch(epoch, trainer.epoch_indices()) for epoch in range(args.epochs)]
    wall = time.perf_counter() - t0
    result = trainer.evaluate()
    spec = DATASETS[data.name]
    cos = cosines(trainer.model, data.train.images, GPUAugment(spec.mean, spec.std), device)
    labels = data.train.targets.numpy()
    out = {
        "kind": "gradient_signals", "dataset": args.dataset, "dataset_label": data.label,
        "class_names": list(data.class_names), "train_counts": list(data.counts),
        "config": config.to_dict(), "train_loss": [round(v, 5) for v in losses],
        "test_error": float(100.0 - 100.0 * result["correct"].sum() / result["total"].sum()),
        "gradient_of": "cos(theta_i), per training image, summed per class",
        "signals": gradient_signals(cos, labels, data.counts, m_max=config.m_max, s_base=config.s_base),
        "git_commit": commit, "git_dirty": dirty, "device": device_name(device), "torch_version": torch.__version__,
        "started_at": started, "wall_time_s": round(wall, 1),
        "command": "python -m kps.gradients " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    atomic_write_text(Path(args.out), json.dumps(out, indent=1) + "\n")
    print(f"{args.out}: {args.epochs} epochs of kps, test error {out['test_error']:.2f} %, {wall / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
