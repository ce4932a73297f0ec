"""bench/: the benchmark script on CPU with tiny limits, the GPU job's run list
against the paper's Tables 3 and 5, and the grid scheduler's pure parts."""

import csv
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kps.configs import METHODS, STYLES
from kps.results import config_record_path

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import synthetic_data  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def _load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bench = _load("bench")
grid = _load("grid")


# --------------------------------------------------------------------------- the GPU job's run list


def test_job_runs_are_the_implemented_methods_of_tables_3_and_5():
    with open(REPO / "book" / "paper_numbers.csv", newline="") as handle:
        in_tables = {row["method"] for row in csv.DictReader(handle) if row["table"] in ("3", "5")}
    implemented = in_tables & set(METHODS)
    assert implemented == {"ce", "focal", "cb_focal", "cosface", "arcface", "ldam_drw", "la", "eql",
                           "kps", "kps_drw", "kps_ga"}
    expected = {(m, "paper") for m in implemented} | {("kps_ga", v) for v in STYLES} | {("kps_ga", "authors")}
    env = {k: v for k, v in os.environ.items() if k != "KPS_JOB_RUNS"}
    listed = subprocess.run(["bash", str(REPO / "bench" / "gpu_job.sh"), "--list"], capture_output=True,
                            text=True, check=True, env=env).stdout.split()
    runs = grid.parse_runs(" ".join(listed))
    assert len(runs) == 13 and {(r.method, r.ga_variant) for r in runs} == expected
    assert runs[-1] == grid.GridRun("kps_ga", "authors")  # the extra run comes last


def test_run_configs_and_record_names():
    official = grid.make_run_config(grid.GridRun("kps_ga", "official"), device="cuda")
    assert (official.ga_variant, official.ga_switch_epoch, official.epochs, official.imbalance) == \
        ("official", 120, 200, 100.0)
    assert (official.bf16, official.compile, official.channels_last, official.fused_sgd) == \
        (True, "default", True, True)
    assert config_record_path("r", official).name == "seed0.ga_variant-official.json"
    paper = grid.make_run_config(grid.GridRun("kps_ga"), device="cpu", epochs=1)
    assert (paper.bf16, paper.compile, paper.epochs) == (False, "none", 1)
    assert config_record_path("r", paper) == Path("r/cifar10-jpeg/kps_ga/imb100/seed0.epochs-1.json")  # a short run
    with pytest.raises(ValueError, match="unknown method"):
        grid.make_run_config(grid.GridRun("kps_ga_typo"), device="cpu")
    authors = grid.make_run_config(grid.GridRun("kps_ga", "authors"), device="cuda")
    assert (authors.ga_variant, authors.lr_style, authors.m_max, authors.subset_seed, authors.seed) == \
        ("official", "official", 0.2, 666, 0)
    assert config_record_path("r", authors).name == \
        "seed0.ga_variant-official.lr_style-official.m_max-0.2.subset_seed-666.json"


def test_parse_runs_refuses_bad_lists():
    assert grid.parse_runs("ce kps_ga:official") == [grid.GridRun("ce"), grid.GridRun("kps_ga", "official")]
    for text, message in (("", "empty"), ("ce ce", "repeats"), ("kps_ga:author", "unknown GA variant")):
        with pytest.raises(ValueError, match=message):
            grid.parse_runs(text)


def test_shrink_keeps_every_kth_image_per_class():
    data = synthetic_data()  # counts 20, 16, 12, 10, 8, 6, 5, 4, 3, 2; 5 test images per class
    small = grid.shrink(data, 4)
    assert small.counts == [5, 4, 3, 3, 2, 2, 2, 1, 1, 1]
    assert torch.bincount(small.train.targets, minlength=10).tolist() == small.counts
    assert len(small.test) == 13 and torch.equal(small.test.images[1], data.test.images[4])
    with pytest.raises(ValueError, match="shrink"):
        grid.shrink(data, 0)


# --------------------------------------------------------------------------- finish-time prediction


def test_predict_finish_by_hand():
    # unsaturated: each job at its own cap
    assert grid.predict_finish(0.0, [(0, 10), (0, 20)], math.inf, 1.0) == [10.0, 20.0]
    # saturated at 1 epoch/s: 0.5 each until t=20 (first done), then the second alone at 1
    assert grid.predict_finish(0.0, [(0, 10), (0, 20)], 1.0, 1.0) == pytest.approx([20.0, 30.0])
    # a job in start-up takes no share; the first runs alone at its cap 1.5 until t=2
    assert grid.predict_finish(100.0, [(0, 3), (2, 3)], 2.0, 1.5) == pytest.approx([102.0, 104.0])
    # three sharing 3 epochs/s, capped at 2: 1 each; 10 epochs -> t=10
    assert grid.predict_finish(0.0, [(0, 10)] * 3, 3.0, 2.0) == pytest.approx([10.0] * 3)
    assert grid.predict_finish(5.0, [(0, 0)], 1.0, 1.0) == [5.0]
    with pytest.raises(ValueError, match="rates"):
        grid.predict_finish(0.0, [(0, 1)], 1.0, 0.0)


# --------------------------------------------------------------------------- the benchmark


def test_bench_tiny_cpu_run(tmp_path):
    emitted = []
    result = bench.run_benchmark(synthetic_data(), "cpu", imbalance=100, epochs=1, warmup_epochs=1,
                                 limit_steps=1, workers=0, fast_modes=("none", "cuda-graph"), batch_size=8,
                                 emit=lambda d: emitted.append((sorted(d["trainers"]), d["complete"])))
    # the graph mode cannot run on CPU: recorded as failed, the others stay measured
    assert emitted == [(["reference"], False), (["fast_none", "reference"], False),
                       (["fast_none", "reference"], False), (["fast_none", "reference"], True)]
    assert list(result["failed"]) == ["fast_cuda-graph"]
    assert result["failed"]["fast_cuda-graph"].startswith("ValueError: compile mode 'cuda-graph' replays whole training steps as CUDA graphs and needs a CUDA device")
    path = bench.write_result(result, bench.output_path(result, tmp_path / "b.json", None))
    doc = json.loads(path.read_text())
    assert doc["schema"] == bench.SCHEMA and doc["complete"] is True
    assert doc["device_type"] == "cpu" and doc["device"].startswith("cpu")
    assert set(doc["trainers"]) == {"reference", "fast_none"}
    for name, r in doc["trainers"].items():
        assert r["train_images_per_epoch"] == 8 and r["eval_images_per_epoch"] == 8, name
        for key in ("train_images_per_s", "eval_images_per_s", "train_s_per_epoch", "epoch_s", "achieved_tflops"):
            assert r[key] > 0, (name, key)
        assert len(r["train_s"]) == 1 and len(r["warmup_train_s"]) == 1
        assert len(r["train_losses"]) == 2 and all(math.isfinite(x) and x > 0 for x in r["train_losses"]), name
        assert r["fraction_of_bf16_peak"] is None and r["projected_run_s"] is None  # CPU, limited steps
    ratio = doc["ratios"]["fast_none_vs_reference"]["train_images_per_s"]
    assert ratio == pytest.approx(doc["trainers"]["fast_none"]["train_images_per_s"]
                                  / doc["trainers"]["reference"]["train_images_per_s"])
    # ResNet-32 (cosine head, 10 classes): FLOPs per 32x32 image, forward+backward and forward
    assert doc["flops"]["train_per_image"] == 412290816 and doc["flops"]["eval_per_image"] == 137725184
    assert doc["config"]["batch_size"] == 8 and doc["config"]["fast_configs"]["none"]["channels_last"] is True
    assert doc["peak"] == {"assumed_bf16_dense_tflops": None, "source": "not a CUDA device",
                           "measured_bf16_matmul_tflops": None}


def test_bench_times_runs_together(tmp_path):
    """--together 2: two seeds side by side (kps.together); seed 0 trains exactly as
    the fast path alone does (same losses), and the rates follow from the round time."""
    emitted = []
    result = bench.run_benchmark(synthetic_data(), "cpu", imbalance=100, epochs=2, warmup_epochs=1, workers=0,
                                 fast_modes=("none", "cuda-graph"), batch_size=8, together=2, together_mode="none",
                                 emit=lambda d: emitted.append(("together" in d, sorted(d.get("failed", {})))))
    # the runs side by side right after their mode alone, before the next mode (which fails on CPU)
    assert emitted == [(False, []), (False, []), (True, []), (True, ["fast_cuda-graph"]), (True, ["fast_cuda-graph"])]
    t = result["together"]
    assert (t["runs"], t["compile"], t["seeds"], t["warmup_epochs"]) == (2, "none", [0, 1], 1)
    assert len(t["round_s"]) == 3 and t["round_s_median"] == pytest.approx(statistics.median(t["round_s"][1:]))
    assert t["epochs_per_s"] == pytest.approx(2 / t["round_s_median"])
    assert t["train_images_per_s"] == pytest.approx(2 * result["config"]["train_images"] / t["round_s_median"])
    assert t["epoch_rate_vs_reference"] == pytest.approx(result["trainers"]["reference"]["epoch_s"] * t["epochs_per_s"])
    assert t["epoch_rate_vs_alone"] == pytest.approx(result["trainers"]["fast_none"]["epoch_s"] * t["epochs_per_s"])
    assert t["train_losses"][0] == result["trainers"]["fast_none"]["train_losses"]
    assert t["train_losses"][1] != t["train_losses"][0]
    assert "together: 2 runs (none)" in bench._summary(result)
    skipped = bench.run_benchmark(synthetic_data(), "cpu", imbalance=100, epochs=1, warmup_epochs=0, workers=0,
                                  limit_steps=1, fast_modes=("none",), batch_size=8, together=2)
    assert "together" not in skipped and "failed" not in skipped
    with pytest.raises(ValueError, match="together needs"):
        bench.run_benchmark(synthetic_data(), "cpu", imbalance=100, together=2, together_mode="fastest")


def test_bench_times_runs_stacked(tmp_path):
    """--stack 3: three copies of seed 0 trained as one network (kps.stack), right after
    their mode alone and the runs side by side; every copy trains as the run alone (the
    first epoch to float noise; later ones drift apart only as float noise grows), the
    copies agree among themselves bit for bit, and the rates follow from the round time."""
    emitted = []
    result = bench.run_benchmark(synthetic_data(), "cpu", imbalance=100, epochs=2, warmup_epochs=1, workers=0,
                                 fast_modes=("none", "cuda-graph"), batch_size=32, together=2, together_mode="none",
                                 stack=3, emit=lambda d: emitted.append(("together" in d, "stacked" in d,
                                                                         sorted(d.get("failed", {})))))
    assert emitted == [(False, False, []), (False, False, []), (True, False, []), (True, True, []),
                       (True, True, ["fast_cuda-graph"]), (True, True, ["fast_cuda-graph"])]
    s, t = result["stacked"], result["together"]
    assert (s["runs"], s["compile"], s["seeds"], s["warmup_epochs"], s["stacked_runs"]) == (3, "none", [0, 0, 0], 1,
                                                                                          [3, 3, 3])
    assert len(s["round_s"]) == 3 and s["round_s_median"] == pytest.approx(statistics.median(s["round_s"][1:]))
    assert s["epochs_per_s"] == pytest.approx(3 / s["round_s_median"])
    assert s["train_images_per_s"] == pytest.approx(3 * result["config"]["train_images"] / s["round_s_median"])
    assert s["epoch_rate_vs_reference"] == pytest.approx(result["trainers"]["reference"]["epoch_s"] * s["epochs_per_s"])
    assert s["epoch_rate_vs_alone"] == pytest.approx(result["trainers"]["fast_none"]["epoch_s"] * s["epochs_per_s"])
    assert t["runs"] == 2 and s["epoch_rate_vs_together"] is None  # 3 stacked, 2 side by side: not comparable
    alone = result["trainers"]["fast_none"]["train_losses"]
    copies = s["train_losses"]
    assert len(copies) == 3 and copies[1] == copies[0] and copies[2] == copies[0]
    assert copies[0][0] == pytest.approx(alone[0], rel=1e-5) and copies[0] == pytest.approx(alone, rel=1e-2)
    assert copies[0][0] != pytest.approx(t["train_losses"][1][0], rel=1e-3)  # another seed is further off
    agree = s["train_loss_vs_alone"]
    assert agree["epochs_compared"] == 3
    assert agree["max_abs_diff"] == pytest.approx(max(abs(x - a) for x, a in zip(copies[0], alone)))
    assert agree["max_rel_diff"] == pytest.approx(max(abs(x - a) / a for x, a in zip(copies[0], alone)))
    assert "stacked: 3 copies of one run as one network (none)" in bench._summary(result)
    same = bench.run_benchmark(synthetic_data(), "cpu", imbalance=100, epochs=1, warmup_epochs=0, workers=0,
                               fast_modes=("none",), batch_size=32, together=2, stack=2)
    assert same["stacked"]["epoch_rate_vs_together"] == pytest.approx(
        same["stacked"]["epochs_per_s"] / same["together"]["epochs_per_s"])
    skipped = bench.run_benchmark(synthetic_data(), "cpu", imbalance=100, epochs=1, warmup_epochs=0, workers=0,
                                  limit_steps=1, fast_modes=("none",), batch_size=8, stack=2)
    assert "stacked" not in skipped and "failed" not in skipped
    with pytest.raises(ValueError, match="stack needs S >= 2"):
        bench.run_benchmark(synthetic_data(), "cpu", imbalance=100, stack=1)


def test_loss_agreement_by_hand():
    agree = bench.loss_agreement([[2.0, 1.0], [2.0, 1.1, 9.0]], [2.0, 1.2])
    assert agree == {"max_abs_diff": pytest.approx(0.2), "max_rel_diff": pytest.approx(0.2 / 1.2),
                     "epochs_compared": 2}
    assert bench.loss_agreement([[1.0]], []) == {"max_abs_diff": None, "max_rel_diff": None, "epochs_compared": 0}
    assert bench.loss_agreement([[math.nan]], [1.0])["max_rel_diff"] is None


def test_bench_script_stack_without_count_needs_together(capsys):
    assert bench.main(["--device", "cpu", "--out", "x.json", "--stack", "--data-root", "/nonexistent"]) == 2
    assert "--stack without a count" in capsys.readouterr().err


def test_bench_refuses_bad_modes_and_limits():
    with pytest.raises(ValueError, match="unknown compile mode"):
        bench.run_benchmark(synthetic_data(), "cpu", imbalance=100, fast_modes=("fastest",))
    with pytest.raises(ValueError, match="repeat"):
        bench.run_benchmark(synthetic_data(), "cpu", imbalance=100, fast_modes=("none", "none"))
    with pytest.raises(ValueError, match="limit_steps"):
        bench.run_benchmark(synthetic_data(), "cpu", imbalance=100, limit_steps=0)


def test_bench_outputs_gpu_names_and_refuses_cpu_results_dir(tmp_path):
    gpu = {"device": "NVIDIA H100 80GB HBM3", "device_type": "cuda", "date": "2026-11-26"}
    first = bench.output_path(gpu, None, tmp_path)
    assert first == tmp_path / "nvidia-h100-80gb-hbm3-2026-11-26.json"
    first.write_text("{}")
    assert bench.output_path(gpu, None, tmp_path).name == "nvidia-h100-80gb-hbm3-2026-11-26-2.json"
    assert bench.output_path(gpu, None, None).parent == REPO / "bench" / "results"
    cpu = dict(gpu, device="cpu (x)", device_type="cpu")
    with pytest.raises(ValueError, match="give --out"):
        bench.output_path(cpu, None, None)
    with pytest.raises(ValueError, match="only GPU-made"):
        bench.output_path(cpu, REPO / "bench" / "results" / "x.json", None)
    assert bench.assumed_bf16_peak("NVIDIA H100 80GB HBM3")[0] == 989.4
    assert bench.assumed_bf16_peak("NVIDIA H200")[0] == 989.4
    assert bench.assumed_bf16_peak("NVIDIA H100 PCIe")[0] == 756.0
    assert bench.assumed_bf16_peak("Tesla T4")[0] is None


def test_bench_script_on_the_jpeg_copy(tmp_path, jpeg_root):
    out = tmp_path / "bench.json"
    assert bench.main(["--device", "cpu", "--epochs", "1", "--warmup-epochs", "0", "--limit-steps", "1",
                       "--workers", "1", "--batch-size", "8", "--data-root", str(jpeg_root), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["config"]["dataset_label"] == "CIFAR-10 (JPEG copy)" and doc["config"]["train_images"] == 12406
    assert doc["config"]["test_images"] == 8 and doc["trainers"]["reference"]["compile_overhead_s"] is None
    assert doc["trainers"]["reference"]["train_images_per_s"] > 0 and doc["trainers"]["fast_none"]["epoch_s"] > 0


def test_bench_cpu_run_without_out_is_refused(capsys):
    assert bench.main(["--device", "cpu", "--data-root", "/nonexistent"]) == 2
    assert "give --out" in capsys.readouterr().err


# --------------------------------------------------------------------------- the scheduler's decisions


def _scheduler(tmp_path, *extra, clock=None):
    args = grid.build_parser().parse_args(["run", "--runs", "ce focal", "--device", "cpu", "--work",
                                           str(tmp_path / "work"), "--out", str(tmp_path / "out"),
                                           "--budget-s", "1", *extra])
    return grid.Scheduler(grid.parse_runs(args.runs), args, deadline=0.0, **({} if clock is None else {"clock": clock}))


def test_scheduler_skips_only_full_records(tmp_path):
    from kps.train import train

    config = grid.make_run_config(grid.GridRun("ce"), device="cpu", epochs=1)
    tiny = synthetic_data(counts=(3, 2, 2, 2, 2, 2, 2, 2, 2, 1), n_test=1)  # one step, ten test images
    train(config, out=tmp_path / "existing", checkpoint_dir=tmp_path / "ckpt", quiet=True, data=tiny)
    one_epoch = _scheduler(tmp_path, "--epochs", "1")
    for slot in one_epoch.slots:
        one_epoch.skip_if_recorded(slot, tmp_path / "existing")
    assert [s.status for s in one_epoch.slots] == ["skipped", "queued"]
    full = _scheduler(tmp_path, "--epochs", "2")  # the 1-epoch record is a short run here: run it
    full.skip_if_recorded(full.slots[0], tmp_path / "existing")
    assert full.slots[0].status == "queued"


def test_a_follow_up_call_in_the_same_work_folder(tmp_path):
    """A record an earlier call left in the work folder counts as done (not rerun); the
    returned results.tar holds only records not already under --existing."""
    from kps.train import train

    tiny = synthetic_data(counts=(3, 2, 2, 2, 2, 2, 2, 2, 2, 1), n_test=1)
    first = _scheduler(tmp_path, "--epochs", "1", "--existing", str(tmp_path / "existing"))
    for slot in first.slots:  # both finished by an earlier call; focal's record is also committed already
        train(slot.config, out=first.records, checkpoint_dir=tmp_path / "ckpt", quiet=True, data=tiny)
    train(first.slots[1].config, out=tmp_path / "existing", checkpoint_dir=tmp_path / "ckpt2", quiet=True, data=tiny)
    first.deadline = math.inf
    slots = first.run()
    assert [(s.status, s.reason) for s in slots] == [
        ("done", "finished by an earlier call in this work folder"),
        ("skipped", f"{grid.config_record_path(tmp_path / 'existing', slots[1].config)} holds a 1-epoch record")]
    assert slots[0].result["top1_error"] >= 0
    import tarfile
    with tarfile.open(tmp_path / "out" / "results.tar") as tar:
        assert tar.getnames() == [str(slots[0].record.relative_to(first.records))]


def test_scheduler_rates_saturation_and_shedding(tmp_path):
    now = [1000.0]
    sched = _scheduler(tmp_path, "--epochs", "200", clock=lambda: now[0])
    sched.single_rate = 2.0  # one run alone: 2 epochs/s
    for slot in sched.slots:  # both running, 1 epoch/s each over the last 20 s, 50 epochs done
        slot.status, slot.started, slot.first_epoch_at = "running", 900.0, 950.0
        slot.samples = [(980.0, 30), (1000.0, 50)]
        slot.epochs_done = 50
    assert sched.rate(sched.slots[0]) == pytest.approx(1.0)
    assert sched.estimates() == (pytest.approx(2.0), 2.0)  # 2 < 0.85 * 2 runs * 2: saturated
    # sharing, both finish at +300 s; alone, the first needs 150 / 2 = 75 s
    sched.deadline = 1200.0
    assert sched.shedding_helps(sched.running(), sched.estimates())
    sched.deadline = 1050.0
    assert not sched.shedding_helps(sched.running(), sched.estimates())
    now[0] = 1030.0  # no new epoch for 30 s: the rate falls
    assert sched.rate(sched.slots[0]) == pytest.approx(20 / 50)


class FakeProcess:
    """A stand-in for a ``grid.py one`` process: it exits (status 0) once the stop
    files of all its runs exist, or when told to by the test."""

    def __init__(self, cmd, checkpoints, **_):
        self.cmd, self.pid, self.code = cmd, 4000 + len(cmd), None
        self.runs = [cmd[i + 1] for i, word in enumerate(cmd) if word == "--run"]
        self.checkpoints = checkpoints

    def poll(self):
        return self.code

    def wait(self, timeout=None):
        if self.code is None and all(grid.stop_path(c).exists() for c in self.checkpoints()):
            self.code = 0
        if self.code is None:
            raise subprocess.TimeoutExpired(self.cmd, timeout)
        return self.code


def test_scheduler_groups_runs_per_process_and_stops_them_by_stop_files(tmp_path, monkeypatch):
    from kps.train import train

    sched = _scheduler(tmp_path, "--epochs", "1", "--per-process", "2", "--concurrency", "3", "--partial")
    sched.slots += [grid.Slot(grid.GridRun("eql"), 2, cfg := grid.make_run_config(grid.GridRun("eql"), device="cpu",
                                                                                   epochs=1),
                              grid.config_record_path(sched.records, cfg), grid.checkpoint_path(sched.checkpoints, cfg),
                              sched.logs / "eql.log")]
    sched.deadline = math.inf
    procs, signals = [], []

    def popen(cmd, **kw):
        names = [cmd[i + 1] for i, word in enumerate(cmd) if word == "--run"]
        proc = FakeProcess(cmd, lambda: [s.checkpoint for s in sched.slots if s.run.name in names], **kw)
        procs.append(proc)
        return proc

    monkeypatch.setattr(grid.os, "killpg", lambda pid, signum: signals.append((pid, signum)))
    with monkeypatch.context() as patch:  # subprocess is everyone's module (git_state uses it too)
        patch.setattr(grid.subprocess, "Popen", popen)
        assert sched.step() is True
    ce, focal, eql = sched.slots
    assert [p.runs for p in procs] == [["ce", "focal"], ["eql"]]
    assert ce.proc is focal.proc is procs[0] and eql.proc is procs[1] and focal.log == ce.log
    assert [s.status for s in sched.slots] == ["running"] * 3

    sched.stop(focal, "shed", "test")  # its process trains ce still: a stop file, no signal
    assert grid.stop_path(focal.checkpoint).exists() and not grid.stop_path(ce.checkpoint).exists()
    assert focal.status == "shed" and signals == [] and procs[0].code is None

    tiny = synthetic_data(counts=(3, 2, 2, 2, 2, 2, 2, 2, 2, 1), n_test=1)
    train(ce.config, out=sched.records, checkpoint_dir=tmp_path / "ckpt", quiet=True, data=tiny)
    sched.step()  # ce's record is there while its process lives on: done at once, its place freed
    assert procs[0].code is None and (ce.status, focal.status) == ("done", "shed") and ce.result["top1_error"] >= 0
    procs[0].code = 0
    assert sched.reap(ce) is True and ce.status == "done"

    # a run of a living process that failed (its failure file) is collected at once
    grid.failed_path(eql.checkpoint).parent.mkdir(parents=True, exist_ok=True)
    grid.failed_path(eql.checkpoint).write_text("TrainingDiverged: loss nan in epoch 3\n")
    sched.collect_ended_run(eql)
    assert eql.status == "failed" and "TrainingDiverged: loss nan in epoch 3" in eql.reason
    eql.status = "running"  # (back, for the deadline path below)

    sched.stop_all("killed", "deadline reached")  # eql's process exits on its stop file: no signal
    assert eql.status == "killed" and grid.stop_path(eql.checkpoint).exists() and signals == []
    procs.append(FakeProcess(["x"], lambda: [tmp_path / "never.pt"]))
    sched.end_processes([grid.Slot(ce.run, 9, ce.config, ce.record, ce.checkpoint, ce.log, proc=procs[-1])],
                        grace_s=0.0)
    assert [signum for _, signum in signals] == [grid.signal.SIGTERM, grid.signal.SIGKILL]


def test_a_failed_run_is_retried_once_alone_from_its_checkpoint(tmp_path, monkeypatch):
    """--retry-compile none: ce and focal, stacked in one process, both fail (the
    process exits 4, each leaves its failure file); each is queued again and started
    alone in its own process, in "none", without --stack, from its checkpoint's epoch
    (ce: 20, although it reached 27).  A second failure is final, and a diverged run
    (eql) is never retried; without --retry-compile nothing is."""
    from kps.train import progress_path

    sched = _scheduler(tmp_path, "--epochs", "200", "--per-process", "3", "--concurrency", "3", "--partial",
                       "--stack", "--compile", "default", "--retry-compile", "none",
                       "--runs", "ce focal eql")
    sched.deadline = math.inf
    procs = []

    def popen(cmd, **kw):
        names = [cmd[i + 1] for i, word in enumerate(cmd) if word == "--run"]
        procs.append(FakeProcess(cmd, lambda: [s.checkpoint for s in sched.slots if s.run.name in names], **kw))
        return procs[-1]

    def fail(slot, text):
        grid.failed_path(slot.checkpoint).parent.mkdir(parents=True, exist_ok=True)
        grid.failed_path(slot.checkpoint).write_text(text + "\n")

    ce, focal, eql = sched.slots
    with monkeypatch.context() as patch:
        patch.setattr(grid.subprocess, "Popen", popen)
        assert sched.step() is True
        assert [p.runs for p in procs] == [["ce", "focal", "eql"]] and "--stack" in procs[0].cmd
        progress_path(ce.checkpoint).parent.mkdir(parents=True, exist_ok=True)
        progress_path(ce.checkpoint).write_text(json.dumps({"next_epoch": 27, "checkpoint_next_epoch": 20}))
        fail(ce, "RuntimeError: CUDA error: operation not permitted when stream is capturing")
        fail(focal, "RuntimeError: CUDA error: operation not permitted when stream is capturing")
        fail(eql, "TrainingDiverged: eql: loss nan in epoch 3")
        procs[0].code = 4
        assert sched.step() is True
        assert [p.runs for p in procs[1:]] == [["ce"], ["focal"]]
        for proc in procs[1:]:
            assert "--stack" not in proc.cmd and proc.cmd[proc.cmd.index("--compile") + 1] == "none"
        assert procs[0].cmd[procs[0].cmd.index("--compile") + 1] == "default"
        assert [(s.status, s.attempts) for s in sched.slots] == [("running", 2), ("running", 2), ("failed", 1)]
        assert ce.epochs_done == 20 and "when stream is capturing" in ce.retried_after
        assert eql.reason == "exit status 4: TrainingDiverged: eql: loss nan in epoch 3"
        assert not grid.failed_path(ce.checkpoint).exists()  # the new process's failures are its own
        fail(focal, "RuntimeError: out of memory")
        procs[2].code = 4
        sched.step()
        assert (focal.status, focal.attempts, focal.reason) == ("failed", 2, "exit status 4: RuntimeError: out of memory")
        assert len(procs) == 3  # no third attempt
    for slot in sched.slots:
        slot.status = "killed" if slot.status == "running" else slot.status
    sched.finish()
    runs = {r["run"]: r for r in json.loads((tmp_path / "out" / "runs.json").read_text())["runs"]}
    assert runs["focal"]["attempts"] == 2 and "stream is capturing" in runs["focal"]["retried_after"]
    assert runs["eql"]["retried_after"] is None
    plain = _scheduler(tmp_path / "plain", "--epochs", "200")
    plain.slots[0].attempts = 1
    plain._fail(plain.slots[0], "exit status 4: RuntimeError: boom")
    assert plain.slots[0].status == "failed"
    with pytest.raises(ValueError, match="--retry-compile 'fast': unknown compile mode"):
        grid.cmd_run(grid.build_parser().parse_args(["run", "--runs", "ce", "--work", str(tmp_path / "w"), "--out",
                                                     str(tmp_path / "o"), "--budget-s", "1",
                                                     "--retry-compile", "fast"]))


def test_stop_lead_covers_an_epoch_in_flight(tmp_path):
    """Stop files go out before the deadline by twice the slowest run's epoch interval
    plus 3 s (10 s before any rate, at most 60 s)."""
    now = [1000.0]
    sched = _scheduler(tmp_path, "--epochs", "200", clock=lambda: now[0])
    assert sched.stop_lead() == 10.0
    for slot, (a, b) in zip(sched.slots, ((30, 50), (45, 50))):  # 1 and 0.25 epochs/s over 20 s
        slot.status, slot.started, slot.first_epoch_at = "running", 900.0, 950.0
        slot.samples, slot.epochs_done = [(980.0, a), (1000.0, b)], b
    assert sched.stop_lead() == pytest.approx(2 / 0.25 + 3)
    sched.slots[1].samples = [(960.0, 49), (1000.0, 50)]  # 0.025 epochs/s: 83 s, capped
    assert sched.stop_lead() == 60.0


def test_time_guard_refuses_a_hopeless_first_run_unless_partial(tmp_path):
    """Bench rate 0.1 epochs/s: a 200-epoch run needs 2000 s, the deadline is 500 s away.
    The strict guard starts nothing; --partial starts it (it leaves checkpoints)."""
    now = [1000.0]
    for extra, expected in (((), False), (("--partial",), True)):
        sched = _scheduler(tmp_path, "--epochs", "200", *extra, clock=lambda: now[0])
        sched.single_rate, sched.deadline = 0.1, 1500.0
        assert sched.fits(None) is expected
        sched.single_rate = 1.0  # 200 s + start-up: fits either way
        assert sched.fits(None) is True


def test_scheduler_reads_progress_files_not_checkpoints(tmp_path):
    """Progress comes from the trainer's progress file beside the checkpoint (written by
    a real 2-epoch run with checkpoint_every=2), not from loading the checkpoint."""
    from kps.train import progress_path, train

    now = [100.0]
    sched = _scheduler(tmp_path, "--epochs", "2", clock=lambda: now[0])
    slot = sched.slots[0]
    sched.poll_progress(slot)
    assert slot.epochs_done == 0 and slot.samples == []
    tiny = synthetic_data(counts=(3, 2, 2, 2, 2, 2, 2, 2, 2, 1), n_test=1)
    train(slot.config, out=tmp_path / "r", checkpoint_dir=sched.checkpoints, quiet=True, data=tiny,
          checkpoint_every=2)
    slot.checkpoint.write_bytes(b"not a checkpoint")  # never read by the scheduler
    sched.poll_progress(slot)
    assert (slot.epochs_done, slot.checkpoint_epochs, slot.samples) == (2, 2, [(100.0, 2)])
    assert slot.first_epoch_at == 100.0
    progress_path(slot.checkpoint).write_text("{half")  # unreadable: this poll is skipped
    now[0] = 110.0
    sched.poll_progress(slot)
    assert slot.samples == [(100.0, 2)]


def test_job_plans_the_grid_from_the_bench(tmp_path):
    """gpu_job.sh's grid_plan ("MODE PER_PROCESS CONCURRENCY STACK"): with KPS_JOB_COMPILE=auto,
    "cuda-graph" with 6 runs per process when it trained like eager and 6 runs side by side
    beat one alone by 1.3x; else the fastest compiled mode that trained like eager (a mode
    absent from the bench JSON is not chosen), one run per process; a forced mode is kept.
    The runs checkpoint every 10 epochs by default."""
    def plan(compile_mode, trainers, together=None, stacked=None, **env):
        return _grid_plan(tmp_path, compile_mode, trainers, together, stacked, **env)

    both = {"fast_none": {"epoch_s": 5.0}, "fast_default": {"epoch_s": 0.5}, "fast_reduce-overhead": {"epoch_s": 0.3}}
    assert plan("auto", both) == "reduce-overhead 1 8 0"
    assert plan("auto", dict(both, **{"fast_reduce-overhead": {"epoch_s": 0.7}})) == "default 1 8 0"
    assert plan("auto", {"fast_none": {"epoch_s": 5.0}, "fast_default": {"epoch_s": 0.5}}) == "default 1 8 0"
    assert plan("auto", {}) == "default 1 8 0"
    assert plan("default", both) == "default 1 8 0"
    assert plan("cuda-graph", both, KPS_JOB_PER_PROCESS="4", KPS_JOB_CONCURRENCY="8") == "cuda-graph 4 8 0"
    assert plan("cuda-graph", both, KPS_JOB_PER_PROCESS="12", KPS_JOB_STACK="1") == "cuda-graph 12 8 1"
    # the whole-step graph modes compete too, but only while they train like the eager fast path
    losses = {"fast_none": {"epoch_s": 5.0, "train_losses": [3.0, 2.0]},
              "fast_reduce-overhead": {"epoch_s": 0.3, "train_losses": [3.0, 2.05]},
              "fast_cuda-graph": {"epoch_s": 0.2, "train_losses": [3.0, 1.95]},
              "fast_cuda-graph-compiled": {"epoch_s": 0.1, "train_losses": [3.0, 2.3]}}  # 15% off: never
    assert plan("auto", losses) == "cuda-graph 1 8 0"
    together = {"compile": "cuda-graph", "epoch_rate_vs_alone": 2.5}
    assert plan("auto", losses, together) == "cuda-graph 6 12 0"
    # its seed-0 run trains unlike the same run alone (1.95): runs side by side are not trusted
    assert plan("auto", losses, dict(together, train_losses=[[3.0, 2.4], [3.1, 2.0]])) == "cuda-graph 1 8 0"
    assert plan("auto", losses, dict(together, train_losses=[[3.0, 1.9], [3.1, 2.4]])) == "cuda-graph 6 12 0"
    assert plan("auto", losses, together, KPS_JOB_PER_PROCESS="3") == "cuda-graph 3 12 0"
    assert plan("auto", losses, dict(together, epoch_rate_vs_alone=1.1)) == "cuda-graph 1 8 0"
    losses["fast_cuda-graph"]["train_losses"] = [3.0, 2.21]
    assert plan("auto", losses) == "reduce-overhead 1 8 0"
    assert plan("auto", losses, together) == "reduce-overhead 1 8 0"  # trains unlike eager: not together either
    assert grid.build_parser().parse_args(["one", "--run", "ce", "--out", "o", "--checkpoints", "c"]).checkpoint_every == 10


def _grid_plan(tmp_path, compile_mode, trainers, together=None, stacked=None, **env):
    """gpu_job.sh's grid_plan on a bench JSON of these parts, in the repository root."""
    script = (REPO / "bench" / "gpu_job.sh").read_text()
    function = script[script.index("grid_plan() {"):]
    function = function[: function.index("\n}\n") + 3]
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"trainers": trainers, **({"together": together} if together else {}),
                                **({"stacked": stacked} if stacked else {})}))
    runs = subprocess.run(["bash", str(REPO / "bench" / "gpu_job.sh"), "--list"], capture_output=True, text=True,
                          check=True, env={k: v for k, v in os.environ.items() if k != "KPS_JOB_RUNS"}).stdout.split()
    env = dict(os.environ, PY=sys.executable, COMPILE=compile_mode, **dict({"RUNS": " ".join(runs)}, **env))
    out = subprocess.run(["bash", "-c", f'{function}\ngrid_plan "$1"', "x", str(path)], cwd=REPO, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_job_plans_stacking_from_the_bench(tmp_path):
    """grid_plan's stacked plan: when "cuda-graph" trains like eager, K copies stacked as one
    network trained like the run alone (every copy's last epoch within 10%), beat one run
    alone by 1.3x and the K runs side by side (where those qualify), the grid runs with
    --stack, as many runs per process as the largest stackable group of the job's run list
    (12: all but kps_ga:authors), every run at once (13)."""
    def plan(trainers, together=None, stacked=None, **env):
        return _grid_plan(tmp_path, "auto", trainers, together, stacked, **env)

    losses = {"fast_none": {"epoch_s": 5.0, "train_losses": [3.0, 2.0]},
              "fast_cuda-graph": {"epoch_s": 0.5, "train_losses": [3.0, 1.95]}}
    together = {"compile": "cuda-graph", "epoch_rate_vs_alone": 2.5, "epochs_per_s": 5.0,
                "train_losses": [[3.0, 1.96], [3.1, 2.1]]}
    stacked = {"compile": "cuda-graph", "epoch_rate_vs_alone": 4.0, "epochs_per_s": 8.0,
               "train_losses": [[3.0, 1.9501]] * 6}
    assert plan(losses, together, stacked) == "cuda-graph 12 13 1"
    assert plan(losses, together, stacked, KPS_JOB_CONCURRENCY="20") == "cuda-graph 12 20 1"
    assert plan(losses, together, dict(stacked, epochs_per_s=4.9)) == "cuda-graph 6 12 0"  # slower than streams
    assert plan(losses, None, dict(stacked, epochs_per_s=4.9)) == "cuda-graph 12 13 1"  # no streams to beat
    assert plan(losses, dict(together, epoch_rate_vs_alone=1.2), dict(stacked, epochs_per_s=4.9)) == \
        "cuda-graph 12 13 1"  # the streams do not qualify: only 1.3x alone counts
    assert plan(losses, together, dict(stacked, epoch_rate_vs_alone=1.25)) == "cuda-graph 6 12 0"
    # one copy trains unlike the run alone (2.2 vs 1.95, 13% off): never stacked
    assert plan(losses, together, dict(stacked, train_losses=[[3.0, 1.95]] * 5 + [[3.0, 2.2]])) == "cuda-graph 6 12 0"
    assert plan(losses, together, dict(stacked, train_losses=[])) == "cuda-graph 6 12 0"  # no loss record
    assert plan(losses, together, dict(stacked, compile="none")) == "cuda-graph 6 12 0"
    off = dict(losses, **{"fast_cuda-graph": {"epoch_s": 0.5, "train_losses": [3.0, 2.3]}})
    assert plan(off, together, dict(stacked, train_losses=[[3.0, 2.3]] * 6)) == "default 1 8 0"  # unlike eager
    assert plan(losses, together, stacked, RUNS="kps_ga:authors ce") == "cuda-graph 6 12 0"  # nothing stacks


def test_plan_processes_by_hand():
    """Items (priority order) into processes: without a key consecutive chunks; with the
    stack key, runs of a shared key together, runs alone by their key (None, a key of
    one, a chunk's leftover) packed side by side; a resumed run counts one unit."""
    assert grid.plan_processes(list("abcde"), 2) == [["a", "b"], ["c", "d"], ["e"]]
    key = {"a1": "a", "a2": "a", "a3": "a", "b1": "b", "c1": "c", "n1": None, "n2": None}.get
    items = ["a1", "b1", "a2", "c1", "a3", "n1"]
    assert grid.plan_processes(items, 3, key=key) == [["a1", "a2", "a3"], ["b1", "c1", "n1"]]
    assert grid.plan_processes(items, 2, key=key) == [["a1", "a2"], ["b1", "c1"], ["a3", "n1"]]
    assert grid.plan_processes(["n1", "n2"], 2, key=key) == [["n1", "n2"]]  # None never stacks, still packed
    # 4 runs of one key, 3 resumed (their own epochs): units 3 + 1 (the fresh one); at most 3 units a process
    resumed = {"a1", "a2", "a3"}.__contains__
    assert grid.plan_processes(["a1", "a2", "a3", "a4"], 12, key=lambda x: "a", resumed=resumed) == \
        [["a1", "a2", "a3", "a4"]]
    assert grid.plan_processes(["a1", "a2", "a3", "a4"], 12, key=lambda x: "a", resumed=resumed, max_units=3) == \
        [["a1", "a2", "a3"], ["a4"]]
    assert grid.plan_processes(["a4", "a5", "a1", "a2"], 12, key=lambda x: "a", resumed=resumed, max_units=2) == \
        [["a4", "a5", "a1"], ["a2"]]
    with pytest.raises(ValueError, match="per_process"):
        grid.plan_processes(items, 0)


def test_scheduler_stacks_runs_of_equal_key(tmp_path, monkeypatch):
    """--stack: one process per group of stackable runs (kps_ga:authors has its own
    lr schedule and subset: never with the others), each started with --stack; a run
    stacked with another in its process is not shed; runs.json says stacking was on."""
    args = grid.build_parser().parse_args(["run", "--runs", "kps_ga kps_ga:authors kps ce focal", "--device", "cpu",
                                           "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out"),
                                           "--budget-s", "1", "--epochs", "1", "--per-process", "3",
                                           "--concurrency", "5", "--partial", "--stack"])
    sched = grid.Scheduler(grid.parse_runs(args.runs), args, deadline=math.inf)
    procs = []

    def popen(cmd, **kw):
        names = [cmd[i + 1] for i, word in enumerate(cmd) if word == "--run"]
        procs.append(FakeProcess(cmd, lambda: [s.checkpoint for s in sched.slots if s.run.name in names], **kw))
        return procs[-1]

    with monkeypatch.context() as patch:
        patch.setattr(grid.subprocess, "Popen", popen)
        assert sched.step() is True
    assert [p.runs for p in procs] == [["kps_ga", "kps", "ce"], ["kps_ga:authors", "focal"]]
    assert all("--stack" in p.cmd for p in procs)
    kps_ga, authors, kps, ce, focal = sched.slots
    for slot, done in ((kps_ga, 5), (kps, 5), (ce, 4), (authors, 5), (focal, 5)):
        slot.epochs_done = done
    assert [sched.stacked_with_another(s) for s in sched.slots] == [True, False, True, True, False]
    ce.epochs_done = 2  # two epochs behind: not in their stack (resumed from its own epoch)
    assert not sched.stacked_with_another(ce) and sched.stacked_with_another(kps)
    sched.args.stack = False
    assert not any(sched.stacked_with_another(s) for s in sched.slots)
    assert sched.process_groups(sched.slots) == [[kps_ga, authors, kps], [ce, focal]]
    sched.args.stack = True
    for slot in sched.slots:
        slot.status = "killed"
    sched.finish()
    summary = json.loads((tmp_path / "out" / "runs.json").read_text())
    assert summary["stack"] is True and summary["per_process"] == 3


def test_scheduler_never_sheds_a_run_of_a_stack(tmp_path, monkeypatch):
    """The card is saturated and every run late: the lowest-priority run, ce, trains in
    one network with kps (same process, key and epoch), so shedding it would not speed its
    stack up; with --stack the time guard sheds kps_ga:authors, alone in its process, instead
    (without --stack it would shed ce)."""
    now = [1000.0]
    for stack, victim in ((True, "kps_ga:authors"), (False, "ce")):
        args = grid.build_parser().parse_args(
            ["run", "--runs", "kps_ga:authors kps ce", "--device", "cpu", "--work", str(tmp_path / f"w{stack}"),
             "--out", str(tmp_path / f"o{stack}"), "--budget-s", "1", "--epochs", "200", "--per-process", "3",
             *(["--stack"] if stack else [])])
        sched = grid.Scheduler(grid.parse_runs(args.runs), args, deadline=1120.0, clock=lambda: now[0])
        sched.single_rate = 2.0
        authors, kps, ce = sched.slots
        procs = [FakeProcess(["a"], lambda: [authors.checkpoint]), FakeProcess(["b"], lambda: [kps.checkpoint,
                                                                                              ce.checkpoint])]
        for slot, proc in ((authors, procs[0]), (kps, procs[1]), (ce, procs[1])):
            slot.status, slot.proc, slot.started, slot.first_epoch_at = "running", proc, 900.0, 950.0
            slot.samples, slot.epochs_done = [(980.0, 30), (1000.0, 50)], 50  # 1 epoch/s each
        # saturated at 3 epochs/s: 150 epochs left each, all done at +150 s, 30 s late; two alone: +100 s
        assert sched.estimates() == (pytest.approx(3.0), 2.0)
        assert [sched.stacked_with_another(s) for s in sched.slots] == [False, stack, stack]
        monkeypatch.setattr(grid.os, "killpg", lambda pid, signum: None)
        assert sched.step() is True
        assert [s.run.name for s in sched.slots if s.status == "shed"] == [victim]


def test_grid_one_trains_stacked_runs_and_stops_one(tmp_path, jpeg_root, monkeypatch, capsys):
    """``one --stack``: ce and focal (same data stream) train as one network, each with its
    own record saying so; focal's stop file, which appears after its first epoch, stops it
    with a checkpoint after its epoch in flight while ce goes on; resumed (alone), focal
    finishes."""
    real = grid.train_together
    asked = []

    def spy(configs, **kw):
        stop = kw["stop"]

        def stop_focal_later(config):
            asked.append(config.method)
            if config.method == "focal" and asked.count("focal") == 2:  # before its second epoch
                path = grid.stop_path(grid.checkpoint_path(tmp_path / "ckpt", config))
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
            return stop(config)
        return real(configs, **dict(kw, stop=stop_focal_later))

    monkeypatch.setattr(grid, "train_together", spy)
    common = ["--device", "cpu", "--epochs", "3", "--shrink", "50", "--data-root", str(jpeg_root), "--out",
              str(tmp_path / "rec"), "--checkpoints", str(tmp_path / "ckpt"), "--checkpoint-every", "1", "--resume"]
    assert grid.main(["one", "--run", "ce", "--run", "focal", "--stack", *common]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    ce, focal = lines
    assert ce["run"] == "ce" and ce["stacked_runs"] == 2 and ce["epochs_done"] == 3
    assert focal == {"run": "focal", "epochs_done": focal["epochs_done"], "stopped": True}
    assert focal["epochs_done"] == 1  # asked before its epoch 1, with epoch 0 in flight
    from kps.results import load_record
    from kps.train import read_progress
    config = grid.make_run_config(grid.GridRun("focal"), device="cpu", epochs=3)
    checkpoint = grid.checkpoint_path(tmp_path / "ckpt", config)
    assert checkpoint.is_file() and read_progress(checkpoint)["checkpoint_next_epoch"] == focal["epochs_done"]
    assert not config_record_path(tmp_path / "rec", config).exists()
    record = load_record(tmp_path / "rec" / "cifar10-jpeg" / "ce" / "imb100" / "seed0.epochs-3.json")  # a short run
    assert record["segments"][-1]["stacked_runs"] == 2 and grid.stacked_runs(record) == 2
    monkeypatch.setattr(grid, "train_together", real)
    grid.stop_path(checkpoint).unlink()
    assert grid.main(["one", "--run", "focal", "--stack", *common]) == 0
    done = json.loads([line for line in capsys.readouterr().out.splitlines() if line.startswith("{")][0])
    assert done["epochs_done"] == 3 and done["stacked_runs"] == 1  # alone: nothing to stack with
    assert grid.stacked_runs({"segments": [{"from_epoch": 0}]}) == 1 and grid.stacked_runs({}) == 1


def test_grid_run_stacks_fresh_runs_beside_a_resumed_one(tmp_path, jpeg_root):
    """The job's situation in small (real processes, CPU, every 50th image): ce resumes
    from a checkpoint at epoch 1, focal and la start fresh, kps_ga:authors has its own
    data subset.  ``run --stack`` puts ce, focal and la in one process, where focal and la
    train as one network and ce beside them from its epoch; kps_ga:authors in another."""
    from kps.data import build_dataset
    from kps.results import load_record
    from kps.train import make_trainer

    work = tmp_path / "work"
    data = grid.shrink(build_dataset("cifar10-jpeg", jpeg_root, 100.0, seed=0), 50)
    config = grid.make_run_config(grid.GridRun("ce"), device="cpu", epochs=2)
    trainer, checkpoint = make_trainer(config, data, torch.device("cpu"), work / "checkpoints", resume=False, quiet=True)
    steps = trainer.epochs(checkpoint, 1)
    next(steps)
    with pytest.raises(StopIteration):
        steps.send("stop")  # checkpointed after epoch 0
    assert trainer.next_epoch == 1 and checkpoint.is_file()
    code = grid.main(["run", "--runs", "ce focal la kps_ga:authors", "--device", "cpu", "--epochs", "2", "--shrink", "50",
                      "--data-root", str(jpeg_root), "--stack", "--per-process", "12", "--concurrency", "13",
                      "--work", str(work), "--out", str(tmp_path / "out"), "--budget-s", "600", "--partial",
                      "--poll-s", "0.5"])
    summary = json.loads((tmp_path / "out" / "runs.json").read_text())
    assert code == 0 and summary["stack"] is True, summary
    assert {r["run"]: (r["status"], r["stacked_runs"]) for r in summary["runs"]} == {
        "ce": ("done", 1), "focal": ("done", 2), "la": ("done", 2), "kps_ga:authors": ("done", 1)}
    logs = sorted(p.name for p in (work / "logs").glob("*.log"))
    assert logs == ["ce.log", "kps_ga-authors.log"]  # two processes: ce's (with focal and la), and its own
    records = {r["run"]: load_record(work / "results" / r["record"]) for r in summary["runs"]}
    assert [s["from_epoch"] for s in records["ce"]["segments"]] == [0, 1]
    assert records["ce"]["segments"][-1].get("stacked_runs", 1) == 1
    assert [(s["from_epoch"], s["stacked_runs"]) for s in records["focal"]["segments"]] == [(0, 2)]


def test_grid_run_resumes_a_crashed_run_from_its_checkpoint(tmp_path, jpeg_root, monkeypatch):
    """A real process killed (SIGKILL, as a fatal CUDA error would end it) after its
    first checkpoint: with --retry-compile the run trains once more in a new process
    from that checkpoint and finishes; its record shows both processes."""
    from kps.results import load_record

    work = tmp_path / "work"
    killed = []
    poll = grid.Scheduler.poll_progress

    def poll_and_kill(self, slot):
        poll(self, slot)
        if not killed and slot.status == "running" and slot.checkpoint_epochs >= 1:
            killed.append(slot.checkpoint_epochs)
            os.killpg(slot.proc.pid, grid.signal.SIGKILL)
            slot.proc.wait()

    monkeypatch.setattr(grid.Scheduler, "poll_progress", poll_and_kill)
    args = grid.build_parser().parse_args(
        ["run", "--runs", "ce", "--device", "cpu", "--epochs", "8", "--shrink", "50", "--data-root", str(jpeg_root),
         "--checkpoint-every", "1", "--retry-compile", "none", "--work", str(work), "--out", str(tmp_path / "out"),
         "--budget-s", "600", "--partial", "--poll-s", "0.2"])
    assert grid.cmd_run(args) == 0
    run = json.loads((tmp_path / "out" / "runs.json").read_text())["runs"][0]
    assert (run["status"], run["attempts"], run["epochs_done"]) == ("done", 2, 8)
    assert run["retried_after"].startswith("exit status -9, no record")
    record = load_record(work / "results" / run["record"])
    assert [s["from_epoch"] for s in record["segments"]] == [0, killed[0]] and len(record["history"]) == 8


def test_checkpoints_are_packed_into_returnable_parts():
    """At most 3 parts of at most 15 MiB (the device returns 8 files of 16 MiB); first fit
    in the given order (furthest-trained first), a file that fits no part is left out."""
    mb = 2**20
    files = [(grid.Path(f"c{k}.pt"), size * mb) for k, size in enumerate((4, 4, 4, 4, 12, 4, 20, 2))]
    parts = grid.pack_parts(files, 15 * mb, 3)
    assert [[p.name for p in part] for part in parts] == [
        ["c0.pt", "c1.pt", "c2.pt", "c7.pt"], ["c3.pt", "c5.pt"], ["c4.pt"]]
    assert grid.pack_parts(files, 15 * mb, 1) == [[grid.Path(n) for n in ("c0.pt", "c1.pt", "c2.pt", "c7.pt")]]
    assert grid.pack_parts([], 15 * mb, 3) == []
    assert [grid.checkpoint_tar_name(k) for k in range(3)] == ["checkpoints.tar", "checkpoints-2.tar",
                                                              "checkpoints-3.tar"]
    assert grid.CHECKPOINT_TAR_PARTS * grid.CHECKPOINT_TAR_LIMIT < 64 * mb


def test_after_job_puts_what_came_back_in_place(tmp_path):
    """bench/after_job.sh in a copy of the layout: records into results/ (never replacing
    one), the bench JSON, runs.json and job.log under bench/results/STEM.*, checkpoint parts
    to data/job-checkpoints*.tar replacing the previous ones; a used STEM is refused."""
    repo = tmp_path / "repo"
    for folder in ("bench/results", "results", "data"):
        (repo / folder).mkdir(parents=True)
    (repo / "bench" / "after_job.sh").write_text((REPO / "bench" / "after_job.sh").read_text())
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "data" / "job-checkpoints-3.tar").write_text("stale")
    files = tmp_path / "files"
    (files / "rec" / "cifar10-jpeg" / "ce" / "imb100").mkdir(parents=True)
    (files / "rec" / "cifar10-jpeg" / "ce" / "imb100" / "seed0.json").write_text("{}")
    subprocess.run(["tar", "-cf", str(files / "results.tar"), "-C", str(files / "rec"), "cifar10-jpeg"], check=True)
    (files / "nvidia-h100-2026-11-27.json").write_text('{"bench": 1}')
    (files / "runs.json").write_text('{"runs": []}')
    (files / "job.log").write_text("log")
    (files / "ck").mkdir()
    (files / "ck" / "a.pt").write_text("weights")
    subprocess.run(["tar", "-cf", str(files / "checkpoints.tar"), "-C", str(files / "ck"), "a.pt"], check=True)
    subprocess.run(["tar", "-cf", str(files / "checkpoints-2.tar"), "-C", str(files / "ck"), "a.pt"], check=True)

    def after(stem):
        return subprocess.run(["bash", str(repo / "bench" / "after_job.sh"), str(files), stem],
                              capture_output=True, text=True)

    out = after("nvidia-h100-2026-11-27-job3")
    assert out.returncode == 0, out.stderr
    assert "records: 1 new" in out.stdout and "data/job-checkpoints-2.tar (1 runs)" in out.stdout
    assert (repo / "results" / "cifar10-jpeg" / "ce" / "imb100" / "seed0.json").read_text() == "{}"
    results = repo / "bench" / "results"
    assert (results / "nvidia-h100-2026-11-27-job3.json").read_text() == '{"bench": 1}'
    assert (results / "nvidia-h100-2026-11-27-job3.runs.json").read_text() == '{"runs": []}'
    assert (results / "nvidia-h100-2026-11-27-job3.log").read_text() == "log"
    assert sorted(p.name for p in (repo / "data").iterdir()) == ["job-checkpoints-2.tar", "job-checkpoints.tar"]
    again = after("nvidia-h100-2026-11-27-job3")
    assert again.returncode == 2 and "choose another STEM" in again.stderr
    same = after("nvidia-h100-2026-11-27-job4")  # the same record again: skipped, the rest done
    assert same.returncode == 0 and "already there: results/cifar10-jpeg/ce/imb100/seed0.json" in same.stdout
    assert (results / "nvidia-h100-2026-11-27-job4.runs.json").exists()
    (repo / "results" / "cifar10-jpeg" / "ce" / "imb100" / "seed0.json").write_text('{"other": 1}')
    clash = after("nvidia-h100-2026-11-27-job5")  # a different record at that path: never replaced
    assert clash.returncode == 1 and "seed0.json exists and differs" in clash.stderr
    assert (repo / "results" / "cifar10-jpeg" / "ce" / "imb100" / "seed0.json").read_text() == '{"other": 1}'
    assert (results / "nvidia-h100-2026-11-27-job5.runs.json").exists()  # everything else still done
