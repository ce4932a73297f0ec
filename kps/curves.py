"""Test error over training: the records' sparse evaluations (``history`` rows with
``test_error``), mean over seeds with a band of one sample standard deviation."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from kps.report import protocol_of, variant_label

__all__ = ["error_curves", "plot_error_curves"]


def error_curves(records: Iterable[Mapping[str, Any]], methods: Sequence[str], protocol: str,
                 imbalance: float, dataset: str = "cifar10-jpeg") -> pd.DataFrame:
    """One row per (series, evaluated epoch): ``series`` is the method, with its variant
    (e.g. the authors' GA) where it is not the paper's; mean and sample std (NaN for one
    seed) of the test error over the full-schedule records of ``protocol`` on ``dataset``
    at ``imbalance`` that evaluated that epoch; ``n`` seeds."""
    by_series: dict[tuple[int, str], list[Mapping[str, Any]]] = {}  # (method's place, series name) -> records
    for rec in records:
        c = rec["config"]
        if (c["method"] not in methods or protocol_of(c) != protocol or float(c["imbalance"]) != float(imbalance)
                or c["dataset"] != dataset or rec["epochs"] != rec["preset_epochs"]):
            continue
        variant = variant_label(c, with_protocol=False)
        name = c["method"] if variant == "paper setting" else f"{c['method']} ({variant})"
        by_series.setdefault((list(methods).index(c["method"]), name), []).append(rec)
    rows = []
    for key in sorted(by_series):
        name = key[1]
        errors: dict[int, list[float]] = {}
        for rec in by_series[key]:
            for h in rec["history"]:
                if "test_error" in h:
                    errors.setdefault(int(h["epoch"]), []).append(float(h["test_error"]))
        for epoch in sorted(errors):
            v = np.asarray(errors[epoch])
            rows.append({"series": name, "epoch": epoch, "mean": float(v.mean()),
                         "std": float(v.std(ddof=1)) if v.size > 1 else float("nan"), "n": int(v.size)})
    return pd.DataFrame(rows, columns=["series", "epoch", "mean", "std", "n"])


def plot_error_curves(ax: Any, curves: pd.DataFrame, title: str = "") -> None:
    """Each series as its mean line (epochs 1-indexed) with a +-1 std band where n > 1."""
    for k, (name, part) in enumerate(curves.groupby("series", sort=False)):
        x = part["epoch"].to_numpy() + 1
        n = part["n"].max()
        ax.plot(x, part["mean"], color=f"C{k}", marker=".", label=f"{name} (n={n})")
        band = part["std"].fillna(0).to_numpy()
        if n > 1:
            ax.fill_between(x, part["mean"] - band, part["mean"] + band, color=f"C{k}", alpha=0.15)
    ax.set(xlabel="epoch", ylabel="top-1 test error (%)", title=title)
    if len(curves):
        ax.legend(fontsize=8, ncol=2)
    else:
        ax.text(0.5, 0.5, "not run", ha="center", va="center", fontsize=20, color="#999", transform=ax.transAxes)
