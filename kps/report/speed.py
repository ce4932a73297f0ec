"""The Speed page: what was measured, and only that.  The speed targets, the bench
results (``bench/bench.py``, GPU and CPU, under ``bench/results``) and the GPU job's
grids (``bench/grid.py``'s ``runs.json``).  Every value of a bench file comes through
:mod:`kps.report.benchfiles`, the one module that knows their keys; the functions
return tables, numbers and figures, and the page's Markdown says what they mean."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from kps.configs import RunConfig
from kps.report import benchfiles as bf
from kps.report.paper import find_repo_root
from kps.report.provenance import (ProvenanceNote, note_for, provenance_footnotes, read_provenance_notes,
                                   record_wall_note)
from kps.report.records import RunsOverview

# The targets of the GPU path (what the page measures against): train images/s at
# least 10x the reference trainer's, one full run within 60 s, 12 runs in one 540 s job.
SPEED_TARGETS = {"speedup": 10.0, "run_s": 60.0, "job_runs": 12, "job_s": 540.0}
NOT_MEASURED = "not measured"


def contender_title(name: str, entry: Mapping[str, Any]) -> str:
    """What a bench entry timed, from what the entry says of itself: the reference-style
    trainer, or kps's trainer in its precision, eager or under its compile mode."""
    if name == "reference":
        return "reference-style (DataLoader + CPU torchvision transforms, fp32, eager)"
    mode = entry.get("compile") or "none"
    run = "eager" if mode == "none" else f"torch.compile {mode}"
    return f"kps trainer, {entry.get('precision') or '?'}, {run}"


def grid_config(preset: str) -> RunConfig | None:
    """The first configuration of a named grid (:data:`kps.grids.GRIDS`, in order) that
    trains ``preset``: its evaluation cadence is the one a bench's projection uses."""
    from kps.grids import GRIDS

    for make in GRIDS.values():
        for c in make():
            if c.preset == preset:
                return c
    return None


def projected_minutes(entry: Mapping[str, Any], config: RunConfig) -> float:
    """One run of ``config``'s epochs, evaluated as ``config`` says, in minutes, from an
    entry's seconds per training pass and per evaluation pass and its compile time."""
    evaluated = sum(config.evaluates(e) for e in range(config.epochs))
    compile_s = max(entry["compile_overhead_s"] or 0.0, 0.0)
    return (config.epochs * entry["train_s_per_epoch"] + evaluated * entry["eval_s_per_epoch"] + compile_s) / 60


def contender_table(bench: Mapping[str, Any]) -> pd.DataFrame:
    """One row per contender of a bench file (reference first): what it is, its
    precision, training images/s, seconds per training pass and per evaluation pass,
    compile seconds (measured in the untimed epochs), the projected run in minutes at
    the grid's evaluation cadence (:func:`grid_config`; the bench's own projection
    where no grid trains its preset), and images/s over the reference's."""
    c = bf.config(bench)
    grid = grid_config(c["preset"]) if c["preset"] else None
    cadence = "the grid's cadence" if grid else "its preset's cadence"
    ref = bf.images_per_s(bench, "reference")
    rows = []
    for name in sorted(bf.trainers(bench), key=lambda n: n != "reference"):
        t = bf.trainer_row(bench, name)
        run = projected_minutes(t, grid) if grid else (t["projected_run_s"] or math.nan) / 60
        rows.append({"contender": name, "what": contender_title(name, t), "precision": t["precision"],
                     "train images/s": t["train_images_per_s"], "s per training pass": t["train_s_per_epoch"],
                     "s per evaluation pass": t["eval_s_per_epoch"],
                     "compile s": math.nan if t["compile_overhead_s"] is None else max(t["compile_overhead_s"], 0.0),
                     f"projected run, {cadence} (min)": run, "× reference (images/s)": t["train_images_per_s"] / ref})
    return pd.DataFrame(rows).set_index("contender")


def contender_tables(benches: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """:func:`contender_table` of every bench, one under the other, indexed by (bench, contender)."""
    if not benches:
        return pd.DataFrame()
    return pd.concat({name: contender_table(b) for name, b in benches.items()}, names=["bench", "contender"])


BENCH_COLUMNS = ("file", "device", "date", "commit", "tree", "note", "torch", "CUDA", "protocol", "threads",
                 "training images / epoch", "test images / epoch", "data", "timed epochs", "bf16 peak (TFLOP/s)",
                 "skipped or failed", "complete")


def bench_table(benches: Mapping[str, Mapping[str, Any]], files: Mapping[str, str],
                notes: Iterable[ProvenanceNote] = ()) -> pd.DataFrame:
    """One row per bench result, indexed by name: its file (``files[name]``, as the notes
    name it), device, date, commit and tree state as recorded (with the marker of a note
    that applies), torch / CUDA, the protocol and threads, what was timed, the dense bf16
    peak the fractions refer to, the contenders skipped or failed with why, and whether
    every contender ran."""
    notes = list(notes)
    rows = []
    for name, bench in benches.items():
        p, c, pk = bf.provenance(bench), bf.config(bench), bf.peak(bench)
        note = note_for(files[name], p["git_commit"], p["git_dirty"], notes)
        why = {**bf.skipped(bench), **bf.failures(bench)}
        rows.append(dict(zip(BENCH_COLUMNS, (
            files[name], p["device"], p["date"], str(p["git_commit"])[:10],
            {True: "dirty tree", False: "clean tree"}.get(p["git_dirty"], "tree state unknown"),
            note.marker if note else "", p["torch_version"],
            (p["cuda_version"] or "?") if p["device_type"] == "cuda" else "–", c["protocol"] or "paper",
            c["threads"] or "?", c["train_images"], c["test_images"], c["dataset_label"], c["epochs_timed"],
            pk["assumed_bf16_dense_tflops"], "; ".join(f"{k}: {v}" for k, v in sorted(why.items())),
            "yes" if bf.complete(bench) else "no: cut off before every contender ran")), bench=name))
    return pd.DataFrame(rows, columns=["bench", *BENCH_COLUMNS]).set_index("bench")


def speed_chart(benches: Mapping[str, Mapping[str, Any]]):
    """Bar chart of training images/s per contender and bench file, with the target
    (:data:`SPEED_TARGETS` times the file's reference) dashed over each; None without benches."""
    import matplotlib.pyplot as plt
    import numpy as np

    if not benches:
        return None
    names = list(benches)
    contenders = list(dict.fromkeys(n for b in benches.values() for n in sorted(bf.trainers(b),
                                                                                 key=lambda n: n != "reference")))
    width = 0.8 / len(contenders)
    fig, ax = plt.subplots(figsize=(10, 5.2))
    for k, contender in enumerate(contenders):
        x = np.arange(len(names)) + (k - (len(contenders) - 1) / 2) * width
        values = [bf.images_per_s(benches[n], contender) if contender in bf.trainers(benches[n]) else np.nan
                  for n in names]
        ax.bar(x, np.nan_to_num(values), width, label=contender, color=f"C{k}")
        for xi, value in zip(x, values):
            ax.text(xi, 0 if np.isnan(value) else value, NOT_MEASURED if np.isnan(value) else f"{value:.0f}",
                    ha="center", va="bottom", fontsize=8)
    for i, name in enumerate(names):
        target = SPEED_TARGETS["speedup"] * bf.images_per_s(benches[name], "reference")
        ax.hlines(target, i - 0.45, i + 0.45, colors="k", linestyles="--", lw=1)
        ax.text(i + 0.45, target, f" {SPEED_TARGETS['speedup']:g}× reference", va="center", fontsize=8)
    ax.set(xticks=np.arange(len(names)), ylabel="training images/s", title="training images/s per contender and job")
    ax.set_xticklabels([f"{n}\n{bf.provenance(benches[n])['device']}" for n in names], fontsize=9)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    fig.tight_layout()
    plt.close(fig)  # shown where the page displays it, not when it is drawn
    return fig


def grid_table(runs: Mapping[str, Any]) -> pd.DataFrame:
    """A grid's runs.json, one row per run in priority order: status, epochs done (of the
    grid's epochs), epochs kept in its last checkpoint, wall seconds (process start to
    end, beside the other runs of the job), final and best top-1 error (finished runs
    only) and why a run stopped."""
    epochs = bf.grid_settings(runs)["epochs"]
    rows = []
    for r in bf.grid_runs(runs):
        done = r["status"] == "done"
        rows.append({
            "run": r["run"], "GA variant": r["ga_variant"] or "", "status": r["status"],
            "epochs done": f"{r['epochs_done'] or 0}/{epochs}" if epochs else (r["epochs_done"] or 0),
            "checkpoint epochs": r["checkpoint_epochs"], "wall s": r["wall_s"],
            "final error (%)": f"{r['top1_error']:.2f}" if done and r["top1_error"] is not None else "",
            "best error (%)": f"{r['best_top1_error']:.2f}" if done and r["best_top1_error"] is not None else "",
            "why it stopped": r["reason"] or "",
        })
    return pd.DataFrame(rows).set_index("run")


def grid_tables(grids: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """:func:`grid_table` of every grid, one under the other, indexed by (job, run)."""
    if not grids:
        return pd.DataFrame()
    return pd.concat({name: grid_table(runs) for name, runs in grids.items()}, names=["job", "run"])


GRID_COLUMNS = ("runs.json", "runs", "epochs", "at a time", "compile mode", "s until its deadline", "grid wall s",
                "finished", "checkpoints left out")


def grid_facts(grids: Mapping[str, Mapping[str, Any]], jobs: Iterable[str] = ()) -> pd.DataFrame:
    """One row per grid (and per job of ``jobs`` without one, its runs.json "not
    committed"), indexed by job: runs, epochs, runs at a time, compile mode, seconds
    until its deadline, seconds from its start to its end (NaN where runs.json predates
    ``finished_unix``), runs finished, and the unfinished runs' checkpoints left out of
    the returned parts."""
    rows = []
    for name, runs in grids.items():
        s = bf.grid_settings(runs)
        done = sum(r["status"] == "done" for r in bf.grid_runs(runs))
        rows.append(dict(zip(GRID_COLUMNS, (
            "committed", len(runs["runs"]), s["epochs"], s["concurrency"], s["compile"], s["deadline_s"],
            s["wall_s"], done, ", ".join(s["checkpoints_left_out"]))), job=name))
    rows += [dict({c: math.nan for c in GRID_COLUMNS}, **{"runs.json": "not committed"}, job=name)
             for name in jobs if name not in grids]
    return pd.DataFrame(rows, columns=["job", *GRID_COLUMNS]).set_index("job")


_TARGET_NAMES = {"speedup": "train images/s ≥ {speedup:g}× the reference trainer's",
                 "run_s": "one full run ≤ {run_s:g} s",
                 "job": "{job_runs} runs in one job ≤ {job_min:g} min"}


def _target_name(kind: str) -> str:
    t = SPEED_TARGETS
    return _TARGET_NAMES[kind].format(speedup=t["speedup"], run_s=t["run_s"], job_runs=t["job_runs"],
                                      job_min=t["job_s"] / 60)


def speed_targets(benches: Mapping[str, Mapping[str, Any]], grids: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """The GPU path's targets against what each job measured: train images/s at least
    10x the reference trainer's (best contender of each GPU bench), one full run within
    60 s (smallest projection of a contender, one run alone on the card), and all 12
    runs of the grid within the 540 s job (runs.json: runs finished, and the grid's own
    time from its start to its end where recorded; the job's wall time is only in its
    log).  Columns: target, job, measured (in words), met ('yes'/'no'), kind and value
    (the number measured: ratio, seconds, runs finished) for :func:`speed_summary`."""
    t = SPEED_TARGETS
    rows = []
    for name, bench in benches.items():
        fast = [k for k in bf.trainers(bench) if k != "reference"]
        ref = bf.images_per_s(bench, "reference")
        if not fast:
            rows.append({"target": _target_name("speedup"), "job": name, "measured": "no fast trainer measured",
                         "met": "no", "kind": "speedup", "value": float("nan")})
            continue
        best = max(fast, key=lambda k: bf.images_per_s(bench, k))
        ratio = bf.images_per_s(bench, best) / ref
        rows.append({"target": _target_name("speedup"), "job": name,
                     "measured": f"{ratio:.2f}× ({best}: {bf.images_per_s(bench, best):.0f} vs {ref:.0f} images/s)",
                     "met": "yes" if ratio >= t["speedup"] else "no", "kind": "speedup", "value": ratio})
        quick = min(fast, key=lambda k: bf.projected_run_s(bench, k))
        run_s = bf.projected_run_s(bench, quick)
        rows.append({"target": _target_name("run_s"), "job": name,
                     "measured": f"{run_s:.0f} s projected ({quick}, one run alone on the card)",
                     "met": "yes" if run_s <= t["run_s"] else "no", "kind": "run_s", "value": run_s})
    for name, runs in grids.items():
        s = bf.grid_settings(runs)
        done = sum(r["status"] == "done" for r in bf.grid_runs(runs))
        wall = s["wall_s"]
        timed = not math.isnan(wall)
        rows.append({"target": _target_name("job"), "job": name,
                     "measured": f"{done} of {len(runs['runs'])} runs finished"
                                 + (f" in a {wall:.0f} s grid" if timed else "")
                                 + f" ({s['concurrency'] or '?'} at a time)",
                     "met": "yes" if done >= t["job_runs"] and done == len(runs["runs"]) and timed
                     and wall <= t["job_s"] else "no",
                     "kind": "job", "value": float(done)})
    return pd.DataFrame(rows, columns=["target", "job", "measured", "met", "kind", "value"])


def speed_summary(targets: pd.DataFrame) -> pd.DataFrame:
    """One row per target: 'met' where some job met it, 'not met', or 'not measured'
    where no job measured it, with the best job's measurement (largest ratio, shortest
    run, most runs finished) and that job."""
    rows = []
    for kind, pick in (("speedup", "max"), ("run_s", "min"), ("job", "max")):
        part = targets[(targets["kind"] == kind) & targets["value"].notna()]
        if part.empty:
            rows.append((_target_name(kind), NOT_MEASURED, "", ""))
            continue
        best = part.loc[part["value"].idxmax() if pick == "max" else part["value"].idxmin()]
        rows.append((_target_name(kind), "met" if (part["met"] == "yes").any() else "not met", best["measured"],
                     best["job"]))
    return pd.DataFrame(rows, columns=["target", "status", "best measured", "job"])


def cpu_bench_table(bench: Mapping[str, Any]) -> pd.DataFrame:
    """A CPU bench's contenders as the CPU-scale protocol page shows them: train images/s,
    s per epoch (train + eval), projected run in minutes (the bench's own, at its
    preset's cadence) and images/s over the reference's (target: at least 1)."""
    rows = []
    ref = bf.images_per_s(bench, "reference")
    for name in sorted(bf.trainers(bench), key=lambda n: n != "reference"):
        t = bf.trainer_row(bench, name)
        rows.append({"contender": contender_title(name, t), "train images/s": round(t["train_images_per_s"]),
                     "s per epoch (train + eval)": round(t["epoch_s"], 2),
                     "projected run (min)": round(t["projected_run_s"] / 60, 1),
                     "× reference (images/s)": round(t["train_images_per_s"] / ref, 2)})
    return pd.DataFrame(rows).set_index("contender")


def cpu_bench_facts(bench: Mapping[str, Any], file: str) -> pd.DataFrame:
    """One row about the CPU bench ``file``: device, threads, torch, commit (dirty
    flag), training images, timed and untimed epochs, the preset's epochs."""
    p, c = bf.provenance(bench), bf.config(bench)
    return pd.DataFrame([{"file": file, "device": p["device"], "threads": c["threads"], "torch": p["torch_version"],
                          "commit": str(p["git_commit"] or "?")[:7] + (" (dirty)" if p["git_dirty"] else ""),
                          "training images": c["train_images"], "timed epochs": c["epochs_timed"],
                          "untimed epochs": c["warmup_epochs"], "epochs of a run": c["preset_epochs"]}]
                        ).set_index("file")


def cpu_benches(folder: str | Path, protocol: str) -> dict[str, dict]:
    """The CPU bench results under ``folder`` that timed ``protocol``, by file name."""
    out = {}
    for path in bf.bench_files(folder, "cpu"):
        bench = bf.read_bench(path)
        if bf.config(bench)["protocol"] == protocol:
            out[path.name] = bench
    return out


@dataclass(frozen=True)
class CpuProjection:
    """One paper-protocol run on one CPU core as a bench projects it: the bench file's
    name, its device, the contender (the CPU fast path's precision, eager) and the run's
    hours at the grid's evaluation cadence."""

    bench: str
    device: str
    contender: str
    hours: float


def cpu_run_projection(folder: str | Path, protocol: str = "paper") -> CpuProjection | None:
    """What one run of ``protocol``'s grid takes on one CPU core, as projected by the CPU
    bench of that protocol under ``folder`` that timed the most epochs (one epoch on a
    shared machine is noisy; the newest of equals), for its fast-path contender: bf16
    where the bench's CPU ran it, else fp32.  None without such a bench."""
    benches = cpu_benches(folder, protocol)
    if not benches:
        return None
    name = max(benches, key=lambda n: (bf.config(benches[n])["epochs_timed"] or 0, bf.provenance(benches[n])["date"], n))
    bench = benches[name]
    contender = "bf16" if "bf16" in bf.trainers(bench) else "fp32"
    grid = grid_config(bf.config(bench)["preset"])
    minutes = projected_minutes(bf.trainer_row(bench, contender), grid)
    return CpuProjection(name, bf.provenance(bench)["device"], contender, minutes / 60)


def grid_cost_words(overview: RunsOverview, notes: Iterable[ProvenanceNote] = (),
                    projection: CpuProjection | None = None) -> str:
    """What rerunning a grid costs on a CPU, in a phrase for the Results page, from a
    :class:`kps.report.records.RunsOverview`: the mean wall time of its CPU records and
    the whole grid's on its workers, saying how many of those records hold time the
    process spent waiting (a wall-time note of ``notes``); without a CPU record, ``projection`` (a
    bench's, :func:`cpu_run_projection`) where given."""
    o = overview
    if o.timed:
        notes = list(notes)
        waited = sum(record_wall_note(r, notes) is not None for r in o.timed_records)
        whose = "wall time of its one CPU record" if o.timed == 1 else f"mean wall time of its {o.timed} CPU records"
        held = ""
        if waited:
            which = "which holds" if o.timed == 1 else f"{waited} of which hold"
            held = (f", {which} time the process spent waiting, not training, so this overstates it: see the "
                    "notes under All records, below")
        return (f"one run takes {o.run_min:.0f} min on one core ({whose}{held}), the whole grid about "
                f"{o.grid_hours:.1f} h on {o.workers} cores")
    if projection is None:
        return "no CPU record of it has landed yet"
    device = projection.device.removeprefix("cpu").strip(" ()")
    return (f"no CPU record of it has landed yet; the bench `bench/results/{projection.bench}` projects about "
            f"{projection.hours:.1f} h per run on one core of its {device} ({projection.contender}; the Speed "
            "page has its table)")


# How the page prints each table's numbers (the tables themselves keep full precision).
_FORMATS = {
    "contenders": {"train images/s": "{:.0f}", "s per training pass": "{:.2f}", "s per evaluation pass": "{:.2f}",
                   "compile s": "{:.0f}", "× reference (images/s)": "{:.2f}", "projected": "{:.1f}"},
    "files": {"bf16 peak (TFLOP/s)": "{:g}"},
    "grid": {"runs": "{:.0f}", "epochs": "{:.0f}", "at a time": "{:.0f}", "finished": "{:.0f}",
             "s until its deadline": "{:.0f}", "grid wall s": "{:.0f}"},
    "grid_runs": {"wall s": "{:.1f}"},
}


def _style(frame: pd.DataFrame, kind: str, na_rep: str = "–", hide_index: bool = False):
    """``frame`` as the page prints it: the numbers of :data:`_FORMATS` [kind] by column
    name ('projected' formats the projected-run column, whose name says its cadence),
    missing values as ``na_rep``."""
    formats = {c: f for c in frame.columns for k, f in _FORMATS.get(kind, {}).items()
               if c == k or (k == "projected" and str(c).startswith(k))}
    styler = frame.style.format(formats, na_rep=na_rep)
    return styler.hide(axis="index") if hide_index else styler


@dataclass
class SpeedPage:
    """What the Speed page shows, read from one folder of bench results."""

    folder: str
    gpu_benches: dict[str, dict]
    cpu_benches: dict[str, dict]   # by protocol's name, then file stem: {"paper": {...}, "CPU-scale": {...}}
    grids: dict[str, dict]
    files: Any                     # bench_table of every bench file
    footnotes: str                 # the provenance notes that apply to them
    targets: Any                   # speed_targets without the helper columns
    summary: Any                   # speed_summary
    targets_met: int               # how many of the three targets some job met
    gpu: Any                       # contender_tables of the GPU benches
    cpu_paper: Any                 # contender_tables of the paper protocol's CPU benches (None without one)
    cpu_scale: Any                 # contender_tables of the CPU-scale protocol's CPU benches (None without one)
    chart: Any                     # speed_chart of the GPU benches (None without one)
    grid: Any                      # grid_facts
    grid_runs: Any                 # grid_tables


def speed_page(bench_dir: str | Path | None = None) -> SpeedPage:
    """Everything the Speed page shows, from ``bench_dir`` (None: the repository's
    ``bench/results/``) and ``book/provenance_notes.yml``."""
    root = find_repo_root()
    folder = root / "bench" / "results" if bench_dir is None else Path(bench_dir)
    notes = read_provenance_notes(root / "book" / "provenance_notes.yml")

    def shown(path: Path) -> str:  # the path as the notes name it (relative to the repository)
        try:
            return path.resolve().relative_to(root).as_posix()
        except ValueError:
            return str(path)

    paths = {p.stem: p for p in bf.bench_files(folder)}
    every = {name: bf.read_bench(p) for name, p in paths.items()}
    gpu = {n: b for n, b in every.items() if bf.provenance(b)["device_type"] == "cuda"}
    cpu: dict[str, dict[str, dict]] = {}
    for n, b in every.items():
        if bf.provenance(b)["device_type"] == "cpu":
            cpu.setdefault(bf.config(b)["protocol"] or "paper", {})[n] = b
    grids = bf.read_grids(folder)
    files = {name: shown(p) for name, p in paths.items()}
    targets = speed_targets(gpu, grids)
    summary = speed_summary(targets)
    grid_runs = _style(grid_tables(grids), "grid_runs")
    if grids:  # the reasons are sentences: give them room
        grid_runs = grid_runs.set_properties(subset=["why it stopped"], **{"min-width": "24em", "text-align": "left"})
    footnotes = provenance_footnotes(notes, files=[(files[n], bf.provenance(b)["git_commit"],
                                                    bf.provenance(b)["git_dirty"]) for n, b in every.items()])

    def contenders(benches: Mapping[str, dict] | None) -> Any:
        return _style(contender_tables(benches), "contenders") if benches else None

    return SpeedPage(
        folder=shown(folder), gpu_benches=gpu, cpu_benches=cpu, grids=grids,
        files=_style(bench_table(every, files, notes), "files", na_rep="–"), footnotes=footnotes,
        targets=_style(targets.drop(columns=["kind", "value"]), "targets", hide_index=True),
        summary=_style(summary, "summary", hide_index=True), targets_met=int((summary["status"] == "met").sum()),
        gpu=contenders(gpu), cpu_paper=contenders(cpu.get("paper")), cpu_scale=contenders(cpu.get("CPU-scale")),
        chart=speed_chart(gpu), grid=_style(grid_facts(grids, jobs=gpu), "grid", na_rep="not recorded"),
        grid_runs=grid_runs)
