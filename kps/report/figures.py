"""The figures' data and drawing: the per-class / per-group errors of Figs. 6-7
(Sec. 4.5: Head1-3 / Mid1-4 / Tail1-3), the toy experiment of Fig. 5 and the
per-class gradient signals of eqs. 22 and 25."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kps.configs import METHODS, PRESETS
from kps.report.records import seed_groups, setting_label, variant_label


def group_names(n_groups: int = 10) -> list[str]:
    """Fig. 6-7 names: the 3 most frequent Head1-3, the next 4 Mid1-4, the last 3 Tail1-3."""
    if n_groups != 10:
        raise ValueError(f"the paper names exactly 10 classes/groups (Head1-3, Mid1-4, Tail1-3), got {n_groups}")
    return [f"Head{i}" for i in (1, 2, 3)] + [f"Mid{i}" for i in (1, 2, 3, 4)] + [f"Tail{i}" for i in (1, 2, 3)]


def per_group_error_table(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Long table for Figs. 6-7: one row per (group of runs, class/group) with
    the mean and sample std (NaN for one seed) over seeds of the records'
    ``per_group_errors`` (top-1 error in % of the 10 classes of CIFAR-10-LT, or
    of the 10 frequency groups of CIFAR-100-LT, most frequent first)."""
    rows = []
    names = group_names()
    for group in seed_groups(records):
        errs = np.array([r["per_group_errors"] for r in group], dtype=np.float64)
        if errs.shape[1] != len(names):
            raise ValueError(f"per_group_errors must hold {len(names)} values, got {errs.shape[1]}")
        std = errs.std(axis=0, ddof=1) if len(group) > 1 else np.full(len(names), np.nan)
        c = group[0]["config"]
        for i, name in enumerate(names):
            rows.append({"method": c["method"], "setting": setting_label(c), "variant": variant_label(c), "group": name,
                         "error": errs[:, i].mean(), "std": std[i], "n": len(group),
                         "data": group[0].get("dataset_label", c["dataset"])})
    return pd.DataFrame(rows)


HEAD_TAIL_COLUMNS = ("data", "ρ", "method", "variant", "n", "final error (%)", "head (%)", "mid (%)", "tail (%)")


def head_tail_table(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per group of runs (:func:`seed_groups`: seeds pooled): its data,
    imbalance, method, variant, number of seeds n, and the mean over seeds of the
    final-epoch top-1 error and of the ``group_errors`` (Sec. 4.5's head, mid and
    tail classes), in %; in the order of :data:`kps.configs.METHODS`, the paper's
    setting of each method first."""
    rows = []
    for group in seed_groups(records):
        c = group[0]["config"]
        row = {"data": group[0].get("dataset_label", c["dataset"]), "ρ": f"{float(c['imbalance']):g}",
               "method": c["method"], "variant": variant_label(c, with_protocol=False), "n": len(group),
               "final error (%)": float(np.mean([r["top1_error"] for r in group]))}
        for part in ("head", "mid", "tail"):
            row[f"{part} (%)"] = float(np.mean([r["group_errors"][part] for r in group]))
        rows.append(row)
    order = list(METHODS)
    rows.sort(key=lambda r: (r["data"], -float(r["ρ"]), order.index(r["method"]), r["variant"] != "paper setting",
                             r["variant"]))
    return pd.DataFrame(rows, columns=HEAD_TAIL_COLUMNS)


def toy_angles(toy: Mapping[str, Any]) -> pd.DataFrame:
    """The Fig. 5 file (``python -m kps.toy``) as one row per (method, split,
    sample): its class name and its angles in degrees to the anchors of
    Class 1, 2 and 3 (columns theta1, theta2, theta3)."""
    names = toy["classes"]
    frames = []
    for method, run in toy["runs"].items():
        for split in ("train", "test"):
            angles = np.asarray(run[f"{split}_angles"], dtype=np.float64) / 10.0
            labels = np.asarray(toy[f"{split}_labels"])
            if angles.shape != (len(names), labels.size):
                raise ValueError(f"{method} {split}: angles of shape {angles.shape} for {labels.size} samples")
            frame = pd.DataFrame({f"theta{j + 1}": angles[j] for j in range(len(names))})
            frame.insert(0, "class", [names[k] for k in labels])
            frame.insert(0, "split", split)
            frame.insert(0, "method", method)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def toy_table(toy: Mapping[str, Any]) -> pd.DataFrame:
    """One row per loss of the toy experiment: test error, per-class test
    accuracy, the share of Class 1-2 test samples that are key points (within
    90 degrees of both anchors, Fig. 1), the share of Class 3 test samples
    that are non-key points for Classes 1-2 (beyond 90 degrees of both), and
    the run's provenance."""
    angles = toy_angles(toy)
    names = toy["classes"]
    rows = []
    for method, run in toy["runs"].items():
        test = angles[(angles["method"] == method) & (angles["split"] == "test")]
        pair = test[test["class"].isin(names[:2])]
        third = test[test["class"] == names[2]]
        row = {"loss": method, "test error (%)": round(run["top1_error"], 2)}
        row.update({f"accuracy {n} (%)": round(a, 1) for n, a in zip(names, run["per_class_accuracy"])})
        row["key points, Classes 1-2 (%)"] = round(100 * ((pair.theta1 < 90) & (pair.theta2 < 90)).mean(), 1)
        row["Class 3 non-key for 1-2 (%)"] = round(100 * ((third.theta1 >= 90) & (third.theta2 >= 90)).mean(), 1)
        row.update({"epochs": run["config"]["epochs"], "device": run["device"],
                    "commit": str(run["git_commit"])[:10] + (" (dirty)" if run["git_dirty"] else ""),
                    "started": run["started_at"][:19], "wall time (min)": round(run["wall_time_s"] / 60, 1)})
        rows.append(row)
    return pd.DataFrame(rows).set_index("loss")


GRADIENT_FORMS = {"eq22": "KPS, eq. 22 (one scale s)", "eq25_column": "KPS-GA, eq. 25 (column s_j)",
                  "authors_row": "KPS-GA, authors' code (row s_y)"}


def gradient_table(grad: Mapping[str, Any]) -> pd.DataFrame:
    """The gradient file (``python -m kps.gradients``) per class: its training
    count, and for each form the summed positive and negative gradient
    magnitude on cos(theta_i) per training image of the class, and their ratio."""
    counts = np.asarray(grad["train_counts"], dtype=np.float64)
    total = counts.sum()
    rows: dict[tuple[str, str], Any] = {}
    for key, title in GRADIENT_FORMS.items():
        pos = np.asarray(grad["signals"][key]["positive"])
        neg = np.asarray(grad["signals"][key]["negative"])
        rows[(title, "positive / image")] = pos / counts
        rows[(title, "negative / image")] = neg / (total - counts)
        rows[(title, "negative / positive")] = neg / pos
    frame = pd.DataFrame(rows, index=[f"{n} (n={int(c)})" for n, c in zip(grad["class_names"], counts)])
    frame.columns = pd.MultiIndex.from_tuples(frame.columns)
    return frame


FIG6 = ("kps", "kps_drw", "kps_ga")                              # Table 5's optimisation strategies
FIG7 = ("ce", "focal", "cosface", "arcface", "ldam_drw", "kps_ga")  # KPS-GA and the other losses
# One panel per dataset and protocol: a reduced protocol's runs never share a panel with the paper's.
_SMALL = PRESETS["cifar10_lt_small"].protocol
PANELS = (("cifar10", "paper", "CIFAR-10-LT, ρ = 100 (per class)"),
          ("cifar10", _SMALL, f"CIFAR-10-LT, ρ = 100 (per class), {_SMALL} protocol"),
          ("cifar100", "paper", "CIFAR-100-LT, ρ = 100 (per group of 10)"))


def per_class_figure(records: Sequence[Mapping[str, Any]], title: str, methods: Sequence[str],
                     arch: str = "resnet32") -> tuple[Any, list[Mapping[str, Any]], list[pd.DataFrame]]:
    """Fig. 6 or 7 from the records at ρ = 100: one panel per entry of :data:`PANELS`,
    one bar series per method and setting (a run of another variant, e.g. the
    authors' GA, is a series of its own, hatched, beside the paper's; a method
    without records is "not run" in the legend), error bars one sample std.
    Returns the figure, the records drawn and the rows of
    :func:`per_group_error_table` drawn (with their panel's dataset)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from kps.report.records import NOT_RUN, matching_records, protocol_of

    fig, axes = plt.subplots(len(PANELS), 1, figsize=(12, 5.2 * len(PANELS)), sharey=False)
    used, summary = [], []
    for ax, (dataset, protocol, panel) in zip(axes, PANELS):
        def runs(method: str) -> list[Mapping[str, Any]]:
            return [r for r in matching_records(records, dataset, method, 100.0, arch)
                    if protocol_of(r["config"]) == protocol]

        series = []   # (colour index, method, setting, rows of per_group_error_table)
        for k, method in enumerate(methods):
            recs = runs(method)
            used += recs
            if not recs:
                series.append((k, method, None, None))
                continue
            for setting, part in per_group_error_table(recs).groupby("setting", sort=False):
                series.append((k, method, setting, part))
                summary.append(part.assign(dataset=panel))  # the whole panel title: it names the protocol
        drawn = sum(part is not None for *_, part in series)
        width = 0.8 / max(drawn, 1)
        x = np.arange(10)
        handles = []
        j = -1
        for k, method, setting, part in series:
            if part is None:
                handles.append(Patch(facecolor="none", edgecolor=f"C{k}", hatch="///", label=f"{method}: {NOT_RUN}"))
                continue
            j += 1
            paper_variant = part["variant"].iloc[0] == "paper setting"
            handles.append(ax.bar(x + (j - (drawn - 1) / 2) * width, part["error"], width,
                                  yerr=part["std"].fillna(0), capsize=2, color=f"C{k}",
                                  hatch=None if paper_variant else "//", edgecolor="white" if paper_variant else "k",
                                  label=f"{method} [{setting}] ({part['data'].iloc[0]}, n={part['n'].iloc[0]})"))
        ax.set(xticks=x, title=panel, ylabel="top-1 error (%)", xlim=(-0.5, 9.5), ylim=(0, 105))
        for lo, hi, name in ((-0.5, 2.5, "Head"), (2.5, 6.5, "Mid"), (6.5, 9.5, "Tail")):
            if name != "Mid":
                ax.axvspan(lo, hi, color="#eeeeee", zorder=0)
            ax.text((lo + hi) / 2, 101, name, ha="center", va="top", fontsize=9, color="#555")
        if not any(runs(m) for m in methods):
            ax.text(4.5, 50, NOT_RUN, ha="center", va="center", fontsize=20, color="#999")
        ax.set_xticklabels(group_names(), fontsize=8)
        ax.legend(handles=handles, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    plt.close(fig)  # shown where the page displays it, not when it is drawn
    return fig, used, summary


@dataclass
class PerClassPage:
    """What the Figs. 6-7 page shows: the two figures, the numbers behind their
    bars (mean error per class/group; empty without records), the provenance of
    the records drawn and the notes that apply to them."""

    fig6: Any
    fig7: Any
    numbers: pd.DataFrame
    used: list
    provenance: Any
    footnotes: str


def per_class_page(results: str | Path | None = None) -> PerClassPage:
    """Figs. 6-7 from the records under ``results`` (None: the repository's ``results/``)."""
    from kps.report.provenance import provenance_footnotes, provenance_table, read_provenance_notes
    from kps.report.paper import find_repo_root
    from kps.results import load_records

    root = find_repo_root()
    records = load_records(root / "results" if results is None else Path(results))
    fig6, used6, summary6 = per_class_figure(records, "Fig. 6: KPS without GA and DRW, with DRW, with GA", FIG6)
    fig7, used7, summary7 = per_class_figure(records, "Fig. 7: per-class/group error of the losses", FIG7)
    if summary6 or summary7:
        rows = pd.concat(summary6 + summary7).drop_duplicates(["dataset", "method", "setting", "group"])
        numbers = rows.pivot_table(index=["dataset", "method", "setting", "data", "n"], columns="group",
                                   values="error", sort=False)[group_names()].round(2)
    else:
        numbers = pd.DataFrame(columns=group_names())
    used = list({id(r): r for r in used6 + used7}.values())
    notes = read_provenance_notes(root / "book" / "provenance_notes.yml")
    return PerClassPage(fig6, fig7, numbers, used, provenance_table(used, notes).style.hide(axis="index"),
                        provenance_footnotes(notes, used))
