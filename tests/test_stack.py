"""kps.stack: k runs trained as one network (grouped convolutions) compute what k
separate runs compute: the same features, the same gradients, the same records
(up to float rounding), and per-run checkpoints that resume stacked or alone."""

import math
import shutil

import pytest
import torch
import torch.nn.functional as F
from synthetic import strip_timing, synthetic_data, tiny_overrides

import kps.train as kt
from kps.configs import make_config
from kps.models import ResNet32Body
from kps.results import config_record_path, load_record
from kps.runner import run_worker
from kps.stack import Stack, fit_stack, member_state, stack_groups, stack_key, stack_states

torch.set_num_threads(1)

# three epochs: GA switches on at epoch 1 (kps_ga), DRW weights start at epoch 2 (ldam_drw); eql draws masks
SWITCHES = {"kps_ga": dict(ga_switch_epoch=1), "ldam_drw": dict(drw_epoch=2), "ce": {}, "eql": {}}
RARE = (250, 16, 12, 8, 6, 5, 4, 2, 2, 1)  # class 9 below EQL's threshold: EQL draws its masks


def config(method, **more):
    return make_config("cifar10", method, **tiny_overrides(epochs=3, **SWITCHES.get(method, {}), **more))


def bodies(k, blocks=1):
    out = []
    for seed in range(k):
        torch.manual_seed(seed)
        body = ResNet32Body(blocks)
        for m in body.modules():  # non-trivial BatchNorm affine parameters and statistics
            if isinstance(m, torch.nn.BatchNorm2d):
                torch.nn.init.uniform_(m.weight, 0.5, 1.5)
                torch.nn.init.uniform_(m.bias, -0.2, 0.2)
        out.append(body)
    return out


def stacked(parts, blocks=1):
    body = ResNet32Body(blocks, copies=len(parts))
    body.load_state_dict(stack_states([p.state_dict() for p in parts]))
    return body


@pytest.mark.parametrize("channels_last", [False, True])
def test_a_stacked_body_computes_each_bodys_features(channels_last):
    parts = bodies(3)
    body = stacked(parts)
    x = torch.randn(6, 3, 32, 32)
    if channels_last:
        body, x = body.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    out = body(x)  # training mode: batch statistics, running statistics updated
    assert out.shape == (6, 3 * 64)
    for i, part in enumerate(parts):
        torch.testing.assert_close(out[:, 64 * i: 64 * (i + 1)], part(x), rtol=1e-5, atol=1e-5)
    body.eval()
    for part in parts:
        part.eval()
    out = body(x)  # evaluation: the running statistics of the training forward above
    for i, part in enumerate(parts):
        torch.testing.assert_close(out[:, 64 * i: 64 * (i + 1)], part(x), rtol=1e-5, atol=1e-5)
        mine = member_state(body.state_dict(), 3, i)
        assert all(torch.allclose(mine[n], t, atol=1e-6) for n, t in part.state_dict().items())


def test_stacked_gradients_are_each_bodys_own():
    parts = bodies(2, blocks=2)
    body = stacked(parts, blocks=2)
    x, y = torch.randn(5, 3, 32, 32), torch.tensor([0, 3, 63, 7, 1])
    heads = [torch.randn(64, 64) for _ in parts]
    features = body(x).unflatten(1, (2, 64))
    sum(F.cross_entropy(features[:, i] @ heads[i], y) for i in range(2)).backward()
    for i, part in enumerate(parts):
        F.cross_entropy(part(x) @ heads[i], y).backward()
        for (name, p), (_, q) in zip(body.named_parameters(), part.named_parameters()):
            torch.testing.assert_close(p.grad.chunk(2)[i], q.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_stack_states_round_trip_and_reject_unequal_counters():
    parts = bodies(3)
    state = stack_states([p.state_dict() for p in parts])
    assert state["conv1.weight"].shape == (48, 3, 3, 3)
    assert state["layer2.0.conv1.weight"].shape == (96, 16, 3, 3)  # grouped: 16 input channels per copy
    for i, part in enumerate(parts):
        back = member_state(state, 3, i)
        assert all(torch.equal(back[n], t) for n, t in part.state_dict().items())
    parts[1].bn1.num_batches_tracked += 1
    with pytest.raises(ValueError, match="bn1.num_batches_tracked differs"):
        stack_states([p.state_dict() for p in parts])


def close_records(a, b):
    """Two records of one configuration equal up to float rounding: the same test
    errors, training losses within 1e-4 (relative)."""
    a, b = strip_timing(a), strip_timing(b)
    for ra, rb in zip(a.pop("history"), b.pop("history")):
        assert math.isclose(ra.pop("loss"), rb.pop("loss"), rel_tol=1e-4), (ra, rb)
        assert ra == rb
    assert a == b


def alone(tmp_path, config, data):
    return kt.train(config, out=tmp_path / "alone", checkpoint_dir=tmp_path / "alone-ckpt", data=data, quiet=True)


def stacked_worker(tmp_path, runs, data, monkeypatch, out="out"):
    """kps.runner.run_worker with --stack: the configurations of ``runs`` trained as one network."""
    monkeypatch.setattr("kps.batches.load_data", lambda config, root: data)
    lines = []
    assert run_worker(runs, data_root="unused", out=tmp_path / out, checkpoint_dir=tmp_path / "ckpt",
                      stack=len(runs), log=lines.append) == 0
    return [load_record(config_record_path(tmp_path / out, c)) for c in runs], lines


def test_stacked_runs_train_like_runs_alone(tmp_path, monkeypatch):
    runs = [config(m) for m in SWITCHES]
    records, lines = stacked_worker(tmp_path, runs, synthetic_data(counts=RARE), monkeypatch)
    assert sum("(4 stacked)" in line for line in lines) == 4
    for run, record in zip(runs, records):
        assert record["segments"][-1]["stacked_runs"] == 4
        close_records(record, alone(tmp_path, run, synthetic_data(counts=RARE)))
        ours = torch.load(kt.checkpoint_path(tmp_path / "ckpt", run), weights_only=False)
        theirs = torch.load(kt.checkpoint_path(tmp_path / "alone-ckpt", run), weights_only=False)
        for name, t in theirs["model"].items():  # the per-run checkpoint is the run's own network
            torch.testing.assert_close(ours["model"][name], t, rtol=1e-3, atol=1e-4, msg=name)
        momenta = [s["momentum_buffer"] for s in ours["optimizer"]["state"].values()]
        expected = [s["momentum_buffer"] for s in theirs["optimizer"]["state"].values()]
        assert len(momenta) == len(expected) == len(list(kt.Trainer(run, synthetic_data()).model.parameters()))
        for m, e in zip(momenta, expected):
            torch.testing.assert_close(m, e, rtol=1e-3, atol=1e-4)
        for key in ("aug", "order"):
            assert torch.equal(ours["rng"][0][key], theirs["rng"][0][key]), key


def test_stopped_stacked_runs_resume_stacked_or_alone(tmp_path, monkeypatch):
    runs = [config("ce"), config("kps_ga"), config("ldam_drw")]
    trainers = [kt.Trainer(c, synthetic_data()) for c in runs]
    assert [len(g) for g in stack_groups(trainers)] == [3]
    ckpts = [kt.checkpoint_path(tmp_path / "ckpt", c) for c in runs]
    real = Stack.train_epoch

    def ctrl_c_in_epoch_1(self, epoch, indices):
        if epoch == 1:
            raise KeyboardInterrupt
        return real(self, epoch, indices)

    monkeypatch.setattr(Stack, "train_epoch", ctrl_c_in_epoch_1)
    with pytest.raises(kt.TrainingInterrupted, match=r"ce seed 0 stopped in epoch 2 of 3; checkpoint .* holds epoch 1(?!-)"):
        fit_stack(trainers, ckpts)
    monkeypatch.setattr(Stack, "train_epoch", real)
    assert all(torch.load(c, weights_only=False)["next_epoch"] == 1 for c in ckpts)

    # a stacked run's checkpoint is an ordinary one: kps_ga resumes alone from a copy ...
    shutil.copytree(tmp_path / "ckpt", tmp_path / "copy")
    record = kt.train(runs[1], out=tmp_path / "out-alone", checkpoint_dir=tmp_path / "copy", data=synthetic_data(),
                      resume=True, quiet=True)
    assert [s["from_epoch"] for s in record["segments"]] == [0, 1] and "stacked_runs" not in record["segments"][1]
    reference = {c.method: alone(tmp_path, c, synthetic_data()) for c in runs}
    close_records(record, reference["kps_ga"])
    # ... and all three, stopped after epoch 0, resume as a stack of three
    records, _ = stacked_worker(tmp_path, runs, synthetic_data(), monkeypatch)
    for run, record in zip(runs, records):
        assert [s["from_epoch"] for s in record["segments"]] == [0, 1]
        assert [s.get("stacked_runs") for s in record["segments"]] == [3, 3]
        close_records(record, reference[run.method])


def test_a_diverging_member_ends_alone_and_the_others_train_on(tmp_path, monkeypatch):
    """A stacked run whose weights become NaN ends with TrainingDiverged; its NaN reaches
    no other member (losses summed, convolutions grouped): they end as they would alone."""
    runs = [config("ce"), config("kps_ga"), config("ldam_drw")]
    trainers = [kt.Trainer(c, synthetic_data()) for c in runs]
    real = Stack.train_epoch

    def poison_kps_ga(self, epoch, indices):
        if epoch == 1:
            with torch.no_grad():
                next(self.model.head.runs[1].parameters()).fill_(float("nan"))
        return real(self, epoch, indices)

    monkeypatch.setattr(Stack, "train_epoch", poison_kps_ga)
    ends = fit_stack(trainers, [kt.checkpoint_path(tmp_path / "ckpt", c) for c in runs])
    assert isinstance(ends[1], kt.TrainingDiverged) and "kps_ga seed 0" in str(ends[1]) and "epoch 1" in str(ends[1])
    assert torch.load(kt.checkpoint_path(tmp_path / "ckpt", runs[1]), weights_only=False)["next_epoch"] == 1
    for i in (0, 2):
        assert ends[i]["segments"][-1]["stacked_runs"] == 3
        close_records(ends[i], alone(tmp_path, runs[i], synthetic_data()))


def test_only_runs_on_the_same_batches_stack():
    data = synthetic_data()
    runs = [config("ce"), config("la"), config("ce", seed=1), config("kps_ga_mixup", mixup_alpha=1.0)]
    trainers = [kt.Trainer(c, data) for c in runs]
    assert [[m.config.method for m in g] for g in stack_groups(trainers)] == [["ce", "la"], ["ce"], ["kps_ga_mixup"]]
    assert stack_key(runs[3]) is None
    assert stack_key(runs[0]) == stack_key(runs[1]) != stack_key(runs[2])
    with pytest.raises(ValueError, match="differ in seed cannot be stacked"):
        Stack([kt.Trainer(runs[0], data), kt.Trainer(runs[2], data)])
    with pytest.raises(ValueError, match="without mixup can be stacked, not: kps_ga_mixup"):
        Stack([kt.Trainer(runs[0], data), trainers[3]])
    moved = kt.Trainer(runs[0], data)
    moved.train_epoch(0, moved.epoch_indices())
    moved.next_epoch = 1
    with pytest.raises(ValueError, match=r"different epochs \(\[0, 1\]\)"):
        Stack([kt.Trainer(runs[1], data), moved])
    with pytest.raises(ValueError, match="at least 2 runs"):
        Stack([kt.Trainer(runs[0], data)])
    with pytest.raises(ValueError, match="one run is listed twice"):
        Stack([trainers[0], trainers[0]])


def test_momenta_take_their_weights_layout_and_the_global_generator_is_left_alone():
    data = synthetic_data()
    plain = kt.Trainer(config("ce"), data)
    plain.train_epoch(0, plain.epoch_indices())
    plain.next_epoch = 1
    state = plain.state()
    members = []
    for method in ("ce", "la"):  # resumed with channels_last switched on (fused SGD on CUDA needs equal strides)
        member = kt.Trainer(config(method, channels_last=True), data)
        member.load_state(dict(state, config=member.config.to_dict()), "test")
        members.append(member)
    for p in members[0].model.parameters():
        assert members[0].optimizer.state[p]["momentum_buffer"].stride() == p.stride()
    before = torch.get_rng_state()
    stack = Stack(members)
    assert torch.equal(torch.get_rng_state(), before)  # building the stacked body drew nothing from it
    stacked = [p for p in stack.model.body.parameters() if p.dim() == 4]
    assert stacked and all(stack.optimizer.state[p]["momentum_buffer"].stride() == p.stride() for p in stacked)
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in stacked)
