"""The scale study: each method's error at a reduced protocol against its error at the
paper's protocol, overall and on the head and tail classes (Sec. 4.5's groups).

The paper-protocol side is ours where records exist, else the paper's number (Tables
3, 5, 6: overall error only; the paper gives head and tail errors only as Fig. 6-7's
bars), and every value says which it is.  A method *breaks* at the reduced protocol
where the chance rule of :mod:`kps.report.validity` fails on its overall error or on
its head or tail classes' error; otherwise its error is given as a multiple of the
paper-protocol one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from kps.configs import METHODS, PRESETS
from kps.data import DATASETS
from kps.report.validity import CHANCE_MARGIN, GROUPS, chance_error, method_rows

__all__ = ["SOURCE_OURS", "SOURCE_PAPER", "scale_rows", "breakage", "ScaleSummary", "scale_summary",
           "scale_table", "scale_figure"]

SOURCE_OURS = "ours"
SOURCE_PAPER = "the paper's"
_SHOWN = ("error", "head", "tail")  # the measures of the study: overall, head classes, tail classes


def breakage(row: Mapping[str, Any], chance: float) -> str:
    """How a reduced-protocol row breaks, by the chance rule: 'at chance overall', or the
    ends of the class list left at chance with their errors; '' where it does not break."""
    limit = chance - CHANCE_MARGIN
    if row["small error"] > limit:
        return f"at chance overall ({row['small error']:.1f} %)"
    ends = [f"{g} classes at chance ({row[f'small {g}']:.1f} %)" for g in ("head", "tail") if row[f"small {g}"] > limit]
    return "; ".join(ends)


def scale_rows(records: Sequence[Mapping[str, Any]], paper: pd.DataFrame, reduced: str = "CPU-scale",
               imbalance: float = 100.0, dataset: str = "cifar10-jpeg") -> pd.DataFrame:
    """One row per method and setting with full-schedule records at the ``reduced``
    protocol: its seeds and mean overall/head/tail errors there ('small ...'), the same at
    the paper's protocol ('paper ...': ours where a record of the same method and setting
    exists, else the paper's overall error and NaN head/tail), the source of the latter,
    the ratio of the two overall errors, and how the row breaks (:func:`breakage`)."""
    small = method_rows(records, paper, reduced, imbalance, dataset)
    full = method_rows(records, paper, "paper", imbalance, dataset).set_index(["method", "variant"])
    chance = chance_error(DATASETS[dataset].num_classes)
    rows = []
    for _, s in small.iterrows():
        row: dict[str, Any] = {"method": s["method"], "variant": s["variant"], "name": s["name"],
                               "head type": METHODS[s["method"]].head,
                               "small n": int(s["n"]), "small error": s["error (%)"], "small head": s["head (%)"],
                               "small tail": s["tail (%)"]}
        key = (s["method"], s["variant"])
        if key in full.index:
            f = full.loc[key]
            row.update({"paper source": SOURCE_OURS, "paper n": int(f["n"]), "paper error": f["error (%)"],
                        "paper head": f["head (%)"], "paper tail": f["tail (%)"]})
        else:
            row.update({"paper source": SOURCE_PAPER, "paper n": 0, "paper error": s["paper's error (%)"],
                        "paper head": math.nan, "paper tail": math.nan})
        row["ratio"] = row["small error"] / row["paper error"] if row["paper error"] > 0 else math.nan
        row["breaks"] = breakage(row, chance)
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class ScaleSummary:
    """What the study finds, as numbers: the rows that break, by how, and the ratio of
    reduced to paper-protocol overall error by classifier head."""

    rows: int
    broken: dict[str, list[str]]                 # how -> ['row (its error %)', ...]
    ratios: dict[str, tuple[float, float, int]]  # head type -> (lowest, highest, how many rows)

    def lines(self, reduced: str = "CPU-scale") -> list[str]:
        """Markdown: a list of the broken rows by how they break, then the ratios."""
        count = sum(len(v) for v in self.broken.values())
        out = [f"{count} of {self.rows} rows break at the {reduced} protocol (the chance rule on their overall, "
               f"head or tail error)" + (":" if count else "."), ""]
        out += [f"- {how}: {', '.join(names)};" for how, names in self.broken.items()]
        if count:
            out[-1] = out[-1][:-1] + "."
            out.append("")
        ratios = [f"{'linear-head' if head == 'linear' else 'cosine-classifier'} rows "
                  f"{lo:.1f}{'' if n == 1 else f'-{hi:.1f}'} times ({n} row{'' if n == 1 else 's'})"
                  for head, (lo, hi, n) in self.ratios.items()]
        if ratios:
            out.append(f"Overall error at the {reduced} protocol over the paper's protocol's (ours where we have "
                       f"it, else the paper's): {'; '.join(ratios)}.")
        return out


def scale_summary(rows: pd.DataFrame) -> ScaleSummary:
    """:class:`ScaleSummary` of :func:`scale_rows`."""
    broken: dict[str, list[str]] = {}
    for _, r in rows.iterrows():
        for part in filter(None, r["breaks"].split("; ")):
            how, value = part.rsplit(" (", 1)
            broken.setdefault(how, []).append(f"{r['name']} ({value}")
    ratios: dict[str, tuple[float, float, int]] = {}
    for head in ("linear", "cosine"):
        part = rows[(rows["head type"] == head) & rows["ratio"].notna()]["ratio"]
        if len(part):
            ratios[head] = (float(part.min()), float(part.max()), int(len(part)))
    return ScaleSummary(len(rows), broken, ratios)


def _value(value: float) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.1f}"


def scale_table(rows: pd.DataFrame, reduced: str = "CPU-scale") -> pd.DataFrame:
    """:func:`scale_rows` for reading: errors in % with one decimal, columns grouped by
    protocol; the paper-protocol values with their source ('ours, n=k' or "the paper's");
    '—' where there is no number (the paper gives no head or tail error)."""
    small = next(p.name for p in PRESETS.values() if p.protocol == reduced)
    ours = f"{reduced} ({small})"
    full = "paper's protocol (cifar10_lt)"
    out = pd.DataFrame({
        ("row", "name"): rows["name"],
        ("row", "classifier"): rows["head type"],
        (ours, "n"): rows["small n"],
        **{(ours, m): [_value(v) for v in rows[f"small {m}"]] for m in _SHOWN},
        (full, "source"): [f"ours, n={n}" if s == SOURCE_OURS else s
                           for s, n in zip(rows["paper source"], rows["paper n"])],
        **{(full, m): [_value(v) for v in rows[f"paper {m}"]] for m in _SHOWN},
        ("ratio", "error"): [f"{v:.1f}×" if not math.isnan(v) else "—" for v in rows["ratio"]],
        (reduced, "breaks"): [b or "no" for b in rows["breaks"]],
    })
    out.columns = pd.MultiIndex.from_tuples(out.columns)
    return out


def scale_figure(rows: pd.DataFrame, reduced: str = "CPU-scale", dataset_label: str = "CIFAR-10-LT (JPEG copy)",
                 imbalance: float = 100.0, num_classes: int = 10) -> Any:
    """Three panels (overall, head classes, tail classes): per row, its error at the
    reduced protocol (filled circle) joined to its error at the paper's protocol (ours:
    filled square; the paper's: open square; none: no square), with chance and the
    chance rule's limit drawn."""
    import matplotlib.pyplot as plt

    y = np.arange(len(rows))[::-1]
    fig, axes = plt.subplots(1, 3, figsize=(11, 0.34 * len(rows) + 2.2), sharey=True)
    chance = chance_error(num_classes)
    titles = {"error": "overall error", "head": "head classes' error", "tail": "tail classes' error"}
    for ax, m in zip(axes, _SHOWN):
        for yi, (_, r) in zip(y, rows.iterrows()):
            small, full = r[f"small {m}"], r[f"paper {m}"]
            if not math.isnan(full):
                ax.plot([full, small], [yi, yi], color="#bbb", lw=1.5, zorder=1)
                ours = r["paper source"] == SOURCE_OURS
                ax.scatter([full], [yi], marker="s", s=36, zorder=3, color="C0" if ours else "white",
                           edgecolors="C0")
            ax.scatter([small], [yi], marker="o", s=36, zorder=3, color="C3")
        ax.axvline(chance, color="#444", ls="--", lw=1)
        ax.axvline(chance - CHANCE_MARGIN, color="#999", ls=":", lw=1)
        ax.set(xlim=(0, 102), xlabel="top-1 error (%)")
        ax.set_title(titles[m], fontsize=11)
        ax.tick_params(labelsize=10)
        ax.grid(axis="x", color="#eee")
    axes[0].set_yticks(y, list(rows["name"]))
    handles = [plt.Line2D([], [], marker="o", ls="", color="C3", label=f"{reduced} protocol (mean over seeds)"),
               plt.Line2D([], [], marker="s", ls="", color="C0", label="paper's protocol, ours"),
               plt.Line2D([], [], marker="s", ls="", color="white", markeredgecolor="C0",
                          label="paper's protocol, the paper's number (overall only)"),
               plt.Line2D([], [], color="#444", ls="--", label=f"chance ({chance:g} %)"),
               plt.Line2D([], [], color="#999", ls=":", label=f"chance - {CHANCE_MARGIN:g} points (the rule)")]
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=10, frameon=False)
    fig.suptitle(f"{dataset_label}, ρ = {imbalance:g}: each row's error at the {reduced} and at the paper's protocol",
                 fontsize=11)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    return fig
