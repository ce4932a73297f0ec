"""Several runs at once in one process, each on its own CUDA stream.

A ResNet-32 step on a batch of 64 leaves most of a large GPU idle: its kernels
are small, and one run's kernels follow one another on one stream.  Runs on
separate streams of one process may overlap on the device, without CUDA MPS.
:func:`fit_together` steps the runs' :meth:`kps.train.Trainer.epochs`
generators in turn: each step reads back that run's epoch in flight (the one
host synchronisation per epoch: it waits for that run's stream only) and queues
its next epoch, so while the host serves one run the device works on the
others.  With the whole-step CUDA graphs (compile modes "cuda-graph",
"cuda-graph-compiled") queueing an epoch costs the host a few milliseconds.

Each run keeps its own model, optimizer, random generators and schedule, and no
run draws from a random generator another one uses, so the interleaving changes
no number: on CPU (no streams; the runs simply take turns) every run trains bit
for bit as it does alone (tests/test_together.py).  A run that fails (e.g. its
loss diverges) ends alone; the others go on.  ``stop`` lets a watcher end a run
early: it is checkpointed after its epoch in flight, to be resumed later.

Runs that read the same batches can also train as one network (:mod:`kps.stack`,
``train_together(..., stack=True)``): a stack's members take their turns like the
other runs, booking their epoch, and the stack trains it for all of them at the end
of each round, on the stack's one stream.  A stack counts as one run for the
limits below.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from kps.configs import RunConfig
from kps.data import LTData
from kps.results import config_record_path, write_record
from kps.stack import Stack, stack_trainers
from kps.train import (CUDAGRAPH_COMPILE_MODES, Distributed, Trainer, check_outputs, data_key, default_checkpoint_dir,
                       load_data, make_trainer, to_device)

__all__ = ["MAX_CUDA_RUNS", "Outcome", "fit_together", "train_together"]

# torch.cuda.Stream() hands out the streams of a pool of 32 per device, round robin;
# a run uses 3 (its own, its step graph's, its evaluation graph's), and two runs
# sharing one would wait for each other
MAX_CUDA_RUNS = 10


@dataclass
class Outcome:
    """How one run of :func:`fit_together` ended: with its ``record``, with an
    ``error``, or ``stopped`` early (checkpointed after ``epochs_done`` epochs)."""

    record: dict[str, Any] | None = None
    error: Exception | None = None
    stopped: bool = False
    epochs_done: int = 0


def _stream_for(device: torch.device) -> torch.cuda.Stream | None:
    """A new stream on the CUDA ``device``, after the work queued so far there
    (model set-up, data upload); None on CPU."""
    if device.type != "cuda":
        return None
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    return stream


def _on(stream: torch.cuda.Stream | None) -> contextlib.AbstractContextManager:
    return torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()


def _allow_recompiles(units: Sequence[Trainer | Stack]) -> None:
    """Each run or stack compiles its own step (torch.compile guards on the module
    objects), and again where GA or DRW switch on: raise Dynamo's per-function
    recompile limit (8 by default) so that no run of the process falls back to eager."""
    need = sum(u.recompiles() if isinstance(u, Stack) else 4 for u in units if u.compiled_loss is not None)
    if need > 0:
        config = torch._dynamo.config
        config.recompile_limit = max(config.recompile_limit, need)


def fit_together(trainers: Sequence[Trainer], checkpoints: Sequence[Path | None], *, checkpoint_every: int = 1,
                 stop: Callable[[int], bool] | None = None,
                 on_end: Callable[[int, Outcome], None] | None = None,
                 progress: bool = True) -> list[Outcome]:
    """Train ``trainers`` to their last epoch side by side (module docstring); trainer
    i checkpoints to ``checkpoints[i]`` as :meth:`kps.train.Trainer.fit` does.
    ``stop(i)``, asked before each of run i's epochs, ends run i early (after its
    epoch in flight, checkpointed); ``on_end(i, outcome)`` is called as each run ends
    (e.g. to write its record at once).  Returns the outcomes in order."""
    if len(checkpoints) != len(trainers):
        raise ValueError(f"{len(trainers)} trainers but {len(checkpoints)} checkpoint paths")
    if any(t.ctx.world_size > 1 for t in trainers):
        raise ValueError("runs trained together are single-process runs, not DistributedDataParallel")
    units: dict[int, Trainer | Stack] = {}  # what runs on a stream of its own: a stack, or a run
    for t in trainers:
        unit = t.stack if t.stack is not None else t
        units.setdefault(id(unit), unit)
    graphed = sorted({t.config.compile for t in trainers} & set(CUDAGRAPH_COMPILE_MODES))
    if len(units) > 1 and graphed:
        raise ValueError(f"compile mode {graphed[0]!r} keeps one CUDA graph memory pool per device, shared by "
                         "every compiled function of the process: train such runs in separate processes, stack "
                         "them, or train them together in 'cuda-graph' / 'cuda-graph-compiled'")
    cuda = sum(u.device.type == "cuda" for u in units.values())
    if cuda > MAX_CUDA_RUNS:
        raise ValueError(f"{cuda} CUDA runs or stacks side by side: at most {MAX_CUDA_RUNS} per process (each "
                         f"takes 3 of PyTorch's pool of 32 streams: its own and its two graphs'); split them over "
                         f"processes (train-grid --jobs, bench/grid.py --per-process), or stack them")
    _allow_recompiles(list(units.values()))
    unit_streams = {key: _stream_for(u.device) for key, u in units.items()}
    streams = [unit_streams[id(t.stack if t.stack is not None else t)] for t in trainers]
    stacks = [u for u in units.values() if isinstance(u, Stack)]
    steps = [t.epochs(ckpt, checkpoint_every) for t, ckpt in zip(trainers, checkpoints)]
    outcomes: list[Outcome | None] = [None] * len(trainers)
    started = [False] * len(trainers)
    total = sum(t.config.epochs - t.next_epoch for t in trainers)
    active = list(range(len(trainers)))

    def finish(i: int, outcome: Outcome) -> None:
        outcomes[i] = outcome
        active.remove(i)
        if streams[i] is not None:
            torch.cuda.current_stream(trainers[i].device).wait_stream(streams[i])
        if on_end is not None:
            on_end(i, outcome)

    with tqdm(total=total, desc=f"{len(trainers)} runs together", unit="epoch", disable=not progress,
              dynamic_ncols=True) as bar:
        while active:
            for i in list(active):
                trainer = trainers[i]
                command = "stop" if stop is not None and stop(i) else None
                outcome = None
                if command == "stop" and not started[i]:
                    steps[i].close()
                    outcome = Outcome(stopped=True, epochs_done=trainer.next_epoch)
                else:
                    epochs_before = trainer.next_epoch
                    with _on(streams[i]):
                        try:
                            steps[i].send(command) if started[i] else next(steps[i])
                            started[i] = True
                        except StopIteration as end:
                            outcome = Outcome(record=end.value, stopped=end.value is None,
                                              epochs_done=trainer.next_epoch)
                        except Exception as err:  # noqa: BLE001 -- one run's failure ends that run only
                            outcome = Outcome(error=err, epochs_done=trainer.next_epoch)
                    bar.update(trainer.next_epoch - epochs_before)
                if outcome is not None:
                    finish(i, outcome)
            for stack in stacks:  # train the epoch the stack's members booked this round
                with _on(unit_streams[id(stack)]):
                    try:
                        stack.flush()
                    except Exception as err:  # noqa: BLE001 -- ends the stack's runs only
                        for i in [i for i in active if trainers[i].stack is stack]:
                            steps[i].close()
                            finish(i, Outcome(error=err, epochs_done=trainers[i].next_epoch))
            bar.set_postfix_str(f"{len(active)} running", refresh=False)
    return [o for o in outcomes if o is not None]


def _run_name(config: RunConfig) -> str:
    return config.method if config.ga_variant == "paper" else f"{config.method}:{config.ga_variant}"


def train_together(configs: Sequence[RunConfig], *, data_root: str | Path = "data", out: str | Path = "results",
                   device: str = "cuda", resume: bool = False, force: bool = False,
                   checkpoint_dir: str | Path | None = None, checkpoint_every: int = 1,
                   data: LTData | None = None, stop: Callable[[RunConfig], bool] | None = None,
                   on_end: Callable[[RunConfig, Outcome], None] | None = None,
                   quiet: bool = False, stack: bool = False) -> list[Outcome]:
    """:func:`kps.train.train` for several configurations at once (:func:`fit_together`):
    every output is checked before any work; each dataset is loaded (and moved to the
    device) once, unless ``data`` is given; each record is written as its run ends,
    then ``on_end(config, outcome)`` is called.  ``stack``: the runs that can share
    one network (:func:`kps.stack.stack_trainers`) train stacked."""
    if Distributed.current().world_size > 1:
        raise ValueError("train_together runs in one process; under torchrun use kps.train.train")
    checkpoint_dir = default_checkpoint_dir(out) if checkpoint_dir is None else checkpoint_dir
    paths = [config_record_path(out, c) for c in configs]
    if len(set(paths)) != len(paths):
        raise ValueError("the configurations repeat a run (two have the same record path)")
    for config in configs:
        check_outputs(config, out, checkpoint_dir, force)
    dev = torch.device(device)
    cache: dict[tuple[str, float, int], LTData] = {}
    trainers, checkpoints = [], []
    for config in configs:
        key = data_key(config)
        if key not in cache:
            cache[key] = to_device(data if data is not None else load_data(config, data_root), dev)
        trainer, ckpt = make_trainer(config, cache[key], dev, checkpoint_dir, resume=resume, quiet=quiet,
                                     finished_ok=not force)
        trainers.append(trainer)
        checkpoints.append(ckpt)
    if stack:
        stacks = stack_trainers(trainers)
        if not quiet:
            for s in stacks:
                tqdm.write(f"stacked as one network: {', '.join(_run_name(m.config) for m in s.members)}")

    def write(i: int, outcome: Outcome) -> None:
        if outcome.record is not None:
            write_record(outcome.record, out, force=force)
        if not quiet:
            c = configs[i]
            how = (f"final error {outcome.record['top1_error']:.2f}" if outcome.record is not None
                   else f"failed: {outcome.error}" if outcome.error is not None
                   else f"stopped after {outcome.epochs_done} epochs (checkpointed)")
            tqdm.write(f"{c.method} seed {c.seed}: {how}")
        if on_end is not None:
            on_end(configs[i], outcome)

    return fit_together(trainers, checkpoints, checkpoint_every=checkpoint_every,
                        stop=None if stop is None else (lambda i: stop(configs[i])), on_end=write,
                        progress=not quiet)
