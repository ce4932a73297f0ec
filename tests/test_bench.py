"""bench/: the benchmark script on CPU with tiny limits, the GPU job's workers bench
(K worker processes of the runner) and its choice of K, the grid stage interrupted at
its deadline and resumed, the packing of what a job returns, and the GPU grid against
the paper's Tables 3 and 5."""

import csv
import importlib.util
import json
import math
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch

from kps.configs import METHODS, fast_path
from kps.env import cpu_bf16_units

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


# --------------------------------------------------------------------------- what the job trains


def test_the_gpu_job_trains_the_gpu_grid_with_every_implemented_row_of_tables_3_and_5():
    """The job trains kps.grids.GRIDS["gpu"] with the CUDA fast path: seed 0 of every
    implemented row of Tables 3 and 5 at the paper's protocol on the JPEG copy at
    imbalance 100 (KPS-GA under both GA readings and the authors' full setting)."""
    from kps.grids import GRIDS

    with open(REPO / "book" / "paper_numbers.csv", newline="") as handle:
        in_tables = {row["method"] for row in csv.DictReader(handle) if row["table"] in ("3", "5")}
    implemented = in_tables & set(METHODS)
    assert implemented == {"ce", "focal", "cb_focal", "cosface", "arcface", "ldam_drw", "la", "eql",
                           "kps", "kps_drw", "kps_ga"}
    configs = grid.job_configs("gpu", "cuda")
    assert configs == GRIDS["gpu"]()
    seed0 = [c for c in configs if c.seed == 0 and c.imbalance == 100.0]
    assert implemented <= {c.method for c in seed0}
    assert {(c.dataset, c.epochs, c.preset, c.compile) for c in configs} == {
        ("cifar10-jpeg", 200, "cifar10_lt", "reduce-overhead")}
    ga = sorted((c.ga_variant, c.lr_style, c.m_max, c.subset_seed) for c in seed0 if c.method == "kps_ga")
    assert len(ga) == 3 and ga[0][0] == "official" and ga[-1][0] == "paper" and (0.2, 666) in {g[2:] for g in ga}
    smoke = grid.job_configs("gpu", "cpu", {"width": 4, "epochs": 1})
    assert {(c.width, c.epochs, c.compile, c.fused_sgd) for c in smoke} == {(4, 1, "none", False)}
    with pytest.raises(ValueError, match="unknown grid 'tpu'"):
        grid.job_configs("tpu", "cuda")


# --------------------------------------------------------------------------- the benchmark


def test_bench_tiny_cpu_run(tmp_path, monkeypatch):
    """The reference and the named contenders timed one after the other; one that fails is
    recorded under ``failed`` and the others stay measured; a contender's switches are the
    device's fast path with its own precision and compile mode."""
    real = bench.Trainer

    def trainer(config, *args, **kwargs):
        if config.compile == "default":
            raise RuntimeError("compile failed (test)")
        return real(config, *args, **kwargs)

    monkeypatch.setattr(bench, "Trainer", trainer)
    emitted = []
    result = bench.run_benchmark(synthetic_data(), "cpu", imbalance=100, epochs=1, warmup_epochs=1,
                                 limit_steps=1, workers=0, contenders=("fp32", "fp32+default"), batch_size=8,
                                 emit=lambda d: emitted.append((sorted(d["trainers"]), d["complete"])))
    assert emitted == [(["reference"], False), (["fp32", "reference"], False),
                       (["fp32", "reference"], False), (["fp32", "reference"], True)]
    assert result["failed"] == {"fp32+default": "RuntimeError: compile failed (test)"}
    path = bench.write_result(result, bench.output_path(result, tmp_path / "b.json", None))
    doc = json.loads(path.read_text())
    assert doc["schema"] == bench.SCHEMA and doc["complete"] is True
    assert doc["device_type"] == "cpu" and doc["device"].startswith("cpu")
    assert set(doc["trainers"]) == {"reference", "fp32"} and doc["config"]["contenders"] == [
        "reference", "fp32", "fp32+default"]
    for name, r in doc["trainers"].items():
        assert r["train_images_per_epoch"] == 8 and r["eval_images_per_epoch"] == 8, name
        for key in ("train_images_per_s", "eval_images_per_s", "train_s_per_epoch", "eval_s_per_epoch", "epoch_s",
                    "achieved_tflops"):
            assert r[key] > 0, (name, key)
        assert r["epoch_s"] == r["train_s_per_epoch"] + r["eval_s_per_epoch"]
        assert len(r["train_s"]) == 1 and len(r["warmup_train_s"]) == 1
        assert len(r["train_losses"]) == 2 and all(math.isfinite(x) and x > 0 for x in r["train_losses"]), name
        assert r["fraction_of_bf16_peak"] is None and r["projected_run_s"] is None  # CPU, limited steps
    assert (doc["trainers"]["fp32"]["precision"], doc["trainers"]["fp32"]["compile"]) == ("fp32", "none")
    ratio = doc["ratios"]["fp32_vs_reference"]["train_images_per_s"]
    assert ratio == pytest.approx(doc["trainers"]["fp32"]["train_images_per_s"]
                                  / doc["trainers"]["reference"]["train_images_per_s"])
    # ResNet-32 (cosine head, 10 classes): FLOPs per 32x32 image, forward+backward and forward
    assert doc["flops"]["train_per_image"] == 412290816 and doc["flops"]["eval_per_image"] == 137725184
    fast = doc["config"]["fast_configs"]["fp32"]
    assert doc["config"]["batch_size"] == 8
    assert {k: fast[k] for k in fast_path("cpu")} == dict(fast_path("cpu"), bf16=False)
    assert doc["peak"] == {"assumed_bf16_dense_tflops": None, "source": "not a CUDA device",
                           "measured_bf16_matmul_tflops": None}


def test_contenders_are_the_fast_path_in_a_precision_and_a_compile_mode():
    base = bench.make_config("cifar10", "kps")
    cuda = bench.contender_config(base, torch.device("cuda"), "bf16+reduce-overhead")
    assert (cuda.channels_last, cuda.fused_sgd, cuda.bf16, cuda.compile) == (True, True, True, "reduce-overhead")
    cpu = bench.contender_config(base, torch.device("cpu"), "fp32")
    assert (cpu.channels_last, cpu.fused_sgd, cpu.bf16, cpu.compile) == (True, False, False, "none")
    assert bench.CONTENDERS["cpu"] == ("reference", "fp32", "bf16", "bf16+default")
    for bad in ("fp16", "bf16+cuda-graph", "bf16+"):
        with pytest.raises(ValueError, match="unknown contender"):
            bench.contender_config(base, torch.device("cpu"), bad)


def test_a_bf16_contender_on_a_cpu_without_bf16_units_is_skipped(monkeypatch):
    monkeypatch.setattr(bench, "cpu_bf16_units", lambda: ())
    result = bench.run_benchmark(synthetic_data(), "cpu", imbalance=100, epochs=1, warmup_epochs=0, limit_steps=1,
                                 workers=0, contenders=("bf16", "fp32"), batch_size=8)
    assert sorted(result["trainers"]) == ["fp32", "reference"] and "failed" not in result
    assert result["skipped"]["bf16"].startswith("bf16 needs a CPU with bf16 units (amx_bf16 or avx512_bf16)")
    assert "bf16: bf16 needs a CPU" in bench._summary(result)


def test_bench_refuses_bad_contenders_and_limits():
    with pytest.raises(ValueError, match="unknown contender"):
        bench.run_benchmark(synthetic_data(), "cpu", imbalance=100, contenders=("fp32+cuda-graph",))
    with pytest.raises(ValueError, match="repeat"):
        bench.run_benchmark(synthetic_data(), "cpu", imbalance=100, contenders=("fp32", "fp32"))
    with pytest.raises(ValueError, match="limit_steps"):
        bench.run_benchmark(synthetic_data(), "cpu", imbalance=100, limit_steps=0)


def test_bench_script_on_the_jpeg_copy(tmp_path, jpeg_root):
    out = tmp_path / "bench.json"
    assert bench.main(["--device", "cpu", "--epochs", "1", "--warmup-epochs", "0", "--limit-steps", "1",
                       "--workers", "1", "--batch-size", "8", "--contenders", "fp32", "--data-root", str(jpeg_root),
                       "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["config"]["dataset_label"] == "CIFAR-10 (JPEG copy)" and doc["config"]["train_images"] == 12406
    assert (doc["config"]["preset"], doc["config"]["image_size"], doc["config"]["width"]) == ("cifar10_lt", 32, 16)
    assert doc["config"]["test_images"] == 8 and doc["trainers"]["reference"]["compile_overhead_s"] is None
    assert doc["trainers"]["reference"]["train_images_per_s"] > 0 and doc["trainers"]["fp32"]["epoch_s"] > 0
    assert sorted(doc["trainers"]) == ["fp32", "reference"]


def test_bench_outputs_gpu_names_and_keeps_checks_out_of_the_results(tmp_path):
    gpu = {"device": "NVIDIA H100 80GB HBM3", "device_type": "cuda", "date": "2026-11-26",
           "config": {"limit_steps": None}}
    first = bench.output_path(gpu, None, tmp_path)
    assert first == tmp_path / "nvidia-h100-80gb-hbm3-2026-11-26.json"
    first.write_text("{}")
    assert bench.output_path(gpu, None, tmp_path).name == "nvidia-h100-80gb-hbm3-2026-11-26-2.json"
    assert bench.output_path(gpu, None, None).parent == REPO / "bench" / "results"
    cpu = dict(gpu, device="cpu (x)", device_type="cpu")
    with pytest.raises(ValueError, match="give --out FILE or --out-dir"):
        bench.output_path(cpu, None, None)
    results = REPO / "bench" / "results"
    assert bench.output_path(cpu, None, results) == results / "cpu-x-2026-11-26.json"  # named: a result
    check = dict(cpu, config={"limit_steps": 2})
    with pytest.raises(ValueError, match="a run with --limit-steps is a check"):
        bench.output_path(check, None, results)
    assert bench.output_path(check, tmp_path / "c.json", None) == tmp_path / "c.json"
    assert bench.assumed_bf16_peak("NVIDIA H100 80GB HBM3")[0] == 989.4
    assert bench.assumed_bf16_peak("NVIDIA H200")[0] == 989.4
    assert bench.assumed_bf16_peak("NVIDIA H100 PCIe")[0] == 756.0
    assert bench.assumed_bf16_peak("Tesla T4")[0] is None


def test_bench_cpu_run_without_out_is_refused(capsys):
    assert bench.main(["--device", "cpu", "--data-root", "/nonexistent"]) == 2
    assert "give --out FILE or --out-dir" in capsys.readouterr().err
    assert bench.main(["--device", "cpu", "--contenders", "fp16", "--out", "x", "--data-root", "/nonexistent"]) == 2
    assert "unknown contender 'fp16'" in capsys.readouterr().err
    # a check refused under bench/results before any data is loaded (the data root does not exist)
    assert bench.main(["--device", "cpu", "--limit-steps", "1", "--out-dir", str(REPO / "bench" / "results"),
                       "--data-root", "/nonexistent"]) == 2
    assert "a run with --limit-steps is a check" in capsys.readouterr().err


# --------------------------------------------------------------------------- the GPU job's stages


def _tiny(epochs=2, seed=0):
    """A run of the CPU-scale protocol shrunk further (4 channels, 8 px, batch 512), fast path."""
    return bench.make_config("cifar10-jpeg", "ce", preset="cifar10_lt_small", seed=seed, epochs=epochs, width=4,
                             image_size=8, batch_size=512, **fast_path("cpu"))


def test_choose_jobs_by_hand():
    """The K of the largest aggregate rate measured; one worker without a measurement."""
    assert grid.choose_jobs(None) == (1, "no workers bench: one worker")
    assert grid.choose_jobs({"workers": {}, "failed": {"1": "x"}})[0] == 1
    doc = {"workers": {"1": {"epochs_per_s": 1.4}, "2": {"epochs_per_s": 2.1}, "4": {"epochs_per_s": 2.6},
                       "8": {"epochs_per_s": 2.5}}}
    assert grid.choose_jobs(doc) == (4, "4 workers: the largest aggregate rate measured (epochs/s by workers: "
                                        "1: 1.4, 2: 2.1, 4: 2.6, 8: 2.5)")


def test_workers_bench_times_k_workers_of_the_runner(tmp_path, jpeg_root):
    """K = 2 worker processes of train-grid at once (the job times K = 1, 2, 4, 8 the same
    way): each run's epochs per second over the window from its own progress clock, their
    sum, the document written, the scratch folder removed and no record left (the runs are
    stopped after the window); a K whose runs do not get going is recorded as failed."""
    out = tmp_path / "workers.json"
    doc = grid.bench_workers(_tiny(epochs=70), (2,), work=tmp_path / "w", out_file=out, device="cpu",
                             data_root=jpeg_root, threads=1, window_s=15.0, log=print)
    assert json.loads(out.read_text()) == doc and doc["failed"] == {}
    assert doc["schema"] == "kps-workers/1" and doc["config"]["width"] == 4 and doc["window_s"] == 15.0
    m = doc["workers"]["2"]
    assert m["jobs"] == 2 and len(m["epochs_per_s_each"]) == 2 and all(n >= 1 for n in m["epochs"])
    assert all(r > 0 for r in m["epochs_per_s_each"]) and m["epochs_per_s"] == sum(m["epochs_per_s_each"])
    assert list((tmp_path / "w").iterdir()) == []
    assert grid.choose_jobs(doc) == (2, "2 workers: the largest aggregate rate measured (epochs/s by workers: "
                                        f"2: {m['epochs_per_s']:.3g})")
    bad = grid.bench_workers(_tiny(epochs=70), (1,), work=tmp_path / "w", out_file=out, device="cpu",
                             data_root=tmp_path / "no-data", threads=1, log=print)
    assert bad["workers"] == {} and bad["failed"]["1"].startswith("1 workers: not every run got past epoch 2")


def test_grid_interrupted_at_the_deadline_resumes_to_the_same_record(tmp_path, jpeg_root):
    """The grid stage on a tiny grid: interrupted (SIGINT) in its second epoch, it returns
    the run's checkpoint of epoch 1 in checkpoints.tar and no record; a second stage in a
    fresh work folder with that checkpoint finishes the run, to the record of the same run
    trained without a break."""
    from kps.checkpoints import checkpoint_path, read_progress
    from kps.results import load_record
    from kps.train import train

    config = _tiny()
    ckpt = checkpoint_path(tmp_path / "w1" / "checkpoints", config)
    lines = []
    first = grid.run_grid([config], work=tmp_path / "w1", out=tmp_path / "o1", deadline=time.time() + 300,
                          device="cpu", data_root=jpeg_root, threads=1, why="test",
                          stop=lambda: (read_progress(ckpt) or {}).get("next_epoch", 0) >= 1, poll_s=0.1,
                          log=lines.append)
    assert (first["interrupted"], first["exit_status"], first["jobs"], first["plan"]) == (True, 130, 1, "test")
    assert "grid: asked to stop" in lines and "sending SIGINT to the command" in lines
    assert any("--config-list" in line and "--jobs 1" in line for line in lines)
    (run,) = first["runs"]
    name = str(ckpt.relative_to(tmp_path / "w1" / "checkpoints"))
    assert (run["status"], run["epochs_done"], run["checkpoint_epochs"], run["checkpoint"]) == \
        ("unfinished", 1, 1, name)
    assert first["checkpoints_packed"] == [name] and first["checkpoints_left_out"] == []
    with tarfile.open(tmp_path / "o1" / "checkpoints.tar") as tar:
        assert sorted(tar.getnames()) == [name.removesuffix(".pt") + ".progress.json", name]
        tar.extractall(tmp_path / "w2" / "checkpoints")
    with tarfile.open(tmp_path / "o1" / "results.tar") as tar:
        assert tar.getnames() == []
    second = grid.run_grid([config], work=tmp_path / "w2", out=tmp_path / "o2", deadline=time.time() + 300,
                           device="cpu", data_root=jpeg_root, threads=1, log=print)
    assert (second["interrupted"], second["exit_status"]) == (False, 0)
    (run,) = second["runs"]
    assert (run["status"], run["epochs_done"]) == ("done", 2)
    with tarfile.open(tmp_path / "o2" / "results.tar") as tar:
        assert tar.getnames() == [run["record"]]
        tar.extractall(tmp_path / "returned")
    resumed = load_record(tmp_path / "returned" / run["record"])
    assert [s["from_epoch"] for s in resumed["segments"]] == [0, 1]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the grid's worker
    try:
        whole = train(config, data_root=jpeg_root, out=tmp_path / "whole", quiet=True)
    finally:
        torch.set_num_threads(threads)
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in whole["history"]]
    assert (resumed["top1_error"], resumed["per_class_accuracy"]) == (whole["top1_error"], whole["per_class_accuracy"])
    assert run["top1_error"] == whole["top1_error"]
    # a third stage with that record under --existing: counted as done, trained by nobody, not returned again
    lines = []
    third = grid.run_grid([config], work=tmp_path / "w3", out=tmp_path / "o3", deadline=time.time() + 300,
                          device="cpu", data_root=jpeg_root, existing=tmp_path / "returned", log=lines.append)
    assert third["runs"][0]["status"] == "done" and third["exit_status"] == 0
    assert lines[0].startswith("grid: 1 runs, 0 without a record") and not any("-m kps" in line for line in lines)
    with tarfile.open(tmp_path / "o3" / "results.tar") as tar:
        assert tar.getnames() == []


def test_checkpoints_are_packed_into_returnable_parts():
    """At most 3 parts of at most 15 MiB (the device returns 8 files of 16 MiB); first fit
    in the given order (furthest-trained first), a file that fits no part is left out."""
    mb = 2**20
    files = [(f"c{k}.pt", size * mb) for k, size in enumerate((4, 4, 4, 4, 12, 4, 20, 2))]
    parts = grid.pack_parts(files, 15 * mb, 3)
    assert parts == [["c0.pt", "c1.pt", "c2.pt", "c7.pt"], ["c3.pt", "c5.pt"], ["c4.pt"]]
    assert grid.pack_parts(files, 15 * mb, 1) == [["c0.pt", "c1.pt", "c2.pt", "c7.pt"]]
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
    (files / "workers.json").write_text('{"workers": 1}')
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
    assert (results / "nvidia-h100-2026-11-27-job3.workers.json").read_text() == '{"workers": 1}'
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
