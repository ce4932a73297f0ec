"""The bench's files, read in one place: which keys of ``bench/results/*.json``
(``bench/bench.py``, schema kps-bench/1) and of the grids' ``*.runs.json``
(``bench/grid.py``) the site reads, and the readers.  The Speed page and the
CPU-scale protocol page ask this module for every value of a bench file; the job
logs (``*.log``) and the workers benches (``*.workers.json``) are not read by any
code: they are for people."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

BENCH_SCHEMA = "kps-bench/1"
# Keys every bench file must have (read_bench checks them), at the top and per trainer.
BENCH_KEYS = ("device", "date", "git_commit", "git_dirty", "torch_version", "peak")
TRAINER_KEYS = ("train_images_per_s", "train_s_per_epoch", "eval_s_per_epoch", "epoch_s", "compile_overhead_s",
                "projected_run_s", "achieved_tflops", "fraction_of_bf16_peak")
# Keys read from one run of a grid's runs.json.
GRID_RUN_KEYS = ("run", "ga_variant", "status", "priority", "epochs_done", "checkpoint_epochs", "wall_s",
                 "top1_error", "best_top1_error", "reason")


def bench_files(folder: str | Path, device_type: str | None = None) -> list[Path]:
    """The bench results under ``folder`` (``*.json`` other than a job's ``*.runs.json``
    and ``*.workers.json``), sorted by name (device slug, date, job); with ``device_type``
    ('cuda', 'cpu') only those measured on such a device."""
    files = sorted(p for p in Path(folder).glob("*.json") if not p.name.endswith((".runs.json", ".workers.json")))
    if device_type is None:
        return files
    return [p for p in files if json.loads(p.read_text()).get("device_type") == device_type]


def read_bench(path: str | Path) -> dict:
    """One bench JSON; ValueError naming the file unless it has schema
    kps-bench/1, a reference trainer and the fields the pages read."""
    path = Path(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("schema") != BENCH_SCHEMA:
        raise ValueError(f"{path}: schema {data.get('schema')!r}, expected {BENCH_SCHEMA!r}")
    trainers = data.get("trainers") or {}
    if "reference" not in trainers:
        raise ValueError(f"{path}: no reference trainer, so no ratio can be computed")
    for name, t in trainers.items():
        missing = [k for k in TRAINER_KEYS if k not in t]
        if missing:
            raise ValueError(f"{path}: trainer {name!r} lacks {missing}")
    for k in BENCH_KEYS:
        if k not in data:
            raise ValueError(f"{path}: lacks {k!r}")
    return data


def read_grids(folder: str | Path) -> dict[str, dict]:
    """The grids' run lists under ``folder`` (``<job>.runs.json``), by job name."""
    return {p.name[: -len(".runs.json")]: json.loads(p.read_text(encoding="utf-8"))
            for p in sorted(Path(folder).glob("*.runs.json"))}


# --- the values of one bench file --------------------------------------------------------------

def trainers(bench: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The trainers timed alone, by name (``trainers``)."""
    return dict(bench.get("trainers") or {})


def images_per_s(bench: Mapping[str, Any], trainer: str) -> float:
    """A trainer's training images per second."""
    return float(bench["trainers"][trainer]["train_images_per_s"])


def projected_run_s(bench: Mapping[str, Any], trainer: str) -> float:
    """The bench's projection of one full run of the preset's epochs for a trainer, in s."""
    return float(bench["trainers"][trainer]["projected_run_s"])


def trainer_row(bench: Mapping[str, Any], trainer: str) -> dict[str, Any]:
    """The timings of one contender: TRAINER_KEYS, its ``precision`` and ``compile``
    mode ('' where not recorded)."""
    t = bench["trainers"][trainer]
    return {**{k: t[k] for k in TRAINER_KEYS}, "precision": t.get("precision", ""), "compile": t.get("compile", "")}


def config(bench: Mapping[str, Any]) -> dict[str, Any]:
    """What the bench trained (``config``): the preset and its protocol (files from
    before presets were recorded ran the dataset's Table 2 preset: the paper's
    protocol, 200 epochs), images per epoch, timed and warm-up epochs, data label,
    threads."""
    from kps.datasets import DATASETS

    c = bench.get("config") or {}
    return {"preset_epochs": c.get("preset_epochs", 200), "train_images": c.get("train_images"),
            "test_images": c.get("test_images"), "dataset_label": c.get("dataset_label"),
            "epochs_timed": c.get("epochs_timed"), "warmup_epochs": int(c.get("warmup_epochs", 0)),
            "threads": c.get("threads"), "protocol": c.get("protocol", "paper"),
            "preset": c["preset"] if "preset" in c else DATASETS[c["dataset"]].preset,
            "width": c.get("width"), "image_size": c.get("image_size"), "fast_configs": c.get("fast_configs") or {}}


def provenance(bench: Mapping[str, Any]) -> dict[str, Any]:
    """Where the file came from as it says: device, date, start, commit, dirty flag, torch, CUDA."""
    return {"device": bench["device"], "device_type": bench.get("device_type"), "date": bench["date"],
            "started_at": bench.get("started_at"), "git_commit": bench.get("git_commit"),
            "git_dirty": bench.get("git_dirty"), "torch_version": bench.get("torch_version"),
            "cuda_version": bench.get("cuda_version")}


def peak(bench: Mapping[str, Any]) -> dict[str, Any]:
    """The dense bf16 peak the fractions refer to, its source, and a measured matmul rate (None if not)."""
    p = bench["peak"]
    return {"assumed_bf16_dense_tflops": p["assumed_bf16_dense_tflops"], "source": p.get("source", ""),
            "measured_bf16_matmul_tflops": p.get("measured_bf16_matmul_tflops")}


def complete(bench: Mapping[str, Any]) -> bool:
    """False when the bench was cut off before every trainer ran."""
    return bool(bench.get("complete", True))


def failures(bench: Mapping[str, Any]) -> dict[str, str]:
    """The contenders that raised (``failed``), with the error."""
    return dict(bench.get("failed") or {})


def skipped(bench: Mapping[str, Any]) -> dict[str, str]:
    """The contenders that could not run on the device (``skipped``), with why."""
    return dict(bench.get("skipped") or {})


# --- a grid's runs.json ---------------------------------------------------------------------------

def grid_runs(runs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The runs of a grid in priority order, as GRID_RUN_KEYS lists them (None where not recorded)."""
    return [{k: r.get(k) for k in GRID_RUN_KEYS}
            for r in sorted(runs["runs"], key=lambda r: r.get("priority", 0))]


def grid_settings(runs: Mapping[str, Any]) -> dict[str, Any]:
    """How the grid ran: epochs, runs at a time, compile mode, seconds until its
    deadline, seconds from its start to its end (NaN where not recorded) and the
    checkpoints left out of the returned parts."""
    finished = runs.get("finished_unix")
    return {"epochs": runs.get("epochs"), "concurrency": runs.get("concurrency"), "compile": runs.get("compile"),
            "deadline_s": runs["deadline_unix"] - runs["started_unix"],
            "wall_s": math.nan if finished is None else finished - runs["started_unix"],
            "checkpoints_left_out": list(runs.get("checkpoints_left_out") or [])}
