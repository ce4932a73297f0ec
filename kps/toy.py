"""The toy experiment of Fig. 5 (Sec. 4.5, item 1): a ResNet-32 trained for 30
epochs on 3 CIFAR-10 classes with 5000 / 500 / 1000 training images, with CE,
focal, LDAM and KPS loss; what is kept is every sample's angle to the three
class anchors, on the training and the test images.

    python -m kps.toy --data-root data --out results/toy/fig5.json

The paper does not say which classes, which lr schedule or which seed; ours:
cat / dog / automobile (two confusable classes and one far from both, so that
Class 3 are non-key points for Classes 1 and 2 as in the paper's text), the
Table 2 CIFAR preset with its decay epochs scaled from 200 to 30 epochs (x0.01
at 80 % and 90 % of training), seed 0. LDAM is the ``ldam_drw`` method, whose
DRW stage (from epoch 160) never starts in 30 epochs. Training goes through
``kps.train.Trainer``; the output is one JSON file with the angles in tenths of
a degree and the provenance of the runs (not a ``results/`` run record: the
toy is not a configuration of Tables 3-7).
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
from torch import nn

from kps.augment import GPUAugment
from kps.configs import RunConfig, make_config
from kps.data import CIFAR10_CLASSES, LTData, build_dataset
from kps.datasets import DATASETS
from kps.io import atomic_write_text
from kps.env import device_name, git_state
from kps.train import Trainer

__all__ = ["TOY_CLASSES", "TOY_COUNTS", "TOY_METHODS", "toy_config", "cosines", "angles_decidegrees", "run", "main"]

TOY_CLASSES = (3, 5, 1)  # cat, dog, automobile: Class 1, 2, 3 of Fig. 5
TOY_COUNTS = (5000, 500, 1000)
TOY_METHODS = ("ce", "focal", "ldam_drw", "kps")
TOY_EPOCHS = 30
DATASET = "cifar10-jpeg"


def toy_config(method: str, epochs: int = TOY_EPOCHS, seed: int = 0) -> RunConfig:
    """The CIFAR preset for ``epochs`` epochs, lr decay at 80 % and 90 % of them,
    evaluated once at the end; imbalance = 5000 / 500."""
    decay = (round(0.8 * epochs), round(0.9 * epochs))
    return make_config(DATASET, method, imbalance=max(TOY_COUNTS) / min(TOY_COUNTS), seed=seed, epochs=epochs,
                       decay_epochs=decay, eval_every=epochs)


@torch.no_grad()
def cosines(model: nn.Module, images: torch.Tensor, augment: GPUAugment, device: torch.device,
            batch: int = 500) -> np.ndarray:
    """cos(theta_j) between each image's penultimate feature f and each class
    anchor w_j (eq. 5), (N, C); for a linear head w_j is its weight row (the bias
    is left out), for the cosine head the head computes exactly this."""
    model.eval()
    w = nn.functional.normalize(model.head.weight.float(), dim=1)
    out = []
    for start in range(0, len(images), batch):
        x = augment.normalize(images[start:start + batch].to(device))
        f = nn.functional.normalize(model.features(x).float(), dim=1)
        out.append((f @ w.T).cpu())
    return torch.cat(out).double().numpy()


def angles_decidegrees(cos: np.ndarray) -> list[list[int]]:
    """Angles arccos(cos) in tenths of a degree, one list per class anchor."""
    deg = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    return np.rint(deg * 10).astype(int).T.tolist()


def _provenance(device: torch.device) -> dict[str, Any]:
    commit, dirty = git_state()
    return {"git_commit": commit, "git_dirty": dirty, "device": device_name(device),
            "torch_version": torch.__version__, "command": "python -m kps.toy " + " ".join(sys.argv[1:])}


def run(data: LTData, method: str, device: torch.device, epochs: int, seed: int) -> dict[str, Any]:
    """Train one loss on the toy data (the epochs of ``Trainer.fit``, without
    its run record, which is for the 10/100-class configurations of the
    tables) and return its angles and test errors."""
    provenance = _provenance(device)  # the code as loaded now, before HEAD can move during the run
    trainer = Trainer(toy_config(method, epochs, seed), data, device, num_workers=0)
    started, t0 = datetime.now(timezone.utc).isoformat(timespec="seconds"), time.perf_counter()
    losses = [trainer.train_epoch(epoch, trainer.epoch_indices()) for epoch in range(epochs)]
    wall = time.perf_counter() - t0
    result = trainer.evaluate()
    accuracy = 100.0 * result["correct"] / result["total"]
    spec = DATASETS[data.name]
    augment = GPUAugment(spec.mean, spec.std)
    return {
        "config": trainer.config.to_dict(),
        "top1_error": float(100.0 - 100.0 * result["correct"].sum() / result["total"].sum()),
        "per_class_accuracy": accuracy.round(2).tolist(),
        "train_loss": [round(v, 5) for v in losses],
        "wall_time_s": round(wall, 1),
        "started_at": started,
        **provenance,
        "train_angles": angles_decidegrees(cosines(trainer.model, data.train.images, augment, device)),
        "test_angles": angles_decidegrees(cosines(trainer.model, data.test.images, augment, device)),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kps.toy", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default="data")
    p.add_argument("--out", default="results/toy/fig5.json")
    p.add_argument("--device", default="auto")
    p.add_argument("--epochs", type=int, default=TOY_EPOCHS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", nargs="+", default=list(TOY_METHODS), choices=TOY_METHODS)
    p.add_argument("--force", action="store_true", help="retrain methods already in --out")
    args = p.parse_args(argv)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    out = Path(args.out)
    data = build_dataset(DATASET, args.data_root, None, seed=args.seed, classes=TOY_CLASSES, counts=TOY_COUNTS)
    result: dict[str, Any] = {
        "kind": "fig5_toy", "dataset": DATASET, "dataset_label": data.label,
        "classes": [CIFAR10_CLASSES[c] for c in TOY_CLASSES], "train_counts": list(data.counts),
        "angle_unit": "0.1 degree", "train_labels": data.train.targets.tolist(),
        "test_labels": data.test.targets.tolist(), "runs": {},
    }
    if out.exists() and not args.force:
        previous = json.loads(out.read_text())
        if previous.get("train_labels") == result["train_labels"]:
            result["runs"] = previous["runs"]
    for method in args.methods:
        if method in result["runs"] and result["runs"][method]["config"]["epochs"] == args.epochs:
            print(f"{method}: in {out} already (--force retrains)")
            continue
        result["runs"][method] = run(data, method, device, args.epochs, args.seed)
        atomic_write_text(out, json.dumps(result, separators=(",", ":")) + "\n")  # after each loss
        r = result["runs"][method]
        print(f"{method}: test error {r['top1_error']:.2f} %, {r['wall_time_s'] / 60:.1f} min -> {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
