"""Algorithm 1 of the paper with the Table 2 settings, one code path for CPU,
GPU and DistributedDataParallel.

Per epoch (0-indexed):  lr from :func:`kps.schedules.learning_rate` (linear
warm-up, step decay), GA switched on from ``ga_switch_epoch`` (Algorithm 1,
lines 6-10: eq. 15 -> eq. 25), DRW class weights from ``drw_epoch``, then one
pass of SGD (momentum 0.9, no Nesterov, weight decay per preset) over a fresh
permutation of the training set, mixup (Zhang et al., alpha 1) where the
method asks.  Evaluation every ``eval_every`` epochs and after the last:
top-1 error under argmax cos(theta_j) (the paper's test rule; argmax of the
logits for linear heads) and, for KPS, under argmax r_j cos(theta_j) (eq. 13).

Data path: a :class:`kps.data.TensorSplit` (CIFAR) stays on the training
device as uint8 and is augmented there by :class:`kps.data.GPUAugment`; the
epoch permutation is drawn on the device.  Large-image datasets go through a
torch DataLoader over the same permutation.  The fast-path switches of the
config (``channels_last``, ``bf16`` autocast with the head and loss in
float32, ``fused_sgd``, ``compile``) change how, not what, is computed.
``compile`` compiles the whole forward + loss of a training step
(:meth:`Trainer.batch_loss`) and the evaluation forward, with static shapes
(``dynamic=False``); a batch of another size (the last, partial batch of an
epoch, which is kept as in the reference code) runs eagerly instead of
compiling a second graph.  "reduce-overhead" (GPU only) also captures those
graphs as CUDA graphs.  "cuda-graph" and "cuda-graph-compiled" (GPU only,
:mod:`kps.graphs`) capture the whole step instead: batch gather, augmentation,
forward, loss, backward and SGD, one replay per step.

Checkpoints (atomic; every ``checkpoint_every`` epochs, default 1, and after
the last) hold the model, the optimizer, every random state (CPU, data order,
augmentation, mixup; per rank) and the history, so ``resume=True`` continues a
killed run to the bit-identical result on CPU.  Beside each checkpoint a small
progress file (:func:`progress_path`, JSON, atomic, rewritten every epoch)
tells a watcher how far the run is without loading the checkpoint.

Host synchronisation: none per training step (the losses run without their
per-call value checks, the batch losses are summed on the device; the
progress bar, when shown, reads the loss every 20 steps); one per epoch for
the mean loss, which also detects divergence (NaN/inf -> TrainingDiverged).
An epoch is queued (:meth:`Trainer.submit_epoch`, :meth:`Trainer.submit_evaluation`)
and read back later (:meth:`Trainer.epochs`, a generator), so that one process can
train several runs side by side (:mod:`kps.together`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import subprocess
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from tqdm import tqdm  # plain text bar: notebooks here have no ipywidgets

from kps.configs import RunConfig, format_imbalance, setting_tag
from kps.data import DATASETS, GPUAugment, LTData, TensorSplit, build_dataset, downsample
from kps.graphs import GRAPH_MODES, ForwardGraph, StaticBatches, StepGraph
from kps.io import atomic_torch_save, atomic_write_text, check_writable_dir
from kps.losses import make_loss
from kps.models import make_model
from kps.params import kps_parameters
from kps.results import SCHEMA_VERSION, config_record_path, validate_record, write_record
from kps.schedules import drw_weights, ga_active, learning_rate

__all__ = [
    "TrainingDiverged",
    "TrainingInterrupted",
    "augment_for",
    "default_checkpoint_dir",
    "Trainer",
    "train",
    "train_grid",
    "checkpoint_path",
    "progress_path",
    "read_progress",
    "class_groups",
    "shot_masks",
    "device_name",
]

EVAL_BATCH = 1000
# torch.compile modes that record CUDA graphs (cudagraph trees: one memory pool per device and process)
CUDAGRAPH_COMPILE_MODES = ("reduce-overhead", "max-autotune")
# Config keys a resumed run may change: how long it runs and how fast.
RESUMABLE_CHANGES = ("epochs", "channels_last", "bf16", "fused_sgd", "compile")
SHOT_BOUNDS = (100, 20)  # many > 100 >= medium >= 20 > few (training images per class)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; ``where`` says at which epoch, and what the checkpoint holds."""

    def __init__(self, where: str) -> None:
        super().__init__(where)
        self.where = where


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


# --------------------------------------------------------------------------- metrics


def class_groups(counts: list[int] | np.ndarray) -> list[np.ndarray] | None:
    """Figs. 6-7: classes sorted by training count (most frequent first, ties by
    class index) split into 10 consecutive groups (one class each on CIFAR-10,
    10 classes each on CIFAR-100); None with fewer than 10 classes."""
    counts = np.asarray(counts)
    if len(counts) < 10:
        return None
    order = np.argsort(-counts, kind="stable")
    return np.array_split(order, 10)


def shot_masks(counts: list[int] | np.ndarray) -> dict[str, np.ndarray]:
    """many-shot (> 100 training images), medium (20-100), few (< 20)."""
    counts = np.asarray(counts)
    high, low = SHOT_BOUNDS
    return {"many": counts > high, "medium": (counts >= low) & (counts <= high), "few": counts < low}


def _error(correct: np.ndarray, total: np.ndarray, mask: np.ndarray) -> float | None:
    n = total[mask].sum()
    return None if n == 0 else float(100.0 * (1.0 - correct[mask].sum() / n))


def summarize(correct: np.ndarray, total: np.ndarray, counts: list[int]) -> dict[str, Any]:
    """Record fields from per-class test counts (percent): overall top-1 error,
    per-class accuracy, head/mid/tail (3/4/3 groups) and many/medium/few errors."""
    if np.any(total == 0):
        raise ValueError(f"the test set has no images of class(es) {np.flatnonzero(total == 0).tolist()}")
    groups = class_groups(counts)
    every = np.ones(len(counts), dtype=bool)
    if groups is None:
        per_group = None
        head_mid_tail = {"head": None, "mid": None, "tail": None}
    else:
        masks = [np.isin(np.arange(len(counts)), g) for g in groups]
        per_group = [_error(correct, total, m) for m in masks]
        join = lambda ms: np.logical_or.reduce(ms)  # noqa: E731
        head_mid_tail = {
            "head": _error(correct, total, join(masks[:3])),
            "mid": _error(correct, total, join(masks[3:7])),
            "tail": _error(correct, total, join(masks[7:])),
        }
    return {
        "top1_error": _error(correct, total, every),
        "per_class_accuracy": (100.0 * correct / total).tolist(),
        "group_errors": head_mid_tail,
        "per_group_errors": per_group,
        "shot_errors": {k: _error(correct, total, m) for k, m in shot_masks(counts).items()},
    }


# --------------------------------------------------------------------------- environment


def device_name(device: torch.device) -> str:
    """The GPU's name, or 'cpu (<processor>)'."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    processor = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                processor = line.split(":", 1)[1].strip()
                break
    return f"cpu ({processor})"


def git_state() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the code this process runs; dirty ignores results/ and
    bench/results/ (records written by runs).

    The environment's KPS_GIT_COMMIT, when set, names the commit: a copy of the
    tree (the GPU machine's) may carry no .git or a stale one (seen 2026-11-26: a
    copy of commit cf36c4a whose .git still said 65a4c88).  Dirty is then known only
    if git there agrees on that commit, else None.  Without KPS_GIT_COMMIT: git's
    HEAD and status, or (None, None) outside git."""
    root = Path(__file__).resolve().parent.parent
    declared = os.environ.get("KPS_GIT_COMMIT", "").strip() or None

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        status = git("status", "--porcelain", "--", ".", ":(exclude)results", ":(exclude)bench/results")
    except (OSError, subprocess.CalledProcessError):
        return declared, None
    if declared is not None and declared != commit:
        return declared, None
    return commit, bool(status.strip())


def default_checkpoint_dir(out: str | Path) -> Path:
    """Where a run's checkpoints go unless told: beside its record, in ``<out>/.checkpoints``
    (hidden, git-ignored), so that runs into different folders never share one."""
    return Path(out) / ".checkpoints"


def checkpoint_path(checkpoint_dir: str | Path, config: RunConfig) -> Path:
    """``<checkpoint_dir>/<dataset>/<method>/imb<ratio>/seed<k>[.<tag>].pt``, beside where
    the record goes (one file per run, replaced after every epoch)."""
    tag = setting_tag(config)
    name = f"seed{config.seed}.{tag}.pt" if tag else f"seed{config.seed}.pt"
    return Path(checkpoint_dir) / config.dataset / config.method / format_imbalance(config.imbalance) / name


def progress_path(checkpoint: str | Path) -> Path:
    """The progress file beside ``checkpoint``: ``seed0.pt`` -> ``seed0.progress.json``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.name.removesuffix(".pt") + ".progress.json")


def read_progress(checkpoint: str | Path) -> dict[str, Any] | None:
    """The progress of the run whose checkpoint is ``checkpoint``: {"next_epoch",
    "epochs", "elapsed_s", "checkpoint_next_epoch" (the next_epoch of the checkpoint
    on disk, None before the first)}; None if there is no readable progress file."""
    try:
        progress = json.loads(progress_path(checkpoint).read_text())
    except (OSError, ValueError):
        return None
    return progress if isinstance(progress, dict) and isinstance(progress.get("next_epoch"), int) else None


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun job (rank 0 of 1 without one)."""

    rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @staticmethod
    def current() -> "Distributed":
        if dist.is_available() and dist.is_initialized():
            return Distributed(dist.get_rank(), dist.get_world_size())
        return Distributed()


def init_distributed(device: str) -> tuple[Distributed, torch.device]:
    """Join the torchrun job described by the environment (WORLD_SIZE > 1):
    NCCL on CUDA (one GPU per local rank), gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = torch.device(device)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Distributed.current(), dev


# --------------------------------------------------------------------------- data sources


def shard(order: torch.Tensor, ctx: Distributed) -> torch.Tensor:
    """This rank's part of a permutation, as torch's DistributedSampler does it:
    pad by wrapping to a multiple of the world size, then every world_size-th index."""
    if ctx.world_size == 1:
        return order
    total = math.ceil(len(order) / ctx.world_size) * ctx.world_size
    padded = torch.cat([order, order[: total - len(order)]])
    return padded[ctx.rank : total : ctx.world_size]


class TensorBatches:
    """A TensorSplit dataset resident on the training device as uint8;
    batches augmented there (pad 4, crop 32, flip; Sec. 4.2.1) and normalised."""

    def __init__(self, data: LTData, device: torch.device, augment: GPUAugment) -> None:
        self.train = TensorSplit(data.train.images.to(device), data.train.targets.to(device))
        self.test = TensorSplit(data.test.images.to(device), data.test.targets.to(device))
        self.augment = augment
        self.generator_device = device

    def train_batches(self, indices: torch.Tensor, batch_size: int,
                      generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for chunk in indices.split(batch_size):
            yield self.augment(self.train.images[chunk], generator), self.train.targets[chunk]

    def test_batches(self, indices: torch.Tensor, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for chunk in indices.split(batch_size):
            yield self.augment.normalize(self.test.images[chunk]), self.test.targets[chunk]

    def static_batch(self, static: StaticBatches, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch k of ``static`` (k and the permutation read from the device), augmented:
        the input of a captured step."""
        idx = static.indices()
        return (self.augment(self.train.images.index_select(0, idx), generator),
                self.train.targets.index_select(0, idx))


class LoaderBatches:
    """A map-style dataset (ImageNet-LT, iNat) read by a DataLoader with CPU
    transforms, following the trainer's permutation; the DataLoader's generator
    (seeding its workers' augmentation) is the trainer's augmentation generator."""

    def __init__(self, data: LTData, device: torch.device, num_workers: int) -> None:
        self.train, self.test, self.device, self.num_workers = data.train, data.test, device, num_workers
        self.generator_device = torch.device("cpu")

    def _load(self, dataset, indices: torch.Tensor, batch_size: int, generator: torch.Generator | None):
        loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(dataset, indices.tolist()), batch_size=batch_size, shuffle=False,
            num_workers=self.num_workers, pin_memory=self.device.type == "cuda", generator=generator,
        )
        for x, y in loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def train_batches(self, indices, batch_size, generator):
        return self._load(self.train, indices.cpu(), batch_size, generator)

    def test_batches(self, indices, batch_size):
        return self._load(self.test, indices.cpu(), batch_size, None)


def _targets(split) -> torch.Tensor:
    return split.targets if isinstance(split, TensorSplit) else torch.as_tensor(split.targets)


def load_data(config: RunConfig, data_root: str | Path) -> LTData:
    """The long-tailed training set and the test set of ``config``, at its input size
    (small-image sets downsampled once, :func:`kps.data.downsample`)."""
    data = build_dataset(config.dataset, data_root, config.imbalance, seed=config.subset_seed)
    if isinstance(data.train, TensorSplit):
        data = downsample(data, config.image_size)
    return data


# --------------------------------------------------------------------------- model wrapper


class Scores(nn.Module):
    """model(x) -> class scores, with the backbone under bf16 autocast when asked
    and the head (cosines or logits) always in float32."""

    def __init__(self, model: nn.Module, bf16: bool) -> None:
        super().__init__()
        self.model, self.bf16 = model, bf16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # no autocast weight cache: CUDA graph capture forbids it, and each region
        # here is one forward, which uses every weight once
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16, cache_enabled=False):
            features = self.model.features(x)
        with torch.autocast(x.device.type, enabled=False):
            return self.model.head(features.float())


def _seed_of(*words: int) -> int:
    """A 63-bit seed derived from ``words`` (e.g. run seed, stream, rank) by numpy's SeedSequence."""
    return int(np.random.SeedSequence(list(words)).generate_state(1, dtype=np.uint64)[0] >> 1)


def make_optimizer(params, config: RunConfig, device: torch.device) -> torch.optim.SGD:
    kwargs = dict(lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                  nesterov=config.nesterov)
    if config.fused_sgd:
        try:
            return torch.optim.SGD(params, fused=True, **kwargs)
        except RuntimeError as err:  # fused kernels missing for this device type
            raise ValueError(f"fused SGD is not available on {device}: {err}") from err
    return torch.optim.SGD(params, **kwargs)


def match_momentum_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Give every SGD momentum buffer its parameter's memory layout (``load_state_dict``
    keeps a checkpoint's layout; fused SGD on CUDA needs equal strides)."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            buffer = optimizer.state.get(p, {}).get("momentum_buffer")
            if buffer is not None and buffer.stride() != p.stride():
                optimizer.state[p]["momentum_buffer"] = torch.empty_like(p).copy_(buffer)


def sgd_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """Backward ``loss`` into fresh gradients (None before: a captured backward
    allocates them in the graph's memory) and take the optimizer's step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def apply_lr(optimizer: torch.optim.Optimizer, lr: float, lr_tensor: torch.Tensor | None) -> None:
    """Set the epoch's learning rate; in graph modes (``lr_tensor``) refill the one
    device tensor the captured fused SGD reads."""
    if lr_tensor is not None:
        lr_tensor.fill_(lr)
    for group in optimizer.param_groups:
        group["lr"] = lr if lr_tensor is None else lr_tensor


def queue_epoch(runner: Any, source: TensorBatches | LoaderBatches, generator: torch.Generator,
                indices: torch.Tensor, n_train: int, size: int, loss_sum: torch.Tensor,
                on_step: Callable[[int, torch.Tensor], None] | None = None) -> tuple[torch.Tensor, int]:
    """Queue one pass over ``indices`` in batches of ``size`` for ``runner`` (a Trainer
    or a kps.stack.Stack: ``step``, ``step_graph``, ``static``, ``graph_key``): a whole
    epoch as replays of its step graph where it has one, the rest (all, or the last
    partial batch) eagerly, calling ``on_step(step, loss)``.  Returns ``loss_sum`` plus
    the batch losses times their sizes, and the number of images."""
    seen = 0
    if runner.step_graph is not None and len(indices) == n_train:  # a whole epoch: replays
        full = runner.static.start_epoch(indices)
        runner.step_graph.run(runner.graph_key(), full)
        loss_sum, seen = runner.static.loss_sum.clone(), full * size
        indices = indices[seen:]  # the last, partial batch: eagerly, below
    for step, (x, y) in enumerate(source.train_batches(indices, size, generator)):
        loss = runner.step(x, y, size)
        loss_sum += loss.detach().double() * len(y)
        seen += len(y)
        if on_step is not None:
            on_step(step, loss)
    return loss_sum, seen


def compile_fns(loss: Callable[..., torch.Tensor], net: nn.Module, compile_mode: str) -> tuple[Any, Any]:
    """``torch.compile`` of a training-loss function and of ``net`` (evaluation) in
    ``compile_mode``: the graph modes' kernels are eager ("cuda-graph") or the
    "default" mode's ("cuda-graph-compiled"); (None, None) where nothing compiles."""
    mode = {"cuda-graph": "none", "cuda-graph-compiled": "default"}.get(compile_mode, compile_mode)
    if mode == "none":
        return None, None
    return torch.compile(loss, mode=mode, dynamic=False), torch.compile(net, mode=mode, dynamic=False)


def graph_parts(static_step: Callable[[], None], generators: list[torch.Generator], net: nn.Module,
                compiled_eval: Any, n_train: int, batch_size: int, device: torch.device, runs: int = 1
                ) -> tuple[torch.Tensor, StaticBatches, StepGraph, ForwardGraph]:
    """What the whole-step CUDA graph modes (:mod:`kps.graphs`) need: the learning-rate
    tensor the captured fused SGD reads, the static batches (``runs`` loss sums), the
    graph of ``static_step`` (replaying ``generators``) and the evaluation graph."""
    lr_tensor = torch.zeros((), dtype=torch.float32, device=device)  # fused SGD reads a float32
    static = StaticBatches(n_train, batch_size, device, runs=runs)
    scores = compiled_eval or net
    return lr_tensor, static, StepGraph(static_step, generators, device), ForwardGraph(lambda x: scores(x).float())


def new_graph_step(compile_mode: str) -> None:
    """Under torch.compile's CUDA graphs (:data:`CUDAGRAPH_COMPILE_MODES`), start a new
    step: the previous replay's outputs have been consumed and may be overwritten."""
    if compile_mode in CUDAGRAPH_COMPILE_MODES:
        torch.compiler.cudagraph_mark_step_begin()


def eval_scores(x: torch.Tensor, net: nn.Module, compiled: Any, graph: ForwardGraph | None,
                config: RunConfig) -> torch.Tensor:
    """``net(x)`` in float32 for a test batch, through the captured graph or the
    compiled function where there is one (full batches of :data:`EVAL_BATCH` only)."""
    if config.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if graph is not None and len(x) == EVAL_BATCH:
        return graph(x)
    if compiled is not None and len(x) == EVAL_BATCH:
        new_graph_step(config.compile)
        return compiled(x).float()
    return net(x).float()


def count_correct(batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                  scores_of: Callable[[torch.Tensor], torch.Tensor], radius: torch.Tensor,
                  counts: torch.Tensor) -> None:
    """Add to ``counts`` (runs, 3, classes) per run and class: test images, correct
    under argmax score, correct under argmax r_j * score (``radius`` (runs, classes);
    KPS's r_j cos(theta_j), ones for other methods), over ``batches`` of (x, y);
    ``scores_of(x)`` is (runs, B, classes)."""
    for x, y in batches:
        scores = scores_of(x)
        labels = y.expand(len(counts), -1)
        counts[:, 0].scatter_add_(1, labels, torch.ones_like(labels))
        counts[:, 1].scatter_add_(1, labels, (scores.argmax(2) == y).long())
        counts[:, 2].scatter_add_(1, labels, ((scores * radius.unsqueeze(1)).argmax(2) == y).long())


# --------------------------------------------------------------------------- trainer


class Trainer:
    """One run of Algorithm 1; :meth:`fit` trains and returns the record."""

    def __init__(self, config: RunConfig, data: LTData, device: torch.device | str = "cpu", *,
                 num_workers: int = 8) -> None:
        self.config, self.data = config, data
        self.device = torch.device(device)
        if self.device.type == "cuda":  # as the LDAM-DRW/KPS scripts: cuDNN times its algorithms per shape
            torch.backends.cudnn.benchmark = True
        self.ctx = Distributed.current()
        if config.bf16 and self.device.type != "cuda":
            raise ValueError("bf16 autocast needs a CUDA device; run with bf16=False on CPU")
        if config.batch_size % self.ctx.world_size:
            raise ValueError(f"batch size {config.batch_size} is not divisible by the {self.ctx.world_size} processes")
        self.spec = config.spec
        self.counts = list(data.counts)
        self.num_classes = data.num_classes
        if len(self.counts) != self.num_classes:
            raise ValueError(f"{data.name}: {len(self.counts)} class counts for {self.num_classes} classes")

        if isinstance(data.train, TensorSplit):
            size = tuple(data.train.images.shape[-2:])
            if size != (config.image_size, config.image_size):
                raise ValueError(f"{data.name}: images are {size[0]}x{size[1]}, the config wants "
                                 f"{config.image_size}x{config.image_size}; load them with kps.train.load_data")
            self.source = TensorBatches(data, self.device, augment_for(data))
        else:
            self.source = LoaderBatches(data, self.device, num_workers)
        self.n_train, self.n_test = len(_targets(data.train)), len(_targets(data.test))

        torch.manual_seed(config.seed)
        model = make_model(config.arch, self.num_classes, head=self.spec.head, prior_bias=self.spec.prior_bias,
                           width=config.width)
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model.to(self.device)
        self.net = Scores(self.model, config.bf16)
        self.train_net: nn.Module = self.net
        if self.ctx.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_net = nn.parallel.DistributedDataParallel(self.net, device_ids=ids)
        self.compiled_loss, self.compiled_eval = compile_fns(self.batch_loss, self.net, config.compile)
        self.optimizer = make_optimizer(self.model.parameters(), config, self.device)
        self.loss_fn = make_loss(self.spec.loss, self.counts, **loss_options(config)).to(self.device)
        # no per-step value checks (each is a host synchronisation): a diverged run shows
        # as a non-finite epoch loss, which fit() turns into TrainingDiverged
        self.loss_fn.check_values = False
        self.radius = None
        if self.spec.loss == "kps":
            r = kps_parameters(self.counts, config.n_base, config.m_max, config.s_base, config.ga_variant).r
            self.radius = torch.as_tensor(r, dtype=torch.float32, device=self.device)

        gen_device = self.source.generator_device
        self.order_gen = torch.Generator(gen_device).manual_seed(_seed_of(config.seed, 1))
        self.aug_gen = torch.Generator(gen_device).manual_seed(_seed_of(config.seed, 2, self.ctx.rank))
        self.mix_rng = np.random.default_rng(_seed_of(config.seed, 3, self.ctx.rank))
        # the loss's own draws (EQL's masks), on the training device: no run draws from
        # a generator another run uses (kps.together trains several in one process)
        self.loss_gen = torch.Generator(self.device).manual_seed(_seed_of(config.seed, 4, self.ctx.rank))
        self.loss_fn.generator = self.loss_gen
        self.lr = float("nan")  # the current epoch's, set by set_epoch
        self.static = self.step_graph = self.eval_graph = self.lr_tensor = None
        if config.compile in GRAPH_MODES:
            self._setup_graphs()
        self.next_epoch = 0
        self.history: list[dict[str, Any]] = []
        self.best: tuple[float, int] | None = None
        self.elapsed_s = 0.0
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")  # the run's (kept on resume)
        self.process_started_at = self.started_at  # this process's
        self.git = git_state()  # the code this session runs (others may commit while it trains)
        self.segments = [self._segment(0)]
        self.stack: Any = None  # a kps.stack.Stack that trains this run with others as one network

    def _setup_graphs(self) -> None:
        """Whole-step CUDA graphs (:mod:`kps.graphs`), after checking that this run can use them."""
        c = self.config
        problems = [why for bad, why in (
            (self.device.type != "cuda", f"a CUDA device (this run is on {self.device})"),
            (not c.fused_sgd, "fused_sgd=True (its kernel reads the learning rate from the device)"),
            (self.ctx.world_size > 1, "one process (not DistributedDataParallel)"),
            (not isinstance(self.source, TensorBatches), "a device-resident data set (CIFAR), not a DataLoader"),
            (c.mixup_alpha > 0, "no mixup (its lam is drawn on the host every step)"),
        ) if bad]
        if problems:
            hint = (" On CPU use --compile none (eager, the fastest measured here) or default (torch.compile)."
                    if self.device.type != "cuda" else "")
            raise ValueError(f"compile mode {c.compile!r} replays whole training steps as CUDA graphs and needs "
                             + "; ".join(problems) + "." + hint)
        self.lr_tensor, self.static, self.step_graph, self.eval_graph = graph_parts(
            self.static_step, [self.aug_gen, self.loss_gen], self.net, self.compiled_eval, self.n_train,
            c.batch_size, self.device)

    def _segment(self, from_epoch: int) -> dict[str, Any]:
        """Who trains epochs ``from_epoch``.. in this process: the record's ``segments``
        list one entry per process a run went through (a resumed run has several)."""
        commit, dirty = self.git
        return {"from_epoch": from_epoch, "git_commit": commit, "git_dirty": dirty,
                "device": device_name(self.device), "torch_version": torch.__version__,
                "compile": self.config.compile, "started_at": self.process_started_at}

    def graph_key(self) -> tuple[Any, ...]:
        """What a captured step bakes in besides its buffers: GA on or off, and the
        DRW weight tensor (by address; :meth:`set_epoch` refills it in place)."""
        weight = getattr(self.loss_fn, "weight", None)
        return getattr(self.loss_fn, "ga", None), None if weight is None else weight.data_ptr()

    # ---- one epoch

    def epoch_indices(self) -> torch.Tensor:
        """A fresh permutation of the training set (drawn on the data's device),
        and this rank's shard of it."""
        order = torch.randperm(self.n_train, generator=self.order_gen, device=self.order_gen.device)
        return shard(order, self.ctx)

    def set_epoch(self, epoch: int) -> float:
        """Apply the epoch's lr, GA switch and DRW weights; returns the lr."""
        c = self.config
        lr = learning_rate(epoch, base_lr=c.lr, warmup_epochs=c.warmup_epochs, decay_epochs=c.decay_epochs,
                           decay_ratio=c.decay_ratio, style=c.lr_style)
        self.lr = lr
        apply_lr(self.optimizer, lr, self.lr_tensor)
        if self.spec.ga:
            self.loss_fn.ga = ga_active(epoch, c.ga_switch_epoch)
        if self.spec.drw:
            w = drw_weights(self.counts, epoch, c.drw_epoch, c.drw_beta)
            old = self.loss_fn.weight
            if w is None:
                self.loss_fn.weight = None
            elif isinstance(old, torch.Tensor) and old.shape == (len(w),):
                old.copy_(torch.as_tensor(w, dtype=torch.float32))  # same tensor: a captured graph reads it
            else:
                self.loss_fn.weight = torch.as_tensor(w, dtype=torch.float32, device=self.device)
        return lr

    def step(self, x: torch.Tensor, y: torch.Tensor, full: int) -> torch.Tensor:
        """One SGD step on the augmented batch (x, y); returns its mean loss."""
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        loss = self._loss(x, y, full)
        sgd_step(self.optimizer, loss)
        return loss

    def static_step(self) -> None:
        """:meth:`step` on batch k of :attr:`static` (k and the permutation read from
        the device), adding its loss to the epoch's sum: the unit a CUDA graph holds."""
        self.static.finish_step(self.step(*self.source.static_batch(self.static, self.aug_gen), self.static.batch_size))

    def batch_loss(self, x: torch.Tensor, y: torch.Tensor, mix: tuple[torch.Tensor, ...] | None = None
                   ) -> torch.Tensor:
        """Forward + mean loss of one batch (NaN once the weights have diverged): the
        unit ``compile`` compiles.  ``mix`` = (lam, 1 - lam, perm) for mixup (Zhang et
        al.): x' = lam x + (1 - lam) x[perm], loss lam L(y) + (1 - lam) L(y[perm])."""
        if mix is None:
            return self.loss_fn(self.train_net(x), y)
        lam, rest, perm = mix
        scores = self.train_net(lam * x + rest * x[perm])
        return lam * self.loss_fn(scores, y) + rest * self.loss_fn(scores, y[perm])

    def _loss(self, x: torch.Tensor, y: torch.Tensor, full: int) -> torch.Tensor:
        """:meth:`batch_loss` of one batch, compiled for batches of the ``full`` size;
        mixup's lam ~ Beta(alpha, alpha) drawn here (a float32 tensor on the device,
        so the compiled graph does not specialise on its value)."""
        mix = None
        if self.config.mixup_alpha > 0:
            lam = float(self.mix_rng.beta(self.config.mixup_alpha, self.config.mixup_alpha))
            perm = torch.randperm(len(y), generator=self.aug_gen, device=self.aug_gen.device).to(y.device)
            coefficients = torch.tensor([lam, 1 - lam], dtype=torch.float32).to(y.device, non_blocking=True)
            mix = (coefficients[0], coefficients[1], perm)
        if self.compiled_loss is not None and len(y) == full:
            new_graph_step(self.config.compile)
            return self.compiled_loss(x, y, mix)
        return self.batch_loss(x, y, mix)

    def train_epoch(self, epoch: int, indices: torch.Tensor, progress: tqdm | None = None) -> float:
        """One pass over ``indices`` (this rank's shard); returns the mean loss over all
        ranks (NaN or inf once the weights have diverged): :meth:`submit_epoch`, read back."""
        return float(self.submit_epoch(epoch, indices, progress))

    def submit_epoch(self, epoch: int, indices: torch.Tensor, progress: tqdm | None = None) -> torch.Tensor:
        """Queue one pass over ``indices`` on the device; returns the mean loss over all
        ranks as a device scalar, without waiting for it (no host synchronisation, except
        every 20 steps for the ``progress`` bar's loss, if given).  A stacked run only
        books the epoch: its stack trains it, with its other members, at its next flush."""
        if self.stack is not None:
            return self.stack.request_epoch(self, epoch, indices)
        lr = self.set_epoch(epoch)
        self.train_net.train()

        batch, n = self.config.batch_size // self.ctx.world_size, max(len(indices), 1)

        def show(step: int, loss: torch.Tensor) -> None:
            if progress is not None and step % 20 == 0:
                # the bar counts epochs in fractions, so its rate and remaining time move within an epoch
                progress.update(epoch + min(1.0, (step + 1) * batch / n) - progress.n)
                progress.set_postfix_str(f"loss {loss.item():.4f} lr {lr:.4g}")

        loss_sum, seen = queue_epoch(self, self.source, self.aug_gen, indices, self.n_train,
                                     self.config.batch_size // self.ctx.world_size,
                                     torch.zeros((), dtype=torch.float64, device=self.device), show)
        # a fill on the device: copying a host number there would wait for the queued epoch
        total = torch.stack([loss_sum, loss_sum.new_full((), float(seen))])
        if self.ctx.world_size > 1:
            dist.all_reduce(total)
        return total[0] / total[1]

    # ---- evaluation

    def evaluate(self) -> dict[str, np.ndarray]:
        """Per-class correct counts under argmax score (cos, or logits) and, for
        KPS, argmax r_j cos(theta_j); the test set is sharded over ranks and summed."""
        counts = self.submit_evaluation()
        if self.stack is not None:
            self.stack.flush()
        return self.read_evaluation(counts)

    @torch.no_grad()
    def submit_evaluation(self) -> torch.Tensor:
        """Queue :meth:`evaluate` on the device: (3, classes) counts (test images,
        correct, correct under r_j cos), summed over ranks, not yet read back (a
        stacked run's: filled at its stack's next flush)."""
        if self.stack is not None:
            return self.stack.request_evaluation(self)
        self.net.eval()
        if self.ctx.world_size > 1:  # BN statistics: every rank evaluates rank 0's (the checkpointed) model
            for buffer in self.model.buffers():
                dist.broadcast(buffer, 0)
        indices = torch.arange(self.ctx.rank, self.n_test, self.ctx.world_size, device=self.source.generator_device)
        counts = torch.zeros(1, 3, self.num_classes, dtype=torch.long, device=self.device)
        radius = torch.ones(self.num_classes, device=self.device) if self.radius is None else self.radius

        def scores(x: torch.Tensor) -> torch.Tensor:
            return eval_scores(x, self.net, self.compiled_eval, self.eval_graph, self.config).unsqueeze(0)

        count_correct(self.source.test_batches(indices, EVAL_BATCH), scores, radius.unsqueeze(0), counts)
        counts = counts[0]
        if self.ctx.world_size > 1:
            dist.all_reduce(counts)
        return counts

    def read_evaluation(self, counts: torch.Tensor) -> dict[str, np.ndarray]:
        """:meth:`submit_evaluation`'s counts read back (one host synchronisation)."""
        total, correct, correct_r = counts.cpu().numpy()
        out = {"total": total, "correct": correct}
        if self.radius is not None:
            out["correct_rcos"] = correct_r
        return out

    # ---- checkpoints

    def _rng_state(self) -> dict[str, Any]:
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "order": self.order_gen.get_state(),
            "aug": self.aug_gen.get_state(),
            "mix": self.mix_rng.bit_generator.state,
            "loss": self.loss_gen.get_state(),
        }

    def _set_rng_state(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        if state["cuda"] is not None:
            torch.cuda.set_rng_state(state["cuda"], self.device)
        self.order_gen.set_state(state["order"])
        self.aug_gen.set_state(state["aug"])
        self.mix_rng.bit_generator.state = state["mix"]
        if "loss" in state:  # checkpoints before 2026-11-27 have none (no EQL run had one)
            self.loss_gen.set_state(state["loss"])

    def state(self) -> dict[str, Any]:
        """Everything needed to continue after the last finished epoch (rank 0's
        view plus every rank's random states)."""
        if self.stack is not None:  # this run's weights and momenta live in the stack
            self.stack.export(self)
        rng = self._rng_state()
        if self.ctx.world_size > 1:
            gathered: list[Any] = [None] * self.ctx.world_size
            dist.all_gather_object(gathered, rng)
        else:
            gathered = [rng]
        return {
            "config": self.config.to_dict(),
            "next_epoch": self.next_epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": gathered,
            "history": self.history,
            "best": self.best,
            "elapsed_s": self.elapsed_s,
            "started_at": self.started_at,
            "world_size": self.ctx.world_size,
            "segments": self.segments,
        }

    def load_state(self, state: dict[str, Any], source: str) -> None:
        """Continue from a :meth:`state`; ValueError if it belongs to another run."""
        mine = self.config.to_dict()
        # a run may be extended, and continued with other fast-path switches
        theirs = dict(state["config"], **{k: mine[k] for k in RESUMABLE_CHANGES})
        if theirs != mine:
            diff = sorted(k for k in mine if theirs.get(k) != mine[k])
            raise ValueError(f"checkpoint {source} is from another configuration (differs in: {', '.join(diff)})")
        written_on = "cpu" if state["rng"][0]["cuda"] is None else "cuda"
        if written_on != self.device.type:  # the random generators' states belong to their device
            raise ValueError(f"checkpoint {source} was written by a run on {written_on}; "
                             f"continue it on {written_on}, not {self.device.type}")
        if state["world_size"] != self.ctx.world_size:
            raise ValueError(f"checkpoint {source} was written by {state['world_size']} processes, "
                             f"this run has {self.ctx.world_size}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        match_momentum_layouts(self.optimizer)  # a run resumed with channels_last switched
        for group in self.optimizer.param_groups:  # the saved groups carry the writer's kernel choice
            group["fused"], group["foreach"] = self.optimizer.defaults["fused"], self.optimizer.defaults["foreach"]
        self._set_rng_state(state["rng"][self.ctx.rank])
        self.next_epoch = state["next_epoch"]
        self.history = state["history"]
        self.best = state["best"]
        self.elapsed_s = state["elapsed_s"]
        self.started_at = state["started_at"]
        # checkpoints written before segments existed: the first process is unknown
        earlier = state.get("segments") or [{"from_epoch": 0, "git_commit": None, "git_dirty": None, "device": None,
                                             "torch_version": None, "compile": None,
                                             "started_at": state["started_at"]}]
        self.segments = [*earlier, self._segment(self.next_epoch)]

    # ---- the loop

    def fit(self, checkpoint: Path | None = None, quiet: bool = False, checkpoint_every: int = 1) -> dict[str, Any]:
        """Train epochs ``next_epoch .. epochs-1`` and return the record.  On rank 0,
        ``checkpoint`` is saved after every ``checkpoint_every``-th epoch (counted from
        epoch 0) and after the last, and its progress file after every epoch.
        TrainingDiverged on a NaN/inf epoch loss, with the last good checkpoint left
        in place."""
        _check_every(checkpoint_every)
        if self.stack is not None:
            raise ValueError("a stacked run trains with its stack: kps.together.fit_together")
        c = self.config
        show = self.ctx.main and not quiet
        with tqdm(total=c.epochs, initial=self.next_epoch, desc=f"{c.method} seed {c.seed}", unit="epoch",
                  disable=not show, dynamic_ncols=True,
                  bar_format="{l_bar}{bar}| {n:.1f}/{total_fmt} epochs [{elapsed}<{remaining}{postfix}]") as bar:
            try:
                record = _run_to_end(self.epochs(checkpoint, checkpoint_every, bar if show else None))
            except KeyboardInterrupt as err:
                saved = _saved_epochs(checkpoint) if checkpoint is not None else None
                held = f"checkpoint {checkpoint} holds epochs 1-{saved}" if saved else "no checkpoint yet"
                raise TrainingInterrupted(f"{c.method} seed {c.seed} stopped in epoch {self.next_epoch + 1} "
                                          f"of {c.epochs}; {held}") from err
        assert record is not None  # only a "stop" sent to epochs() ends it without a record
        return record

    def epochs(self, checkpoint: Path | None = None, checkpoint_every: int = 1, bar: tqdm | None = None
               ) -> Generator[None, str | None, dict[str, Any] | None]:
        """:meth:`fit`'s loop, one epoch per step of a generator, so that one process
        can train several runs at once (:func:`fit_together`).  Each step queues an
        epoch's device work (training, and evaluation where due) and yields; the next
        step reads it back (the epoch's one host synchronisation), checkpoints and
        queues the next epoch.  ``send("stop")`` instead ends after the epoch in
        flight with a checkpoint (if ``checkpoint``) and returns None; the generator
        otherwise returns the record."""
        _check_every(checkpoint_every)
        c = self.config
        saved = self.next_epoch if self.next_epoch > 0 else None  # next_epoch of the checkpoint on disk
        last_eval: dict[str, np.ndarray] | None = None
        for epoch in range(self.next_epoch, c.epochs):
            t0 = time.perf_counter()
            loss_t = self.submit_epoch(epoch, self.epoch_indices(), bar)
            due = (epoch + 1) % c.eval_every == 0 or epoch == c.epochs - 1
            counts = self.submit_evaluation() if due else None
            command = yield
            loss = float(loss_t)
            if not math.isfinite(loss):
                good = f"{checkpoint} (after epoch {saved - 1})" if checkpoint and saved else "none"
                raise TrainingDiverged(
                    f"{c.method} seed {c.seed}: the training loss became {loss} in epoch {epoch} "
                    f"(0-indexed); stopped. Last good checkpoint: {good}"
                )
            row: dict[str, Any] = {"epoch": epoch, "loss": loss, "lr": self.lr}
            if counts is not None:
                last_eval = self.read_evaluation(counts)
                row.update(_eval_errors(last_eval))
                if self.best is None or row["test_error"] < self.best[0]:
                    self.best = (row["test_error"], epoch)
            seconds = time.perf_counter() - t0
            self.elapsed_s += seconds
            row["time_s"] = round(seconds, 3)
            self.history.append(row)
            self.next_epoch = epoch + 1
            stop = command == "stop" and self.next_epoch < c.epochs
            if checkpoint is not None and (stop or self.next_epoch % checkpoint_every == 0
                                           or self.next_epoch == c.epochs):
                state = self.state()  # collective under DDP: every rank takes this branch
                if self.ctx.main:
                    atomic_torch_save(state, checkpoint)
                saved = self.next_epoch
            if checkpoint is not None and self.ctx.main:
                self.write_progress(checkpoint, saved)
            if bar is not None:
                err = f" err {row['test_error']:.2f}" if "test_error" in row else ""
                bar.set_postfix_str(f"loss {loss:.4f} lr {row['lr']:.4g}{err}", refresh=False)
                bar.update(self.next_epoch - bar.n)
            if stop:
                return None
        if last_eval is None:  # resumed after the last epoch: evaluate the restored weights
            last_eval = self.evaluate()
        return self.record(last_eval)

    def write_progress(self, checkpoint: Path, saved: int | None) -> None:
        """The progress file of :func:`read_progress` (atomic)."""
        progress = {"next_epoch": self.next_epoch, "epochs": self.config.epochs,
                    "elapsed_s": round(self.elapsed_s, 3), "checkpoint_next_epoch": saved}
        atomic_write_text(progress_path(checkpoint), json.dumps(progress) + "\n")

    def record(self, result: dict[str, np.ndarray]) -> dict[str, Any]:
        """The run record (kps.results schema) from the final evaluation."""
        c = self.config
        final = summarize(result["correct"], result["total"], self.counts)
        rcos = None
        if "correct_rcos" in result:
            rcos = summarize(result["correct_rcos"], result["total"], self.counts)
        commit, dirty = self.git
        best_error, best_epoch = self.best if self.best is not None else (final["top1_error"], c.epochs - 1)
        record = {
            "schema_version": SCHEMA_VERSION,
            "config": c.to_dict(),
            "dataset_label": self.data.label,
            "num_classes": self.num_classes,
            "class_names": list(self.data.class_names),
            "train_counts": [int(n) for n in self.counts],
            "epochs": c.epochs,
            "preset_epochs": c.preset_epochs,
            "test_rule": "argmax cos" if self.spec.head == "cosine" else "argmax logits",
            **final,
            "best_top1_error": best_error,
            "best_epoch": best_epoch,
            "top1_error_rcos": None if rcos is None else rcos["top1_error"],
            "per_class_accuracy_rcos": None if rcos is None else rcos["per_class_accuracy"],
            "history": self.history,
            "device": device_name(self.device),
            "world_size": self.ctx.world_size,
            "torch_version": torch.__version__,
            "git_commit": commit,
            "git_dirty": dirty,
            "wall_time_s": round(self.elapsed_s, 3),
            "started_at": self.started_at,
            "segments": self.segments,
        }
        return validate_record(record)


def _run_to_end(steps: Generator[None, str | None, dict[str, Any] | None]) -> dict[str, Any] | None:
    """Drive a :meth:`Trainer.epochs` generator to its end; returns its value."""
    try:
        while True:
            next(steps)
    except StopIteration as end:
        return end.value


def _check_every(checkpoint_every: int) -> None:
    if not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be an integer >= 1, got {checkpoint_every!r}")


def _eval_errors(result: dict[str, np.ndarray]) -> dict[str, float]:
    total = result["total"].sum()
    out = {"test_error": float(100.0 * (1 - result["correct"].sum() / total))}
    if "correct_rcos" in result:
        out["test_error_rcos"] = float(100.0 * (1 - result["correct_rcos"].sum() / total))
    return out


def augment_for(data: LTData) -> GPUAugment:
    """Sec. 4.2.1's pad-4 crop-32 flip, the padding scaled with the image size
    (2 at 16 px: the same fraction of the image)."""
    spec = DATASETS[data.name]
    size = int(data.train.images.shape[-1])
    return GPUAugment(spec.mean, spec.std, pad=max(1, round(4 * size / spec.image_size)), crop=size)


def loss_options(config: RunConfig) -> dict[str, Any]:
    """Keyword options of ``make_loss`` for ``config``: the method's own options
    and, for KPS, the eqs. 26-30 numbers (n_base, m_max, s_base) and the variant."""
    options = dict(config.spec.options)
    if config.spec.loss == "kps":
        options.update(n_base=config.n_base, m_max=config.m_max, s_base=config.s_base, variant=config.ga_variant)
    return options


# --------------------------------------------------------------------------- entry points


def train(config: RunConfig, *, data_root: str | Path = "data", out: str | Path = "results",
          device: str = "cpu", resume: bool = False, quiet: bool = False, force: bool = False,
          checkpoint_dir: str | Path | None = None, data: LTData | None = None,
          num_workers: int = 8, checkpoint_every: int = 1) -> dict[str, Any]:
    """Train ``config`` and write its record under ``out``; returns the record.

    Under torchrun (WORLD_SIZE > 1) every process calls this; only rank 0
    writes the record and the checkpoints.  ``data`` skips loading (train-grid
    reuses one copy); ``resume`` continues from the run's checkpoint under
    ``checkpoint_dir`` (default :func:`default_checkpoint_dir` of ``out``) if there is
    one, which is saved every ``checkpoint_every`` epochs and after the last; without
    ``resume`` an unfinished checkpoint is discarded, and said so.  The last checkpoint
    stays beside the record as the run's final weights; it never stands in for training:
    with ``force`` (a record replaced) the run trains again from epoch 1.  An existing
    record is an error unless ``force``; nothing is written before these checks pass.
    """
    _check_every(checkpoint_every)
    checkpoint_dir = default_checkpoint_dir(out) if checkpoint_dir is None else checkpoint_dir
    ctx, dev = init_distributed(device)
    problem: Exception | None = None
    if ctx.main:
        try:
            check_outputs(config, out, checkpoint_dir, force)
        except (ValueError, FileExistsError) as err:
            problem = err
    if ctx.world_size > 1:  # every rank stops if rank 0 cannot write
        box = [problem]
        dist.broadcast_object_list(box, src=0)
        problem = box[0]
    if problem is not None:
        raise problem
    if data is None:
        data = load_data(config, data_root)
    trainer, ckpt = make_trainer(config, data, dev, checkpoint_dir, resume=resume, quiet=quiet or not ctx.main,
                                 num_workers=num_workers, finished_ok=not force)
    record = trainer.fit(ckpt, quiet=quiet, checkpoint_every=checkpoint_every)
    if ctx.main:
        write_record(record, out, force=force)
    return record


def check_outputs(config: RunConfig, out: str | Path, checkpoint_dir: str | Path, force: bool) -> None:
    """Before any work: the results and checkpoint folders are writable and the
    run's record does not exist yet (unless ``force``)."""
    rec_path = config_record_path(out, config)
    check_writable_dir(rec_path.parent, "results folder")
    if rec_path.exists() and not force:
        raise FileExistsError(f"record {rec_path} exists; records are immutable: use another seed, or --force")
    check_writable_dir(checkpoint_path(checkpoint_dir, config).parent, "checkpoint folder")


def make_trainer(config: RunConfig, data: LTData, device: torch.device, checkpoint_dir: str | Path, *,
                 resume: bool, quiet: bool = True, num_workers: int = 8,
                 finished_ok: bool = True) -> tuple[Trainer, Path]:
    """A Trainer for ``config`` and its checkpoint path; with ``resume`` it continues
    from that checkpoint if there is one (a finished one only if ``finished_ok``: it
    then only writes its run's record)."""
    trainer = Trainer(config, data, device, num_workers=num_workers)
    ckpt = checkpoint_path(checkpoint_dir, config)
    saved = _saved_epochs(ckpt) if ckpt.exists() else None
    if resume and ckpt.exists() and (finished_ok or saved != config.epochs):
        trainer.load_state(torch.load(ckpt, map_location="cpu", weights_only=False), str(ckpt))
        if not quiet:
            tqdm.write(f"resuming {ckpt} after epoch {trainer.next_epoch}")
    elif ckpt.exists():
        # said even when quiet: work is thrown away
        tqdm.write(f"starting again at epoch 1: the checkpoint {ckpt} (epochs 1-{saved or '?'}) is replaced")
    return trainer, ckpt


def _saved_epochs(ckpt: Path) -> int | None:
    """How many epochs the checkpoint ``ckpt`` holds (its progress file), None if unknown."""
    return (read_progress(ckpt) or {}).get("checkpoint_next_epoch")


def data_key(config: RunConfig) -> tuple[str, float, int, int]:
    """Configurations with the same key train on the same data."""
    return config.dataset, config.imbalance, config.subset_seed, config.image_size


def train_grid(configs: list[RunConfig], *, data_root: str | Path = "data", out: str | Path = "results",
               device: str = "cpu", quiet: bool = False, force: bool = False, resume: bool = False,
               checkpoint_dir: str | Path | None = None, skip_existing: bool = False) -> list[dict[str, Any]]:
    """Train several configurations one after another in this process, loading
    (and moving to the device) each dataset once.  ``skip_existing`` leaves
    configurations that already have a record alone."""
    dev = torch.device(device)
    cache: dict[tuple[str, float, int, int], LTData] = {}
    records = []
    for i, config in enumerate(configs):
        path = config_record_path(out, config)
        if skip_existing and path.exists() and not force:
            if not quiet:
                tqdm.write(f"[{i + 1}/{len(configs)}] {path} exists, skipped")
            continue
        key = data_key(config)
        if key not in cache:
            cache[key] = to_device(load_data(config, data_root), dev)
        if not quiet:
            tqdm.write(f"[{i + 1}/{len(configs)}] {config.dataset} {config.method} seed {config.seed}")
        records.append(train(config, out=out, device=device, resume=resume, quiet=quiet, force=force,
                             checkpoint_dir=checkpoint_dir, data=cache[key]))
    return records


def to_device(data: LTData, device: torch.device) -> LTData:
    """``data`` with its TensorSplits moved to ``device`` (other datasets unchanged)."""
    move = lambda s: TensorSplit(s.images.to(device), s.targets.to(device)) if isinstance(s, TensorSplit) else s  # noqa: E731
    return replace(data, train=move(data.train), test=move(data.test))
