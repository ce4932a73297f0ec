"""Whole training steps as CUDA graphs: the compile modes "cuda-graph" and
"cuda-graph-compiled" of :class:`kps.train.Trainer`.

A ResNet-32 step on a batch of 64 is a few hundred small kernels; launched one by
one from Python the host, not the GPU, sets the pace (measured on an H200,
2026-11-26: 16 ms per step eager, 3.6 ms with ``torch.compile`` "reduce-overhead",
which graphs the forward and backward but leaves the batch gather, augmentation
and SGD eager).  Here one CUDA graph holds the whole step: gather the batch from
the device-resident uint8 images by the epoch's permutation, augment it
(:class:`kps.data.GPUAugment`, on the trainer's own generator, registered with the
graph so that every replay draws fresh crops and flips), forward, loss, backward,
fused SGD with the learning rate read from a device tensor, add the batch loss to
the epoch's sum and advance the step counter.  One replay per step, no Python in
between.  "cuda-graph-compiled" captures the ``torch.compile`` (mode "default")
forward + loss inside the same graph (fused kernels: fewer of them to run).

What a graph bakes in is fixed per :meth:`kps.train.Trainer.graph_key` (whether
GA is on, the DRW weight tensor); a new key (GA switching on at epoch 120, DRW
weights at epoch 160) captures a new graph after warm-up steps, as PyTorch's
recipe asks ("Whole-network capture" in the CUDA semantics notes): the warm-up
steps are real steps of the epoch, run eagerly on a side stream.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

import torch

__all__ = ["GRAPH_MODES", "WARMUP_STEPS", "StaticBatches", "StepGraph", "ForwardGraph"]

GRAPH_MODES = ("cuda-graph", "cuda-graph-compiled")
WARMUP_STEPS = 3  # eager steps before a capture (PyTorch's recipe uses 3)


def _warm_up(fn: Callable[[], object], times: int, stream: torch.cuda.Stream) -> None:
    """Run ``fn`` ``times`` times on ``stream`` (the graph's own) before a capture there:
    lazy set-up such as cuDNN's algorithm choice, compilation and the cuBLAS workspace of
    that stream happens here, outside the graph; then rejoin the current stream."""
    current = torch.cuda.current_stream(stream.device)
    stream.wait_stream(current)
    with torch.cuda.stream(stream):
        for _ in range(times):
            fn()
    current.wait_stream(stream)


def _capture(graph: torch.cuda.CUDAGraph, stream: torch.cuda.Stream) -> torch.cuda.graph:
    """Capture into ``graph`` on ``stream``.  Each graph has a stream of its own: PyTorch
    keeps one cuBLAS workspace per stream, so graphs captured on a shared stream would
    share (and, replayed at once on several streams, race for) one workspace."""
    return torch.cuda.graph(graph, stream=stream)


class StaticBatches:
    """The device buffers a captured step reads: the epoch's permutation, the step
    counter k (batch k = ``order[k B : (k + 1) B]``) and the epoch's loss sum, one per
    run (``runs`` > 1: a stack of runs, :mod:`kps.stack`, whose step returns ``runs`` losses)."""

    def __init__(self, n_train: int, batch_size: int, device: torch.device | str, runs: int = 1) -> None:
        if batch_size < 1 or n_train < batch_size:
            raise ValueError(f"need 1 <= batch size <= training images, got {batch_size} and {n_train}")
        self.batch_size = batch_size
        self.order = torch.zeros(n_train, dtype=torch.long, device=device)
        self.offsets = torch.arange(batch_size, device=device)
        self.step = torch.zeros((), dtype=torch.long, device=device)
        self.loss_sum = torch.zeros(() if runs == 1 else (runs,), dtype=torch.float64, device=device)

    def start_epoch(self, order: torch.Tensor) -> int:
        """Load the epoch's permutation; returns the number of full batches."""
        if order.shape != self.order.shape:
            raise ValueError(f"the permutation has {len(order)} entries, the buffer {len(self.order)}")
        self.order.copy_(order)
        self.step.zero_()
        self.loss_sum.zero_()
        return len(order) // self.batch_size

    def indices(self) -> torch.Tensor:
        """Batch k's indices into the training set (k read from the device)."""
        return self.order.index_select(0, self.step * self.batch_size + self.offsets)

    def finish_step(self, loss: torch.Tensor) -> None:
        """Add the batch's mean loss(es) times its size to the sum(s); advance k."""
        self.loss_sum.add_(loss.detach().double() * self.batch_size)
        self.step.add_(1)


class StepGraph:
    """Runs ``step`` (one training step reading only device buffers) ``n`` times:
    by replaying the graph captured for the current key, or, for a new key,
    :data:`WARMUP_STEPS` eager steps on a side stream, then a capture, then replays.
    ``step`` sets the gradients to None before its backward, so the captured backward
    allocates them in the graph's own memory; ``generators`` are the custom random
    generators the step draws from."""

    def __init__(self, step: Callable[[], None], generators: Sequence[torch.Generator],
                 device: torch.device) -> None:
        if device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, got {device}")
        self.step, self.generators, self.device = step, generators, device
        # warm-up and capture (see _capture); taken from the device's pool of streams at the first
        # capture, so that a trainer that never captures (a member of a kps.stack.Stack) takes none
        self.stream: torch.cuda.Stream | None = None
        self.key: Hashable | None = None
        self.graph: torch.cuda.CUDAGraph | None = None

    def run(self, key: Hashable, n: int) -> None:
        done = 0
        if self.graph is None or key != self.key:
            self.graph = None  # keys only move forward (GA on, DRW on): the old graph is not replayed again
            done = min(WARMUP_STEPS, n)
            self.stream = self.stream or torch.cuda.Stream(self.device)
            _warm_up(self.step, done, self.stream)
            if done == n:
                return
            graph = torch.cuda.CUDAGraph()
            for generator in self.generators:
                graph.register_generator_state(generator)
            with _capture(graph, self.stream):
                self.step()  # recorded, not run: the replays below run it
            self.graph, self.key = graph, key
        for _ in range(n - done):
            self.graph.replay()


class ForwardGraph:
    """``fn(x)`` for inputs of one shape as a CUDA graph (the evaluation forward):
    the input is copied into a static buffer, the graph replayed, the static output
    returned (valid until the next call)."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.fn = fn
        self.graph: torch.cuda.CUDAGraph | None = None
        self.x: torch.Tensor | None = None
        self.out: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.graph is None:
            stream = torch.cuda.Stream(x.device)  # warm-up and capture (see _capture)
            _warm_up(lambda: self.fn(x), WARMUP_STEPS, stream)
            self.x = x.clone(memory_format=torch.preserve_format)
            graph = torch.cuda.CUDAGraph()
            with _capture(graph, stream):
                self.out = self.fn(self.x)
            self.graph = graph
        if x.shape != self.x.shape or x.stride() != self.x.stride():
            raise ValueError(f"a graph captured for {tuple(self.x.shape)} got {tuple(x.shape)}")
        self.x.copy_(x)
        self.graph.replay()
        return self.out
