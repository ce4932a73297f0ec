"""Several runs trained as one network ("stacking"): k small CIFAR runs in the
kernels of one.

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
ResNet-32 step on a batch of 64 is bound by kernel launches, see :mod:`kps.graphs`).

Records and checkpoints stay per run, in the ordinary format: before a member's
checkpoint its slice of the stacked weights, BatchNorm statistics and momenta is
copied back into its own model and optimizer (:meth:`Stack.export`), and a stack
is built from its members' states, so resumed runs stack too when they stand at
the same epoch with the same random states.  Members are ordinary
:class:`kps.train.Trainer` objects driven by :func:`kps.together.fit_together`:
each member books its epoch (its ``submit_epoch`` returns a view into this
stack's loss buffer) and the stack trains the booked epoch for all of them at the
end of the round (:meth:`Stack.flush`), after every member has read back and
checkpointed the previous one.  A member that ends early (stopped, failed) keeps
its columns in the stack; they go on training, unread.  A record says how many
runs its process stacked (``segments[-1]["stacked_runs"]``), and its time per
epoch is the stack's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from kps.configs import RunConfig
from kps.graphs import GRAPH_MODES
from kps.models import Classifier, ResNet32Body
from kps.train import (EVAL_BATCH, Scores, Trainer, apply_lr, compile_fns, count_correct, eval_scores, graph_parts,
                       make_optimizer, new_graph_step, queue_epoch, sgd_step)

__all__ = ["STACK_FREE_KEYS", "stack_key", "stack_states", "member_state", "Stack", "stack_trainers"]

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
        self.losses = torch.zeros(k, dtype=torch.float64, device=self.device)
        self.counts = torch.zeros(k, 3, first.num_classes, dtype=torch.long, device=self.device)
        self.booked_epoch: tuple[int, torch.Tensor] | None = None
        self.booked_eval = False
        self.compiled_loss, self.compiled_eval = compile_fns(self.batch_losses, self.net, c.compile)
        self.static = self.step_graph = self.eval_graph = self.lr_tensor = None
        if c.compile in GRAPH_MODES:  # each member checked the mode's requirements when it was made
            self.lr_tensor, self.static, self.step_graph, self.eval_graph = graph_parts(
                self.static_step, [self.aug_gen, *(m.loss_gen for m in members)], self.net, self.compiled_eval,
                first.n_train, c.batch_size, self.device, runs=k)
        for m in members:
            m.stack = self
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

    def recompiles(self) -> int:
        """How often its compiled step may compile: at the start, and once per GA or DRW
        switch epoch among the members (each changes what the loss reads)."""
        switches = {(m.config.ga_switch_epoch if m.spec.ga else None, m.config.drw_epoch if m.spec.drw else None)
                    for m in self.members}
        return 2 + len({e for pair in switches for e in pair if e is not None})

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

    # ---- booking by the members, training by the stack

    def request_epoch(self, member: Trainer, epoch: int, indices: torch.Tensor) -> torch.Tensor:
        """``member`` books ``epoch`` (the permutation ``indices``, the same for every
        member); returns its mean training loss, a device scalar filled at :meth:`flush`."""
        if self.booked_epoch is None:
            self.booked_epoch = (epoch, indices)
        elif self.booked_epoch[0] != epoch:
            raise RuntimeError(f"stacked runs booked epochs {self.booked_epoch[0]} and {epoch} at once")
        return self.losses[self.members.index(member)]

    def request_evaluation(self, member: Trainer) -> torch.Tensor:
        """``member`` books an evaluation; returns its (3, classes) counts, filled at :meth:`flush`."""
        self.booked_eval = True
        return self.counts[self.members.index(member)]

    def flush(self) -> None:
        """Queue the booked epoch for every member, then the booked evaluation."""
        booked, self.booked_epoch = self.booked_epoch, None
        if booked is not None:
            self._train_epoch(*booked)
        if self.booked_eval:
            self.booked_eval = False
            self._evaluate()

    def graph_key(self) -> tuple[Any, ...]:
        return tuple(m.graph_key() for m in self.members)

    def _train_epoch(self, epoch: int, indices: torch.Tensor) -> None:
        lr = [m.set_epoch(epoch) for m in self.members][0]  # every member's GA switch and DRW weights
        apply_lr(self.optimizer, lr, self.lr_tensor)
        self.model.train()
        first = self.members[0]
        loss_sum, seen = queue_epoch(self, first.source, self.aug_gen, indices, first.n_train, self.config.batch_size,
                                     torch.zeros(self.k, dtype=torch.float64, device=self.device))
        self.losses.copy_(loss_sum / seen)

    def batch_losses(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each member's mean loss on the batch, (k,): the unit ``compile`` compiles."""
        scores = self.net(x)
        return torch.stack([m.loss_fn(s, y) for m, s in zip(self.members, scores)])

    def step(self, x: torch.Tensor, y: torch.Tensor, full: int) -> torch.Tensor:
        """One SGD step of every member on the batch; returns their mean losses (k,)."""
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.compiled_loss is not None and len(y) == full:
            new_graph_step(self.config.compile)
            losses = self.compiled_loss(x, y)
        else:
            losses = self.batch_losses(x, y)
        sgd_step(self.optimizer, losses.sum())
        return losses

    def static_step(self) -> None:
        """:meth:`step` on the static batch, adding the losses to the epoch's sums."""
        source = self.members[0].source
        self.static.finish_step(self.step(*source.static_batch(self.static, self.aug_gen), self.static.batch_size))

    @torch.no_grad()
    def _evaluate(self) -> None:
        self.net.eval()
        first = self.members[0]
        self.counts.zero_()
        indices = torch.arange(first.n_test, device=first.source.generator_device)
        count_correct(first.source.test_batches(indices, EVAL_BATCH),
                      lambda x: eval_scores(x, self.net, self.compiled_eval, self.eval_graph, self.config),
                      self.radius, self.counts)


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
        (any(m.stack is not None for m in members), "one is in a stack already"),
        (len({id(m) for m in members}) < len(members), "one run is listed twice"),
        (any(not torch.equal(m.order_gen.get_state(), first.order_gen.get_state())
             or not torch.equal(m.aug_gen.get_state(), first.aug_gen.get_state()) for m in members[1:]),
         "their data-order or augmentation random states differ"),
    ) if bad]
    if problems:
        raise ValueError("these runs cannot be stacked: " + "; ".join(problems))


def stack_trainers(trainers: Sequence[Trainer]) -> list[Stack]:
    """Stack every group of two or more ``trainers`` that can share a network (equal
    :func:`stack_key`, epoch and random states); the others stay as they are."""
    groups: dict[Any, list[Trainer]] = {}
    for t in trainers:
        key = stack_key(t.config)
        if key is not None and t.ctx.world_size == 1 and t.next_epoch < t.config.epochs:
            rng = (bytes(t.order_gen.get_state().tolist()), bytes(t.aug_gen.get_state().tolist()))
            groups.setdefault((key, t.next_epoch, str(t.device), rng), []).append(t)
    return [Stack(group) for group in groups.values() if len(group) >= 2]
