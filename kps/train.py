"""One run of Algorithm 1 with the Table 2 settings, from its config to its record,
on CPU, one GPU, or several under torchrun (DistributedDataParallel).

Read top to bottom: :class:`Trainer` builds the run (model, SGD, loss, random
generators); per epoch (0-indexed) :meth:`Trainer.set_epoch` applies the lr of
:func:`kps.schedules.learning_rate` (linear warm-up, step decay), GA from
``ga_switch_epoch`` (Algorithm 1, lines 6-10: eq. 15 -> eq. 25) and the DRW class
weights from ``drw_epoch``; :meth:`Trainer.train_epoch` takes one pass of SGD
(momentum 0.9, no Nesterov, weight decay per preset) over a fresh permutation of
the training set, with mixup (Zhang et al., alpha 1) where the method asks;
:meth:`Trainer.evaluate` (every ``eval_every`` epochs and after the last) counts
top-1 errors under argmax cos(theta_j) (the paper's test rule; argmax of the
logits for linear heads) and, for KPS, under argmax r_j cos(theta_j) (eq. 13);
:meth:`Trainer.end_epoch` books the epoch and checkpoints; :meth:`Trainer.record`
writes the result.  :func:`train` is the whole life of one run.

The fast-path switches of the config (:data:`kps.configs.SPEED_KEYS`:
``channels_last``, ``bf16`` autocast with the head and loss in float32,
``fused_sgd``, ``compile``) change how, not what, is computed.  ``compile``
compiles the forward + loss of a training step (:meth:`Trainer.batch_loss`) and
the evaluation forward with static shapes; a batch of another size (the last,
partial batch of an epoch, kept as in the reference code) runs eagerly.

Checkpoints (a plain dict, written atomically every ``checkpoint_every`` epochs and
after the last) hold the model, the optimizer, every random state (CPU, data order,
augmentation, mixup, the loss's own; per rank) and the history, so a killed run
resumed from its checkpoint ends with the bit-identical record on CPU.

Host synchronisation: none per training step (the losses run without their
per-call value checks, batch losses are summed on the device; the progress bar,
when shown, reads the loss every 20 steps); one per epoch for the mean loss,
which also detects divergence (NaN/inf -> TrainingDiverged).
"""

from __future__ import annotations

import math
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from tqdm import tqdm  # plain text bar: notebooks here have no ipywidgets

from kps.batches import LoaderBatches, TensorBatches, augment_for, load_data, shard, targets_of
from kps.checkpoints import (checkpoint_path, default_checkpoint_dir, epochs_held, load_checkpoint, saved_epochs,
                             unreadable_checkpoint, write_progress)
from kps.configs import RESUMABLE_KEYS, RunConfig
from kps.data import LTData, TensorSplit
from kps.distributed import Distributed, init_distributed
from kps.env import BF16_CPU_FLAGS, cpu_bf16_units, device_name, git_state
from kps.io import atomic_torch_save, check_writable_dir
from kps.losses import make_loss
from kps.metrics import count_correct, eval_errors, summarize
from kps.models import Scores, make_model
from kps.params import kps_parameters
from kps.results import (SCHEMA_VERSION, RecordError, config_record_path, read_record_file, validate_record,
                         write_record)
from kps.schedules import drw_weights, ga_active, learning_rate

__all__ = ["TrainingDiverged", "TrainingInterrupted", "Trainer", "train", "loss_options", "EVAL_BATCH"]

EVAL_BATCH = 1000
# torch.compile modes that record CUDA graphs (cudagraph trees): a step's outputs are
# overwritten by the next replay unless a new step is marked
CUDAGRAPH_COMPILE_MODES = ("reduce-overhead", "max-autotune")


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during training; ``where`` says at which epoch, and what the checkpoint holds."""

    def __init__(self, where: str) -> None:
        super().__init__(where)
        self.where = where


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


def stderr_is_terminal() -> bool:
    """Whether progress goes to a terminal (a bar), or to a notebook or a file (lines)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed streams
        return False


def clock(seconds: float) -> str:
    """``seconds`` as H:MM:SS."""
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def seed_of(*words: int) -> int:
    """A 63-bit seed derived from ``words`` (run seed, stream, rank) by numpy's SeedSequence."""
    return int(np.random.SeedSequence(list(words)).generate_state(1, dtype=np.uint64)[0] >> 1)


def _optimizer(params: Any, config: RunConfig, device: torch.device) -> torch.optim.SGD:
    """SGD with the config's momentum, weight decay and Nesterov switch (fused where asked)."""
    kwargs = dict(lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                  nesterov=config.nesterov)
    if config.fused_sgd:
        try:
            return torch.optim.SGD(params, fused=True, **kwargs)
        except RuntimeError as err:  # fused kernels missing for this device type
            raise ValueError(f"fused SGD is not available on {device}: {err}") from err
    return torch.optim.SGD(params, **kwargs)


def _compile(fn: Any, compile_mode: str) -> Any:
    """``torch.compile(fn)`` in ``compile_mode`` with static shapes; None for "none"."""
    return None if compile_mode == "none" else torch.compile(fn, mode=compile_mode, dynamic=False)


def _new_compiled_step(compile_mode: str) -> None:
    """Under torch.compile's CUDA graphs, start a new step: the previous replay's
    outputs have been consumed and may be overwritten."""
    if compile_mode in CUDAGRAPH_COMPILE_MODES:
        torch.compiler.cudagraph_mark_step_begin()


def _sgd_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def loss_options(config: RunConfig) -> dict[str, Any]:
    """Keyword options of ``make_loss`` for ``config``: the method's own options
    and, for KPS, the eqs. 26-30 numbers (n_base, m_max, s_base) and the variant."""
    options = dict(config.spec.options)
    if config.spec.loss == "kps":
        options.update(n_base=config.n_base, m_max=config.m_max, s_base=config.s_base, variant=config.ga_variant)
    return options


def _check_every(checkpoint_every: int) -> None:
    if not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be an integer >= 1, got {checkpoint_every!r}")


class Trainer:
    """One run of Algorithm 1; :meth:`fit` trains and returns the record."""

    def __init__(self, config: RunConfig, data: LTData, device: torch.device | str = "cpu", *,
                 num_workers: int = 8) -> None:
        self.config, self.data, self.spec = config, data, config.spec
        self.device = torch.device(device)
        self.ctx = Distributed.current()
        self._check(data)
        self.counts, self.num_classes = list(data.counts), data.num_classes
        self.source = self._batches(data, num_workers)
        self.n_train, self.n_test = len(targets_of(data.train)), len(targets_of(data.test))
        # the order below is the order of the random draws: the model's initial weights first
        self._build_model()
        self._build_loss()
        self._seed_generators()
        self._start_history()

    def _check(self, data: LTData) -> None:
        """What this device, these processes and this data can run, before any work."""
        c = self.config
        if c.bf16 and self.device.type == "cpu" and not cpu_bf16_units():
            raise ValueError(f"bf16 needs a CPU with bf16 units ({' or '.join(BF16_CPU_FLAGS)} in its flags); "
                             f"{device_name(self.device)} has none: run without --bf16 (fp32)")
        if c.batch_size % self.ctx.world_size:
            raise ValueError(f"batch size {c.batch_size} is not divisible by the {self.ctx.world_size} processes")
        if len(data.counts) != data.num_classes:
            raise ValueError(f"{data.name}: {len(data.counts)} class counts for {data.num_classes} classes")
        if isinstance(data.train, TensorSplit):
            size = tuple(data.train.images.shape[-2:])
            if size != (c.image_size, c.image_size):
                raise ValueError(f"{data.name}: images are {size[0]}x{size[1]}, the config wants "
                                 f"{c.image_size}x{c.image_size}; load them with kps.batches.load_data")

    def _batches(self, data: LTData, num_workers: int) -> TensorBatches | LoaderBatches:
        """How the images reach the device: small ones resident there and augmented there,
        large ones through a DataLoader."""
        if isinstance(data.train, TensorSplit):
            return TensorBatches(data, self.device, augment_for(data))
        return LoaderBatches(data, self.device, num_workers)

    def _build_model(self) -> None:
        """The network of Table 2 from the run's seed, in its memory format, on the device
        (wrapped for DDP under torchrun), its compiled step and evaluation, and SGD."""
        c = self.config
        if self.device.type == "cuda":  # as the LDAM-DRW/KPS scripts: cuDNN times its algorithms per shape
            torch.backends.cudnn.benchmark = True
        torch.manual_seed(c.seed)
        model = make_model(c.arch, self.num_classes, head=self.spec.head, prior_bias=self.spec.prior_bias,
                           width=c.width)
        if c.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model.to(self.device)
        self.net = Scores(self.model, c.bf16)
        self.train_net: nn.Module = self.net
        if self.ctx.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_net = nn.parallel.DistributedDataParallel(self.net, device_ids=ids)
        self.compiled_loss = _compile(self.batch_loss, c.compile)
        self.compiled_eval = _compile(self.net, c.compile)
        self.optimizer = _optimizer(self.model.parameters(), c, self.device)

    def _build_loss(self) -> None:
        """The method's loss over the class counts and, for KPS, the radii r_j of eq. 13."""
        c = self.config
        self.loss_fn = make_loss(self.spec.loss, self.counts, **loss_options(c)).to(self.device)
        # no per-step value checks (each is a host synchronisation): a diverged run shows
        # as a non-finite epoch loss, which end_epoch turns into TrainingDiverged
        self.loss_fn.check_values = False
        self.radius = None
        if self.spec.loss == "kps":
            r = kps_parameters(self.counts, c.n_base, c.m_max, c.s_base, c.ga_variant).r
            self.radius = torch.as_tensor(r, dtype=torch.float32, device=self.device)

    def _seed_generators(self) -> None:
        """The run's own random streams, each from the seed (and the rank): data order,
        augmentation, mixup's lam, and the loss's draws (EQL's masks, on the device)."""
        seed, rank, gen_device = self.config.seed, self.ctx.rank, self.source.generator_device
        self.order_gen = torch.Generator(gen_device).manual_seed(seed_of(seed, 1))
        self.aug_gen = torch.Generator(gen_device).manual_seed(seed_of(seed, 2, rank))
        self.mix_rng = np.random.default_rng(seed_of(seed, 3, rank))
        self.loss_gen = torch.Generator(self.device).manual_seed(seed_of(seed, 4, rank))
        self.loss_fn.generator = self.loss_gen

    def _start_history(self) -> None:
        """Nothing trained yet: epoch 0 next, no checkpoint, no evaluation, this process's segment."""
        self.lr = float("nan")  # the current epoch's, set by set_epoch
        self.next_epoch = 0
        self.saved: int | None = None  # next_epoch of the checkpoint on disk
        self.history: list[dict[str, Any]] = []
        self.best: tuple[float, int] | None = None
        self.elapsed_s = 0.0
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")  # the run's (kept on resume)
        self.process_started_at = self.started_at  # this process's
        self.git = git_state()  # the code this process runs (others may commit while it trains)
        self.segments = [self.segment(0)]

    def segment(self, from_epoch: int) -> dict[str, Any]:
        """Who trains epochs ``from_epoch``.. in this process: the record's ``segments``
        list has one entry per process a run went through (a resumed run has several)."""
        commit, dirty = self.git
        return {"from_epoch": from_epoch, "git_commit": commit, "git_dirty": dirty,
                "device": device_name(self.device), "torch_version": torch.__version__,
                "precision": "bf16" if self.config.bf16 else "fp32", "threads": torch.get_num_threads(),
                "compile": self.config.compile, "started_at": self.process_started_at}

    # ---- one epoch

    def epoch_indices(self) -> torch.Tensor:
        """A fresh permutation of the training set (drawn on the data's device),
        and this rank's shard of it."""
        order = torch.randperm(self.n_train, generator=self.order_gen, device=self.order_gen.device)
        return shard(order, self.ctx.rank, self.ctx.world_size)

    def set_epoch(self, epoch: int) -> float:
        """Apply the epoch's lr, GA switch and DRW weights; returns the lr."""
        c = self.config
        self.lr = learning_rate(epoch, base_lr=c.lr, warmup_epochs=c.warmup_epochs, decay_epochs=c.decay_epochs,
                                decay_ratio=c.decay_ratio, style=c.lr_style)
        _set_lr(self.optimizer, self.lr)
        if self.spec.ga:
            self.loss_fn.ga = ga_active(epoch, c.ga_switch_epoch)
        if self.spec.drw:
            w = drw_weights(self.counts, epoch, c.drw_epoch, c.drw_beta)
            old = self.loss_fn.weight
            if w is None:
                self.loss_fn.weight = None
            elif isinstance(old, torch.Tensor) and old.shape == (len(w),):
                old.copy_(torch.as_tensor(w, dtype=torch.float32))  # one tensor: a compiled CUDA graph reads it
            else:
                self.loss_fn.weight = torch.as_tensor(w, dtype=torch.float32, device=self.device)
        return self.lr

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

    def step(self, x: torch.Tensor, y: torch.Tensor, full: int) -> torch.Tensor:
        """One SGD step on the augmented batch (x, y); returns its mean loss.  Batches of
        the ``full`` size go through the compiled loss; mixup's lam ~ Beta(alpha, alpha)
        is drawn here (a float32 tensor on the device, so a compiled graph does not
        specialise on its value)."""
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        mix = None
        if self.config.mixup_alpha > 0:
            lam = float(self.mix_rng.beta(self.config.mixup_alpha, self.config.mixup_alpha))
            perm = torch.randperm(len(y), generator=self.aug_gen, device=self.aug_gen.device).to(y.device)
            coefficients = torch.tensor([lam, 1 - lam], dtype=torch.float32).to(y.device, non_blocking=True)
            mix = (coefficients[0], coefficients[1], perm)
        if self.compiled_loss is not None and len(y) == full:
            _new_compiled_step(self.config.compile)
            loss = self.compiled_loss(x, y, mix)
        else:
            loss = self.batch_loss(x, y, mix)
        _sgd_step(self.optimizer, loss)
        return loss

    def train_epoch(self, epoch: int, indices: torch.Tensor, progress: tqdm | None = None) -> float:
        """:meth:`set_epoch`, then one pass over ``indices`` (this rank's shard); returns
        the mean loss over all ranks (NaN or inf once the weights have diverged)."""
        lr = self.set_epoch(epoch)
        self.train_net.train()
        batch, n = self.config.batch_size // self.ctx.world_size, max(len(indices), 1)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        seen = 0
        for step, (x, y) in enumerate(self.source.train_batches(indices, batch, self.aug_gen)):
            loss = self.step(x, y, batch)
            loss_sum += loss.detach().double() * len(y)
            seen += len(y)
            if progress is not None and step % 20 == 0:
                # the bar counts epochs in fractions, so its rate and remaining time move within an epoch
                progress.update(epoch + min(1.0, (step + 1) * batch / n) - progress.n)
                progress.set_postfix_str(f"loss {loss.item():.4f} lr {lr:.4g}")
        # a fill on the device: copying a host number there would wait for the queued epoch
        total = torch.stack([loss_sum, loss_sum.new_full((), float(seen))])
        if self.ctx.world_size > 1:
            dist.all_reduce(total)
        return float(total[0] / total[1])

    @torch.no_grad()
    def evaluate(self) -> dict[str, np.ndarray]:
        """Per-class counts: test images, correct under argmax score (cos, or logits)
        and, for KPS, under argmax r_j cos(theta_j); the test set is sharded over ranks
        and summed."""
        self.net.eval()
        if self.ctx.world_size > 1:  # BN statistics: every rank evaluates rank 0's (the checkpointed) model
            for buffer in self.model.buffers():
                dist.broadcast(buffer, 0)
        indices = torch.arange(self.ctx.rank, self.n_test, self.ctx.world_size, device=self.source.generator_device)
        counts = torch.zeros(3, self.num_classes, dtype=torch.long, device=self.device)
        radius = torch.ones(self.num_classes, device=self.device) if self.radius is None else self.radius

        def scores(x: torch.Tensor) -> torch.Tensor:
            if self.config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if self.compiled_eval is not None and len(x) == EVAL_BATCH:
                _new_compiled_step(self.config.compile)
                return self.compiled_eval(x).float()
            return self.net(x).float()

        count_correct(self.source.test_batches(indices, EVAL_BATCH), scores, radius, counts)
        if self.ctx.world_size > 1:
            dist.all_reduce(counts)
        total, correct, correct_r = counts.cpu().numpy()  # the pass's one host synchronisation
        out = {"total": total, "correct": correct}
        if self.radius is not None:
            out["correct_rcos"] = correct_r
        return out

    def checkpoint_due(self, epoch: int, checkpoint_every: int) -> bool:
        """Whether the checkpoint is written after ``epoch``: every ``checkpoint_every``-th
        epoch (counted from epoch 0) and after the last."""
        return (epoch + 1) % checkpoint_every == 0 or epoch + 1 == self.config.epochs

    def end_epoch(self, epoch: int, loss: float, result: dict[str, np.ndarray] | None, seconds: float,
                  checkpoint: Path | None = None, checkpoint_every: int = 1) -> dict[str, Any]:
        """Book ``epoch`` (its loss, its evaluation if any, its time) in the history,
        write the checkpoint where due and the progress file; returns the history row.
        TrainingDiverged on a NaN/inf loss, with the last good checkpoint left in place."""
        c = self.config
        if not math.isfinite(loss):
            good = f"{checkpoint} (after epoch {self.saved - 1})" if checkpoint and self.saved else "none"
            raise TrainingDiverged(f"{c.method} seed {c.seed}: the training loss became {loss} in epoch {epoch} "
                                   f"(0-indexed); stopped. Last good checkpoint: {good}")
        row: dict[str, Any] = {"epoch": epoch, "loss": loss, "lr": self.lr}
        if result is not None:
            row.update(eval_errors(result))
            if self.best is None or row["test_error"] < self.best[0]:
                self.best = (row["test_error"], epoch)
        self.elapsed_s += seconds
        row["time_s"] = round(seconds, 3)
        self.history.append(row)
        self.next_epoch = epoch + 1
        if checkpoint is not None and self.checkpoint_due(epoch, checkpoint_every):
            state = self.state()  # collective under DDP: every rank takes this branch
            if self.ctx.main:
                atomic_torch_save(state, checkpoint)
            self.saved = self.next_epoch
        if checkpoint is not None and self.ctx.main:
            write_progress(checkpoint, self.next_epoch, c.epochs, self.elapsed_s, self.saved)
        return row

    # ---- checkpoints

    def state(self) -> dict[str, Any]:
        """The checkpoint: everything needed to continue after the last finished epoch
        (rank 0's view plus every rank's random states)."""
        rng = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "order": self.order_gen.get_state(),
            "aug": self.aug_gen.get_state(),
            "mix": self.mix_rng.bit_generator.state,
            "loss": self.loss_gen.get_state(),
        }
        gathered: list[Any] = [rng]
        if self.ctx.world_size > 1:
            gathered = [None] * self.ctx.world_size
            dist.all_gather_object(gathered, rng)
        return {"config": self.config.to_dict(), "next_epoch": self.next_epoch, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "rng": gathered, "history": self.history,
                "best": self.best, "elapsed_s": self.elapsed_s, "started_at": self.started_at,
                "world_size": self.ctx.world_size, "segments": self.segments}

    def load_state(self, state: dict[str, Any], source: str) -> None:
        """Continue from a :meth:`state`; ValueError if it belongs to another run."""
        mine = self.config.to_dict()
        # a run may be extended, and continued with other fast-path switches
        theirs = dict(state["config"], **{k: mine[k] for k in RESUMABLE_KEYS})
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
        for group in self.optimizer.param_groups:
            # the saved groups carry the writer's kernel choice; momenta take their weights' layout
            # (a run resumed with channels_last switched; fused SGD needs equal strides)
            group["fused"], group["foreach"] = self.optimizer.defaults["fused"], self.optimizer.defaults["foreach"]
            for p in group["params"]:
                buffer = self.optimizer.state.get(p, {}).get("momentum_buffer")
                if buffer is not None and buffer.stride() != p.stride():
                    self.optimizer.state[p]["momentum_buffer"] = torch.empty_like(p).copy_(buffer)
        rng = state["rng"][self.ctx.rank]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None:
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.order_gen.set_state(rng["order"])
        self.aug_gen.set_state(rng["aug"])
        self.mix_rng.bit_generator.state = rng["mix"]
        if "loss" in rng:  # checkpoints before 2026-11-27 have none (no EQL run had one)
            self.loss_gen.set_state(rng["loss"])
        self.next_epoch = self.saved = state["next_epoch"]
        self.history, self.best = state["history"], state["best"]
        self.elapsed_s, self.started_at = state["elapsed_s"], state["started_at"]
        # checkpoints written before segments existed: the first process is unknown
        earlier = state.get("segments") or [{"from_epoch": 0, "git_commit": None, "git_dirty": None, "device": None,
                                             "torch_version": None, "compile": None,
                                             "started_at": state["started_at"]}]
        self.segments = [*earlier, self.segment(self.next_epoch)]

    # ---- the loop

    def fit(self, checkpoint: Path | None = None, quiet: bool = False, checkpoint_every: int = 1) -> dict[str, Any]:
        """Train epochs ``next_epoch .. epochs-1`` and return the record; on rank 0
        ``checkpoint`` is written as :meth:`end_epoch` says.  Ctrl-C (SIGINT) raises
        TrainingInterrupted, which says what the checkpoint holds."""
        _check_every(checkpoint_every)
        c = self.config
        show = self.ctx.main and not quiet
        # a bar where stderr is a terminal; elsewhere (a notebook under papermill, a log file) a bar's
        # carriage returns show nothing useful: one line per epoch instead
        bar_shown = show and stderr_is_terminal()
        last: dict[str, np.ndarray] | None = None
        seconds: list[float] = []  # this process's epochs, for the time still to go
        with tqdm(total=c.epochs, initial=self.next_epoch, desc=f"{c.method} seed {c.seed}", unit="epoch",
                  disable=not bar_shown, dynamic_ncols=True,
                  bar_format="{l_bar}{bar}| {n:.1f}/{total_fmt} epochs [{elapsed}<{remaining}{postfix}]") as bar:
            try:
                for epoch in range(self.next_epoch, c.epochs):
                    t0 = time.perf_counter()
                    loss = self.train_epoch(epoch, self.epoch_indices(), bar if bar_shown else None)
                    result = self.evaluate() if c.evaluates(epoch) else None
                    last = result or last
                    seconds.append(time.perf_counter() - t0)
                    row = self.end_epoch(epoch, loss, result, seconds[-1], checkpoint, checkpoint_every)
                    err = f" err {row['test_error']:.2f}" if "test_error" in row else ""
                    if bar_shown:
                        bar.set_postfix_str(f"loss {loss:.4f} lr {row['lr']:.4g}{err}", refresh=False)
                        bar.update(self.next_epoch - bar.n)
                    elif show:
                        left = (c.epochs - self.next_epoch) * sum(seconds) / len(seconds)
                        print(f"{c.method} seed {c.seed}: epoch {self.next_epoch}/{c.epochs} loss {loss:.4f} "
                              f"lr {row['lr']:.4g}{err} ({seconds[-1]:.1f} s; about {clock(left)} to go)",
                              file=sys.stderr, flush=True)
            except KeyboardInterrupt as err:
                raise self.interrupted(checkpoint) from err
        if last is None:  # resumed after the last epoch: evaluate the restored weights
            last = self.evaluate()
        return self.record(last)

    def interrupted(self, checkpoint: Path | None) -> TrainingInterrupted:
        """What a Ctrl-C leaves: the epoch it stopped in, and what the checkpoint holds."""
        c = self.config
        saved = saved_epochs(checkpoint) if checkpoint is not None else None
        held = f"checkpoint {checkpoint} holds {epochs_held(saved)}" if saved else "no checkpoint yet"
        return TrainingInterrupted(f"{c.method} seed {c.seed} stopped in epoch {self.next_epoch + 1} "
                                   f"of {c.epochs}; {held}")

    def record(self, result: dict[str, np.ndarray]) -> dict[str, Any]:
        """The run record (kps.results schema) from the final evaluation."""
        c = self.config
        final = summarize(result["correct"], result["total"], self.counts)
        rcos = summarize(result["correct_rcos"], result["total"], self.counts) if "correct_rcos" in result else None
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


# --------------------------------------------------------------------------- one run's life


def train(config: RunConfig, *, data_root: str | Path = "data", out: str | Path = "results",
          device: str = "cpu", resume: bool = False, quiet: bool = False, force: bool = False,
          checkpoint_dir: str | Path | None = None, data: LTData | None = None,
          num_workers: int = 8, checkpoint_every: int = 1) -> dict[str, Any]:
    """Train ``config`` and write its record under ``out``; returns the record.

    Under torchrun (WORLD_SIZE > 1) every process calls this; only rank 0 writes
    the record and the checkpoints.  ``data`` skips loading (a grid worker reuses
    one copy); ``resume`` continues from the run's checkpoint under
    ``checkpoint_dir`` (default :func:`kps.checkpoints.default_checkpoint_dir` of
    ``out``) if there is one; without ``resume`` an unfinished checkpoint is
    replaced, and said so.  The last checkpoint stays beside the record as the run's
    final weights; it never stands in for training: with ``force`` (a record
    replaced) the run trains again from epoch 1.  An existing record is an error
    unless ``force``; nothing is written before these checks pass."""
    _check_every(checkpoint_every)
    checkpoint_dir = default_checkpoint_dir(out) if checkpoint_dir is None else checkpoint_dir
    record_file, ckpt = config_record_path(out, config), checkpoint_path(checkpoint_dir, config)
    ctx, dev = init_distributed(device)
    problem: Exception | None = None
    if ctx.main:
        try:
            _check_outputs(record_file, ckpt, force)
        except (ValueError, FileExistsError) as err:
            problem = err
    if ctx.world_size > 1:  # every rank stops if rank 0 cannot write
        box = [problem]
        dist.broadcast_object_list(box, src=0)
        problem = box[0]
    if problem is not None:
        raise problem
    try:
        if data is None:
            data = load_data(config, data_root)
        trainer = _make_trainer(config, data, dev, ckpt, resume=resume, quiet=quiet or not ctx.main,
                                num_workers=num_workers, finished_ok=not force)
    except KeyboardInterrupt as err:  # Ctrl-C while loading the data or building the run
        raise TrainingInterrupted(f"{config.method} seed {config.seed} stopped before training, while loading its "
                                  "data or checkpoint; nothing was written") from err
    record = trainer.fit(ckpt, quiet=quiet, checkpoint_every=checkpoint_every)
    if ctx.main:
        write_record(record, out, force=force)
    return record


def _check_outputs(record_file: Path, checkpoint: Path, force: bool) -> None:
    """Before any work: the results and checkpoint folders are writable and the
    run's record does not exist yet (unless ``force``)."""
    check_writable_dir(record_file.parent, "results folder")
    if record_file.exists() and not force:
        try:
            read_record_file(record_file)
        except RecordError as err:  # said apart: the pages would fail on it, and --force is the way out
            raise ValueError(f"record {record_file} exists but is damaged ({err.problem}); --force trains the run "
                             "again and replaces it") from err
        raise FileExistsError(f"record {record_file} exists; records are immutable: use another seed, or --force")
    check_writable_dir(checkpoint.parent, "checkpoint folder")


def _make_trainer(config: RunConfig, data: LTData, device: torch.device | str, ckpt: Path, *,
                  resume: bool, quiet: bool = True, num_workers: int = 8, finished_ok: bool = True) -> Trainer:
    """A Trainer for ``config``; with ``resume`` it continues from its checkpoint ``ckpt``
    if there is one (a finished one only if ``finished_ok``: it then only writes its
    run's record)."""
    trainer = Trainer(config, data, device, num_workers=num_workers)
    saved = saved_epochs(ckpt) if ckpt.exists() else None
    if resume and ckpt.exists() and (finished_ok or saved != config.epochs):
        state = load_checkpoint(ckpt)
        try:
            trainer.load_state(state, str(ckpt))
        except (KeyError, IndexError, TypeError, RuntimeError) as err:  # a dict of the wrong shape or sizes
            raise unreadable_checkpoint(ckpt, err) from err
        if not quiet:
            tqdm.write(f"resuming {ckpt} after epoch {trainer.next_epoch}")
    elif ckpt.exists():
        # said even when quiet: work is thrown away
        tqdm.write(f"starting again at epoch 1: the checkpoint {ckpt} ({epochs_held(saved)}) is replaced")
    return trainer
