"""kps.together: several runs in one process train bit for bit as they do alone;
a stopped run resumes to the same record; one run's failure ends that run only."""

import pytest
import torch
from synthetic import strip_timing, synthetic_data, tiny_overrides

import kps.train as kt
from kps.configs import make_config
from kps.results import config_record_path, load_record
from kps.together import Outcome, fit_together, train_together

torch.set_num_threads(1)

# three epochs: GA switches on at epoch 1 (kps_ga), DRW weights start at epoch 2 (ldam_drw)
SWITCHES = {"kps_ga": dict(ga_switch_epoch=1), "ldam_drw": dict(drw_epoch=2), "ce": {}}
# eql draws random masks: from the trainer's own generator, else another run's set-up would move them
WITH_EQL = {**SWITCHES, "eql": {}}


def config(method, **more):
    return make_config("cifar10", method, **tiny_overrides(epochs=3, **WITH_EQL[method], **more))


def configs(methods=SWITCHES):
    return [config(m) for m in methods]


# class 9 below EQL's frequency threshold 5e-3 (1 of 306 images): EQL draws its masks
RARE = (250, 16, 12, 8, 6, 5, 4, 2, 2, 1)


def alone(tmp_path, config, data=None):
    return kt.train(config, out=tmp_path / "alone", checkpoint_dir=tmp_path / "alone-ckpt",
                    data=data or synthetic_data(), quiet=True)


def test_runs_together_equal_runs_alone(tmp_path):
    runs = configs(WITH_EQL)
    assert kt.Trainer(runs[3], synthetic_data(counts=RARE)).loss_fn._suppresses  # eql draws here
    outcomes = train_together(runs, out=tmp_path / "together", checkpoint_dir=tmp_path / "ckpt",
                              data=synthetic_data(counts=RARE), device="cpu", quiet=True)
    assert [o.error for o in outcomes] == [None] * 4 and not any(o.stopped for o in outcomes)
    assert [o.epochs_done for o in outcomes] == [3, 3, 3, 3]
    for config, outcome in zip(runs, outcomes):
        written = load_record(config_record_path(tmp_path / "together", config))
        assert strip_timing(written) == strip_timing(outcome.record)
        assert strip_timing(outcome.record) == strip_timing(alone(tmp_path, config, synthetic_data(counts=RARE))), \
            config.method
        assert len(written["history"]) == 3 and written["history"][1]["loss"] != written["history"][2]["loss"]


def test_a_stopped_run_is_checkpointed_and_resumes_to_the_same_record(tmp_path):
    runs = configs()
    asked = {i: 0 for i in range(3)}

    def stop(i):  # run 1 (ldam_drw) is stopped when asked before its second epoch
        asked[i] += 1
        return i == 1 and asked[i] == 2

    trainers = [kt.Trainer(c, synthetic_data()) for c in runs]
    ckpts = [kt.checkpoint_path(tmp_path / "ckpt", c) for c in runs]
    ended = []
    outcomes = fit_together(trainers, ckpts, checkpoint_every=10, stop=stop,
                            on_end=lambda i, o: ended.append((i, o.stopped)), progress=False)
    assert outcomes[1] == Outcome(stopped=True, epochs_done=1)
    assert outcomes[0].record is not None and outcomes[2].record is not None
    assert sorted(ended) == [(0, False), (1, True), (2, False)] and ended[0] == (1, True)
    state = torch.load(ckpts[1], weights_only=False)  # written at the stop, not at checkpoint_every
    assert state["next_epoch"] == 1 and kt.read_progress(ckpts[1])["checkpoint_next_epoch"] == 1

    (resumed,) = train_together([runs[1]], out=tmp_path / "together", checkpoint_dir=tmp_path / "ckpt",
                                data=synthetic_data(), device="cpu", resume=True, quiet=True)
    assert strip_timing(resumed.record) == strip_timing(alone(tmp_path, runs[1]))
    assert [s["from_epoch"] for s in resumed.record["segments"]] == [0, 1]


def test_a_run_stopped_before_it_starts_is_left_untouched(tmp_path):
    runs = configs()[:2]
    trainers = [kt.Trainer(c, synthetic_data()) for c in runs]
    ckpts = [kt.checkpoint_path(tmp_path / "ckpt", c) for c in runs]
    outcomes = fit_together(trainers, ckpts, stop=lambda i: i == 0, progress=False)
    assert outcomes[0] == Outcome(stopped=True, epochs_done=0) and not ckpts[0].exists()
    assert outcomes[1].record is not None and outcomes[1].record["epochs"] == 3


def test_one_diverging_run_ends_alone(tmp_path, monkeypatch):
    runs = configs()
    real = kt.learning_rate
    # only ldam_drw asks for lr 0.1 * 3 (a marker base lr): it diverges from epoch 1
    monkeypatch.setattr(kt, "learning_rate",
                        lambda epoch, **kw: 1e30 if epoch >= 1 and kw["base_lr"] == 0.3 else real(epoch, **kw))
    runs[1] = config("ldam_drw", lr=0.3)
    outcomes = train_together(runs, out=tmp_path / "r", checkpoint_dir=tmp_path / "ckpt", data=synthetic_data(),
                              device="cpu", quiet=True)
    assert isinstance(outcomes[1].error, kt.TrainingDiverged) and outcomes[1].epochs_done == 1
    assert "in epoch 1 (0-indexed)" in str(outcomes[1].error)
    assert outcomes[0].record is not None and outcomes[2].record is not None
    assert not config_record_path(tmp_path / "r", runs[1]).exists()
    assert config_record_path(tmp_path / "r", runs[2]).exists()


def test_refusals_before_any_work(tmp_path):
    runs = configs()
    with pytest.raises(ValueError, match="repeat a run"):
        train_together([runs[0], runs[0]], out=tmp_path / "r", checkpoint_dir=tmp_path / "c",
                       data=synthetic_data(), device="cpu")
    alone(tmp_path, runs[2])
    with pytest.raises(FileExistsError, match="records are immutable"):
        train_together(runs, out=tmp_path / "alone", checkpoint_dir=tmp_path / "c", data=synthetic_data(),
                       device="cpu")
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").rglob("*.pt"))
    with pytest.raises(ValueError, match="2 trainers but 1 checkpoint"):
        fit_together([kt.Trainer(c, synthetic_data()) for c in runs[:2]], [None], progress=False)
    two = [kt.Trainer(c, synthetic_data()) for c in runs[:2]]
    two[1].config = kt.replace(two[1].config, compile="reduce-overhead")  # a GPU-only mode, set after the fact
    with pytest.raises(ValueError, match="'reduce-overhead' keeps one CUDA graph memory pool"):
        fit_together(two, [None, None], progress=False)


def test_compiled_runs_together_may_recompile():
    """Three compiled trainers in one process: Dynamo's recompile limit is raised to 4 per
    trainer (it guards on each trainer's modules), never lowered."""
    import torch._dynamo.config as dynamo

    trainers = [kt.Trainer(c, synthetic_data()) for c in configs()]
    for t in trainers:
        t.compiled_loss = object()  # marks a compiled step without compiling
    for before, after in ((8, 12), (50, 50)):
        with dynamo.patch(recompile_limit=before):  # the patch restores the setting afterwards
            fit_together(trainers, [None] * 3, stop=lambda i: True, progress=False)
            assert dynamo.recompile_limit == after
