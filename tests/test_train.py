"""Trainer: Algorithm 1 switches, metrics, determinism, bit-exact resume, NaN stop,
refusals before any work, train-grid, fast-path switches on CPU."""

import json
import math
import subprocess
from pathlib import Path
from dataclasses import replace

import numpy as np
import pytest
import torch
from synthetic import folder_data, strip_timing, synthetic_data, tiny_overrides

import kps.env
from kps.env import cpu_bf16_units
import kps.metrics as km
import kps.checkpoints as ck
import kps.train as kt
from kps.batches import shard
from kps.configs import make_config
from kps.results import config_record_path, load_record, load_records
from kps.runner import run_worker

torch.set_num_threads(1)

def run(tmp_path, method="kps_ga", data=None, **overrides):
    config = make_config("cifar10", method, **tiny_overrides(**overrides))
    record = kt.train(config, out=tmp_path / "results", checkpoint_dir=tmp_path / "ckpt",
                      data=data or synthetic_data(), quiet=True)
    return config, record


# ---------------------------------------------------------------- metrics


def test_class_groups_and_shots():
    counts = [500 - 5 * i for i in range(100)]
    groups = km.class_groups(counts)
    assert [g.tolist() for g in groups[:2]] == [list(range(10)), list(range(10, 20))]
    unsorted = [5, 50, 500, 20, 21, 19, 100, 101, 7, 8]
    assert [g.tolist() for g in km.class_groups(unsorted)] == [[2], [7], [6], [1], [4], [3], [5], [9], [8], [0]]
    assert km.class_groups([5, 4, 3]) is None
    shots = km.shot_masks(unsorted)
    assert np.flatnonzero(shots["many"]).tolist() == [2, 7]
    assert np.flatnonzero(shots["medium"]).tolist() == [1, 3, 4, 6]
    assert np.flatnonzero(shots["few"]).tolist() == [0, 5, 8, 9]


def test_summarize_numbers():
    counts = [500, 300, 200, 150, 120, 100, 60, 30, 10, 5]
    total = np.full(10, 100)
    correct = np.array([90, 80, 70, 60, 50, 40, 30, 20, 10, 0])
    s = km.summarize(correct, total, counts)
    assert s["top1_error"] == pytest.approx(55.0)
    assert s["per_class_accuracy"] == [90.0, 80.0, 70.0, 60.0, 50.0, 40.0, 30.0, 20.0, 10.0, 0.0]
    assert s["group_errors"] == pytest.approx({"head": 20.0, "mid": 55.0, "tail": 90.0})
    assert s["per_group_errors"] == pytest.approx([10, 20, 30, 40, 50, 60, 70, 80, 90, 100])
    # many: counts > 100 (classes 0-4), medium 20..100 (5-7), few < 20 (8, 9)
    assert s["shot_errors"] == pytest.approx({"many": 30.0, "medium": 70.0, "few": 95.0})
    none_few = km.summarize(correct, total, [5000] * 5 + [50] * 5)
    assert none_few["shot_errors"]["few"] is None
    with pytest.raises(ValueError, match=r"no images of class\(es\) \[3\]"):
        km.summarize(correct, np.where(np.arange(10) == 3, 0, 100), counts)


def test_shard_matches_distributed_sampler():
    order = torch.randperm(23, generator=torch.Generator().manual_seed(0))
    for world in (2, 3):
        for rank in range(world):
            sampler = torch.utils.data.DistributedSampler(range(23), num_replicas=world, rank=rank, shuffle=False)
            expected = order[list(iter(sampler))]
            assert torch.equal(shard(order, rank, world), expected)


def test_epoch_switches_follow_algorithm_1():
    data = synthetic_data()
    cfg = make_config("cifar10", "kps_ga", ga_switch_epoch=3, warmup_epochs=5)
    t = kt.Trainer(cfg, data)
    assert t.set_epoch(0) == pytest.approx(0.02) and t.loss_fn.ga is False
    assert t.set_epoch(2) == pytest.approx(0.06) and t.loss_fn.ga is False
    assert t.set_epoch(3) == pytest.approx(0.08) and t.loss_fn.ga is True
    assert t.set_epoch(160) == pytest.approx(0.001) and t.optimizer.param_groups[0]["lr"] == pytest.approx(0.001)
    g = t.optimizer.param_groups[0]
    assert (g["momentum"], g["nesterov"], g["weight_decay"]) == (0.9, False, 2e-4)
    d = kt.Trainer(make_config("cifar10", "ldam_drw", drw_epoch=2), data)
    d.set_epoch(1)
    assert d.loss_fn.weight is None
    d.set_epoch(2)
    w = d.loss_fn.weight
    assert w is not None and float(w.sum()) == pytest.approx(10.0) and float(w[-1]) > float(w[0])
    official = kt.Trainer(make_config("cifar10", "kps_ga", ga_variant="official"), data)
    assert official.loss_fn.variant == "official"


def test_evaluate_both_test_rules_by_hand():
    data = synthetic_data()
    t = kt.Trainer(make_config("cifar10", "kps_ga"), data)
    result = t.evaluate()
    t.model.eval()
    with torch.no_grad():
        cos = t.model(t.source.augment.normalize(data.test.images))
    r = torch.as_tensor(t.loss_fn.params.r, dtype=torch.float32)
    y = data.test.targets
    for key, pred in (("correct", cos.argmax(1)), ("correct_rcos", (cos * r).argmax(1))):
        assert result[key].tolist() == torch.bincount(y[pred == y], minlength=10).tolist()
    assert result["total"].tolist() == [5] * 10
    assert "correct_rcos" not in kt.Trainer(make_config("cifar10", "cosface"), data).evaluate()


# ---------------------------------------------------------------- whole runs


def test_record_contents(tmp_path):
    config, record = run(tmp_path, "kps_ga", ga_switch_epoch=1)
    path = config_record_path(tmp_path / "results", config)
    assert path == tmp_path / "results/cifar10/kps_ga/imb100" / path.name and path.name.startswith("seed0.")
    assert load_record(path) == json.loads(json.dumps(record))
    assert record["dataset_label"] == "synthetic" and record["device"].startswith("cpu (")
    assert (record["epochs"], record["preset_epochs"], record["world_size"]) == (2, 200, 1)
    assert record["torch_version"] == torch.__version__ and record["test_rule"] == "argmax cos"
    assert len(record["per_class_accuracy"]) == 10 and len(record["per_class_accuracy_rcos"]) == 10
    assert [h["epoch"] for h in record["history"]] == [0, 1]
    assert [h["lr"] for h in record["history"]] == pytest.approx([0.1, 0.01])
    assert all("test_error" in h and "test_error_rcos" in h for h in record["history"])
    assert record["top1_error"] == record["history"][-1]["test_error"]
    assert record["top1_error_rcos"] == record["history"][-1]["test_error_rcos"]
    assert record["best_top1_error"] == min(h["test_error"] for h in record["history"])
    acc = np.array(record["per_class_accuracy"])
    assert record["top1_error"] == pytest.approx(100 - acc.mean())  # balanced test set
    assert record["group_errors"]["head"] == pytest.approx(100 - acc[:3].mean())
    # class 0 has 20 training images (medium-shot), the others fewer (few-shot)
    assert record["shot_errors"] == pytest.approx({"many": None, "medium": 100 - acc[0], "few": 100 - acc[1:].mean()})
    assert record["history"][0]["loss"] > 0
    assert ck.checkpoint_path(tmp_path / "ckpt", config).is_file()
    _, ce = run(tmp_path, "ce", eval_every=2)
    assert ce["per_class_accuracy_rcos"] is None and ce["test_rule"] == "argmax logits"
    assert ["test_error" in h for h in ce["history"]] == [False, True]


def test_deterministic_on_cpu(tmp_path):
    _, a = run(tmp_path / "a", "kps_ga_mixup", ga_switch_epoch=1)
    _, b = run(tmp_path / "b", "kps_ga_mixup", ga_switch_epoch=1)
    assert strip_timing(a) == strip_timing(b)
    _, c = run(tmp_path / "c", "kps_ga_mixup", ga_switch_epoch=1, seed=1)
    assert c["history"][0]["loss"] != a["history"][0]["loss"]


def test_resume_is_bit_exact(tmp_path, monkeypatch):
    overrides = dict(epochs=3, ga_switch_epoch=1, decay_epochs=(2,))
    config, whole = run(tmp_path / "whole", "kps_ga_mixup", **overrides)
    whole_state = torch.load(ck.checkpoint_path(tmp_path / "whole/ckpt", config), weights_only=False)

    save = kt.atomic_torch_save

    def killed_after_first_epoch(state, path):
        save(state, path)
        raise KeyboardInterrupt

    monkeypatch.setattr(kt, "atomic_torch_save", killed_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "split", "kps_ga_mixup", **overrides)
    monkeypatch.setattr(kt, "atomic_torch_save", save)
    ckpt = ck.checkpoint_path(tmp_path / "split/ckpt", config)
    assert torch.load(ckpt, weights_only=False)["next_epoch"] == 1
    assert not list((tmp_path / "split").rglob("*.json"))  # no record from the killed run
    resumed = kt.train(config, out=tmp_path / "split/results", checkpoint_dir=tmp_path / "split/ckpt",
                       data=synthetic_data(), quiet=True, resume=True)
    split_state = torch.load(ckpt, weights_only=False)
    for name, tensor in whole_state["model"].items():
        assert torch.equal(tensor, split_state["model"][name]), name
    assert strip_timing(resumed) == strip_timing(whole)
    # provenance: one segment per process, the resumed one from epoch 1
    assert [seg["from_epoch"] for seg in whole["segments"]] == [0]
    assert [seg["from_epoch"] for seg in resumed["segments"]] == [0, 1]
    assert resumed["segments"][1]["device"].startswith("cpu") and resumed["segments"][1]["compile"] == "none"
    # a checkpoint from before segments, of a run started long ago
    old_style = {k: v for k, v in split_state.items() if k != "segments"} | {"started_at": "2000-01-01T00:00:00+00:00"}
    t = kt.Trainer(config, synthetic_data())
    t.load_state(old_style, str(ckpt))
    assert t.segments[0] == {"from_epoch": 0, "git_commit": None, "git_dirty": None, "device": None,
                             "torch_version": None, "compile": None, "started_at": "2000-01-01T00:00:00+00:00"}
    assert t.segments[1]["from_epoch"] == 3 and t.segments[1]["started_at"] == t.process_started_at > "2026"
    assert t.started_at == "2000-01-01T00:00:00+00:00"  # the run's start stays the first process's
    # it may be continued with other fast-path switches, not in another configuration
    kt.Trainer(make_config("cifar10", "kps_ga_mixup", **tiny_overrides(**dict(overrides, fused_sgd=True))),
               synthetic_data()).load_state(split_state, str(ckpt))
    other = make_config("cifar10", "kps_ga_mixup", **tiny_overrides(**dict(overrides, m_max=0.3)))
    trainer = kt.Trainer(other, synthetic_data())
    with pytest.raises(ValueError, match="another configuration .*m_max"):
        trainer.load_state(split_state, str(ckpt))
    # a GPU run's checkpoint (its CUDA generator states) continues on a GPU only
    gpu_state = dict(split_state, rng=[dict(split_state["rng"][0], cuda=torch.zeros(16, dtype=torch.uint8))])
    with pytest.raises(ValueError, match="written by a run on cuda; continue it on cuda, not cpu"):
        kt.Trainer(config, synthetic_data()).load_state(gpu_state, str(ckpt))


# The config keys of the checkpoints and records the paper-protocol grid writes (commit 197a0d4):
# they must stay readable and resumable.
GRID_CONFIG_KEYS = {
    "dataset", "imbalance", "method", "seed", "epochs", "preset", "arch", "batch_size", "lr", "momentum", "nesterov",
    "weight_decay", "warmup_epochs", "decay_epochs", "decay_ratio", "lr_style", "m_max", "n_base", "s_base",
    "ga_variant", "ga_switch_epoch", "drw_epoch", "drw_beta", "mixup_alpha", "subset_seed", "eval_every", "width",
    "image_size", "channels_last", "bf16", "fused_sgd", "compile", "eval_dense_from"}


def test_a_checkpoint_of_the_running_grid_resumes(tmp_path, monkeypatch):
    """A checkpoint with the grid's config keys and segments (precision, threads), stopped
    after its first epoch, continues to the record of the run trained without a break, on
    the grid's fast path for this CPU (bf16 autocast where it has bf16 units)."""
    from kps.configs import fast_path

    overrides = dict(epochs=3, eval_every=10, eval_dense_from=2, **fast_path("cpu"))
    config, whole = run(tmp_path / "whole", "ce", **overrides)
    save = kt.atomic_torch_save

    def stopped_after_first_epoch(state, path):
        save(state, path)
        raise KeyboardInterrupt

    monkeypatch.setattr(kt, "atomic_torch_save", stopped_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "split", "ce", **overrides)
    monkeypatch.setattr(kt, "atomic_torch_save", save)
    state = torch.load(ck.checkpoint_path(tmp_path / "split/ckpt", config), weights_only=False)
    assert set(state["config"]) == GRID_CONFIG_KEYS and state["next_epoch"] == 1
    assert {"precision", "threads", "from_epoch", "git_commit", "device"} <= set(state["segments"][0])
    assert state["segments"][0]["precision"] == ("bf16" if cpu_bf16_units() else "fp32")
    resumed = kt.train(config, out=tmp_path / "split/results", checkpoint_dir=tmp_path / "split/ckpt",
                       data=synthetic_data(), quiet=True, resume=True)
    assert strip_timing(resumed) == strip_timing(whole)
    assert [h["epoch"] for h in resumed["history"] if "test_error" in h] == [2]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    real = kt.learning_rate
    monkeypatch.setattr(kt, "learning_rate", lambda epoch, **kw: 1e30 if epoch >= 1 else real(epoch, **kw))
    config = make_config("cifar10", "ce", **tiny_overrides(epochs=3))
    with pytest.raises(kt.TrainingDiverged, match=r"in epoch 1 \(0-indexed\); stopped. Last good checkpoint: .*after epoch 0"):
        kt.train(config, out=tmp_path / "results", checkpoint_dir=tmp_path / "ckpt", data=synthetic_data(), quiet=True)
    state = torch.load(ck.checkpoint_path(tmp_path / "ckpt", config), weights_only=False)
    assert state["next_epoch"] == 1 and all(torch.isfinite(v).all() for v in state["model"].values())
    assert not (tmp_path / "results").exists()


def test_nan_weights_stop_without_per_step_value_checks(tmp_path, monkeypatch):
    """The trainer runs its losses unchecked (no host read-back per step): NaN weights
    injected before epoch 1 give a NaN epoch loss, TrainingDiverged, and the epoch-0
    checkpoint stays the last one written."""
    config = make_config("cifar10", "kps_ga", **tiny_overrides(epochs=3))
    trainer = kt.Trainer(config, synthetic_data())
    assert trainer.loss_fn.check_values is False
    real = trainer.set_epoch

    def poisoned(epoch):
        if epoch == 1:
            with torch.no_grad():
                trainer.model.head.weight[3, 0] = float("nan")
        return real(epoch)

    monkeypatch.setattr(trainer, "set_epoch", poisoned)
    ckpt = tmp_path / "run.pt"
    with pytest.raises(kt.TrainingDiverged, match=r"became nan in epoch 1 \(0-indexed\).*after epoch 0"):
        trainer.fit(ckpt, quiet=True)
    state = torch.load(ckpt, weights_only=False)
    assert state["next_epoch"] == 1 and len(state["history"]) == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_checkpoint_every_and_progress_file(tmp_path, monkeypatch):
    """checkpoint_every=2: checkpoints after epochs 1 and 3 (the last), the progress file
    after every epoch; a divergence in epoch 3 names the epoch-1 checkpoint."""
    saves = []
    save = kt.atomic_torch_save
    monkeypatch.setattr(kt, "atomic_torch_save", lambda state, path: saves.append(state["next_epoch"]) or save(state, path))
    config = make_config("cifar10", "ce", **tiny_overrides(epochs=3))
    kt.train(config, out=tmp_path / "results", checkpoint_dir=tmp_path / "ckpt", data=synthetic_data(), quiet=True,
             checkpoint_every=2)
    assert saves == [2, 3]
    ckpt = ck.checkpoint_path(tmp_path / "ckpt", config)
    assert ck.progress_path(ckpt) == ckpt.with_suffix(".progress.json")
    assert ck.progress_path("a/seed0.pt") == Path("a/seed0.progress.json")
    progress = ck.read_progress(ckpt)
    assert progress["next_epoch"] == 3 and progress["epochs"] == 3 and progress["checkpoint_next_epoch"] == 3
    assert progress["elapsed_s"] > 0
    assert ck.read_progress(tmp_path / "none.pt") is None

    real = kt.learning_rate
    monkeypatch.setattr(kt, "learning_rate", lambda epoch, **kw: 1e30 if epoch >= 3 else real(epoch, **kw))
    saves.clear()
    long = make_config("cifar10", "ce", **tiny_overrides(epochs=5, seed=1))
    with pytest.raises(kt.TrainingDiverged, match=r"in epoch 3 \(0-indexed\).*after epoch 1\)"):
        kt.train(long, out=tmp_path / "results", checkpoint_dir=tmp_path / "ckpt", data=synthetic_data(),
                 quiet=True, checkpoint_every=2)
    assert saves == [2]
    assert ck.read_progress(ck.checkpoint_path(tmp_path / "ckpt", long))["checkpoint_next_epoch"] == 2
    with pytest.raises(ValueError, match="checkpoint_every must be an integer >= 1, got 0"):
        kt.train(long, out=tmp_path / "results", checkpoint_dir=tmp_path / "ckpt", checkpoint_every=0)


def test_no_host_read_back_per_step(monkeypatch):
    """A training epoch reads values back from the device a fixed number of times,
    however many steps it has (none per step; progress bar off)."""
    trainer = kt.Trainer(make_config("cifar10", "kps_ga_mixup", **tiny_overrides()), synthetic_data())
    reads = []
    for name in ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__"):
        real = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _n=name, _r=real, **k: reads.append(_n) or _r(self, *a, **k))
    counts = []
    for steps in (1, 4):
        reads.clear()
        loss = trainer.train_epoch(0, trainer.epoch_indices()[: 16 * steps])
        assert math.isfinite(loss)
        counts.append(list(reads))
    assert counts[0] == counts[1] and len(counts[0]) <= 2, counts


def test_git_state_without_git(monkeypatch):
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(kps.env.subprocess, "run", no_git)
    monkeypatch.delenv("KPS_GIT_COMMIT", raising=False)
    assert kps.env.git_state() == (None, None)
    monkeypatch.setenv("KPS_GIT_COMMIT", "0123abcd" * 5)
    assert kps.env.git_state() == ("0123abcd" * 5, None)


def test_git_state_declared_commit_beats_a_stale_git(monkeypatch):
    """A tree whose .git says one commit but whose launcher declares another (the GPU
    copy of 2026-11-26): the declared commit, dirty unknown; if they agree, git's status."""
    def fake_git(args, **kwargs):
        out = {"rev-parse": "65a4c88" * 5 + "\n", "status": " M bench/grid.py\n"}[args[1]]
        return subprocess.CompletedProcess(args, 0, stdout=out)

    monkeypatch.setattr(kps.env.subprocess, "run", fake_git)
    monkeypatch.delenv("KPS_GIT_COMMIT", raising=False)
    assert kps.env.git_state() == ("65a4c88" * 5, True)
    monkeypatch.setenv("KPS_GIT_COMMIT", "cf36c4a" * 5)
    assert kps.env.git_state() == ("cf36c4a" * 5, None)
    monkeypatch.setenv("KPS_GIT_COMMIT", "65a4c88" * 5)
    assert kps.env.git_state() == ("65a4c88" * 5, True)


def test_refusals_before_any_work(tmp_path, monkeypatch):
    config, _ = run(tmp_path, "ce", epochs=1)
    monkeypatch.setattr(kt, "load_data", lambda *a: pytest.fail("data loaded before the checks"))
    with pytest.raises(FileExistsError, match="records are immutable"):
        kt.train(config, out=tmp_path / "results", checkpoint_dir=tmp_path / "ckpt")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="cannot write to the results folder"):
        kt.train(config, out=blocker / "results", checkpoint_dir=tmp_path / "ckpt")
    with pytest.raises(ValueError, match="cannot write to the checkpoint folder"):
        kt.train(config, out=tmp_path / "other", checkpoint_dir=blocker)
    assert not (tmp_path / "other").exists()


def test_force_overwrites(tmp_path):
    config, first = run(tmp_path, "ce", epochs=1)
    second = kt.train(config, out=tmp_path / "results", checkpoint_dir=tmp_path / "ckpt", data=synthetic_data(),
                      quiet=True, force=True)
    assert strip_timing(second) == strip_timing(first)


def test_a_grid_worker_loads_data_once_and_matches_single_runs(tmp_path, monkeypatch):
    """kps.runner.run_worker (train-grid) loads each dataset once, writes the records of
    single runs, and leaves configurations with a record alone."""
    calls = []

    def fake_load(config, root):
        calls.append(config.method)
        return synthetic_data()

    monkeypatch.setattr("kps.batches.load_data", fake_load)
    configs = [make_config("cifar10", m, **tiny_overrides(epochs=1, seed=s)) for m in ("kps", "ce") for s in (0, 1)]
    lines = []
    failed = run_worker(configs, data_root="unused", out=tmp_path / "results", checkpoint_dir=tmp_path / "ckpt",
                        log=lines.append)
    assert failed == 0 and calls == ["kps"] and sum("done:" in line for line in lines) == 4
    records = load_records(tmp_path / "results")
    assert [(r["config"]["method"], r["config"]["seed"]) for r in records] == [
        ("ce", 0), ("ce", 1), ("kps", 0), ("kps", 1)]
    _, single = run(tmp_path / "single", "ce", epochs=1, seed=1)
    assert strip_timing(single) == strip_timing(load_record(config_record_path(tmp_path / "results", configs[3])))
    lines.clear()
    assert run_worker(configs, data_root="unused", out=tmp_path / "results", checkpoint_dir=tmp_path / "ckpt",
                      log=lines.append) == 0
    assert lines == [] and calls == ["kps"]


def test_fast_path_switches_on_cpu():
    """Fused SGD takes the same step as the plain path; channels_last the same step up
    to the float32 rounding of other conv kernels (one step of a fresh ResNet-32 with
    batch 16 is ill-conditioned: plain float32 itself is ~0.3% off a float64 gradient)."""
    data = synthetic_data()
    make = lambda **o: kt.Trainer(make_config("cifar10", "kps_ga", **tiny_overrides(**o)), data)  # noqa: E731
    plain, fused, cl = make(), make(fused_sgd=True), make(channels_last=True)
    assert fused.optimizer.defaults["fused"] and not plain.optimizer.defaults["fused"]
    start = {k: v.clone() for k, v in plain.model.state_dict().items()}
    batch = plain.epoch_indices()[:16]
    losses = [t.train_epoch(0, batch) for t in (plain, fused, cl)]
    assert losses[0] == losses[1] and losses[2] == pytest.approx(losses[0], rel=1e-5)
    for name, before in start.items():
        if not before.is_floating_point():
            continue
        step = plain.model.state_dict()[name] - before
        assert torch.equal(fused.model.state_dict()[name], plain.model.state_dict()[name]), name
        cl_step = cl.model.state_dict()[name] - before
        assert (cl_step - step).norm() <= 0.05 * step.norm() + 1e-7, name


def test_compiled_step_matches_eager_on_cpu(monkeypatch):
    """compile="default" compiles forward + loss of a full batch (mixup included) as one
    static-shape graph: the same loss and gradients as eager within float32 rounding;
    another batch of the full size reuses it, the last partial batch runs eagerly (no
    recompilation); full evaluation batches go through the compiled forward."""
    torch._dynamo.reset()
    data = synthetic_data()
    make = lambda mode: kt.Trainer(make_config("cifar10", "kps_ga_mixup", **tiny_overrides(compile=mode)), data)  # noqa: E731
    eager, compiled = make("none"), make("default")
    assert eager.compiled_loss is None and compiled.compiled_loss is not None
    x, y = next(eager.source.train_batches(eager.epoch_indices(), 16, torch.Generator().manual_seed(0)))
    losses = []
    for t in (eager, compiled):
        t.set_epoch(0)
        t.model.train()
        losses.append(t.step(x, y, full=16).item())  # the gradients stay on the weights after the step
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    for (name, p), q in zip(eager.model.named_parameters(), compiled.model.parameters()):
        # float32 rounding of other (fused) kernels; see test_fast_path_switches_on_cpu for this
        # ill-conditioned first step (plain float32 is ~0.3% off float64)
        assert (q.grad - p.grad).norm() <= 0.02 * p.grad.norm() + 1e-6, name
    monkeypatch.setattr(kt, "EVAL_BATCH", 25)  # 50 test images: two full batches
    for name, value in eager.evaluate().items():
        assert np.abs(compiled.evaluate()[name] - value).sum() <= 1, name
    compiled.model.train()  # evaluate() left it in eval mode
    with torch._dynamo.config.patch(error_on_recompile=True):
        assert math.isfinite(compiled.step(x.flip(0), y.flip(0), full=16).item())
        assert math.isfinite(compiled.step(x[:6], y[:6], full=16).item())


def test_dataset_path_for_large_image_sets(tmp_path):
    """Map-style datasets (ImageNet-LT, iNat) go through a DataLoader over the same
    permutation; deterministic, and resumable to the same record."""
    config = make_config("cifar10", "kps_ga", **tiny_overrides(ga_switch_epoch=1))
    records = []
    for name in ("a", "b"):
        records.append(kt.train(config, out=tmp_path / name, checkpoint_dir=tmp_path / f"ck{name}",
                                data=folder_data(), quiet=True, num_workers=0))
    assert strip_timing(records[0]) == strip_timing(records[1])
    trainer = kt.Trainer(config, folder_data(), num_workers=0)
    assert isinstance(trainer.source, kt.LoaderBatches)
    x, y = next(trainer.source.train_batches(trainer.epoch_indices(), 16, trainer.aug_gen))
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.long


def test_cb_focal_head_starts_at_the_prior_bias():
    """cb_focal (sigmoid loss) builds its linear head with bias -log(C - 1); ce does not."""
    cb = kt.Trainer(make_config("cifar10", "cb_focal", **tiny_overrides()), synthetic_data())
    ce = kt.Trainer(make_config("cifar10", "ce", **tiny_overrides()), synthetic_data())
    assert torch.allclose(cb.model.head.bias, torch.full((10,), -math.log(9)))
    assert not torch.allclose(ce.model.head.bias, torch.full((10,), -math.log(9)))


def test_resume_uses_this_runs_optimizer_kernels(tmp_path):
    """A checkpoint of a plain-SGD run continued with fused SGD (fused_sgd may change on
    resume) steps with the fused kernel: the saved param groups' flags do not win."""
    plain = make_config("cifar10", "ce", **tiny_overrides(epochs=1))
    kt.train(plain, out=tmp_path / "r", checkpoint_dir=tmp_path / "ckpt", data=synthetic_data(), quiet=True)
    state = torch.load(ck.checkpoint_path(tmp_path / "ckpt", plain), weights_only=False)
    assert state["optimizer"]["param_groups"][0]["fused"] in (None, False)
    fused = kt.Trainer(replace(plain, fused_sgd=True, epochs=2), synthetic_data())
    fused.load_state(state, "ckpt")
    assert all(g["fused"] is True for g in fused.optimizer.param_groups)


def test_eql_draws_from_the_trainers_own_generator():
    """EQL's Bernoulli masks come from the trainer's loss generator (seeded from the run's
    seed, checkpointed): the global RNG does not move them."""
    rare = synthetic_data(counts=(250, 16, 12, 8, 6, 5, 4, 2, 2, 1))  # class 9: 1 of 306 < 5e-3
    t = kt.Trainer(make_config("cifar10", "eql", **tiny_overrides()), rare)
    assert t.loss_fn._suppresses and t.loss_fn.generator is t.loss_gen and "loss" in t.state()["rng"][0]
    scores, y = torch.randn(16, 10), torch.randint(0, 10, (16,))
    start = t.loss_gen.get_state()
    torch.manual_seed(1)
    first = t.loss_fn(scores, y)
    t.loss_gen.set_state(start)
    torch.manual_seed(2)
    assert torch.equal(t.loss_fn(scores, y), first)
    assert not torch.equal(t.loss_fn(scores, y), first)  # the generator moved on: other masks


def test_progress_moves_within_an_epoch():
    """The bar counts epochs in fractions (every 20 steps), so its remaining time moves inside an epoch."""
    trainer = kt.Trainer(make_config("cifar10", "ce", **tiny_overrides(batch_size=4)), synthetic_data())

    class Bar:
        n = 0.0
        seen: list[float] = []

        def update(self, k):
            self.n += k
            self.seen.append(round(self.n, 4))

        def set_postfix_str(self, text):
            pass

    bar = Bar()
    indices = trainer.epoch_indices()
    n = len(indices)
    assert n > 4 * 21  # at least two updates
    trainer.train_epoch(1, indices, bar)
    assert bar.seen == [round(1 + min(1.0, (step + 1) * 4 / n), 4) for step in range(0, -(-n // 4), 20)]


def test_bf16_on_a_cpu_without_bf16_units_is_one_clear_line(monkeypatch):
    monkeypatch.setattr(kt, "cpu_bf16_units", lambda: ())
    config = make_config("cifar10", "ce", **tiny_overrides(bf16=True))
    with pytest.raises(ValueError, match=r"bf16 needs a CPU with bf16 units \(amx_bf16 or avx512_bf16 in its "
                                         r"flags\); cpu \(.*\) has none: run without --bf16 \(fp32\)$"):
        kt.Trainer(config, synthetic_data())


@pytest.mark.skipif(not cpu_bf16_units(), reason="this CPU has no bf16 units (amx_bf16, avx512_bf16)")
def test_bf16_on_cpu_runs_the_backbone_in_bf16_and_the_loss_in_fp32(tmp_path):
    """The backbone's features come out in bf16 under autocast, the scores and the loss in
    fp32; a bf16 epoch's loss is near the fp32 one's (bf16 keeps 8 bits of mantissa), and
    the record's segment names the precision and the thread count."""
    data = synthetic_data()
    trainers = [kt.Trainer(make_config("cifar10", "kps_ga", **tiny_overrides(bf16=b)), data) for b in (False, True)]
    x = torch.zeros(2, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert trainers[1].model.features(x).dtype == torch.bfloat16
    assert trainers[1].net(x).dtype == torch.float32
    batch = trainers[0].epoch_indices()[:32]
    fp32, bf16 = (t.train_epoch(0, batch) for t in trainers)
    assert fp32 != bf16 and bf16 == pytest.approx(fp32, rel=0.05)
    record = kt.train(make_config("cifar10", "ce", **tiny_overrides(bf16=True)), out=tmp_path, data=data, quiet=True)
    assert record["segments"][0]["precision"] == "bf16"
    assert record["segments"][0]["threads"] == torch.get_num_threads()


def test_eval_dense_from_evaluates_every_epoch_from_there_on(tmp_path):
    config = make_config("cifar10", "ce", **tiny_overrides(epochs=12, eval_every=5, eval_dense_from=9))
    assert [e for e in range(12) if config.evaluates(e)] == [4, 9, 10, 11]
    sparse = replace(config, eval_dense_from=None)
    assert [e for e in range(12) if sparse.evaluates(e)] == [4, 9, 11]
    # the trainer evaluates exactly there: the history's rows with a test error
    record = kt.train(replace(config, epochs=6, eval_every=4, eval_dense_from=4), out=tmp_path,
                      data=synthetic_data(), quiet=True)
    assert [h["epoch"] for h in record["history"] if "test_error" in h] == [3, 4, 5]
