"""The notebooks: committed without outputs, parameterised for papermill, and
runnable: train.ipynb trains and writes a record (on tiny synthetic data, put
in place of the dataset through an IPython start-up file of the test's own
kernel), a table notebook renders that record beside the paper's number, and
``python -m kps reproduce`` trains only the missing records."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

import kps.batches
from kps.reproduce import main as reproduce, plan_runs
from kps.report import read_paper_numbers
from kps.results import load_records

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
TRAIN_PARAMETERS = ("dataset", "imbalance", "method", "seed", "epochs", "data_root", "out", "device")
PAPERMILL = [sys.executable, "-m", "papermill", "--kernel", "python3", "--log-level", "ERROR"]

STARTUP = """
import sys
sys.path.insert(0, {tests!r})
import kps.train
from synthetic import synthetic_data
kps.train.load_data = lambda config, data_root: synthetic_data()
"""


def toc_files() -> set[str]:
    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                yield node["file"]
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return {toc["root"], *walk(toc)}


def parameters_cell(path: Path) -> dict[str, object]:
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{path.name}: expected one cell tagged 'parameters'"
    tree = ast.parse(cells[0].source)
    return {t.id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
            for t in node.targets}


def test_every_notebook_is_committed_clean_and_in_the_book():
    assert {p.stem for p in NOTEBOOKS} >= {f"table{n}" for n in range(1, 8)} | {
        "train", "fig1_4_boundaries", "fig5_toy", "fig6_7_per_class", "gradients"}
    in_book = toc_files()
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path.name} has outputs"
        assert f"notebooks/{path.stem}" in in_book, f"{path.name} is not in _toc.yml"


def test_train_notebook_parameters():
    params = parameters_cell(ROOT / "notebooks" / "train.ipynb")
    assert set(TRAIN_PARAMETERS) <= set(params)
    assert set(params) == {*TRAIN_PARAMETERS, "arch", "authors_code", "force", "checkpoints", "preset", "threads"}
    assert params["threads"] is None  # as `kps train`: one thread on a CPU
    assert params["method"] == "kps_ga" and params["device"] == "auto"
    for n in range(3, 8):
        assert parameters_cell(ROOT / "notebooks" / f"table{n}.ipynb") == {"results": None, "table": n}


@pytest.fixture(scope="module")
def synthetic_kernel(tmp_path_factory):
    """Environment whose IPython kernels train on tests/synthetic.py's tiny data."""
    ipython_dir = tmp_path_factory.mktemp("ipython")
    startup = ipython_dir / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-synthetic.py").write_text(STARTUP.format(tests=str(ROOT / "tests")))
    return dict(os.environ, IPYTHONDIR=str(ipython_dir))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_kernel):
    """The issue's command, `papermill notebooks/train.ipynb out.ipynb -p method kps_ga -p imbalance 50`,
    plus a 1-epoch, CPU, temporary-folder setting."""
    work = tmp_path_factory.mktemp("train")
    out = work / "results"
    cmd = PAPERMILL + ["notebooks/train.ipynb", str(work / "out.ipynb"), "-p", "method", "kps_ga",
                       "-p", "imbalance", "50", "-p", "epochs", "1", "-p", "device", "cpu",
                       "-p", "data_root", str(work / "data"), "-p", "out", str(out),
                       "-p", "checkpoints", str(work / "checkpoints")]
    done = subprocess.run(cmd, cwd=ROOT, env=synthetic_kernel, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return work, out


def test_train_notebook_writes_a_record(trained):
    work, out = trained
    (record,) = load_records(out)
    c = record["config"]
    assert (c["dataset"], c["method"], c["imbalance"], c["epochs"], c["seed"]) == ("cifar10-jpeg", "kps_ga", 50.0, 1, 0)
    assert 0.0 <= record["top1_error"] <= 100.0 and record["device"]
    executed = nbformat.read(work / "out.ipynb", as_version=4)
    text = "".join(o.get("text", "") for cell in executed.cells for o in cell.get("outputs", []))
    assert "seed0.epochs-1.json" in text and "top-1 error" in text
    # progress: a line per epoch in the training cell's output (a bar's carriage returns show nothing there)
    assert "kps_ga seed 0: epoch 1/1 loss " in text and " to go)" in text


def test_table_notebook_renders_the_record(trained, tmp_path):
    _, out = trained
    result = tmp_path / "table5.ipynb"
    subprocess.run(PAPERMILL + [str(ROOT / "notebooks" / "table5.ipynb"), str(result), "-p", "results", str(out)],
                   cwd=ROOT / "notebooks", check=True, capture_output=True, timeout=300)
    html = json.dumps([o.get("data", {}).get("text/html", "") for c in nbformat.read(result, as_version=4).cells
                       for o in c.get("outputs", [])], ensure_ascii=False)
    (record,) = load_records(out)
    assert f"{record['top1_error']:.2f} (n=1)" in html      # our cell, from the record
    assert "short run: 1 of 200 epochs" in html and "15.41" in html   # labelled, beside the paper's number
    assert html.count(">—<") >= 8                              # every other cell of ours: missing


def test_speed_notebook_without_bench_results(tmp_path):
    """The Speed page on a folder with no bench result says so instead of failing."""
    result = tmp_path / "speed.ipynb"
    subprocess.run(PAPERMILL + [str(ROOT / "notebooks" / "speed.ipynb"), str(result), "-p", "bench_dir", str(tmp_path)],
                   cwd=ROOT / "notebooks", check=True, capture_output=True, timeout=300)
    html = json.dumps([o.get("data", {}).get("text/html", "") for c in nbformat.read(result, as_version=4).cells
                       for o in c.get("outputs", [])])
    assert html.count("not measured") == 3            # every target of the summary: not measured


def test_reproduce_plan(tmp_path):
    paper = read_paper_numbers(ROOT / "book" / "paper_numbers.csv")
    (tmp_path / "cifar10-jpeg").mkdir()
    runs = plan_runs(paper, 5, seeds=2, out=tmp_path / "r", data_root=tmp_path, cifar10="cifar10-jpeg")
    assert len(runs) == 3 * 4 * 2
    status = {(r.config.dataset, r.config.method, r.config.imbalance, r.config.seed): r.status for r in runs}
    assert status[("cifar10-jpeg", "kps_ga", 100.0, 1)] == "run"
    assert status[("cifar100", "kps", 50.0, 0)] == "no data"
    t4 = plan_runs(paper, 4, seeds=1, out=tmp_path / "r", data_root=tmp_path)
    assert len(t4) == 22  # numbered cells of Table 4 whose method we implement (not BBN, meta-learning, decoupling)
    assert {r.config.arch for r in t4} == {"resnet50", "resnext50_32x4d"}
    assert plan_runs(paper, 7, seeds=3, out=tmp_path, data_root=tmp_path) == []
    with pytest.raises(ValueError, match="unknown method"):
        plan_runs(paper, 5, seeds=1, out=tmp_path, data_root=tmp_path, methods=["bbn"])
    # the CPU-scale preset: only the CIFAR-10 cells (it fits no other dataset)
    small = plan_runs(paper, 5, seeds=1, out=tmp_path / "r", data_root=tmp_path, cifar10="cifar10-jpeg",
                      preset="cifar10_lt_small")
    assert len(small) == 3 * 2 and {(r.config.dataset, r.config.preset) for r in small} == {
        ("cifar10-jpeg", "cifar10_lt_small")}
    assert all(".preset-cifar10_lt_small" in r.record.name for r in small)
    assert {r.config.preset for r in small} == {"cifar10_lt_small"}
    with pytest.raises(ValueError, match="unknown preset 'tiny'"):
        plan_runs(paper, 5, seeds=1, out=tmp_path, data_root=tmp_path, preset="tiny")


def test_reproduce_runs_missing_records_then_skips(tmp_path, monkeypatch, capsys):
    """reproduce hands the table's missing records, as one list, to the runner of
    train-grid (here on tiny synthetic data), re-renders the table, and a second call
    trains nothing."""
    from synthetic import synthetic_data

    loads = []
    monkeypatch.setattr(kps.batches, "load_data", lambda config, root: loads.append(config) or synthetic_data())
    (tmp_path / "data" / "cifar10-jpeg").mkdir(parents=True)
    argv = ["--table", "6", "--methods", "kps_ga_mixup", "--cifar10", "cifar10-jpeg", "--epochs", "1",
            "--device", "cpu", "--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "results"),
            "--log-dir", str(tmp_path / "logs"), "--checkpoints", str(tmp_path / "checkpoints")]
    assert reproduce(argv) == 0
    first = capsys.readouterr().out
    records = load_records(tmp_path / "results")
    assert sorted(r["config"]["imbalance"] for r in records) == [50.0, 100.0] and len(loads) == 2
    assert (tmp_path / "logs" / "table6.ipynb").exists()
    assert "[1/2]" in first and "[2/2]" in first and first.count("done: kps_ga_mixup seed 0") == 2
    assert "17.84" in first and "short run: 1 of 200 epochs" in first
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "results").rglob("*.json")}
    assert reproduce(argv) == 0
    second = capsys.readouterr().out
    assert second.count("exists") == 2 and "[1/" not in second and len(loads) == 2
    assert stamps == {p: p.stat().st_mtime_ns for p in (tmp_path / "results").rglob("*.json")}
