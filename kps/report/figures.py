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
from kps.report.paper import DATASET_TITLES
from kps.report.protocols import network_summary, protocol_group, protocol_preset
from kps.report.records import protocol_of, run_label, seed_groups, setting_label, variant_label


def group_names(n_groups: int = 10) -> list[str]:
    """Fig. 6-7 names: the 3 most frequent Head1-3, the next 4 Mid1-4, the last 3 Tail1-3."""
    if n_groups != 10:
        raise ValueError(f"the paper names exactly 10 classes/groups (Head1-3, Mid1-4, Tail1-3), got {n_groups}")
    return [f"Head{i}" for i in (1, 2, 3)] + [f"Mid{i}" for i in (1, 2, 3, 4)] + [f"Tail{i}" for i in (1, 2, 3)]


def per_group_error_table(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Long table for Figs. 6-7: one row per (group of runs, class/group): its
    method, protocol, setting, variant and run label within the protocol
    (:mod:`kps.report.records`), and the mean and sample
    std (NaN for one seed) over seeds of the records' ``per_group_errors`` (top-1
    error in % of the 10 classes of CIFAR-10-LT, or of the 10 frequency groups of
    CIFAR-100-LT, most frequent first)."""
    rows = []
    names = group_names()
    for group in seed_groups(records):
        errs = np.array([r["per_group_errors"] for r in group], dtype=np.float64)
        if errs.shape[1] != len(names):
            raise ValueError(f"per_group_errors must hold {len(names)} values, got {errs.shape[1]}")
        std = errs.std(axis=0, ddof=1) if len(group) > 1 else np.full(len(names), np.nan)
        c = group[0]["config"]
        for i, name in enumerate(names):
            rows.append({"method": c["method"], "protocol": protocol_of(c),
                         "setting": setting_label(c, with_protocol=False),
                         "variant": variant_label(c, with_protocol=False), "run": run_label(c), "group": name,
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
# The paper's protocol on CIFAR-10-LT always has its panel (its grid is what this artifact runs);
# the others appear once a record of theirs exists.
PANELS = (("cifar10", "paper"), ("cifar10", PRESETS["cifar10_lt_small"].protocol), ("cifar100", "paper"))
ALWAYS = (("cifar10", "paper"),)
# Per variant of a method (the paper's setting first): its own hatch and a lighter shade of the method's colour.
HATCHES = ("", "///", "xxx", "...", "\\\\\\", "++")
SHADES = (0.0, 0.5, -0.45, 0.75, -0.25, 0.3)   # > 0: towards white, < 0: towards black
LEGEND_CHARS = 46     # a legend entry's line: two columns of them fit the figure's width at 10 pt
COLUMN_PX = 900       # the page's column at 1280 px: a wider figure is shown scaled down to it
MIN_FONT_PX = 9.0     # the smallest legend or tick text a reader is asked to read, as shown
FIGURE_WIDTH_IN, FIGURE_DPI = 9.0, 100  # 900 px: shown at its own size, not scaled down


def _panel_title(dataset: str, protocol: str, data: Sequence[str]) -> str:
    """Two lines: what is plotted and on which data; then the protocol and its network."""
    preset = protocol_preset(protocol, dataset)
    unit = "per class" if dataset == "cifar10" else "per group of 10 classes"
    first = f"{DATASET_TITLES[dataset]}, ρ = 100, {unit}" + (f": {', '.join(data)}" if data else "")
    return f"{first}\n{protocol_group(protocol)} ({network_summary(preset)})"


def _wrap(label: str) -> str:
    """A legend entry on lines of at most :data:`LEGEND_CHARS` characters."""
    import textwrap

    return "\n".join(textwrap.wrap(label, LEGEND_CHARS, break_on_hyphens=False))


def _shade(colour: str, amount: float) -> tuple[float, float, float]:
    """``colour`` mixed with white by ``amount`` > 0, with black by -``amount`` < 0."""
    from matplotlib.colors import to_rgb

    target = 1.0 if amount > 0 else 0.0
    return tuple(c + (target - c) * abs(amount) for c in to_rgb(colour))


def per_class_figure(records: Sequence[Mapping[str, Any]], title: str, methods: Sequence[str],
                     arch: str = "resnet32") -> tuple[Any, list[Mapping[str, Any]], list[pd.DataFrame]]:
    """Fig. 6 or 7 from the records at ρ = 100: one panel per entry of :data:`PANELS`
    that has a record (the paper's protocol on CIFAR-10-LT always), one bar series per
    method and variant, error bars one sample std. A method keeps one colour; its
    variants (e.g. the authors' GA, the authors' full setting) are lighter and hatched,
    each its own hatch, so that every series can be told apart; a method without
    records is "not run" in the legend. Legends sit below their panel at a readable
    size (:func:`figure_problems`). Returns the figure, the records drawn and the rows of
    :func:`per_group_error_table` drawn (with their panel's name)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from kps.report.records import NOT_RUN, matching_records

    def runs(dataset: str, protocol: str, method: str) -> list[Mapping[str, Any]]:
        return [r for r in matching_records(records, dataset, method, 100.0, arch)
                if protocol_of(r["config"]) == protocol]

    panels = [(d, p) for d, p in PANELS if (d, p) in ALWAYS or any(runs(d, p, m) for m in methods)]
    fig, axes = plt.subplots(len(panels), 1, figsize=(FIGURE_WIDTH_IN, 4.6 * len(panels)), dpi=FIGURE_DPI,
                             layout="constrained", squeeze=False)
    used, summary, legend_lines = [], [], []
    for ax, (dataset, protocol) in zip(axes[:, 0], panels):
        series = []   # (method index, variant index, short run?, label, rows of per_group_error_table or None)
        for k, method in enumerate(methods):
            recs = runs(dataset, protocol, method)
            used += recs
            if not recs:
                series.append((k, 0, False, f"{method}: {NOT_RUN}", None))
                continue
            rows = per_group_error_table(recs)   # labels within the protocol: the panel names it
            # the paper's setting first, then by name: one variant keeps its hatch in every panel
            variants = sorted(dict.fromkeys(rows["variant"]), key=lambda v: (v != "paper setting", v))
            for (variant, run), part in rows.groupby(["variant", "run"], sort=False):
                label = method + ("" if variant == "paper setting" else f", {variant}") + (f" [{run}]" if run else "")
                series.append((k, variants.index(variant), bool(run), label + f" (n={part['n'].iloc[0]})", part))
        series.sort(key=lambda s: s[:3])
        drawn = [s for s in series if s[4] is not None]
        short = "paper's protocol" if protocol == "paper" else f"{protocol} (reduced)"
        summary += [part.assign(panel=f"{DATASET_TITLES[dataset]}: {short}", series=label) for *_, label, part in drawn]
        width = 0.84 / max(len(drawn), 1)
        x = np.arange(10)
        handles = []
        i = 0
        for k, j, short_run, label, part in series:
            colour = f"C{k}"
            if part is None:
                handles.append(Patch(facecolor="none", edgecolor=colour, linestyle="--", label=label))
                continue
            # a variant: its shade and hatch; a short run of it: that hatch, paler, with a dashed outline
            shade = SHADES[j % len(SHADES)]
            handles.append(ax.bar(x + (i - (len(drawn) - 1) / 2) * width, part["error"], width,
                                  yerr=None if part["std"].isna().all() else part["std"].fillna(0), capsize=2,
                                  label=_wrap(label),
                                  color=_shade(colour, 0.8 if short_run else shade),
                                  hatch=HATCHES[j % len(HATCHES)],
                                  edgecolor="#333" if short_run else (colour if j == 0 else
                                                                        ("white" if shade < 0 else "#333")),
                                  linestyle="--" if short_run else "-",
                                  linewidth=0.6, error_kw={"elinewidth": 0.8}))
            i += 1
        data = list(dict.fromkeys(part["data"].iloc[0] for *_, part in drawn))
        ax.set_title(_panel_title(dataset, protocol, data), fontsize=11)
        ax.set(xticks=x, ylabel="top-1 error (%)", xlim=(-0.5, 9.5), ylim=(0, 112), yticks=range(0, 101, 20))
        for lo, hi, name in ((-0.5, 2.5, "Head"), (2.5, 6.5, "Mid"), (6.5, 9.5, "Tail")):
            if name != "Mid":
                ax.axvspan(lo, hi, color="#eeeeee", zorder=0)
            ax.text((lo + hi) / 2, 111, name, ha="center", va="top", fontsize=10, color="#555")
        if not drawn:
            ax.text(4.5, 50, NOT_RUN, ha="center", va="center", fontsize=20, color="#999")
        ax.set_xticklabels(group_names())
        ax.tick_params(labelsize=10)
        # below the tick labels by a fixed 2.4 font sizes, however tall the layout leaves the panel
        ax.legend(handles=handles, fontsize=10, loc="upper center", bbox_to_anchor=(0.5, 0.0), borderaxespad=2.4,
                  ncol=2, frameon=False)
        legend_lines.append(sum(h.get_label().count("\n") + 1 for h in handles) / 2)
    fig.suptitle(title, fontsize=12)
    # each panel 3.6 in of plot, title and ticks, plus its legend's lines (10 pt, two columns)
    fig.set_figheight(sum(3.6 + 0.2 * lines for lines in legend_lines))
    plt.close(fig)  # shown where the page displays it, not when it is drawn
    return fig, used, summary


def figure_problems(fig: Any, column_px: float = COLUMN_PX, min_font_px: float = MIN_FONT_PX) -> list[str]:
    """What a reader would find wrong with ``fig`` shown at most ``column_px`` wide, one
    line per problem (empty: none): a legend that reaches outside the figure, that
    overlaps another panel (its plot, labels or title) or its own panel's labels or
    title, legend or tick text smaller than ``min_font_px`` as shown, or a panel
    squeezed to less than 60 % of the figure's width."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)   # lay the figure out as the page's PNG will be
    canvas.draw()
    renderer = canvas.get_renderer()
    shown = min(1.0, column_px / fig.bbox.width)      # a wider figure is scaled down to the column
    px = fig.dpi / 72.0 * shown                      # one point in pixels as shown
    problems = []
    axes = [ax for ax in fig.axes if ax.get_visible()]
    whole = fig.bbox
    for n, ax in enumerate(axes):
        if ax.bbox.width < 0.6 * whole.width:
            problems.append(f"panel {n}: squeezed to {ax.bbox.width * shown:.0f} px of {whole.width * shown:.0f}")
        for tick in ax.get_xticklabels() + ax.get_yticklabels():
            if tick.get_visible() and tick.get_text() and tick.get_fontsize() * px < min_font_px:
                problems.append(f"panel {n}: tick text {tick.get_fontsize() * px:.1f} px < {min_font_px:g} px")
                break
        legend = ax.get_legend()
        if legend is None or not legend.get_visible():
            continue
        box = legend.get_window_extent(renderer)
        if box.x0 < whole.x0 - 1 or box.y0 < whole.y0 - 1 or box.x1 > whole.x1 + 1 or box.y1 > whole.y1 + 1:
            problems.append(f"panel {n}: legend reaches outside the figure")
        for m, other in enumerate(axes):
            if m != n and box.overlaps(other.get_tightbbox(renderer)):
                problems.append(f"panel {n}: legend overlaps panel {m}")
        own = [t.get_window_extent(renderer) for t in (ax.title, ax.xaxis.label, *ax.get_xticklabels())
               if t.get_visible() and t.get_text()]
        if any(box.overlaps(b) for b in own):
            problems.append(f"panel {n}: legend overlaps its own panel's labels or title")
        small = [t.get_fontsize() * px for t in legend.get_texts() if t.get_fontsize() * px < min_font_px]
        if small:
            problems.append(f"panel {n}: legend text {min(small):.1f} px < {min_font_px:g} px")
    return problems


@dataclass
class PerClassPage:
    """What the Figs. 6-7 page shows: the two figures, the numbers behind their
    bars (mean error per class/group; a sentence without records), the provenance of
    the records drawn and the notes that apply to them."""

    fig6: Any
    fig7: Any
    numbers: Any
    used: list
    provenance: Any
    footnotes: str


def per_class_page(results: str | Path | None = None) -> PerClassPage:
    """Figs. 6-7 from the records under ``results`` (None: the repository's ``results/``)."""
    from IPython.display import Markdown

    from kps.report.paper import find_repo_root
    from kps.report.provenance import provenance_footnotes, provenance_view, read_provenance_notes
    from html import escape

    from kps.report.style import Captioned, page_table
    from kps.results import load_records

    root = find_repo_root()
    records = load_records(root / "results" if results is None else Path(results))
    fig6, used6, summary6 = per_class_figure(records, "Fig. 6: KPS without GA and DRW, with DRW, with GA", FIG6)
    fig7, used7, summary7 = per_class_figure(records, "Fig. 7: per-class/group error of the losses", FIG7)
    if summary6 or summary7:   # one table per panel, a row per series named as in the legend
        rows = pd.concat(summary6 + summary7).drop_duplicates(["panel", "series", "group"])
        parts = []
        for panel, sub in rows.groupby("panel", sort=False):
            table = sub.pivot_table(index="series", columns="group", values="error", sort=False)[group_names()]
            table.index.name, table.columns.name = "series (as in the legend)", None
            parts.append((f"<strong>{escape(panel)}</strong>", page_table(table.map(lambda v: f"{v:.2f}"),
                                                                         wide_index=True)))
        numbers = Captioned(parts)
    else:
        numbers = Markdown("No record of CIFAR-10-LT or CIFAR-100-LT at ρ = 100 yet: every bar is **not run**.")
    used = list({id(r): r for r in used6 + used7}.values())
    notes = read_provenance_notes(root / "book" / "provenance_notes.yml")
    return PerClassPage(fig6, fig7, numbers, used,
                        provenance_view(used, notes, empty="No record is drawn yet."),
                        provenance_footnotes(notes, used))
