"""`python -m kps`: train, train-grid, list, download, the reproduce hook, and bad
input (clear message, non-zero exit, nothing written)."""

import json
import socket
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import pytest
import torch
from synthetic import synthetic_data

import kps.__main__ as cli
import kps.runner as runner
import kps.batches as batches
import kps.checkpoints as ck
import kps.train as kt
from kps.env import cpu_bf16_units
from kps.results import load_records

torch.set_num_threads(1)

@pytest.fixture(autouse=True)
def idle_machine(monkeypatch):
    """An idle machine, so that kps.env.oversubscription says nothing unless a test asks;
    the threads of this process as they were."""
    monkeypatch.setattr(cli.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    yield
    torch.set_num_threads(1)


TINY = ["--dataset", "cifar10", "--epochs", "1", "--quiet", "--set", "batch_size=16", "--set", "warmup_epochs=1"]


@pytest.fixture
def fake_data(monkeypatch):
    """load_data returns the tiny synthetic set; the list records each load."""
    loads = []

    def load(config, root):
        loads.append((config.dataset, config.imbalance, str(root)))
        return synthetic_data()

    monkeypatch.setattr(kt, "load_data", load)
    monkeypatch.setattr(batches, "load_data", load)
    return loads


def folders(tmp_path):
    return ["--out", str(tmp_path / "results"), "--checkpoints", str(tmp_path / "ckpt"), "--device", "cpu"]


def test_help_and_list(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--restart" in out
    # --dataset and --method are required (a config file may give them): the usage line and a group say so
    assert out.startswith("usage: python -m kps train --dataset NAME --method NAME [--seed K] [options]\n")
    required = out.split("required (unless --config FILE gives them):\n")[1].split("\n\n")[0]
    assert [line.split()[0] for line in required.splitlines() if line.startswith("  --")] == ["--method", "--dataset"]
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("cifar10_lt", "cifar100_lt", "imagenet_lt", "inat2018", "kps_ga_mixup", "ldam_drw", "cifar10-jpeg"):
        assert word in out
    assert "m_max 0.35" in out and "decay x0.01 at [160, 180]" in out
    assert "cifar10_lt_small CPU-scale protocol: resnet32, width 8, 16 px" in out
    assert "grid cpu: 42 runs of preset cifar10_lt_small" in out and "grid paper: 22 runs of preset cifar10_lt" in out


def test_train_writes_record(tmp_path, fake_data, capsys):
    rc = cli.main(["train", "--method", "kps_ga", "--seed", "3", "--imbalance", "50", *TINY, *folders(tmp_path),
                   "--data-root", "somewhere"])
    assert rc == 0 and fake_data == [("cifar10", 50.0, "somewhere")]
    (record,) = load_records(tmp_path / "results")
    c = record["config"]
    assert (c["method"], c["seed"], c["imbalance"], c["epochs"], c["batch_size"]) == ("kps_ga", 3, 50.0, 1, 16)
    # --quiet silences progress, not the result
    assert "--quiet" in TINY
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith(f"{tmp_path / 'results'}/cifar10/kps_ga/imb50/seed3.")
    assert ": top-1 error " in out and " (final), " in out and " s on cpu (" in out


def test_config_file_authors_code_and_fast_flags(tmp_path, fake_data):
    config_file = tmp_path / "run.json"
    config_file.write_text(json.dumps({"dataset": "cifar10", "method": "kps_ga", "seed": 2, "ga_switch_epoch": 0}))
    rc = cli.main(["train", "--config", str(config_file), "--authors-code", "--fast", *TINY, *folders(tmp_path)])
    assert rc == 0
    (record,) = load_records(tmp_path / "results")
    c = record["config"]
    assert (c["method"], c["seed"], c["ga_switch_epoch"], c["lr_style"], c["ga_variant"], c["m_max"],
            c["subset_seed"]) == ("kps_ga", 2, 0, "official", "official", 0.2, 666)
    # --fast on CPU: the switches measured fastest there (kps.configs.fast_path): channels_last, and
    # bf16 where this CPU has bf16 units
    assert (c["channels_last"], c["fused_sgd"], c["bf16"], c["compile"]) == (True, False, bool(cpu_bf16_units()),
                                                                              "none")
    assert record["segments"][0]["precision"] == ("bf16" if cpu_bf16_units() else "fp32")
    assert ".ga_variant-official." in next((tmp_path / "results").rglob("*.json")).name


def test_train_grid_and_its_workers(tmp_path, fake_data, capsys):
    rc = cli.main(["train-grid", "--methods", "kps", "ce", "--seeds", "0", "1", *TINY, *folders(tmp_path)])
    assert rc == 0 and len(fake_data) == 1
    assert [(r["config"]["method"], r["config"]["seed"]) for r in load_records(tmp_path / "results")] == [
        ("ce", 0), ("ce", 1), ("kps", 0), ("kps", 1)]
    assert capsys.readouterr().out.count("final") == 4
    # workers: a configuration with a live claim (this process's) is passed over, a dead
    # process's claim is taken over, existing records are done; each record once
    other = tmp_path / "workers"
    configs = cli._configs(cli.build_parser().parse_args(["train-grid", "--methods", "kps", "ce", *TINY]),
                           ["kps", "ce"], [0, 1])
    held, stale = (ck.checkpoint_path(other / "ckpt", c) for c in configs[:2])
    assert runner.claim(held) and not runner.claim(held)
    stale.parent.mkdir(parents=True, exist_ok=True)
    runner.claim_path(stale).write_text(json.dumps({"host": socket.gethostname(), "pid": 2**22 + 7, "start": "1"}))
    rc = cli.main(["train-grid", "--methods", "kps", "ce", "--seeds", "0", "1", "--worker", *TINY, *folders(other)])
    assert rc == 0
    assert [(r["config"]["method"], r["config"]["seed"]) for r in load_records(other / "results")] == [
        ("ce", 0), ("ce", 1), ("kps", 1)]
    assert runner.claim_path(held).exists() and not runner.claim_path(stale).exists()
    runner.release(held)
    assert not runner.claim_path(held).exists()
    assert "kps" in capsys.readouterr().out
    assert cli._strip_option(["a", "--jobs", "3", "b", "--jobs=2"], "--jobs") == ["a", "b"]


def test_train_grid_leaves_recorded_runs_alone(tmp_path, fake_data, capsys):
    argv = ["train-grid", "--methods", "kps", "ce", "--seeds", "0", *TINY]
    assert cli.main([*argv, *folders(tmp_path / "apart")]) == 0
    # a configuration with a record is done: only kps trains
    ce_record = next((tmp_path / "apart" / "results" / "cifar10" / "ce").rglob("*.json"))
    moved = tmp_path / "again" / ce_record.relative_to(tmp_path / "apart")
    moved.parent.mkdir(parents=True)
    ce_record.rename(moved)
    capsys.readouterr()
    assert cli.main([*argv, *folders(tmp_path / "again")]) == 0
    assert len(fake_data) == 2 and capsys.readouterr().out.count("final") == 1
    drop = ("wall_time_s", "started_at", "segments", "git_commit", "git_dirty")
    mine, = [r for r in load_records(tmp_path / "again" / "results") if r["config"]["method"] == "kps"]
    theirs, = load_records(tmp_path / "apart" / "results")
    strip = lambda r: {k: v for k, v in r.items() if k not in drop} | {  # noqa: E731
        "history": [{k: v for k, v in row.items() if k != "time_s"} for row in r["history"]]}
    assert strip(mine) == strip(theirs)


def test_train_grid_config_list_is_the_list_it_trains(tmp_path, fake_data, capsys):
    """--config-list FILE: a JSON list of configs (kps.configs.write_config_list), trained in order."""
    from kps.configs import make_config, write_config_list

    configs = [make_config("cifar10", m, seed=s, epochs=1, batch_size=16, warmup_epochs=1)
               for m, s in (("kps", 1), ("ce", 0))]
    listed = tmp_path / "configs.json"
    listed.write_text(write_config_list(configs))
    assert cli.main(["train-grid", "--config-list", str(listed), "--quiet", *folders(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.index("kps/imb100/seed1") < out.index("ce/imb100/seed0") and out.count("final") == 2
    assert [r["config"] for r in load_records(tmp_path / "results")] == [configs[1].to_dict(), configs[0].to_dict()]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--method", "kps_gaa", "--dataset", "cifar10"], "unknown method 'kps_gaa'; valid: ce, focal"),
        (["train", "--method", "kps_ga", "--dataset", "cifar11"], "unknown dataset 'cifar11'; valid:"),
        (["train", "--method", "kps_ga", "--dataset", "cifar10", "--imbalance", "0.5"], "imbalance must be"),
        (["train", "--method", "kps_ga", "--dataset", "cifar10", "--set", "lr_rate=1"],
         "unknown config key(s) 'lr_rate'; valid keys: dataset, imbalance, method"),
        (["train", "--method", "kps_ga", "--dataset", "cifar10", "--set", "preset=huge"], "unknown preset 'huge'"),
        (["train", "--method", "kps_ga", "--dataset", "cifar10", "--set", "nokey"], "--set expects KEY=VALUE"),
        (["train", "--method", "kps_ga"], "give --dataset"),
        (["train", "--dataset", "cifar10"], "give --method"),
        (["train-grid", "--methods", "kps", "nope", "--dataset", "cifar10"], "unknown method 'nope'"),
        (["download", "imagenet_lt", "--data-root", "x"], "imagenet_lt cannot be downloaded automatically"),
        (["train-grid", "--config-list", "nowhere.json"], "cannot read the config list nowhere.json"),
        (["train-grid", "--config-list", "x.json", "--grid", "cpu"], "--config-list names its own runs"),
        (["train-grid", "--grid", "tpu"], "unknown grid 'tpu'; valid: paper, cpu, gpu, bf16-check"),
        (["train-grid", "--grid", "cpu", "--jobs", "2", "--force"], "with --jobs N every worker would retrain"),
        (["train-grid", "--grid", "cpu", "--methods", "ce"], "give --grid or --dataset/--methods"),
        (["train-grid", "--dataset", "cifar10"], "train-grid needs --methods (or --grid NAME: paper, cpu, gpu, bf16-check)"),
        (["train", "--method", "ce", "--dataset", "cifar10", "--compile", "cuda-graph"],
         "unknown compile mode 'cuda-graph'; valid: none, default, reduce-overhead"),
        (["train", "--method", "ce", "--dataset", "cifar100", "--preset", "cifar10_lt_small"],
         "preset 'cifar10_lt_small' does not fit dataset 'cifar100' (it fits: cifar10, cifar10-jpeg)"),
    ],
)
def test_bad_input(tmp_path, capsys, argv, message):
    assert cli.main(argv + ["--out", str(tmp_path / "r")] * (argv[0] != "download")) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_missing_data_says_how_to_get_it(tmp_path, capsys):
    rc = cli.main(["train", "--method", "kps_ga", "--dataset", "cifar10-jpeg", "--data-root", str(tmp_path / "d"),
                   *folders(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "not found" in err and "tar -xzf" in err and str(tmp_path / "d") in err
    assert not (tmp_path / "results").exists() and not (tmp_path / "ckpt").exists()


def test_unwritable_out_existing_record_and_nan(tmp_path, fake_data, capsys, monkeypatch):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    assert cli.main(["train", "--method", "ce", *TINY, "--out", str(blocker / "r"), "--device", "cpu"]) == 2
    assert "cannot write to the results folder" in capsys.readouterr().err
    assert cli.main(["train", "--method", "ce", *TINY, *folders(tmp_path)]) == 0
    assert cli.main(["train", "--method", "ce", *TINY, *folders(tmp_path)]) == 2
    assert "records are immutable" in capsys.readouterr().err
    assert cli.main(["train", "--method", "ce", *TINY, *folders(tmp_path), "--force"]) == 0

    real = kt.learning_rate
    monkeypatch.setattr(kt, "learning_rate", lambda epoch, **kw: 1e30 if epoch >= 1 else real(epoch, **kw))
    rc = cli.main(["train", "--method", "ce", *TINY, "--epochs", "3", "--seed", "5", *folders(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 1 and "in epoch 1 (0-indexed)" in err and "after epoch 0" in err
    assert [r["config"]["seed"] for r in load_records(tmp_path / "results")] == [0]


def test_reproduce_is_dispatched_to_its_module(monkeypatch, capsys):
    seen = []
    fake = types.ModuleType("kps_fake_reproduce")
    fake.main = lambda argv: seen.append(argv) or 0
    monkeypatch.setitem(sys.modules, "kps_fake_reproduce", fake)
    monkeypatch.setattr(cli, "EXTERNAL_COMMANDS", {"reproduce": ("kps_fake_reproduce", "test")})
    monkeypatch.setattr(cli.importlib.util, "find_spec", lambda name: object())
    assert cli.main(["reproduce", "--table", "3", "--out", "x"]) == 0
    assert seen == [["--table", "3", "--out", "x"]]
    monkeypatch.setattr(cli, "EXTERNAL_COMMANDS", {"reproduce": ("kps_absent_module", "test")})
    monkeypatch.setattr(cli.importlib.util, "find_spec", lambda name: None)
    assert cli.main(["reproduce"]) == 2
    assert "'reproduce' is not available" in capsys.readouterr().err


def test_module_entry_point_runs():
    done = subprocess.run([sys.executable, "-m", "kps", "train", "--method", "x", "--dataset", "cifar10"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "unknown method 'x'" in done.stderr


def test_list_values_longer_runs_and_a_missing_gpu(tmp_path, capsys, monkeypatch):
    assert cli._parse_value("160,180") == [160, 180] == cli._parse_value("[160,180]")
    assert cli._parse_value("0.2") == 0.2 and cli._parse_value("official") == "official"
    parser = cli.build_parser()
    (config,) = cli._configs(parser.parse_args(["train", "--method", "ce", "--dataset", "cifar10",
                                                "--set", "decay_epochs=150,190"]), ["ce"], None)
    assert config.decay_epochs == (150, 190)
    assert cli.main(["train", "--method", "ce", "--dataset", "cifar10", "--epochs", "500", *folders(tmp_path)]) == 2
    assert "epochs 500 is more than preset 'cifar10_lt' trains (200)" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cli.main(["train", "--method", "ce", "--dataset", "cifar10", "--out", str(tmp_path / "r"),
                     "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no CUDA GPU is visible on this machine; use --device cpu" in err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert cli.main(["train", "--method", "ce", "--dataset", "cifar10", "--out", str(tmp_path / "r"),
                     "--device", "cuda:2"]) == 2
    assert capsys.readouterr().err == "error: --device cuda:2: this machine has 2 GPUs (cuda:0..cuda:1)\n"
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("device", ["gpu", "tpu", "cuda1", "CPU", "mps"])
@pytest.mark.parametrize("command", [["train", "--method", "ce"], ["train-grid", "--methods", "ce"]])
def test_unknown_device_names_the_valid_ones(tmp_path, capsys, device, command):
    rc = cli.main([*command, "--dataset", "cifar10", "--device", device, "--out", str(tmp_path / "r")])
    assert rc == 2
    assert capsys.readouterr().err == (f"error: unknown device {device!r}; valid: cpu, cuda, cuda:N (the GPU of "
                                       "index N), auto (cuda where a GPU is visible, else cpu)\n")
    assert not (tmp_path / "r").exists()


def test_ctrl_c_says_where_and_the_same_command_resumes(tmp_path, fake_data, capsys, monkeypatch):
    argv = ["train", "--method", "ce", "--dataset", "cifar10", "--epochs", "3", "--quiet", "--set", "batch_size=16",
            "--set", "warmup_epochs=1", "--out", str(tmp_path / "results"), "--device", "cpu"]
    real = kt.Trainer.train_epoch

    def interrupt(self, epoch, *a, **kw):
        if epoch == 1:
            raise KeyboardInterrupt
        return real(self, epoch, *a, **kw)

    monkeypatch.setattr(kt.Trainer, "train_epoch", interrupt)
    assert cli.main(argv) == cli.EXIT_INTERRUPTED == 130
    err = capsys.readouterr().err
    ckpt = tmp_path / "results" / ".checkpoints" / "cifar10" / "ce" / "imb100" / (
        "seed0.batch_size-16.warmup_epochs-1.epochs-3.pt")
    assert err.count("\n") == 1 and "ce seed 0 stopped in epoch 2 of 3" in err
    assert f"checkpoint {ckpt} holds epoch 1;" in err and "the same command continues it: python -m kps train" in err
    assert ckpt.exists() and not list((tmp_path / "results").glob("*/*/imb*/*.json"))
    monkeypatch.setattr(kt.Trainer, "train_epoch", real)
    assert cli.main(argv) == 0  # resumes by default
    (record,) = load_records(tmp_path / "results")
    assert [s["from_epoch"] for s in record["segments"]] == [0, 1]
    assert ckpt.exists()  # kept beside the record: the run's final weights
    # --force replaces the record by training again, never from the finished checkpoint
    assert cli.main([*argv, "--force"]) == 0
    (again,) = load_records(tmp_path / "results")
    assert [s["from_epoch"] for s in again["segments"]] == [0]
    assert [h["loss"] for h in again["history"]] == [h["loss"] for h in record["history"]]


@pytest.mark.parametrize("command", [["train", "--method", "ce"], ["train-grid", "--methods", "ce"]])
def test_restart_replaces_an_unfinished_checkpoint_and_says_so(tmp_path, fake_data, capsys, monkeypatch, command):
    argv = [*command, "--dataset", "cifar10", "--epochs", "2", "--quiet", "--set", "batch_size=16",
            "--set", "warmup_epochs=1", "--out", str(tmp_path / "results"), "--device", "cpu"]
    real = kt.Trainer.train_epoch
    monkeypatch.setattr(kt.Trainer, "train_epoch",
                        lambda self, epoch, *a, **kw: (_ for _ in ()).throw(KeyboardInterrupt) if epoch == 1
                        else real(self, epoch, *a, **kw))
    assert cli.main(argv) == 130
    monkeypatch.setattr(kt.Trainer, "train_epoch", real)
    capsys.readouterr()
    assert cli.main([*argv, "--restart"]) == 0
    assert "starting again at epoch 1: the checkpoint" in capsys.readouterr().out + capsys.readouterr().err
    (record,) = load_records(tmp_path / "results")
    assert [s["from_epoch"] for s in record["segments"]] == [0]


def test_threads_default_to_one_on_cpu_are_recorded_and_a_busy_machine_is_named(tmp_path, fake_data, capsys,
                                                                                monkeypatch):
    torch.set_num_threads(2)  # torch's default on a 2-core machine: what `train` must not keep
    monkeypatch.setattr(cli.os, "sched_getaffinity", lambda pid: {0, 1})  # two cores, whatever runs the tests
    monkeypatch.setattr(cli.os, "getloadavg", lambda: (0.0, 0.0, 0.0))    # idle
    assert cli.main(["train", "--method", "ce", *TINY, *folders(tmp_path)]) == 0
    assert capsys.readouterr().err == ""  # an idle machine: no warning
    assert torch.get_num_threads() == 1
    assert cli.main(["train", "--method", "ce", *TINY, *folders(tmp_path), "--seed", "1", "--threads", "2"]) == 0
    assert capsys.readouterr().err == ""  # two threads on two idle cores: no warning either
    assert [r["segments"][0]["threads"] for r in load_records(tmp_path / "results")] == [1, 2]
    # a busy machine: one line on stderr, the run goes on
    monkeypatch.setattr(cli.os, "getloadavg", lambda: (2.2, 2.0, 1.5))
    assert cli.main(["train", "--method", "ce", *TINY, *folders(tmp_path), "--seed", "2", "--threads", "2"]) == 0
    err = capsys.readouterr().err
    assert err == ("warning: this machine looks oversubscribed (load average 2.2 on 2 cores, and this run adds 2 "
                   "threads): epochs will be slower than on an idle machine; --threads 1 keeps a busy neighbour "
                   "from stalling this run's threads\n")
    assert len(load_records(tmp_path / "results")) == 3


def test_oversubscription_rule():
    from kps.env import default_threads, oversubscription

    assert default_threads("cpu") == 1
    assert oversubscription(1, load=0.9, cores=2) is None       # one busy process and this run: they fit
    assert oversubscription(2, load=0.4, cores=2) is None
    assert oversubscription(2, load=0.6, cores=2).startswith("warning: this machine looks oversubscribed "
                                                             "(load average 0.6 on 2 cores, and this run adds 2")
    assert "its wall time, in the record, includes the wait" in oversubscription(1, load=2.0, cores=2)
    assert oversubscription(4, load=3.0, cores=8) is None


@pytest.mark.parametrize("argv, message", [
    (["train", "--method", "ce", "--dataset", "cifar10", "--threads", "0"], "--threads must be an integer >= 1, got 0"),
    (["train", "--method", "ce", "--dataset", "cifar10", "--workers", "-1"], "--workers must be an integer >= 0, got -1"),
    (["train-grid", "--methods", "ce", "--dataset", "cifar10", "--jobs", "0"], "--jobs must be an integer >= 1, got 0"),
    (["train-grid", "--methods", "ce", "--dataset", "cifar10", "--jobs", "-2"],
     "--jobs must be an integer >= 1, got -2"),
    (["train-grid", "--methods", "ce", "--dataset", "cifar10", "--jobs", "2", "--threads", "0"],
     "--threads must be an integer >= 1, got 0"),
    (["train-grid", "--grid", "cpu", "--jobs", "0"], "--jobs must be an integer >= 1, got 0"),
])
def test_bad_process_and_thread_counts_name_the_option(tmp_path, capsys, argv, message):
    assert cli.main([*argv, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {message}\n" and not (tmp_path / "r").exists()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "foreign"])
def test_a_damaged_checkpoint_is_one_line_naming_it_and_restart(tmp_path, fake_data, capsys, monkeypatch, damage):
    argv = ["train", "--method", "ce", "--dataset", "cifar10", "--epochs", "2", "--quiet", "--set", "batch_size=16",
            "--set", "warmup_epochs=1", *folders(tmp_path)]
    real = kt.Trainer.train_epoch
    monkeypatch.setattr(kt.Trainer, "train_epoch",
                        lambda self, epoch, *a, **kw: (_ for _ in ()).throw(KeyboardInterrupt) if epoch == 1
                        else real(self, epoch, *a, **kw))
    assert cli.main(argv) == 130  # epoch 1 is in its checkpoint
    monkeypatch.setattr(kt.Trainer, "train_epoch", real)
    (ckpt,) = (tmp_path / "ckpt").rglob("*.pt")
    whole = ckpt.read_bytes()
    ckpt.write_bytes({"truncated": whole[: len(whole) // 2], "garbage": b"\x00not a checkpoint\xff" * 50,
                      "empty": b"", "foreign": b""}[damage])
    if damage == "foreign":
        torch.save({"weights": torch.zeros(3)}, ckpt)
    damaged = ckpt.read_bytes()
    capsys.readouterr()
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: checkpoint {ckpt} cannot be read (")
    assert err.endswith("it is damaged or not a checkpoint of this code: --restart starts the run again at epoch 1 "
                        "and replaces it\n")
    # nothing written: the checkpoint as it was, no record
    assert ckpt.read_bytes() == damaged and not (tmp_path / "results").exists()
    assert cli.main([*argv, "--restart"]) == 0
    (record,) = load_records(tmp_path / "results")
    assert [s["from_epoch"] for s in record["segments"]] == [0]


def test_train_says_its_record_is_damaged_and_force_replaces_it(tmp_path, fake_data, capsys):
    argv = ["train", "--method", "ce", *TINY, *folders(tmp_path)]
    assert cli.main(argv) == 0
    (path,) = (tmp_path / "results").rglob("*.json")
    path.write_text(path.read_text()[:-40])  # cut short, as a copy that stopped half-way
    ckpt_before = sorted(p.name for p in (tmp_path / "ckpt").rglob("*"))
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: record {path} exists but is damaged (not valid JSON (")
    assert err.endswith("); --force trains the run again and replaces it\n") and err.count("\n") == 1
    assert sorted(p.name for p in (tmp_path / "ckpt").rglob("*")) == ckpt_before and len(fake_data) == 1
    assert cli.main([*argv, "--force"]) == 0
    (record,) = load_records(tmp_path / "results")
    assert record["config"]["method"] == "ce"


def test_an_unwritable_out_is_found_before_any_work(tmp_path, fake_data, capsys, monkeypatch):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    cases = [  # (options, the message's folder and its cause)
        (["--out", str(blocker)], f"results folder '{blocker}/cifar10/ce/imb100': '{blocker}' is not a folder"),
        (["--out", str(tmp_path / "r"), "--checkpoints", str(blocker / "c")],
         f"checkpoint folder '{blocker}/c/cifar10/ce/imb100': '{blocker}' is not a folder"),
    ]
    if Path("/proc/self").is_dir():  # a folder root may "write" by its mode bits, but in which nothing can be created
        cases.append((["--out", "/proc/kps-results"],
                      "results folder '/proc/kps-results/cifar10/ce/imb100': '/proc' is not writable ("))
    for options, message in cases:
        assert cli.main(["train", "--method", "ce", *TINY, "--device", "cpu", *options]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: cannot write to the {message}") and err.count("\n") == 1
    # a read-only folder, as a user other than root meets it (root passes any mode bits): creating a file fails
    real = tempfile.mkstemp

    def refuse(*args, dir=None, **kwargs):
        if str(dir).startswith(str(tmp_path / "readonly")):
            raise PermissionError(13, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    (tmp_path / "readonly").mkdir()
    monkeypatch.setattr(tempfile, "mkstemp", refuse)  # kps.io.check_writable_dir's probe
    assert cli.main(["train", "--method", "ce", *TINY, "--device", "cpu", "--out", str(tmp_path / "readonly")]) == 2
    assert capsys.readouterr().err == (f"error: cannot write to the results folder '{tmp_path}/readonly/cifar10/ce/"
                                       f"imb100': '{tmp_path}/readonly' is not writable (Permission denied)\n")
    # before any work: no data loaded, nothing written anywhere
    assert fake_data == [] and sorted(p.name for p in tmp_path.rglob("*")) == ["blocker", "readonly"]


def test_authors_code_gives_other_methods_only_the_keys_they_have(tmp_path, fake_data, capsys):
    # the training script's lr schedule and subset seed for every method, the KPS loss's settings for KPS only
    argv = ["train-grid", "--methods", "ce", "kps", "--authors-code", *TINY, *folders(tmp_path)]
    assert cli.main(argv) == 0
    names = sorted(p.relative_to(tmp_path / "results").as_posix() for p in (tmp_path / "results").rglob("*.json"))
    assert names == [
        "cifar10/ce/imb100/seed0.batch_size-16.lr_style-official.subset_seed-666.warmup_epochs-1.epochs-1.json",
        "cifar10/kps/imb100/seed0.batch_size-16.ga_variant-official.lr_style-official.m_max-0.2.subset_seed-666."
        "warmup_epochs-1.epochs-1.json"]
    # set by hand on a method without the KPS loss: one line, nothing written
    capsys.readouterr()
    assert cli.main(["train", "--method", "ce", *TINY, "--set", "ga_variant=official", *folders(tmp_path / "x")]) == 2
    assert capsys.readouterr().err == ("error: ga_variant sets the KPS loss (kps, kps_drw, kps_ga, kps_ga_mixup); "
                                       "method 'ce' has none: leave ga_variant at 'paper', got 'official'\n")
    assert not (tmp_path / "x").exists()


def test_a_failed_download_leaves_no_folder(tmp_path, capsys, monkeypatch):
    import urllib.error

    import torchvision.datasets as tvd

    class Offline:
        url = tvd.CIFAR100.url

        def __init__(self, root, train, download):
            raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(tvd, "CIFAR100", Offline)
    assert cli.main(["download", "cifar100", "--data-root", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot download cifar100 (URLError: [Errno -2] Name or service not known); offline, "
                          "fetch https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz elsewhere")
    assert err.count("\n") == 1 and list(tmp_path.iterdir()) == []


def test_progress_is_a_line_per_epoch_where_stderr_is_no_terminal(tmp_path, fake_data, capsys, monkeypatch):
    argv = ["train", "--method", "ce", "--dataset", "cifar10", "--epochs", "2", "--set", "batch_size=16",
            "--set", "warmup_epochs=1", "--set", "eval_every=2", *folders(tmp_path)]
    assert cli.main(argv) == 0
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" loss ")[0] for line in lines] == ["ce seed 0: epoch 1/2", "ce seed 0: epoch 2/2"]
    assert " err " not in lines[0] and " err " in lines[1]  # evaluated after the last epoch only
    assert lines[0].endswith(" to go)") and lines[1].endswith("about 0:00:00 to go)")
    # a terminal gets the bar instead; --quiet neither
    monkeypatch.setattr(kt, "stderr_is_terminal", lambda: True)
    assert cli.main([*argv, "--seed", "1"]) == 0
    assert "epoch 1/2 loss" not in capsys.readouterr().err
    monkeypatch.setattr(kt, "stderr_is_terminal", lambda: False)
    assert cli.main([*argv, "--seed", "2", "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_interrupt_and_restart_say_how_many_epochs_a_checkpoint_holds(tmp_path, fake_data, capsys, monkeypatch):
    from kps.checkpoints import epochs_held

    assert (epochs_held(1), epochs_held(4), epochs_held(None)) == ("epoch 1", "epochs 1-4", "epochs unknown")
    argv = ["train", "--method", "ce", "--dataset", "cifar10", "--epochs", "3", "--quiet", "--set", "batch_size=16",
            "--set", "warmup_epochs=1", *folders(tmp_path)]
    real = kt.Trainer.train_epoch
    monkeypatch.setattr(kt.Trainer, "train_epoch",
                        lambda self, epoch, *a, **kw: (_ for _ in ()).throw(KeyboardInterrupt) if epoch == 2
                        else real(self, epoch, *a, **kw))
    assert cli.main(argv) == 130
    (ckpt,) = (tmp_path / "ckpt").rglob("*.pt")
    err = capsys.readouterr().err
    assert err.startswith(f"interrupted: ce seed 0 stopped in epoch 3 of 3; checkpoint {ckpt} holds epochs 1-2; ")
    monkeypatch.setattr(kt.Trainer, "train_epoch", real)
    assert cli.main([*argv, "--restart"]) == 0
    assert f"starting again at epoch 1: the checkpoint {ckpt} (epochs 1-2) is replaced" in capsys.readouterr().out


@pytest.mark.parametrize("config, options, message", [
    ({"method": ["ce"]}, ["--dataset", "cifar10"], "unknown method ['ce']; valid: ce, focal"),
    ({"dataset": {"a": 1}, "method": "ce"}, [], "unknown dataset {'a': 1}; valid: cifar10,"),
    ({"dataset": "cifar10", "method": "ce", "decay_epochs": "abc"}, [],
     "decay_epochs must be a list of epochs, e.g. [160, 180], got 'abc'"),
    ({"dataset": "cifar10", "method": "ce", "imbalance": True}, [],
     "imbalance must be a finite number >= 1 (max/min class size), got True"),
    ({"dataset": "cifar10", "method": "ce"}, ["--seed", str(2**64)], f"seed must be below 2**63, got {2**64}"),
    ({"dataset": "cifar10", "method": "ce"}, ["--set", "preset=[1]"], "unknown preset [1]; valid: cifar10_lt,"),
    ("{not json", [], "cannot read config file CONFIG: Expecting property name enclosed in double quotes"),
    ([1, 2], [], "config file CONFIG must hold a JSON object"),
])
def test_bad_config_values_are_one_line(tmp_path, capsys, config, options, message):
    path = tmp_path / "run.json"
    path.write_text(config if isinstance(config, str) else json.dumps(config))
    assert cli.main(["train", "--config", str(path), *options, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: " + message.replace("CONFIG", str(path))) and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_grid_overrides_and_reproduce_options_are_checked(tmp_path, capsys):
    assert cli.main(["train-grid", "--grid", "cpu", "--set", "foo=1", "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.startswith("error: unknown config key(s) 'foo'; valid keys: dataset,")
    assert cli.main(["reproduce", "--table", "3", "--device", "gpu", "--dry-run", "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.startswith("error: unknown device 'gpu'; valid: cpu, cuda,")
    assert not (tmp_path / "r").exists()


def test_ctrl_c_before_training_says_nothing_was_written(tmp_path, capsys, monkeypatch):
    def interrupted_load(config, root):
        raise KeyboardInterrupt

    monkeypatch.setattr(kt, "load_data", interrupted_load)
    assert cli.main(["train", "--method", "ce", *TINY, *folders(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert err.startswith("interrupted: ce seed 0 stopped before training, while loading its data or checkpoint; "
                          "nothing was written; the same command continues it: python -m kps train --method ce")
    assert err.count("\n") == 1 and list(tmp_path.iterdir()) == []


def test_train_grid_names_a_damaged_record_and_trains_the_others(tmp_path, fake_data, capsys):
    argv = ["train-grid", "--methods", "ce", "kps", *TINY, *folders(tmp_path)]
    assert cli.main(["train", "--method", "ce", *TINY, *folders(tmp_path)]) == 0
    (path,) = (tmp_path / "results").rglob("*.json")
    path.write_text("")
    capsys.readouterr()
    assert cli.main(argv) == 1  # one run failed: its record is damaged
    out = capsys.readouterr().out
    assert (f"[1/2] damaged record, passed over: {path}: empty file; restore it from git, or delete it and the same "
            "command trains its run\n") in out
    assert "done: kps seed 0" in out and path.read_text() == ""
    path.unlink()
    assert cli.main(argv) == 0 and len(load_records(tmp_path / "results")) == 2
