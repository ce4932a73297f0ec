"""Whole-step CUDA graph mode (kps.graphs): the step a graph holds, checked on CPU
against the plain loop; refusals; what a graph bakes in.  Capture and replay need a
GPU: bench/bench.py times and checks them there (its fast trainers' epoch losses)."""

import dataclasses

import pytest
import torch
from synthetic import synthetic_data, tiny_overrides

import kps.train as kt
from kps.configs import make_config
from kps.graphs import StaticBatches, StepGraph

torch.set_num_threads(1)


def _trainer(method="kps_ga", **overrides):
    config = make_config("cifar10", method, **tiny_overrides(**overrides))
    return kt.Trainer(config, synthetic_data())


@pytest.mark.parametrize("method", ["kps_ga", "ldam_drw", "ce", "eql", "cb_focal"])
def test_static_step_is_the_plain_step(method):
    """An epoch of static steps (batch k read through the device permutation and
    counter) trains bit-identically to the plain loop over the same full batches,
    with the same loss sum; GA and DRW on (epoch 1 of 2 with switch/DRW at 1)."""
    switch = {"kps_ga": {"ga_switch_epoch": 1}, "ldam_drw": {"drw_epoch": 1}}.get(method, {})
    plain, static = _trainer(method, **switch), _trainer(method, **switch)
    for epoch in (0, 1):
        order = plain.epoch_indices()
        assert torch.equal(order, static.epoch_indices())
        full = len(order) // 16
        loss_plain = plain.train_epoch(epoch, order[: full * 16])
        static.set_epoch(epoch)
        static.train_net.train()
        buffers = static.static = StaticBatches(len(order), 16, "cpu")
        assert buffers.start_epoch(order) == full == 5  # 86 synthetic images, batches of 16
        for _ in range(full):
            static.static_step()
        assert int(buffers.step) == full
        assert float(buffers.loss_sum) / (full * 16) == loss_plain
    for a, b in zip(plain.model.state_dict().values(), static.model.state_dict().values()):
        assert torch.equal(a, b)


def test_static_batches_index_by_the_device_counter():
    s = StaticBatches(10, 4, "cpu")
    assert s.start_epoch(torch.arange(9, -1, -1)) == 2
    assert s.indices().tolist() == [9, 8, 7, 6]
    s.finish_step(torch.tensor(0.5))
    assert s.indices().tolist() == [5, 4, 3, 2]
    assert float(s.loss_sum) == 2.0 and int(s.step) == 1
    s.start_epoch(torch.arange(10))
    assert int(s.step) == 0 and float(s.loss_sum) == 0.0
    with pytest.raises(ValueError, match="9 entries, the buffer 10"):
        s.start_epoch(torch.arange(9))
    with pytest.raises(ValueError, match="batch size"):
        StaticBatches(3, 4, "cpu")


def test_graph_modes_refuse_what_they_cannot_run():
    with pytest.raises(ValueError, match=r"'cuda-graph' replays whole training steps as CUDA graphs and needs a "
                                         r"CUDA device \(this run is on cpu\); fused_sgd=True.*On CPU use "
                                         r"--compile none"):
        _trainer(compile="cuda-graph")
    with pytest.raises(ValueError, match="no mixup"):
        _trainer("kps_ga_mixup", compile="cuda-graph-compiled", fused_sgd=True)
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        StepGraph(lambda: None, [], torch.device("cpu"))


def test_graph_key_and_drw_weights_in_place():
    """GA switching on changes the key; DRW weights arrive once and are then refilled
    in the same tensor (a captured graph keeps reading its address)."""
    t = _trainer("kps_ga", ga_switch_epoch=1, epochs=3)
    t.set_epoch(0)
    off = t.graph_key()
    t.set_epoch(1)
    assert off == (False, None) and t.graph_key() == (True, None)
    d = _trainer("ldam_drw", drw_epoch=1, epochs=3)
    d.set_epoch(0)
    assert d.graph_key() == (None, None) and d.loss_fn.weight is None
    d.set_epoch(1)
    first = d.loss_fn.weight
    key = d.graph_key()
    d.loss_fn.weight.mul_(0)  # refilled with the right values by the next set_epoch
    d.set_epoch(2)
    assert d.loss_fn.weight is first and d.graph_key() == key
    expected = kt.drw_weights(d.counts, 2, 1, d.config.drw_beta)
    assert d.loss_fn.weight.tolist() == pytest.approx(list(expected), rel=1e-6)


def test_history_lr_is_the_schedule_float(tmp_path):
    config = make_config("cifar10", "ce", **tiny_overrides())
    record = kt.train(config, out=tmp_path / "r", checkpoint_dir=tmp_path / "c", data=synthetic_data(), quiet=True)
    lrs = [row["lr"] for row in record["history"]]
    assert all(type(lr) is float for lr in lrs)
    assert lrs == [kt.learning_rate(e, base_lr=config.lr, warmup_epochs=1, decay_epochs=(1,), decay_ratio=0.1,
                                    style=config.lr_style) for e in (0, 1)]
    assert dataclasses.replace(config, compile="cuda-graph").compile == "cuda-graph"


class _EagerGraph:
    """StepGraph's contract without CUDA: run the step n times (no capture)."""

    def __init__(self, step):
        self.step, self.keys = step, []

    def run(self, key, n):
        self.keys.append(key)
        for _ in range(n):
            self.step()


def test_graph_branch_of_train_epoch_matches_the_plain_epoch():
    """Trainer.train_epoch's graph branch (full batches through the step graph, the
    last partial batch eagerly, one loss sum) gives the plain epoch's weights and mean
    loss, over the GA switch; the graph is asked for the key of each epoch."""
    plain, graphed = _trainer("kps_ga", ga_switch_epoch=1), _trainer("kps_ga", ga_switch_epoch=1)
    graphed.static = StaticBatches(graphed.n_train, 16, "cpu")
    graphed.step_graph = _EagerGraph(graphed.static_step)
    for epoch in (0, 1):
        order = plain.epoch_indices()
        assert len(order) % 16 == 6  # 86 images: 5 full batches and a partial one of 6
        assert graphed.train_epoch(epoch, graphed.epoch_indices()) == plain.train_epoch(epoch, order)
    assert graphed.step_graph.keys == [(False, None), (True, None)]
    for a, b in zip(plain.model.state_dict().values(), graphed.model.state_dict().values()):
        assert torch.equal(a, b)
