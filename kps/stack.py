"""Several runs trained as one network ("stacking"): k small CIFAR runs in the
kernels of one, the mechanism for many runs on one GPU.  Unmeasured on a GPU so
far: it is tested on CPU (the same numbers as runs alone, up to float sums).

Runs that read the same images in the same order with the same augmentation (same
data set and subset, same seed, same optimisation settings: every RunConfig key but
:data:`STACK_FREE_KEYS`) differ only in their heads and losses.  Their ResNet-32
bodies are put side by side along the channels (``ResNet32Body(copies=k)``: the
first convolution has 16 k filters, every later one k groups, BatchNorm works per
channel anyway), each run keeps its own head and loss, and one SGD optimizer steps
the whole.  The loss is the sum of the runs' losses, so each run's weights get
exactly its own gradient, and SGD (momentum, weight decay) works element by
element: up to the order of floating-point sums this is k separate runs.  One
kernel does k runs' work, which is what a GPU needs for networks this small (a
ResNet-32 step on a batch of 64 is bound by kernel launches).

The members are ordinary :class:`kps.train.Trainer` objects, which know nothing of
the stack: :func:`fit_stack` sets each member's epoch (lr, GA, DRW), trains the
stack, and hands each member its loss and evaluation to book
(:meth:`kps.train.Trainer.end_epoch`; a diverged member ends alone), after copying its slice of the stacked
weights, BatchNorm statistics and momenta back into its own model and optimizer
whenever its checkpoint is due (:meth:`Stack.export`).  So records and checkpoints
stay per run, in the ordinary format, and a stack is built from its members'
states: resumed runs stack when they stand at the same epoch with the same random
states.  A record says how many runs its process stacked
(``segments[-1]["stacked_runs"]``); its time per epoch is the stack's.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from kps.configs import RunConfig
from kps.metrics import count_correct
from kps.models import Classifier, ResNet32Body, Scores
from kps.train import (EVAL_BATCH, Trainer, TrainingDiverged, check_every, compile_fn, make_optimizer,
                       new_compiled_step, set_lr, sgd_step)

__all__ = ["STACK_FREE_KEYS", "stack_key", "stack_states", "member_state", "Stack", "fit_stack", "stack_groups"]

# what may differ between the runs of a stack: the method and its loss's numbers and switches
STACK_FREE_KEYS = ("method", "m_max", "n_base", "s_base", "ga_variant", "ga_switch_epoch", "drw_epoch", "drw_beta")


def stack_key(config: RunConfig) -> tuple[Any, ...] | None:
    """Configurations with equal keys can train stacked; None for one that cannot
    stack at all (not ResNet-32, or mixup: its mixing draws differ per run)."""
    if config.arch != "resnet32" or config.mixup_alpha > 0:
        return None
    return tuple((k, tuple(v) if isinstance(v, list) else v)
                 for k, v in sorted(config.to_dict().items()) if k not in STACK_FREE_KEYS)


def stack_states(states: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The state dict of ``ResNet32Body(copies=k)`` from k bodies' state dicts: every
    tensor concatenated along dim 0 (conv filters, BatchNorm channels); BatchNorm's
    step counters, equal in all, kept once."""
    out = {}
    for name in states[0]:
        tensors = [s[name] for s in states]
        if tensors[0].dim() == 0:
            if any(not torch.equal(t, tensors[0]) for t in tensors[1:]):
                raise ValueError(f"{name} differs between the runs: {[int(t) for t in tensors]}")
            out[name] = tensors[0].clone()
        else:
            out[name] = torch.cat(tensors)
    return out


def member_state(state: Mapping[str, torch.Tensor], copies: int, i: int) -> dict[str, torch.Tensor]:
    """Copy ``i``'s state dict (an ordinary ResNet32Body's) from a stacked one."""
    return {name: t.clone() if t.dim() == 0 else t.chunk(copies)[i].clone() for name, t in state.items()}


class _Heads(nn.Module):
    """Each run's head on its own columns of the stacked features: (B, D k) -> (k, B, C)."""

    def __init__(self, heads: Sequence[nn.Module]) -> None:
        super().__init__()
        self.runs = nn.ModuleList(heads)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        features = features.unflatten(1, (len(self.runs), -1))
        return torch.stack([head(features[:, i]) for i, head in enumerate(self.runs)])


class Stack:
    """``members`` (Trainers, at least 2, of stackable configurations at the same
    epoch) trained as one network (module docstring)."""

    def __init__(self, members: Sequence[Trainer]) -> None:
        members = list(members)
        _check_members(members)
        first, k = members[0], len(members)
        c = self.config = first.config
        self.members, self.k, self.device = members, k, first.device
        with torch.random.fork_rng(devices=[]):  # its initial weights are overwritten: leave the global RNG as it was
            body = ResNet32Body(copies=k, width=c.width)
        body.load_state_dict(stack_states([m.model.body.state_dict() for m in members]))
        if c.channels_last:
            body = body.to(memory_format=torch.channels_last)
        self.model = Classifier(body.to(self.device), _Heads([m.model.head for m in members]))
        self.net = Scores(self.model, c.bf16)
        self.optimizer = make_optimizer(self.model.parameters(), c, self.device)
        self._import_momenta()
        self.aug_gen = first.aug_gen  # every member's augmentation draws are the same
        self.radius = torch.stack([torch.ones(first.num_classes, device=self.device) if m.radius is None
                                   else m.radius for m in members])
        self.compiled_loss = compile_fn(self.batch_losses, c.compile)
        self.compiled_eval = compile_fn(self.net, c.compile)
        for m in members:
            m.segments[-1]["stacked_runs"] = k

    # ---- members' weights and momenta in and out

    def _body_pairs(self, member: Trainer) -> list[tuple[nn.Parameter, nn.Parameter]]:
        """(stacked parameter, the member's own) for every body parameter."""
        mine = dict(member.model.body.named_parameters())
        return [(p, mine[name]) for name, p in self.model.body.named_parameters()]

    def _import_momenta(self) -> None:
        """The members' SGD momenta (resumed runs) into the stack's optimizer."""
        pairs = [self._body_pairs(m) for m in self.members]
        for j, (stacked, _) in enumerate(pairs[0]):
            buffers = [m.optimizer.state.get(p[j][1], {}).get("momentum_buffer") for m, p in zip(self.members, pairs)]
            if all(b is None for b in buffers):
                continue
            if any(b is None for b in buffers):
                raise ValueError("some of the runs have SGD momenta and some have not: they cannot be stacked")
            self.optimizer.state[stacked]["momentum_buffer"] = torch.empty_like(stacked).copy_(torch.cat(buffers))
        for m in self.members:  # heads are the members' own parameters
            for p in m.model.head.parameters():
                if p in m.optimizer.state:
                    self.optimizer.state[p] = m.optimizer.state[p]

    def export(self, member: Trainer) -> None:
        """Copy ``member``'s slice of the stack (weights, BatchNorm statistics, momenta,
        augmentation random state) into its own model and optimizer, for its checkpoint."""
        i = self.members.index(member)
        member.model.body.load_state_dict(member_state(self.model.body.state_dict(), self.k, i))
        for stacked, own in self._body_pairs(member):
            buffer = self.optimizer.state.get(stacked, {}).get("momentum_buffer")
            if buffer is not None:
                member.optimizer.state[own]["momentum_buffer"] = buffer.chunk(self.k)[i].clone()
        for p in member.model.head.parameters():
            if p in self.optimizer.state:
                member.optimizer.state[p] = self.optimizer.state[p]
        if member.aug_gen is not self.aug_gen:
            member.aug_gen.set_state(self.aug_gen.get_state())

    # ---- one epoch of every member

    def batch_losses(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each member's mean loss on the batch, (k,): the unit ``compile`` compiles."""
        scores = self.net(x)
        return torch.stack([m.loss_fn(s, y) for m, s in zip(self.members, scores)])

    def train_epoch(self, epoch: int, indices: torch.Tensor) -> torch.Tensor:
        """Every member's :meth:`~kps.train.Trainer.set_epoch` (its GA switch and DRW
        weights), then one pass over ``indices``; the members' mean losses (k,)."""
        lr = [m.set_epoch(epoch) for m in self.members][0]
        set_lr(self.optimizer, lr)
        self.model.train()
        source, batch = self.members[0].source, self.config.batch_size
        loss_sum = torch.zeros(self.k, dtype=torch.float64, device=self.device)
        seen = 0
        for x, y in source.train_batches(indices, batch, self.aug_gen):
            if self.config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if self.compiled_loss is not None and len(y) == batch:
                new_compiled_step(self.config.compile)
                losses = self.compiled_loss(x, y)
            else:
                losses = self.batch_losses(x, y)
            sgd_step(self.optimizer, losses.sum())
            loss_sum += losses.detach().double() * len(y)
            seen += len(y)
        return loss_sum / seen

    @torch.no_grad()
    def evaluate(self) -> list[dict[str, np.ndarray]]:
        """Every member's :meth:`~kps.train.Trainer.evaluate` counts, from one pass of the stack."""
        self.net.eval()
        first = self.members[0]
        counts = torch.zeros(self.k, 3, first.num_classes, dtype=torch.long, device=self.device)

        def scores(x: torch.Tensor) -> torch.Tensor:
            if self.config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if self.compiled_eval is not None and len(x) == EVAL_BATCH:
                new_compiled_step(self.config.compile)
                return self.compiled_eval(x).float()
            return self.net(x).float()

        indices = torch.arange(first.n_test, device=first.source.generator_device)
        count_correct(first.source.test_batches(indices, EVAL_BATCH), scores, self.radius, counts)
        return [m.read_counts(c) for m, c in zip(self.members, counts)]


def _check_members(members: list[Trainer]) -> None:
    if len(members) < 2:
        raise ValueError(f"a stack needs at least 2 runs, got {len(members)}")
    unstackable = [m.config.method for m in members if stack_key(m.config) is None]
    if unstackable:
        raise ValueError(f"only ResNet-32 runs without mixup can be stacked, not: {', '.join(unstackable)}")
    first = members[0]
    if len({stack_key(m.config) for m in members}) > 1:
        differ = sorted(k for k in RunConfig.keys() if k not in STACK_FREE_KEYS
                        and len({repr(getattr(m.config, k)) for m in members}) > 1)
        raise ValueError(f"runs that differ in {', '.join(differ)} cannot be stacked (they train on different "
                         f"batches or schedules)")
    problems = [why for bad, why in (
        (len({m.next_epoch for m in members}) > 1,
         f"they stand at different epochs ({sorted({m.next_epoch for m in members})})"),
        (first.next_epoch >= first.config.epochs, "they have no epoch left to train"),
        (len({str(m.device) for m in members}) > 1, "they are on different devices"),
        (any(m.ctx.world_size > 1 for m in members), "one is a DistributedDataParallel run"),
        (len({id(m) for m in members}) < len(members), "one run is listed twice"),
        (any(not torch.equal(m.order_gen.get_state(), first.order_gen.get_state())
             or not torch.equal(m.aug_gen.get_state(), first.aug_gen.get_state()) for m in members[1:]),
         "their data-order or augmentation random states differ"),
    ) if bad]
    if problems:
        raise ValueError("these runs cannot be stacked: " + "; ".join(problems))


def stack_groups(trainers: Sequence[Trainer]) -> list[list[Trainer]]:
    """``trainers`` in groups that can share a network (equal :func:`stack_key`, epoch
    and random states), in their order; a trainer that can stack with none is a group
    of one."""
    groups: dict[Any, list[Trainer]] = {}
    for i, t in enumerate(trainers):
        key = stack_key(t.config)
        if key is None or t.ctx.world_size > 1 or t.next_epoch >= t.config.epochs:
            key = ("alone", i)
        else:
            rng = (bytes(t.order_gen.get_state().tolist()), bytes(t.aug_gen.get_state().tolist()))
            key = (key, t.next_epoch, str(t.device), rng)
        groups.setdefault(key, []).append(t)
    return list(groups.values())


def fit_stack(trainers: Sequence[Trainer], checkpoints: Sequence[Path | None], *,
              checkpoint_every: int = 1) -> list[dict[str, Any] | TrainingDiverged]:
    """Train ``trainers`` (stackable, at the same epoch) as one :class:`Stack` to the end;
    returns each member's record, or the TrainingDiverged that ended it.  Each member's
    checkpoint is written as its own :meth:`~kps.train.Trainer.end_epoch` says.  A member
    whose loss diverges is ended alone: its columns of the stack train on, unread (its
    loss reaches only its own weights: the losses are summed and the convolutions grouped)."""
    check_every(checkpoint_every)
    stack = Stack(trainers)
    first, c = trainers[0], trainers[0].config
    last: list[dict[str, np.ndarray] | None] = [None] * len(trainers)
    ended: dict[int, TrainingDiverged] = {}
    try:
        for epoch in range(first.next_epoch, c.epochs):
            if len(ended) == len(trainers):
                break
            t0 = time.perf_counter()
            losses = stack.train_epoch(epoch, first.epoch_indices()).tolist()
            for m in trainers[1:]:
                m.epoch_indices()  # keep every member's data-order generator where the run alone has it
            results = stack.evaluate() if first.eval_due(epoch) else [None] * len(trainers)
            seconds = time.perf_counter() - t0
            for i, (m, ckpt) in enumerate(zip(trainers, checkpoints)):
                if i in ended:
                    continue
                if ckpt is not None and m.checkpoint_due(epoch, checkpoint_every):
                    stack.export(m)
                last[i] = results[i] or last[i]
                try:
                    m.end_epoch(epoch, losses[i], results[i], seconds, ckpt, checkpoint_every)
                except TrainingDiverged as err:
                    ended[i] = err
    except KeyboardInterrupt as err:
        raise first.interrupted(checkpoints[0]) from err
    return [ended[i] if i in ended else m.record(r) for i, (m, r) in enumerate(zip(trainers, last))]
