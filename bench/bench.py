"""Throughput of a reference-style CIFAR-LT trainer against the kps fast path (issue 6).

One process, one device, the same long-tailed training set (CIFAR-10 (JPEG copy)
at imbalance 100 by default) and the same model and loss (ResNet-32 with the
cosine head, the KPS loss of eq. 15 with the eqs. 26-30 parameters):

* ``reference``: as the LDAM-DRW / KPS reference scripts train: a torch
  DataLoader over the decoded uint8 images (HWC numpy -> PIL) with CPU
  torchvision transforms (RandomCrop(32, padding=4), RandomHorizontalFlip,
  ToTensor, Normalize), shuffle, ``--workers`` worker processes (the reference
  uses 4), pinned memory, fp32, batch 64, SGD (momentum 0.9, weight decay
  2e-4); per step ``loss.item()`` and the top-1 count read back, as the
  reference's meters do; validation through a DataLoader of batch 100.
* ``fast_<compile mode>``: :class:`kps.train.Trainer` itself (its
  ``train_epoch`` and ``evaluate``, the code every run goes through) with the
  switches of ``kps.configs.fast_path(device type)`` (the ones measured fastest:
  channels_last on CPU; on CUDA also fused SGD and bf16 autocast) and the given
  ``torch.compile`` mode ("none" = eager): data resident on the device as uint8,
  augmentation there (:class:`kps.data.GPUAugment`).
* ``stacked`` (``--stack S``): S copies of one run (the same configuration and
  seed 0, so one data stream) trained as one network (:class:`kps.stack.Stack`:
  their ResNet-32 bodies side by side along the channels, one kernel for all S,
  as ``python -m kps train-grid --stack S`` trains runs of equal stack key), in
  ``--parallel-mode`` (default fast_path's): the time of a round (every copy one
  epoch, training + evaluation), aggregate rates of the S runs (not one run's
  speed) against one run alone and the reference, and each copy's training loss
  per epoch beside the same run's alone (``train_loss_vs_alone``: the largest
  difference; the same computation up to the order of floating-point sums).
* ``processes`` (``--processes P``): P separate processes (this script with
  ``--child``), each training one such run alone in ``--parallel-mode``, at once
  (as ``train-grid --jobs P`` runs P workers): each warms up, waits for the
  others, then times its epochs; the aggregate epoch rate is the sum of theirs.

On a GPU the last two (and the grid plan bench/grid.py draws from them) are
unmeasured so far; on CPU they are checked by tests/test_bench.py.

Each trainer runs ``--warmup-epochs`` untimed epochs (train + evaluation; the
compilation happens there and is reported as ``compile_overhead_s``), then
``--epochs`` timed epochs, each a training pass and an evaluation pass as in
Algorithm 1 with evaluation every epoch.  Reported: seconds per training pass,
training images/s, seconds per evaluation pass, their sum per epoch, the
projected wall time of a full run of the preset's epochs, the ratios against
the reference, and FLOPs: counted with ``torch.utils.flop_counter.FlopCounterMode``
(convolutions and matrix products) on one batch, forward + backward for
training and forward for evaluation, times the images per epoch; divided by
the time they took and by the card's dense bf16 peak (vendor datasheet; both
assumed peak and device name are recorded, together with a measured bf16
matrix-product rate).

GPU runs write ``bench/results/<device-slug>-<date>.json``; CPU runs are checks
and must name their own output (``--out``), never under ``bench/results``.
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
from kps.data import DATASETS, LTData, TensorSplit  # noqa: E402
from kps.env import device_name, git_state  # noqa: E402
from kps.io import atomic_write_text  # noqa: E402
from kps.losses import make_loss  # noqa: E402
from kps.models import make_model  # noqa: E402
from kps.schedules import learning_rate  # noqa: E402
from kps.stack import Stack  # noqa: E402
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
    "time_stacked",
    "time_processes",
    "fast_config",
    "loss_agreement",
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

    name = "reference"

    def __init__(self, config: RunConfig, data: LTData, device: torch.device, workers: int) -> None:
        self.config, self.device = config, device
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

    def __init__(self, config: RunConfig, data: LTData, device: torch.device) -> None:
        self.name = f"fast_{config.compile}"
        self.trainer = Trainer(config, data, device)
        self.n_test = len(data.test)
        self.losses: list[float] = []  # mean training loss per epoch: the modes must agree (same seed)

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


def _rounds(rounds: list[float], runs: int, warmup_epochs: int, n_train: int) -> dict[str, Any]:
    """The rates of ``runs`` runs that each train one epoch per round of ``rounds`` seconds:
    the median over the timed rounds, aggregate epochs/s and training images/s (which
    count the evaluation time too)."""
    median = statistics.median(rounds[warmup_epochs:])
    return {"runs": runs, "warmup_epochs": warmup_epochs, "round_s": rounds, "round_s_median": median,
            "epochs_per_s": runs / median, "train_images_per_s": runs * n_train / median}


def time_stacked(config: RunConfig, data: LTData, device: torch.device, *, runs: int, epochs: int,
                 warmup_epochs: int, limit_steps: int | None = None,
                 log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """``runs`` copies of ``config`` (seed 0 each, so one data stream) trained as one
    network (:class:`kps.stack.Stack`) for ``warmup_epochs + epochs`` epochs, each a
    training pass and an evaluation pass; the time of each such round, the aggregate
    rates and every copy's training loss per epoch."""
    if runs < 2 or epochs < 1 or warmup_epochs < 0:
        raise ValueError(f"need runs >= 2, epochs >= 1 and warmup_epochs >= 0, got {runs}, {epochs}, {warmup_epochs}")
    total = warmup_epochs + epochs
    trainers = [Trainer(replace(config, seed=0, epochs=total), data, device) for _ in range(runs)]
    stack = Stack(trainers)
    rounds, losses = [], [[] for _ in range(runs)]
    t_start = time.perf_counter()
    for epoch in range(total):
        indices = trainers[0].epoch_indices()
        if limit_steps is not None:
            indices = indices[: limit_steps * config.batch_size]
        _sync(device)
        t0 = time.perf_counter()
        loss = stack.train_epoch(epoch, indices)
        stack.evaluate()
        _sync(device)
        rounds.append(time.perf_counter() - t0)
        for run, value in zip(losses, loss.tolist()):
            run.append(value)
        log(f"stacked x{runs} ({config.compile}): round {epoch}{' (warm-up)' if epoch < warmup_epochs else ''}: "
            f"{rounds[-1]:.3f} s")
    n_train = len(indices)
    return {**_rounds(rounds, runs, warmup_epochs, n_train), "compile": config.compile, "seeds": [0] * runs,
            "wall_s": time.perf_counter() - t_start, "train_losses": losses, "stacked_runs": [runs] * runs}


def time_processes(runs: int, child_args: Sequence[str], *, warmup_epochs: int, n_train: int,
                   log: Callable[[str], None] = lambda s: None, timeout_s: float = 900.0) -> dict[str, Any]:
    """``runs`` separate processes (``bench.py --child``, each loading the data itself and
    training one fast run of seed 0 alone) at once: after its warm-up each waits until all
    are warm, then times its epochs (training + evaluation).  Their epochs overlap, so the
    aggregate epoch rate is the sum of each process's (one over its median epoch)."""
    import subprocess
    import tempfile

    if runs < 2:
        raise ValueError(f"need runs >= 2 processes, got {runs}")
    with tempfile.TemporaryDirectory(prefix="kps-bench-") as folder:
        t_start = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *child_args,
                                   "--child", str(Path(folder) / str(k))]) for k in range(runs)]
        try:
            deadline, go = time.monotonic() + timeout_s, Path(folder) / "go"
            while not go.exists():
                if any(p.poll() not in (None, 0) for p in procs) or time.monotonic() > deadline:
                    raise RuntimeError(f"processes: a child failed or none got warm within {timeout_s:.0f} s "
                                       f"(exit statuses {[p.poll() for p in procs]})")
                if all((Path(folder) / f"{k}.ready").exists() for k in range(runs)):
                    go.touch()
                time.sleep(0.05)
            codes = [p.wait(timeout=max(deadline - time.monotonic(), 1.0)) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        if any(codes):
            raise RuntimeError(f"processes: children exited with {codes}")
        children = [json.loads((Path(folder) / f"{k}.json").read_text()) for k in range(runs)]
    medians = [statistics.median(c["epoch_s"]) for c in children]
    for k, m in enumerate(medians):
        log(f"processes x{runs} ({children[k]['compile']}): process {k}: {m:.3f} s per epoch")
    rate = sum(1 / m for m in medians)
    return {"runs": runs, "compile": children[0]["compile"], "warmup_epochs": warmup_epochs,
            "epoch_s": [c["epoch_s"] for c in children], "epoch_s_median": medians, "epochs_per_s": rate,
            "train_images_per_s": rate * n_train, "wall_s": time.perf_counter() - t_start,
            "train_losses": [c["train_losses"] for c in children]}


def _child(trainer: "FastTrainer", device: torch.device, prefix: str, *, epochs: int, warmup_epochs: int,
           limit_steps: int | None) -> None:
    """One process of :func:`time_processes`: warm up, say so (``prefix.ready``), wait for
    ``go`` beside it, time ``epochs`` epochs, write ``prefix.json``."""
    for epoch in range(warmup_epochs):
        trainer.train_epoch(epoch, limit_steps)
        trainer.evaluate()
    Path(prefix + ".ready").touch()
    go, deadline = Path(prefix).parent / "go", time.monotonic() + 900
    while not go.exists():  # the parent gives up after 900 s too
        if time.monotonic() > deadline:
            raise RuntimeError("no go from the parent within 900 s")
        time.sleep(0.02)
    times = [_timed(lambda: trainer.train_epoch(e, limit_steps) + trainer.evaluate(), device)[0]
             for e in range(warmup_epochs, warmup_epochs + epochs)]
    atomic_write_text(prefix + ".json", json.dumps({"epoch_s": times, "train_losses": trainer.losses,
                                                    "compile": trainer.trainer.config.compile}))

def loss_agreement(runs: Sequence[Sequence[float]], alone: Sequence[float]) -> dict[str, Any]:
    """How far the per-epoch training losses of ``runs`` (copies of one run) lie from
    the same run's ``alone``: the largest absolute and relative difference over every
    run and epoch (epochs both recorded); None for both where nothing compares."""
    pairs = [(x, a) for run in runs for x, a in zip(run, alone)]
    if not pairs or any(not (math.isfinite(x) and math.isfinite(a)) for x, a in pairs):
        return {"max_abs_diff": None, "max_rel_diff": None, "epochs_compared": 0}
    return {"max_abs_diff": max(abs(x - a) for x, a in pairs),
            "max_rel_diff": max(abs(x - a) / max(abs(a), 1e-12) for x, a in pairs),
            "epochs_compared": min(len(alone), min(len(run) for run in runs))}


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


def fast_config(base: RunConfig, device: torch.device, mode: str) -> RunConfig:
    """``base`` with the fast path's switches of ``device`` (kps.configs.fast_path) in compile ``mode``."""
    return replace(base, **{**fast_path(device.type), "compile": mode})


def run_benchmark(data: LTData, device: str | torch.device, *, imbalance: float, epochs: int = 3,
                  warmup_epochs: int = 1, limit_steps: int | None = None, workers: int = 4,
                  fast_modes: Sequence[str] | None = None, batch_size: int | None = None,
                  stack: int = 0, processes: int = 0, parallel_mode: str | None = None,
                  child_args: Sequence[str] | None = None, preset: str | None = None,
                  log: Callable[[str], None] = lambda s: None,
                  emit: Callable[[dict[str, Any]], None] = lambda doc: None) -> dict[str, Any]:
    """Time the reference-style trainer and the fast path in each compile mode of
    ``fast_modes`` (default: eager, and on CUDA also fast_path's mode) on ``data``
    (mini-batch ``batch_size``, default the preset's 64); with ``stack`` = S >= 2, S
    copies of one run stacked as one network, with ``processes`` = P >= 2, P separate
    processes of one run each (``child_args``: the bench.py options that load the same
    data), both in ``parallel_mode`` (default fast_path's) right after that mode alone.
    Returns the result document (module docstring).  ``emit`` receives the document after
    each measurement (``complete`` false until the last), so a job stopped during a long
    compilation keeps what was measured before it."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    fast_modes = list(fast_modes or ["none", *([fast_path("cuda")["compile"]] if cuda else [])])
    parallel_mode = parallel_mode or fast_path(device.type)["compile"]
    if limit_steps is not None and limit_steps < 1:
        raise ValueError(f"limit_steps must be >= 1, got {limit_steps}")
    for mode in [*fast_modes, parallel_mode]:
        if mode not in COMPILE_MODES:
            raise ValueError(f"unknown compile mode {mode!r}; valid: {', '.join(COMPILE_MODES)}")
    if len(set(fast_modes)) != len(fast_modes):
        raise ValueError(f"compile modes repeat: {list(fast_modes)}")
    if stack < 0 or stack == 1 or processes < 0 or processes == 1:
        raise ValueError(f"stack and processes need >= 2 runs (0: not measured), got {stack}, {processes}")
    if processes and child_args is None:
        raise ValueError("processes need child_args: the options that load the same data in a child")
    base = make_config(data.name, METHOD, imbalance=imbalance, seed=0, **({} if preset is None else {"preset": preset}),
                       **({} if batch_size is None else {"batch_size": batch_size}))
    data = _limit_test(data, limit_steps, base.batch_size)
    train_f, eval_f = flops_per_image(base.arch, data.num_classes, base.spec.head, base.batch_size,
                                      base.image_size, base.width)
    name = device_name(device)
    peak, peak_source = assumed_bf16_peak(name) if cuda else (None, "not a CUDA device")
    fast_configs = {mode: fast_config(base, device, mode) for mode in fast_modes}
    commit, dirty = git_state()
    now = datetime.now(timezone.utc)
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "complete": False,
        "device": name,
        "device_type": device.type,
        "date": now.date().isoformat(),
        "started_at": now.isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version() if cuda else None,
        "python_version": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "git_commit": commit or os.environ.get("KPS_GIT_COMMIT"),
        "git_dirty": dirty,
        "config": {
            "dataset": data.name, "dataset_label": data.label, "imbalance": imbalance, "method": METHOD,
            "arch": base.arch, "head": base.spec.head, "batch_size": base.batch_size, "preset": base.preset,
            "protocol": base.protocol, "width": base.width, "image_size": base.image_size,
            "threads": torch.get_num_threads(),
            "train_images": len(data.train), "test_images": len(data.test),
            "epochs_timed": epochs, "warmup_epochs": warmup_epochs, "limit_steps": limit_steps,
            "reference_workers": workers, "preset_epochs": base.preset_epochs,
            "fast_configs": {mode: c.to_dict() for mode, c in fast_configs.items()},
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
    common = dict(device=device, epochs=epochs, warmup_epochs=warmup_epochs, limit_steps=limit_steps,
                  flops_train=train_f, flops_eval=eval_f, preset_epochs=base.preset_epochs,
                  peak_tflops=peak, eval_every=base.eval_every, log=log)

    def record(key: str, timing: dict[str, Any], **about: Any) -> None:
        doc["trainers"][key] = dict(timing, **about)
        doc["ratios"] = _ratios(doc["trainers"])
        doc["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        emit(doc)

    def failed(key: str, err: Exception) -> None:
        """A measurement that raised: its error in the document, which stands without it."""
        log(f"{key}: FAILED: {type(err).__name__}: {err}")
        doc.setdefault("failed", {})[key] = f"{type(err).__name__}: {err}"
        emit(doc)

    reference = ReferenceTrainer(base, data, device, workers)
    record("reference", time_trainer(reference, **common), precision="fp32",
           data="DataLoader + CPU torchvision transforms", workers=workers, compile="none")
    del reference
    n_train = doc["trainers"]["reference"]["train_images_per_epoch"]

    def measure(key: str) -> None:
        """``stacked``: copies of one run as one network; ``processes``: one run per process."""
        try:
            if key == "stacked":
                result = time_stacked(fast_config(base, device, parallel_mode), data, device, runs=stack,
                                      epochs=epochs, warmup_epochs=warmup_epochs, limit_steps=limit_steps, log=log)
            else:
                result = time_processes(processes, [*child_args, "--fast-modes", parallel_mode],
                                        warmup_epochs=warmup_epochs, n_train=n_train, log=log)
        except Exception as err:  # as for a fast mode: recorded, the rest of the document stands
            failed(key, err)
            return
        ref, alone = doc["trainers"]["reference"], doc["trainers"].get(f"fast_{parallel_mode}")
        result["epoch_rate_vs_reference"] = ref["epoch_s"] * result["epochs_per_s"]
        result["epoch_rate_vs_alone"] = None if alone is None else alone["epoch_s"] * result["epochs_per_s"]
        result["train_loss_vs_alone"] = (None if alone is None or not alone.get("train_losses") else
                                         loss_agreement(result["train_losses"], alone["train_losses"]))
        agree = result["train_loss_vs_alone"]
        if agree and agree["max_rel_diff"] is not None:
            log(f"{key}: losses of the {result['runs']} runs vs alone: at most {agree['max_rel_diff']:.2e} apart "
                f"(relative), {agree['max_abs_diff']:.2e} (absolute)")
        doc[key] = result
        emit(doc)

    # right after their mode alone (a job cut off later still has them)
    pending = [key for key, runs in (("stacked", stack), ("processes", processes)) if runs > 0]
    for mode, config in fast_configs.items():
        try:
            trainer = FastTrainer(config, data, device)
            timing = time_trainer(trainer, **common)
        except Exception as err:  # one mode failing leaves the others measured
            failed(f"fast_{mode}", err)
        else:
            record(f"fast_{mode}", timing, precision="bf16 autocast" if config.bf16 else "fp32",
                   data="device-resident uint8 + kps.data.GPUAugment", compile=mode)
        finally:
            trainer = None
        if mode == parallel_mode:
            for key in pending:
                measure(key)
            pending = []
    for key in pending:
        measure(key)
    doc["complete"] = True
    emit(doc)
    return doc


# --------------------------------------------------------------------------- output


def output_path(result: dict[str, Any], out: str | Path | None, out_dir: str | Path | None) -> Path:
    """``out``, or ``<out_dir>/<device-slug>-<date>[-k].json`` (first free name).
    CPU results must name ``out`` or ``out_dir``; under bench/results only those of a
    reduced protocol (the CPU-scale one is made for this CPU), never the paper's."""
    if out is not None and out_dir is not None:
        raise ValueError("give --out or --out-dir, not both")
    if out is not None:
        path = Path(out)
    else:
        if out_dir is None and result["device_type"] != "cuda":
            raise ValueError("a CPU run is a check, not a result: give --out FILE (outside bench/results)")
        folder = Path(out_dir) if out_dir is not None else RESULTS_DIR
        stem = f"{device_slug(result['device'])}-{result['date']}"
        path, k = folder / f"{stem}.json", 2
        while path.exists():
            path, k = folder / f"{stem}-{k}.json", k + 1
    paper = result.get("config", {}).get("protocol", "paper") == "paper"
    if result["device_type"] != "cuda" and paper and path.resolve().is_relative_to(RESULTS_DIR.resolve()):
        raise ValueError(f"{path}: of the paper's protocol only GPU-made results go under {RESULTS_DIR}; "
                         "write CPU checks elsewhere (or bench the CPU-scale protocol: --preset cifar10_lt_small)")
    return path


def write_result(result: dict[str, Any], path: str | Path) -> Path:
    """Write ``result`` as JSON atomically (kps.io)."""
    return atomic_write_text(path, json.dumps(result, indent=1, sort_keys=True, allow_nan=False) + "\n")


def _summary(result: dict[str, Any]) -> str:
    rows = [f"{'trainer':<16} {'train img/s':>12} {'s/epoch':>9} {'eval s':>8} {'run s':>8} {'TFLOP/s':>8} "
            f"{'x ref':>7}"]
    ref = result["trainers"]["reference"]
    for key, r in result["trainers"].items():
        rows.append(f"{key:<16} {r['train_images_per_s']:>12.0f} {r['epoch_s']:>9.3f} {r['eval_s_per_epoch']:>8.3f} "
                    f"{r['projected_run_s'] or math.nan:>8.1f} {r['achieved_tflops']:>8.3f} "
                    f"{r['train_images_per_s'] / ref['train_images_per_s']:>7.2f}")
    for key, what in (("stacked", "copies of one run as one network"), ("processes", "separate processes")):
        t = result.get(key)
        if t:
            vs = t.get("epoch_rate_vs_alone")
            agree = (t.get("train_loss_vs_alone") or {}).get("max_rel_diff")
            rows.append(f"{key}: {t['runs']} {what} ({t['compile']}), {t['epochs_per_s']:.2f} epochs/s (aggregate), "
                        f"x{t['epoch_rate_vs_reference']:.2f} the reference's epoch rate"
                        + (f", x{vs:.2f} one run alone" if vs else "")
                        + (f"; losses within {agree:.1e} (relative) of the run alone" if agree is not None else ""))
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/bench.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="cuda, cpu or auto (cuda if present)")
    p.add_argument("--dataset", default="cifar10-jpeg")
    p.add_argument("--imbalance", type=float, default=100.0)
    p.add_argument("--data-root", default=str(REPO / "data"))
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per trainer (default 3)")
    p.add_argument("--warmup-epochs", type=int, default=1, help="untimed epochs first (default 1)")
    p.add_argument("--limit-steps", type=int, help="at most N training batches per epoch (quick checks)")
    p.add_argument("--workers", type=int, default=4, help="reference DataLoader workers (reference: 4)")
    p.add_argument("--batch-size", type=int, help="mini-batch of both trainers (default: the preset's, 64)")
    p.add_argument("--fast-modes", help="comma-separated torch.compile modes of the fast path "
                                        "(default: none, and on CUDA also kps.configs.fast_path's)")
    p.add_argument("--stack", type=int, default=0, metavar="S",
                   help="also time S copies of one run stacked as one network (kps.stack; default 0: not)")
    p.add_argument("--processes", type=int, default=0, metavar="P",
                   help="also time P separate processes of one run each, at once (default 0: not)")
    p.add_argument("--parallel-mode", help="compile mode of --stack and --processes (default: fast_path's)")
    p.add_argument("--child", help=argparse.SUPPRESS)  # one process of --processes: its file prefix
    p.add_argument("--preset", help="the preset of both trainers (default: the dataset's Table 2 preset; "
                                    "cifar10_lt_small: the CPU-scale protocol)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's; 1 for a one-core measurement)")
    p.add_argument("--out", help="result file (required on CPU)")
    p.add_argument("--out-dir", help="folder for <device-slug>-<date>.json (default bench/results on CUDA)")
    args = p.parse_args(argv)

    def log(message: str) -> None:
        print(f"[bench {datetime.now(timezone.utc):%H:%M:%S}] {message}", flush=True)

    try:
        device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                              else ("cpu" if args.device == "auto" else args.device))
        if device.type != "cuda" and args.out is None and args.out_dir is None and not args.child:
            raise ValueError("a CPU run is a check, not a result: give --out FILE (outside bench/results)")
        modes = [m.strip() for m in (args.fast_modes or "").split(",") if m.strip()] or None
        t0 = time.perf_counter()
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        base = make_config(args.dataset, METHOD, imbalance=args.imbalance,
                           **({} if args.preset is None else {"preset": args.preset}))
        data = load_data(base, args.data_root)  # at the preset's image size
        log(f"{data.label}: {len(data.train)} training, {len(data.test)} test images "
            f"({time.perf_counter() - t0:.1f} s to load)")
        if args.child:  # one process of --processes (its parent checks what it writes)
            base = make_config(args.dataset, METHOD, imbalance=args.imbalance, seed=0,
                               **({} if args.preset is None else {"preset": args.preset}),
                               **({} if args.batch_size is None else {"batch_size": args.batch_size}))
            trainer = FastTrainer(fast_config(base, device, modes[0]), _limit_test(data, args.limit_steps,
                                                                                  base.batch_size), device)
            _child(trainer, device, args.child, epochs=args.epochs, warmup_epochs=args.warmup_epochs,
                   limit_steps=args.limit_steps)
            return 0
        # what a child of --processes needs to load the same data
        child_args = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                      if k in ("device", "dataset", "imbalance", "data_root", "epochs", "warmup_epochs", "limit_steps",
                               "batch_size", "preset", "threads") and v is not None]
        target: list[Path] = []

        def emit(doc: dict[str, Any]) -> None:  # after each trainer, to one file chosen at the first
            if not target:
                target.append(output_path(doc, args.out, args.out_dir))
            write_result(doc, target[0])

        result = run_benchmark(data, device, imbalance=args.imbalance, epochs=args.epochs, preset=args.preset,
                               warmup_epochs=args.warmup_epochs, limit_steps=args.limit_steps,
                               workers=args.workers, fast_modes=modes, batch_size=args.batch_size,
                               stack=args.stack, processes=args.processes, parallel_mode=args.parallel_mode,
                               child_args=child_args, log=log, emit=emit)
        path = target[0]
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    log(f"wrote {path}\n{_summary(result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
