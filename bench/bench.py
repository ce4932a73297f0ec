"""Throughput of a reference-style CIFAR-LT trainer against the kps trainer, on one device.

One process, one device, the same long-tailed training set (CIFAR-10 (JPEG copy)
at imbalance 100 by default), the same preset (default: the dataset's Table 2 one,
ResNet-32 at 32 px, batch 64) and the same model and loss (ResNet-32 with the
cosine head, the KPS loss of eq. 15 with the eqs. 26-30 parameters).  The
contenders, named on the command line (``--contenders``):

* ``reference``: as the LDAM-DRW / KPS reference scripts train: a torch
  DataLoader over the decoded uint8 images (HWC numpy -> PIL) with CPU
  torchvision transforms (RandomCrop(32, padding=4), RandomHorizontalFlip,
  ToTensor, Normalize), shuffle, ``--workers`` worker processes (the reference
  uses 4), pinned memory, fp32, SGD (momentum 0.9, weight decay 2e-4); per step
  ``loss.item()`` and the top-1 count read back, as the reference's meters do;
  validation through a DataLoader of batch 100.
* ``<precision>[+<compile mode>]`` (``fp32``, ``bf16``, ``bf16+default``,
  ``bf16+reduce-overhead``, ...): :class:`kps.train.Trainer` itself (its
  ``train_epoch`` and ``evaluate``, the code every run goes through) with the
  device's fast-path switches (:func:`kps.configs.fast_path`: channels_last; on
  CUDA also fused SGD), fp32 or bf16 autocast of the backbone, eager or under that
  ``torch.compile`` mode: data resident on the device as uint8, augmentation
  there (:class:`kps.data.GPUAugment`).  A bf16 contender on a CPU without bf16
  units (:func:`kps.env.cpu_bf16_units`) is skipped, and the file says why.

Default contenders (:data:`CONTENDERS`): on a CPU the reference, fp32, bf16 and bf16
under torch.compile "default"; on CUDA the reference, bf16 eager and bf16 under
"reduce-overhead" (fast_path's).

Each contender runs ``--warmup-epochs`` untimed epochs (train + evaluation; the
compilation happens there and is reported apart, as ``compile_overhead_s``), then
``--epochs`` timed epochs, each a training pass and an evaluation pass.  Reported
per contender: seconds per training pass, training images/s, seconds per
evaluation pass of the whole test set (so that an evaluation cadence can be
chosen), the projected wall time of a full run of the preset's epochs at the
preset's cadence, the ratios against the reference, and FLOPs: counted with
``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products) on
one batch, forward + backward for training and forward for evaluation, times the
images per epoch; divided by the time they took and by the card's dense bf16 peak
(vendor datasheet; both assumed peak and device name are recorded, together with a
measured bf16 matrix-product rate).

GPU runs write ``bench/results/<device-slug>-<date>.json`` by default; CPU runs name
their output (``--out FILE`` or ``--out-dir FOLDER``); a run with ``--limit-steps`` is
a check and never goes under ``bench/results``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import re
import statistics
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

REPO = Path(__file__).resolve().parent.parent
if importlib.util.find_spec("kps") is None:  # run as a script without kps installed
    sys.path.insert(0, str(REPO))

from kps.batches import augment_for, load_data  # noqa: E402
from kps.configs import COMPILE_MODES, RunConfig, fast_path, make_config  # noqa: E402
from kps.data import LTData, TensorSplit  # noqa: E402
from kps.datasets import DATASETS  # noqa: E402
from kps.env import BF16_CPU_FLAGS, cpu_bf16_units, device_name, git_state  # noqa: E402
from kps.io import atomic_write_text  # noqa: E402
from kps.losses import make_loss  # noqa: E402
from kps.models import make_model  # noqa: E402
from kps.schedules import learning_rate  # noqa: E402
from kps.train import Trainer, loss_options  # noqa: E402

__all__ = [
    "SCHEMA",
    "ReferenceCIFAR",
    "ReferenceTrainer",
    "FastTrainer",
    "flops_per_image",
    "assumed_bf16_peak",
    "device_slug",
    "time_trainer",
    "CONTENDERS",
    "contender_config",
    "run_benchmark",
    "output_path",
    "write_result",
    "main",
]

SCHEMA = "kps-bench/1"
RESULTS_DIR = REPO / "bench" / "results"
METHOD = "kps"                # eq. 15 loss, cosine head: the same for both trainers
REFERENCE_EVAL_BATCH = 100    # the reference scripts' validation batch

# Dense (no sparsity) bf16 tensor-core peaks from the vendor datasheets, TFLOP/s,
# matched against torch.cuda.get_device_name in order.
BF16_DENSE_PEAKS: tuple[tuple[str, float, str], ...] = (
    ("H100 PCIe", 756.0, "NVIDIA H100 PCIe datasheet, BF16 dense"),
    ("H100", 989.4, "NVIDIA H100 SXM datasheet, BF16 dense (1979 with sparsity)"),
    ("H200", 989.4, "NVIDIA H200 SXM datasheet, BF16 dense (same chip as H100 SXM)"),
)


# --------------------------------------------------------------------------- reference-style trainer


class ReferenceCIFAR(Dataset):
    """A CIFAR split as the reference code holds it: uint8 HWC arrays, each image
    turned into a PIL image and passed through ``transform`` on access."""

    def __init__(self, split: TensorSplit, transform: Callable) -> None:
        self.images = np.ascontiguousarray(split.images.permute(0, 2, 3, 1).cpu().numpy())
        self.targets = split.targets.cpu().numpy().astype(np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[index])), int(self.targets[index])


def reference_transforms(mean: Sequence[float], std: Sequence[float], size: int = 32,
                         padding: int = 4) -> tuple[Callable, Callable]:
    """(train, test) transforms of the reference CIFAR-LT scripts (Sec. 4.2.1); ``size``
    and ``padding`` those of the trainer (kps.train's, scaled with the image size)."""
    train = transforms.Compose([transforms.RandomCrop(size, padding=padding), transforms.RandomHorizontalFlip(),
                                transforms.ToTensor(), transforms.Normalize(mean, std)])
    test = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
    return train, test


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class ReferenceTrainer:
    """One epoch at a time as the LDAM-DRW / KPS reference scripts train (fp32,
    DataLoader with CPU transforms, per-step host read-back of loss and accuracy)."""

    def __init__(self, config: RunConfig, data: LTData, device: torch.device, workers: int,
                 name: str = "reference") -> None:
        self.name, self.config, self.device = name, config, device
        self.losses: list[float] = []  # mean training loss per epoch (the reference AverageMeter)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # as cifar_train.py of LDAM-DRW does
        spec = DATASETS[data.name]
        augment = augment_for(data)  # the same crop and padding as the trainer's
        train_tf, test_tf = reference_transforms(spec.mean, spec.std, augment.crop, augment.pad)
        pin = device.type == "cuda"
        self.train_loader = DataLoader(ReferenceCIFAR(data.train, train_tf), batch_size=config.batch_size,
                                       shuffle=True, num_workers=workers, pin_memory=pin)
        self.test_loader = DataLoader(ReferenceCIFAR(data.test, test_tf), batch_size=REFERENCE_EVAL_BATCH,
                                      shuffle=False, num_workers=workers, pin_memory=pin)
        torch.manual_seed(config.seed)
        self.model = make_model(config.arch, data.num_classes, head=config.spec.head, width=config.width).to(device)
        self.criterion = make_loss(config.spec.loss, data.counts, **loss_options(config)).to(device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=config.lr, momentum=config.momentum,
                                         weight_decay=config.weight_decay)

    def train_epoch(self, epoch: int, limit_steps: int | None) -> int:
        """One shuffled pass (at most ``limit_steps`` batches); returns the images seen."""
        c = self.config
        lr = learning_rate(epoch, base_lr=c.lr, warmup_epochs=c.warmup_epochs, decay_epochs=c.decay_epochs,
                           decay_ratio=c.decay_ratio, style=c.lr_style)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        seen, loss_sum, correct = 0, 0.0, 0
        for step, (x, y) in enumerate(self.train_loader):
            if limit_steps is not None and step >= limit_steps:
                break
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            output = self.model(x)
            loss = self.criterion(output, y)
            loss_sum += loss.item() * len(y)                       # the reference's AverageMeter
            correct += int((output.argmax(1) == y).sum().item())   # its top-1 meter
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            seen += len(y)
        _sync(self.device)
        self.losses.append(loss_sum / max(seen, 1))
        return seen

    @torch.no_grad()
    def evaluate(self) -> int:
        """One pass over the test loader; returns the images evaluated."""
        self.model.eval()
        seen = correct = 0
        for x, y in self.test_loader:
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            correct += int((self.model(x).argmax(1) == y).sum().item())
            seen += len(y)
        return seen


class FastTrainer:
    """kps.train.Trainer's own epoch and evaluation (the fast path of every run)."""

    def __init__(self, config: RunConfig, data: LTData, device: torch.device, name: str) -> None:
        self.name = name
        self.trainer = Trainer(config, data, device)
        self.n_test = len(data.test)
        self.losses: list[float] = []  # mean training loss per epoch (same seed and data order in every contender)

    def train_epoch(self, epoch: int, limit_steps: int | None) -> int:
        indices = self.trainer.epoch_indices()
        if limit_steps is not None:
            indices = indices[: limit_steps * self.trainer.config.batch_size]
        loss = self.trainer.train_epoch(epoch, indices)  # returns a float: the device is synchronised
        self.losses.append(loss)
        if not math.isfinite(loss):
            raise RuntimeError(f"{self.name}: training loss became {loss} in epoch {epoch}")
        return len(indices)

    def evaluate(self) -> int:
        self.trainer.evaluate()
        return self.n_test


# --------------------------------------------------------------------------- measurements


def flops_per_image(arch: str, num_classes: int, head: str, batch: int, size: int = 32,
                    width: int = 16) -> tuple[float, float]:
    """(training FLOPs, evaluation FLOPs) per image: FlopCounterMode over one batch
    of ``batch`` ``size`` x ``size`` images, forward + backward and forward only, on the
    meta device (shapes only, nothing computed)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = make_model(arch, num_classes, head=head, width=width).to("meta")
    x = torch.empty(batch, 3, size, size, device="meta")
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    train = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return train / batch, counter.get_total_flops() / batch


def assumed_bf16_peak(name: str) -> tuple[float | None, str]:
    """(dense bf16 peak in TFLOP/s, its source) for a CUDA device name; (None, why) otherwise."""
    for key, peak, source in BF16_DENSE_PEAKS:
        if key.lower() in name.lower():
            return peak, source
    return None, f"no datasheet peak recorded for {name!r}"


def measured_bf16_matmul_tflops(device: torch.device, n: int = 8192, repeats: int = 10) -> float | None:
    """The card's bf16 matrix-product rate as measured here (random n x n x n
    operands, mean of ``repeats`` after 3 warm-ups, CUDA events); None off CUDA."""
    if device.type != "cuda":
        return None
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        a @ b
    end.record()
    torch.cuda.synchronize(device)
    seconds = start.elapsed_time(end) / 1e3 / repeats
    return 2 * n**3 / seconds / 1e12


def device_slug(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    if not slug:
        raise ValueError(f"device name {name!r} gives an empty file name")
    return slug


def _timed(fn: Callable[[], int], device: torch.device) -> tuple[float, int]:
    _sync(device)
    t0 = time.perf_counter()
    n = fn()
    _sync(device)
    return time.perf_counter() - t0, n


def time_trainer(trainer: Any, device: torch.device, *, epochs: int, warmup_epochs: int,
                 limit_steps: int | None, flops_train: float, flops_eval: float,
                 preset_epochs: int, peak_tflops: float | None, eval_every: int = 1,
                 log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Warm-up epochs, then ``epochs`` timed epochs of (training pass, evaluation pass).
    The projected run trains ``preset_epochs`` and evaluates every ``eval_every``-th and the last."""
    if epochs < 1 or warmup_epochs < 0:
        raise ValueError(f"need epochs >= 1 and warmup_epochs >= 0, got {epochs}, {warmup_epochs}")
    warm_train, warm_eval, train_s, eval_s = [], [], [], []
    n_train = n_eval = 0
    for epoch in range(warmup_epochs + epochs):
        t_train, n_train = _timed(lambda: trainer.train_epoch(epoch, limit_steps), device)
        t_eval, n_eval = _timed(trainer.evaluate, device)
        warm = epoch < warmup_epochs
        (warm_train if warm else train_s).append(t_train)
        (warm_eval if warm else eval_s).append(t_eval)
        log(f"{trainer.name}: epoch {epoch}{' (warm-up)' if warm else ''}: train {t_train:.3f} s "
            f"({n_train} images), eval {t_eval:.3f} s ({n_eval} images)")
    train_med, eval_med = statistics.median(train_s), statistics.median(eval_s)
    epoch_s = train_med + eval_med
    achieved = (flops_train * n_train + flops_eval * n_eval) / epoch_s / 1e12
    overhead = sum(warm_train) + sum(warm_eval) - warmup_epochs * epoch_s
    return {
        "train_images_per_epoch": n_train,
        "eval_images_per_epoch": n_eval,
        "warmup_train_s": warm_train,
        "warmup_eval_s": warm_eval,
        "compile_overhead_s": overhead if warmup_epochs else None,
        "train_s": train_s,
        "eval_s": eval_s,
        "train_s_per_epoch": train_med,
        "eval_s_per_epoch": eval_med,
        "epoch_s": epoch_s,
        "train_images_per_s": n_train / train_med,
        "eval_images_per_s": n_eval / eval_med,
        "projected_run_s": None if limit_steps else (preset_epochs * train_med + math.ceil(preset_epochs / eval_every)
                                                     * eval_med + max(overhead, 0.0)),
        "achieved_tflops": achieved,
        "train_achieved_tflops": flops_train * n_train / train_med / 1e12,
        "fraction_of_bf16_peak": None if peak_tflops is None else achieved / peak_tflops,
        "train_losses": list(getattr(trainer, "losses", [])),  # per epoch, warm-up included
    }


def _limit_test(data: LTData, limit_steps: int | None, batch: int) -> LTData:
    """With ``limit_steps``, keep an evenly strided ``limit_steps * batch`` test images."""
    n = len(data.test)
    if limit_steps is None or limit_steps * batch >= n:
        return data
    keep = torch.linspace(0, n - 1, limit_steps * batch).round().long()
    return replace(data, test=TensorSplit(data.test.images[keep], data.test.targets[keep]))


def _ratios(trainers: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Each fast trainer against the reference: images/s ratio and epoch-time ratio."""
    ref = trainers["reference"]
    return {
        f"{key}_vs_reference": {"train_images_per_s": r["train_images_per_s"] / ref["train_images_per_s"],
                                "epoch_s": ref["epoch_s"] / r["epoch_s"]}
        for key, r in trainers.items() if key != "reference"
    }


# The contenders timed when none are named: the paper protocol's trainers on one CPU core,
# and on CUDA the fast path's bf16 eager and under its compile mode.
CONTENDERS: dict[str, tuple[str, ...]] = {
    "cpu": ("reference", "fp32", "bf16", "bf16+default"),
    "cuda": ("reference", "bf16", "bf16+reduce-overhead"),
}
PRECISIONS = {"fp32": False, "bf16": True}  # contender word -> bf16 autocast


def contender_config(base: RunConfig, device: torch.device, name: str) -> RunConfig:
    """The trainer's config of contender ``name`` (``<fp32|bf16>[+<compile mode>]``):
    ``base`` with the device's fast-path switches, that precision and that compile
    mode ("none" when not named).  ValueError for a name of another form."""
    precision, plus, mode = name.partition("+")
    if precision not in PRECISIONS or (plus and mode not in COMPILE_MODES):
        raise ValueError(f"unknown contender {name!r}: give reference or <fp32|bf16>[+<compile mode>], "
                         f"compile modes: {', '.join(COMPILE_MODES)}")
    return replace(base, **{**fast_path(device.type), "bf16": PRECISIONS[precision], "compile": mode or "none"})


def unavailable(config: RunConfig, device: torch.device) -> str | None:
    """Why ``config`` cannot run on ``device`` (bf16 on a CPU without bf16 units), or None."""
    if config.bf16 and device.type == "cpu" and not cpu_bf16_units():
        return (f"bf16 needs a CPU with bf16 units ({' or '.join(BF16_CPU_FLAGS)}); "
                f"{device_name(device)} has none")
    return None


def _document(base: RunConfig, data: LTData, device: torch.device, *, epochs: int, warmup_epochs: int,
              limit_steps: int | None, workers: int, configs: dict[str, RunConfig]) -> dict[str, Any]:
    """The result document before any contender ran: where, what, the FLOPs and the peak."""
    cuda = device.type == "cuda"
    train_f, eval_f = flops_per_image(base.arch, data.num_classes, base.spec.head, base.batch_size,
                                      base.image_size, base.width)
    name = device_name(device)
    peak, peak_source = assumed_bf16_peak(name) if cuda else (None, "not a CUDA device")
    commit, dirty = git_state()
    now = datetime.now(timezone.utc)
    return {
        "schema": SCHEMA, "complete": False, "device": name, "device_type": device.type,
        "date": now.date().isoformat(), "started_at": now.isoformat(timespec="seconds"),
        "torch_version": torch.__version__, "cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version() if cuda else None,
        "python_version": platform.python_version(), "cpu_count": os.cpu_count(),
        "git_commit": commit or os.environ.get("KPS_GIT_COMMIT"), "git_dirty": dirty,
        "config": {
            "dataset": data.name, "dataset_label": data.label, "imbalance": base.imbalance, "method": METHOD,
            "arch": base.arch, "head": base.spec.head, "batch_size": base.batch_size, "preset": base.preset,
            "protocol": base.protocol, "width": base.width, "image_size": base.image_size,
            "threads": torch.get_num_threads(), "train_images": len(data.train), "test_images": len(data.test),
            "epochs_timed": epochs, "warmup_epochs": warmup_epochs, "limit_steps": limit_steps,
            "reference_workers": workers, "preset_epochs": base.preset_epochs, "eval_every": base.eval_every,
            "contenders": ["reference", *configs],
            "fast_configs": {name: c.to_dict() for name, c in configs.items()},
        },
        "flops": {
            "train_per_image": train_f, "eval_per_image": eval_f,
            "train_per_epoch": train_f * len(data.train), "eval_per_epoch": eval_f * len(data.test),
            "counter": "torch.utils.flop_counter.FlopCounterMode (convolutions, matrix products) on one batch "
                       f"of {base.image_size}x{base.image_size} images: forward+backward (train), forward (eval); "
                       "x images per epoch",
        },
        "peak": {"assumed_bf16_dense_tflops": peak, "source": peak_source,
                 "measured_bf16_matmul_tflops": measured_bf16_matmul_tflops(device)},
        "trainers": {},
        "ratios": {},
    }


def run_benchmark(data: LTData, device: str | torch.device, *, imbalance: float, epochs: int = 3,
                  warmup_epochs: int = 1, limit_steps: int | None = None, workers: int = 4,
                  contenders: Sequence[str] | None = None, batch_size: int | None = None,
                  preset: str | None = None, log: Callable[[str], None] = lambda s: None,
                  emit: Callable[[dict[str, Any]], None] = lambda doc: None) -> dict[str, Any]:
    """Time ``contenders`` (default :data:`CONTENDERS` of the device type) one after the
    other on ``data`` (mini-batch ``batch_size``, default the preset's) and return the
    result document (module docstring).  A contender that cannot run here is listed
    under ``skipped``, one that raises under ``failed``; the others stand.  ``emit``
    receives the document after each contender (``complete`` false until the last), so
    a job stopped during a long compilation keeps what was measured before it."""
    device = torch.device(device)
    names = list(contenders or CONTENDERS["cuda" if device.type == "cuda" else "cpu"])
    names = ["reference", *(n for n in names if n != "reference")]  # first: every ratio is against it
    if limit_steps is not None and limit_steps < 1:
        raise ValueError(f"limit_steps must be >= 1, got {limit_steps}")
    if len(set(names)) != len(names):
        raise ValueError(f"contenders repeat: {names}")
    base = make_config(data.name, METHOD, imbalance=imbalance, seed=0, **({} if preset is None else {"preset": preset}),
                       **({} if batch_size is None else {"batch_size": batch_size}))
    configs = {name: contender_config(base, device, name) for name in names if name != "reference"}
    data = _limit_test(data, limit_steps, base.batch_size)
    doc = _document(base, data, device, epochs=epochs, warmup_epochs=warmup_epochs, limit_steps=limit_steps,
                    workers=workers, configs=configs)
    flops = doc["flops"]
    common = dict(device=device, epochs=epochs, warmup_epochs=warmup_epochs, limit_steps=limit_steps,
                  flops_train=flops["train_per_image"], flops_eval=flops["eval_per_image"],
                  preset_epochs=base.preset_epochs, peak_tflops=doc["peak"]["assumed_bf16_dense_tflops"],
                  eval_every=base.eval_every, log=log)
    for name in names:
        config = configs.get(name)
        why = None if config is None else unavailable(config, device)
        if why is not None:
            log(f"{name}: skipped: {why}")
            doc.setdefault("skipped", {})[name] = why
            emit(doc)
            continue
        try:
            if config is None:
                timing = time_trainer(ReferenceTrainer(base, data, device, workers, name), **common)
                about = dict(precision="fp32", data="DataLoader + CPU torchvision transforms", workers=workers,
                             compile="none")
            else:
                timing = time_trainer(FastTrainer(config, data, device, name), **common)
                about = dict(precision="bf16 autocast" if config.bf16 else "fp32", compile=config.compile,
                             data="device-resident uint8 + kps.data.GPUAugment")
        except Exception as err:  # one contender failing leaves the others measured
            if name == "reference":
                raise
            log(f"{name}: FAILED: {type(err).__name__}: {err}")
            doc.setdefault("failed", {})[name] = f"{type(err).__name__}: {err}"
        else:
            doc["trainers"][name] = dict(timing, **about)
            doc["ratios"] = _ratios(doc["trainers"])
        doc["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        emit(doc)
    doc["complete"] = True
    emit(doc)
    return doc


# --------------------------------------------------------------------------- output


def output_path(result: dict[str, Any], out: str | Path | None, out_dir: str | Path | None) -> Path:
    """``out``, or ``<out_dir>/<device-slug>-<date>[-k].json`` (first free name; ``out_dir``
    defaults to bench/results on CUDA).  A CPU run names ``out`` or ``out_dir``; a run
    with ``limit_steps`` is a check and never goes under bench/results."""
    if out is not None and out_dir is not None:
        raise ValueError("give --out or --out-dir, not both")
    if out is not None:
        path = Path(out)
    else:
        if out_dir is None and result["device_type"] != "cuda":
            raise ValueError("a CPU run names its output: give --out FILE or --out-dir FOLDER "
                             "(--out-dir bench/results for a result to commit)")
        folder = Path(out_dir) if out_dir is not None else RESULTS_DIR
        stem = f"{device_slug(result['device'])}-{result['date']}"
        path, k = folder / f"{stem}.json", 2
        while path.exists():
            path, k = folder / f"{stem}-{k}.json", k + 1
    limited = result.get("config", {}).get("limit_steps") is not None
    if limited and path.resolve().is_relative_to(RESULTS_DIR.resolve()):
        raise ValueError(f"{path}: a run with --limit-steps is a check, not a result; write it outside {RESULTS_DIR}")
    return path


def write_result(result: dict[str, Any], path: str | Path) -> Path:
    """Write ``result`` as JSON atomically (kps.io)."""
    return atomic_write_text(path, json.dumps(result, indent=1, sort_keys=True, allow_nan=False) + "\n")


def _summary(result: dict[str, Any]) -> str:
    """The result as a table for the terminal: per contender images/s, s per training and
    evaluation pass, compile time, projected run (preset's cadence) and ratio."""
    rows = [f"{'contender':<22} {'train img/s':>12} {'train s':>9} {'eval s':>8} {'compile s':>9} {'run min':>8} "
            f"{'x ref':>7}"]
    ref = result["trainers"]["reference"]
    for key, r in result["trainers"].items():
        compile_s = r["compile_overhead_s"] if r["compile_overhead_s"] is not None else math.nan
        run_min = r["projected_run_s"] / 60 if r["projected_run_s"] is not None else math.nan
        rows.append(f"{key:<22} {r['train_images_per_s']:>12.0f} {r['train_s_per_epoch']:>9.2f} "
                    f"{r['eval_s_per_epoch']:>8.2f} {compile_s:>9.1f} {run_min:>8.1f} "
                    f"{r['train_images_per_s'] / ref['train_images_per_s']:>7.2f}")
    rows += [f"{key}: {why}" for part in ("skipped", "failed") for key, why in (result.get(part) or {}).items()]
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/bench.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="cuda, cpu or auto (cuda if present)")
    p.add_argument("--dataset", default="cifar10-jpeg")
    p.add_argument("--imbalance", type=float, default=100.0)
    p.add_argument("--data-root", default=str(REPO / "data"))
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per contender (default 3)")
    p.add_argument("--warmup-epochs", type=int, default=1, help="untimed epochs first (default 1)")
    p.add_argument("--limit-steps", type=int, help="at most N training batches per epoch (quick checks)")
    p.add_argument("--workers", type=int, default=4, help="reference DataLoader workers (reference: 4; 0 for one core)")
    p.add_argument("--batch-size", type=int, help="mini-batch of every contender (default: the preset's, 64)")
    p.add_argument("--contenders", help="comma-separated: reference, and <fp32|bf16>[+<compile mode>] for the kps "
                                        "trainer (default on CPU: " + ",".join(CONTENDERS["cpu"])
                                        + "; on CUDA: " + ",".join(CONTENDERS["cuda"]) + ")")
    p.add_argument("--preset", help="the preset of every contender (default: the dataset's Table 2 preset; "
                                    "cifar10_lt_small: the CPU-scale protocol)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's; 1 for a one-core measurement)")
    p.add_argument("--out", help="result file (a CPU run gives --out or --out-dir)")
    p.add_argument("--out-dir", help="folder for <device-slug>-<date>.json (default bench/results on CUDA)")
    args = p.parse_args(argv)

    def log(message: str) -> None:
        print(f"[bench {datetime.now(timezone.utc):%H:%M:%S}] {message}", flush=True)

    try:
        device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                              else ("cpu" if args.device == "auto" else args.device))
        if device.type != "cuda" and args.out is None and args.out_dir is None:
            raise ValueError("a CPU run names its output: give --out FILE or --out-dir FOLDER "
                             "(--out-dir bench/results for a result to commit)")
        contenders = [c.strip() for c in (args.contenders or "").split(",") if c.strip()] or None
        t0 = time.perf_counter()
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        base = make_config(args.dataset, METHOD, imbalance=args.imbalance,
                           **({} if args.preset is None else {"preset": args.preset}))
        for name in contenders or ():  # a misspelt contender fails before the data is loaded
            if name != "reference":
                contender_config(base, device, name)
        output_path({"device": device_name(device), "device_type": device.type,  # so does a refused output
                     "date": datetime.now(timezone.utc).date().isoformat(),
                     "config": {"limit_steps": args.limit_steps}}, args.out, args.out_dir)
        data = load_data(base, args.data_root)  # at the preset's image size
        log(f"{data.label}: {len(data.train)} training, {len(data.test)} test images "
            f"({time.perf_counter() - t0:.1f} s to load)")
        target: list[Path] = []

        def emit(doc: dict[str, Any]) -> None:  # after each contender, to one file chosen at the first
            if not target:
                target.append(output_path(doc, args.out, args.out_dir))
            write_result(doc, target[0])

        result = run_benchmark(data, device, imbalance=args.imbalance, epochs=args.epochs, preset=args.preset,
                               warmup_epochs=args.warmup_epochs, limit_steps=args.limit_steps,
                               workers=args.workers, contenders=contenders, batch_size=args.batch_size,
                               log=log, emit=emit)
        path = target[0]
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    log(f"wrote {path}\n{_summary(result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
