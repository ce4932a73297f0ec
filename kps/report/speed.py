"""The Speed page: the GPU bench (``bench/bench.py``) and the one-job grid
(``bench/grid.py``) against the speed targets of the GPU path.  Every value of a
bench file comes through :mod:`kps.report.benchfiles`, the one module that knows
their keys; the functions return tables, numbers and figures, and the page's
Markdown says what they mean."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from kps.report import benchfiles as bf
from kps.report.provenance import ProvenanceNote, note_for, provenance_footnotes, read_provenance_notes
from kps.report.paper import find_repo_root

# The targets of the GPU path (what the page measures against): train images/s at
# least 10x the reference trainer's, one full run within 60 s, 12 runs in one 540 s job.
SPEED_TARGETS = {"speedup": 10.0, "run_s": 60.0, "job_runs": 12, "job_s": 540.0}
TRAINER_TITLES = {
    "reference": "reference (DataLoader + CPU transforms, fp32, eager)",
    "fast_none": "fast path, eager",
    "fast_default": "fast path, torch.compile default",
    "fast_reduce-overhead": "fast path, torch.compile reduce-overhead (CUDA graphs)",
}
NOT_MEASURED = "not measured"


def trainer_order(names: Iterable[str]) -> list[str]:
    """Trainers in the order of TRAINER_TITLES (reference first), unknown ones last by name."""
    known = list(TRAINER_TITLES)
    return sorted(names, key=lambda n: (known.index(n) if n in known else len(known), n))


BENCH_COLUMNS = ("file", "device", "date", "started", "commit", "tree", "note", "torch", "CUDA",
                 "training images / epoch", "test images / epoch", "data", "timed epochs",
                 "bf16 peak (TFLOP/s)", "peak source", "bf16 matmul measured (TFLOP/s)", "failed trainers",
                 "complete")


def bench_table(benches: Mapping[str, Mapping[str, Any]], files: Mapping[str, str],
                notes: Iterable[ProvenanceNote] = ()) -> pd.DataFrame:
    """One row per bench result, indexed by name: its file (``files[name]``, as the
    notes name it), device, date and start, commit and tree state as recorded (with
    the marker of a note that applies), torch / CUDA, what was timed, the bf16 peak
    the fractions refer to, the trainers that failed with their errors (not the
    measurements of :data:`kps.report.benchfiles.MEASUREMENT_KEYS`: their status is
    :func:`measurement_status`) and whether every trainer ran."""
    notes = list(notes)
    rows = []
    for name, bench in benches.items():
        p, c, pk = bf.provenance(bench), bf.config(bench), bf.peak(bench)
        note = note_for(files[name], p["git_commit"], p["git_dirty"], notes)
        failed = {k: v for k, v in sorted(bf.failures(bench).items()) if k not in bf.MEASUREMENT_KEYS}
        rows.append(dict(zip(BENCH_COLUMNS, (
            files[name], p["device"], p["date"], p["started_at"] or "?", str(p["git_commit"])[:10],
            {True: "dirty tree", False: "clean tree"}.get(p["git_dirty"], "tree state unknown"),
            note.marker if note else "", p["torch_version"], p["cuda_version"] or "?", c["train_images"],
            c["test_images"], c["dataset_label"], c["epochs_timed"], pk["assumed_bf16_dense_tflops"], pk["source"],
            math.nan if pk["measured_bf16_matmul_tflops"] is None else pk["measured_bf16_matmul_tflops"],
            "; ".join(f"{k}: {v}" for k, v in failed.items()),
            "yes" if bf.complete(bench) else "no: cut off before every trainer ran")), bench=name))
    return pd.DataFrame(rows, columns=["bench", *BENCH_COLUMNS]).set_index("bench")


def speed_table(bench: Mapping[str, Any]) -> pd.DataFrame:
    """One row per trainer of a bench JSON, in the order reference, eager,
    compiled: train images/s, s/epoch (train + eval), eval s per epoch, the
    bench's projection of a full run (its epochs x s/epoch plus the measured
    compile time), achieved TFLOP/s and fraction of the card's dense bf16
    peak, and train images/s divided by the reference trainer's."""
    ref = bf.images_per_s(bench, "reference")
    epochs = bf.config(bench)["preset_epochs"]
    rows = []
    for name in trainer_order(bf.trainers(bench)):
        t = bf.trainer_row(bench, name)
        rows.append({
            "trainer": name,
            "what": TRAINER_TITLES.get(name, name),
            "precision": t["precision"],
            "train images/s": t["train_images_per_s"],
            "s/epoch": t["epoch_s"],
            "eval s/epoch": t["eval_s_per_epoch"],
            f"projected {epochs}-epoch run (s)": t["projected_run_s"],
            "TFLOP/s": t["achieved_tflops"],
            "fraction of bf16 peak": t["fraction_of_bf16_peak"],
            "× reference (images/s)": t["train_images_per_s"] / ref,
        })
    return pd.DataFrame(rows).set_index("trainer")


def speed_tables(benches: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """:func:`speed_table` of every bench, one under the other, indexed by (bench, trainer)."""
    if not benches:
        return pd.DataFrame()
    return pd.concat({name: speed_table(b) for name, b in benches.items()}, names=["bench", "trainer"])


def speed_chart_data(benches: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Long table for the bar chart: one row per (bench file, trainer) with
    its train images/s, and 10x the reference's images/s of that file (the
    speed target)."""
    rows = []
    for name, bench in benches.items():
        ref = bf.images_per_s(bench, "reference")
        for trainer in trainer_order(bf.trainers(bench)):
            rows.append({"bench": name, "trainer": trainer, "train images/s": bf.images_per_s(bench, trainer),
                         "target images/s": SPEED_TARGETS["speedup"] * ref})
    return pd.DataFrame(rows)


def speed_chart(benches: Mapping[str, Mapping[str, Any]]):
    """Bar chart of :func:`speed_chart_data`: train images/s per trainer and job, a
    trainer a job did not time marked "not measured", the target as a dashed line
    over each job.  None without benches."""
    import matplotlib.pyplot as plt
    import numpy as np

    if not benches:
        return None
    data = speed_chart_data(benches)
    names = list(benches)
    trainers = trainer_order(set(data["trainer"]))
    width = 0.8 / len(trainers)
    fig, ax = plt.subplots(figsize=(10, 5.2))
    for k, trainer in enumerate(trainers):
        part = data[data["trainer"] == trainer].set_index("bench").reindex(names)
        x = np.arange(len(names)) + (k - (len(trainers) - 1) / 2) * width
        ax.bar(x, part["train images/s"].fillna(0), width, label=TRAINER_TITLES.get(trainer, trainer), color=f"C{k}")
        for xi, value in zip(x, part["train images/s"]):
            ax.text(xi, 0 if np.isnan(value) else value, NOT_MEASURED if np.isnan(value) else f"{value:.0f}",
                    ha="center", va="bottom", fontsize=8)
    for i, name in enumerate(names):
        target = data[data["bench"] == name]["target images/s"].iloc[0]
        ax.hlines(target, i - 0.45, i + 0.45, colors="k", linestyles="--", lw=1)
        ax.text(i + 0.45, target, f" {SPEED_TARGETS['speedup']:g}× reference", va="center", fontsize=8)
    ax.set(xticks=np.arange(len(names)), ylabel="training images/s", title="train images/s per trainer and job")
    ax.set_xticklabels([f"{n}\n{bf.provenance(benches[n])['device']}" for n in names], fontsize=9)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    fig.tight_layout()
    plt.close(fig)  # shown where the page displays it, not when it is drawn
    return fig


def grid_table(runs: Mapping[str, Any]) -> pd.DataFrame:
    """A grid's runs.json, one row per run in priority order: status, epochs
    done (of the grid's epochs), epochs kept in its last checkpoint, wall
    seconds (process start to end), final and best top-1 error (finished runs
    only), how many runs its (last) process trained as one network with it
    (``stacked_runs``, 1: not stacked; blank where not recorded) and why a run stopped."""
    epochs = bf.grid_settings(runs)["epochs"]
    rows = []
    for r in bf.grid_runs(runs):
        done = r["status"] == "done"
        rows.append({
            "run": r["run"], "GA variant": r["ga_variant"] or "", "status": r["status"],
            "epochs done": f"{r['epochs_done'] or 0}/{epochs}" if epochs else (r["epochs_done"] or 0),
            "checkpoint epochs": r["checkpoint_epochs"],
            "wall s": r["wall_s"],
            "stacked runs": r["stacked_runs"] if done and r["stacked_runs"] is not None else "",
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


def grid_per_process(runs: Mapping[str, Any]) -> str:
    """Runs trained side by side in one process (runs.json ``per_process``), and
    whether runs of equal stack key were stacked as one network (``stack``).  A
    runs.json without ``per_process`` is from a grid.py before ``--per-process``,
    which gave every process exactly one ``--run``: "1 (one run per process)"; one
    without ``stack`` from before ``--stack``: not stacked."""
    s = bf.grid_settings(runs)
    k = s["per_process"]
    if s["stack"]:
        return (f"up to {k} (runs that can share a network stacked as one, the others side by side, "
                "one CUDA stream each)")
    return "1 (one run per process)" if k == 1 else f"up to {k} (side by side in one process, one CUDA stream each)"


GRID_COLUMNS = ("runs.json", "runs", "epochs", "at a time", "runs per process", "compile mode",
                "s until its deadline", "grid wall s", "finished", "checkpoints left out")


def grid_facts(grids: Mapping[str, Mapping[str, Any]], jobs: Iterable[str] = ()) -> pd.DataFrame:
    """One row per grid (and per job of ``jobs`` without one, its runs.json "not
    committed"), indexed by job: runs, epochs, runs at a time and per process,
    compile mode, seconds until its deadline, seconds from its start to its end
    (NaN where runs.json predates ``finished_unix``), runs finished, and the
    unfinished runs' checkpoints left out of the returned parts."""
    rows = []
    for name, runs in grids.items():
        s = bf.grid_settings(runs)
        done = sum(r["status"] == "done" for r in bf.grid_runs(runs))
        rows.append(dict(zip(GRID_COLUMNS, (
            "committed", len(runs["runs"]), s["epochs"], s["concurrency"], grid_per_process(runs), s["compile"],
            s["deadline_s"], s["wall_s"], done, ", ".join(s["checkpoints_left_out"]))), job=name))
    rows += [dict({c: math.nan for c in GRID_COLUMNS}, **{"runs.json": "not committed"}, job=name)
             for name in jobs if name not in grids]
    return pd.DataFrame(rows, columns=["job", *GRID_COLUMNS]).set_index("job")


TOGETHER_COLUMNS = ("device", "date", "runs side by side", "compile mode", "one round (s)",
                    "epochs/s, all runs", "training images/s, all runs (eval time included)",
                    "× one run alone (epoch rate)", "× reference (epoch rate)")


def _nan(x: Any) -> Any:
    return math.nan if x is None else x


def together_table(benches: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per bench result with a ``together`` measurement (--together K of
    the November 2026 bench, since removed: K fast runs side by side in one
    process, one CUDA stream each), indexed by bench: device, date, K, compile mode, the median round
    (every run one epoch of training and evaluation) in s, the aggregate
    epochs/s and training images/s of all K runs, and that epoch rate divided
    by one fast run's alone (same file and mode; NaN where not timed alone) and
    by the reference trainer's, as the bench wrote them.  No rows without one."""
    return _measurement_table(benches, "together", TOGETHER_COLUMNS)


STACKED_COLUMNS = ("device", "date", "runs stacked", "compile mode", "one round (s)",
                   "epochs/s, all stacked runs", "training images/s, all stacked runs (eval time included)",
                   "× one run alone (epoch rate)", "× the same runs side by side (epoch rate)",
                   "× reference (epoch rate)", "largest training-loss difference to the run alone (relative)")


def stacked_table(benches: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per bench result with a ``stacked`` measurement (bench.py --stack S:
    S copies of one run, seed 0, trained as one network by kps.stack), indexed by
    bench: device, date, S, compile mode, the median round (every copy one epoch of
    training and evaluation) in s, the aggregate epochs/s and training images/s of
    all S, that epoch rate divided by one fast run's alone (NaN where not timed
    alone), by the same number of runs side by side on streams (NaN where the bench
    did not time as many in that mode) and by the reference trainer's, and the
    largest relative difference of a copy's training loss per epoch to the run alone
    (NaN where not compared), as the bench wrote them.  No rows without one."""
    return _measurement_table(benches, "stacked", STACKED_COLUMNS)


def _measurement_table(benches: Mapping[str, Mapping[str, Any]], kind: str, columns: Sequence[str]) -> pd.DataFrame:
    """One row per bench result with the ``kind`` measurement: device, date, then its
    values in :data:`kps.report.benchfiles.MEASUREMENT_KEYS` order under ``columns``."""
    rows = []
    for name, bench in benches.items():
        t = bf.measurement(bench, kind)
        if not t:
            continue
        p = bf.provenance(bench)
        rows.append(dict(zip(columns, (p["device"], p["date"], *(_nan(v) for v in t.values()))), bench=name))
    return pd.DataFrame(rows, columns=["bench", *columns]).set_index("bench")


def measurement_status(benches: Mapping[str, Mapping[str, Any]], kind: str) -> pd.DataFrame:
    """Whether each bench result has the ``kind`` measurement ('together': the
    November 2026 bench's --together K; 'stacked': bench.py --stack S), indexed by bench: status 'measured',
    'failed' (with the recorded error) or 'not measured' (the file predates it)."""
    rows = []
    for name, bench in benches.items():
        error = bf.failures(bench).get(kind)
        status = "measured" if bf.measurement(bench, kind) else "failed" if error else NOT_MEASURED
        rows.append({"bench": name, "status": status, "error": error or ""})
    return pd.DataFrame(rows, columns=["bench", "status", "error"]).set_index("bench")


# Do the trainers train alike?  The fast path and the plain path should agree on a
# short run to within run-to-run noise.  Newer bench files record each trainer's
# mean training loss per epoch (warm-up included) and, with the November 2026 bench's ``--together K``, the
# losses of K seeds of the fast path: their spread at the last epoch is the noise band.


def _seeds_label(bench: Mapping[str, Any]) -> str:
    """'6 seeds (0–5), fast path none': the runs of several seeds, as a row label."""
    seeds = bf.seeds(bench)
    contiguous = seeds == list(range(seeds[0], seeds[0] + len(seeds))) if seeds else False
    which = f"{seeds[0]}–{seeds[-1]}" if contiguous and len(seeds) > 1 else ", ".join(str(s) for s in seeds)
    return f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} ({which}), fast path {bf.seeds_mode(bench)}"


def train_loss_epoch_labels(bench: Mapping[str, Any], epochs: int) -> list[str]:
    """Column labels for ``epochs`` epochs of a bench: 'epoch 0 (warm-up)' for
    the first ``config.warmup_epochs``, then 'epoch k (timed)' (0-based, as
    bench.py's log counts them)."""
    warm = bf.config(bench)["warmup_epochs"]
    return [f"epoch {e} ({'warm-up' if e < warm else 'timed'})" for e in range(epochs)]


def _ordered_losses(bench: Mapping[str, Any]) -> dict[str, list[float]]:
    losses = bf.train_losses(bench)
    return {name: losses[name] for name in trainer_order(losses)}


def train_loss_table(bench: Mapping[str, Any], digits: int = 4) -> pd.DataFrame:
    """Mean training loss per epoch of one bench: one row per trainer with a
    loss record (numbers; NaN past a trainer's last epoch) and, where the bench
    ran several seeds side by side, one row 'min–max over <seeds>' whose cells
    are the range as text ('1.0000–1.2000', ``digits`` decimals).  Columns are
    the epochs, labelled warm-up or timed.  Empty where nothing was recorded."""
    losses = _ordered_losses(bench)
    seeds = bf.seed_losses(bench)
    epochs = max((len(v) for v in [*losses.values(), *seeds]), default=0)
    if not epochs:
        return pd.DataFrame()
    columns = train_loss_epoch_labels(bench, epochs)
    rows = {name: v + [math.nan] * (epochs - len(v)) for name, v in losses.items()}
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=columns, dtype=object)
    if seeds:
        cells = []
        for e in range(epochs):
            at = [run[e] for run in seeds if e < len(run)]
            cells.append(f"{min(at):.{digits}f}–{max(at):.{digits}f}" if at else math.nan)
        frame.loc[f"min–max over {_seeds_label(bench)}"] = cells
    frame.index.name = "trainer"
    return frame


def train_loss_tables(benches: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """:func:`train_loss_table` of every bench with a loss record, indexed by (bench, trainer)."""
    tables = {name: train_loss_table(b) for name, b in benches.items()}
    tables = {name: t for name, t in tables.items() if not t.empty}
    return pd.concat(tables, names=["bench", "trainer"]) if tables else pd.DataFrame()


VERDICT_COLUMNS = ("last-epoch loss", "noise band low", "noise band high", "verdict", "beyond the band",
                   "minus fast_none's")


def train_loss_verdicts(bench: Mapping[str, Any]) -> pd.DataFrame:
    """Do the trainers of one bench train alike?  One row per trainer: its
    last-epoch training loss and a verdict.  With runs of at least two seeds the
    noise band is [min, max] of the seeds' last-epoch losses, bounds included,
    not widened: 'within', 'outside (above)' / 'outside (below)' with the
    distance beyond the band, 'not a finite number', or 'not compared' where its
    epochs differ from the seeds'.  Without such runs: 'noise band not measured'
    ('..., the runs of several seeds failed' where they did) and the last-epoch
    loss minus ``fast_none``'s (NaN where it has none or the epochs differ:
    'not compared').  A trainer without a loss record: 'no loss recorded' (every
    trainer of a bench that predates the record)."""
    losses = _ordered_losses(bench)
    seeds = bf.seed_losses(bench)
    band = len(seeds) >= 2
    if band:
        n_epochs, last = len(seeds[0]), [run[-1] for run in seeds]
        lo, hi = min(last), max(last)
    else:
        failed = " (the runs of several seeds failed)" if bf.failures(bench).get("together") else ""
        lo = hi = math.nan
    base = losses.get("fast_none")
    rows = []
    for name in trainer_order(bf.trainers(bench)):
        if name not in losses:
            rows.append((name, math.nan, lo, hi, "no loss recorded", math.nan, math.nan))
            continue
        v = losses[name]
        x, beyond, minus = v[-1], math.nan, math.nan
        if band:
            if len(v) != n_epochs:
                verdict = f"not compared ({len(v)} epochs recorded, the seeds {n_epochs})"
            elif not math.isfinite(x):
                verdict = "not a finite number"
            elif lo <= x <= hi:
                verdict = "within"
            else:
                verdict = f"outside ({'above' if x > hi else 'below'})"
                beyond = abs(x - (hi if x > hi else lo))
        else:
            verdict = "noise band not measured" + failed
            if base is not None and name != "fast_none":
                if len(v) == len(base):
                    minus = x - base[-1]
                else:
                    verdict += f"; not compared ({len(v)} epochs recorded, fast_none {len(base)})"
        rows.append((name, x, lo, hi, verdict, beyond, minus))
    return pd.DataFrame(rows, columns=["trainer", *VERDICT_COLUMNS]).set_index("trainer")


def train_loss_verdict_tables(benches: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """:func:`train_loss_verdicts` of every bench, indexed by (bench, trainer)."""
    if not benches:
        return pd.DataFrame(columns=VERDICT_COLUMNS)
    return pd.concat({name: train_loss_verdicts(b) for name, b in benches.items()}, names=["bench", "trainer"])


def noise_bands(benches: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Per bench: the runs of several seeds (label), how many, the epoch compared
    (0-based), the band [low, high] of their last-epoch losses, the chance 2/(k+1)
    that one more such run falls outside the range of k, and the spread (max - min)
    of the fast modes' last-epoch losses among themselves (seed 0, the same data
    order; NaN with fewer than two fast modes or unequal epochs).  NaN and '' where
    a bench has no runs of at least two seeds."""
    rows = []
    for name, bench in benches.items():
        seeds = bf.seed_losses(bench)
        losses = _ordered_losses(bench)
        fast = [n for n in losses if n != "reference"]
        spread = (max(losses[n][-1] for n in fast) - min(losses[n][-1] for n in fast)
                  if len(fast) >= 2 and len({len(losses[n]) for n in fast}) == 1 else math.nan)
        if len(seeds) >= 2:
            last = [run[-1] for run in seeds]
            rows.append((name, _seeds_label(bench), len(seeds), len(seeds[0]) - 1, min(last), max(last),
                         2 / (len(seeds) + 1), spread))
        else:
            rows.append((name, "", len(seeds), math.nan, math.nan, math.nan, math.nan, spread))
    return pd.DataFrame(rows, columns=["bench", "seeds", "k", "epoch", "band low", "band high",
                                       "P(one more run outside)", "fast modes' spread"]).set_index("bench")


_TARGET_NAMES = {"speedup": "train images/s ≥ {speedup:g}× the reference trainer's",
                 "run_s": "one full run ≤ {run_s:g} s",
                 "job": "{job_runs} runs in one job ≤ {job_min:g} min"}


def _target_name(kind: str) -> str:
    t = SPEED_TARGETS
    return _TARGET_NAMES[kind].format(speedup=t["speedup"], run_s=t["run_s"], job_runs=t["job_runs"],
                                      job_min=t["job_s"] / 60)


def speed_targets(benches: Mapping[str, Mapping[str, Any]], grids: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """The targets against what each job measured: train images/s at least 10x
    the reference trainer's (best fast trainer of each bench), one full run within
    60 s (smallest projection of a fast trainer, one run alone on the card), and
    all 12 runs of the grid within the 540 s job (runs.json: runs finished, and the
    grid's own time from its start to its end where recorded; the job's wall time
    is only in its log). Columns: target, job, measured (in words), met
    ('yes'/'no'), kind and value (the number measured: ratio, seconds, runs
    finished) for :func:`speed_summary`."""
    t = SPEED_TARGETS
    rows = []
    for name, bench in benches.items():
        fast = {k: {"train_images_per_s": bf.images_per_s(bench, k), "projected_run_s": bf.projected_run_s(bench, k)}
                for k in bf.trainers(bench) if k != "reference"}
        ref = bf.images_per_s(bench, "reference")
        if not fast:
            rows.append({"target": _target_name("speedup"), "job": name, "measured": "no fast trainer measured",
                         "met": "no", "kind": "speedup", "value": float("nan")})
            continue
        best = max(fast, key=lambda k: fast[k]["train_images_per_s"])
        ratio = fast[best]["train_images_per_s"] / ref
        rows.append({"target": _target_name("speedup"), "job": name,
                     "measured": f"{ratio:.2f}× ({best}: {fast[best]['train_images_per_s']:.0f} vs "
                                 f"{ref:.0f} images/s)",
                     "met": "yes" if ratio >= t["speedup"] else "no", "kind": "speedup", "value": ratio})
        quick = min(fast, key=lambda k: fast[k]["projected_run_s"])
        run_s = fast[quick]["projected_run_s"]
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
    """One row per target: 'met' where some job met it, 'not met', or 'not
    measured' where no job measured it, with the best job's measurement (largest
    ratio, shortest run, most runs finished) and that job."""
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
    """The CPU-scale protocol's CPU bench (one core): the reference-style trainer
    and ``kps.train.Trainer`` (``fast_none``), their train images/s, s per epoch
    (train + eval) and projected run in minutes, and the trainer's images/s over
    the reference's (target: at least 1)."""
    rows = []
    for name, what in (("reference", "reference-style (DataLoader, CPU torchvision transforms, as the authors' scripts)"),
                       ("fast_none", "kps.train.Trainer (data as uint8 tensors, batched augmentation, channels_last)")):
        t = bf.trainer_row(bench, name)
        rows.append({"trainer": what, "train images/s": round(t["train_images_per_s"]),
                     "s per epoch (train + eval)": round(t["epoch_s"], 2),
                     "projected run (min)": round(t["projected_run_s"] / 60, 1),
                     "× reference (images/s)": round(t["train_images_per_s"] / bf.images_per_s(bench, "reference"), 2)})
    return pd.DataFrame(rows).set_index("trainer")


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


# How the page prints each table's numbers (the tables themselves keep full precision).
_FORMATS = {
    "trainers": {"train images/s": "{:.0f}", "s/epoch": "{:.3f}", "eval s/epoch": "{:.3f}", "TFLOP/s": "{:.2f}",
                 "fraction of bf16 peak": "{:.4f}", "× reference (images/s)": "{:.2f}", "projected": "{:.0f}"},
    "together": {"one round (s)": "{:.3f}", "epochs/s, all runs": "{:.3f}",
                 "training images/s, all runs (eval time included)": "{:.0f}",
                 "× one run alone (epoch rate)": "{:.2f}", "× reference (epoch rate)": "{:.2f}"},
    "stacked": {"one round (s)": "{:.3f}", "epochs/s, all stacked runs": "{:.3f}",
                "training images/s, all stacked runs (eval time included)": "{:.0f}",
                "× one run alone (epoch rate)": "{:.2f}", "× the same runs side by side (epoch rate)": "{:.2f}",
                "× reference (epoch rate)": "{:.2f}",
                "largest training-loss difference to the run alone (relative)": "{:.2e}"},
    "files": {"bf16 peak (TFLOP/s)": "{:g}", "bf16 matmul measured (TFLOP/s)": "{:.0f}"},
    "grid": {"runs": "{:.0f}", "epochs": "{:.0f}", "at a time": "{:.0f}", "finished": "{:.0f}", "s until its deadline": "{:.0f}", "grid wall s": "{:.0f}"},
    "grid_runs": {"wall s": "{:.1f}"},
    "verdicts": {c: "{:.4f}" for c in VERDICT_COLUMNS if c != "verdict"},
    "bands": {"band low": "{:.4f}", "band high": "{:.4f}", "P(one more run outside)": "{:.2f}",
              "fast modes' spread": "{:.4f}", "epoch": "{:.0f}"},
}


def _style(frame: pd.DataFrame, kind: str, na_rep: str = "–", hide_index: bool = False):
    """``frame`` as the page prints it: the numbers of :data:`_FORMATS` [kind] by column
    name ('projected' formats the projected-run column, whose name holds the preset's
    epochs), missing values as ``na_rep``."""
    formats = {c: f for c in frame.columns for k, f in _FORMATS.get(kind, {}).items()
               if c == k or (k == "projected" and str(c).startswith(k))}
    styler = frame.style.format(formats, na_rep=na_rep)
    if kind == "losses":
        styler = frame.style.format(lambda v: v if isinstance(v, str) else f"{v:.4f}", na_rep=na_rep)
    return styler.hide(axis="index") if hide_index else styler


@dataclass
class SpeedPage:
    """What the Speed page shows, read from one folder of bench results (GPU ones only;
    the CPU-scale protocol's CPU bench is on its own page)."""

    folder: str
    benches: dict[str, dict]
    grids: dict[str, dict]
    files: Any                 # bench_table: provenance of each bench file
    footnotes: str             # the provenance notes that apply to them
    targets: Any               # speed_targets without the helper columns (styled, as every table below)
    summary: Any               # speed_summary
    targets_met: int           # how many of the three targets some job met
    trainers: Any     # speed_tables
    chart: Any                 # speed_chart (None without benches)
    together: Any
    together_status: pd.DataFrame
    stacked: Any
    stacked_status: pd.DataFrame
    losses: Any       # train_loss_tables
    bands: Any        # noise_bands
    verdicts: Any     # train_loss_verdict_tables
    grid: Any         # grid_facts
    grid_runs: Any    # grid_tables


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

    paths = {p.stem: p for p in bf.bench_files(folder, "cuda")}
    benches = {name: bf.read_bench(p) for name, p in paths.items()}
    grids = bf.read_grids(folder)
    files = {name: shown(p) for name, p in paths.items()}
    targets = speed_targets(benches, grids)
    summary = speed_summary(targets)
    grid_runs = _style(grid_tables(grids), "grid_runs")
    if grids:  # the reasons are sentences: give them room
        grid_runs = grid_runs.set_properties(subset=["why it stopped"], **{"min-width": "24em", "text-align": "left"})
    footnotes = provenance_footnotes(notes, files=[(files[n], bf.provenance(b)["git_commit"],
                                                    bf.provenance(b)["git_dirty"]) for n, b in benches.items()])
    return SpeedPage(
        folder=shown(folder), benches=benches, grids=grids,
        files=_style(bench_table(benches, files, notes), "files", na_rep="not measured"),
        footnotes=footnotes, targets=_style(targets.drop(columns=["kind", "value"]), "targets", hide_index=True),
        summary=_style(summary, "summary", hide_index=True), targets_met=int((summary["status"] == "met").sum()),
        trainers=_style(speed_tables(benches), "trainers"), chart=speed_chart(benches),
        together=_style(together_table(benches), "together", na_rep="not timed alone"),
        together_status=measurement_status(benches, "together"),
        stacked=_style(stacked_table(benches), "stacked", na_rep="not timed"),
        stacked_status=measurement_status(benches, "stacked"),
        losses=_style(train_loss_tables(benches), "losses"), bands=_style(noise_bands(benches), "bands"),
        verdicts=_style(train_loss_verdict_tables(benches), "verdicts"),
        grid=_style(grid_facts(grids, jobs=benches), "grid", na_rep="not recorded"),
        grid_runs=grid_runs)
