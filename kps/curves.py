"""Test error over training: the records' sparse evaluations (``history`` rows with
``test_error``), mean over seeds with a band of one sample standard deviation."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from kps.configs import PRESETS
from kps.report.records import protocol_of
from kps.report.validity import short_name

__all__ = ["error_curves", "plot_error_curves", "error_curve_figure"]


def error_curves(records: Iterable[Mapping[str, Any]], methods: Sequence[str], protocol: str,
                 imbalance: float, dataset: str = "cifar10-jpeg") -> pd.DataFrame:
    """One row per (series, evaluated epoch): ``series`` is the method, with its setting
    (e.g. the authors' GA, :func:`kps.report.validity.short_name`) where it is not the paper's; mean and sample std (NaN for one
    seed) of the test error over the full-schedule records of ``protocol`` on ``dataset``
    at ``imbalance`` that evaluated that epoch; ``n`` seeds."""
    by_series: dict[tuple[int, str], list[Mapping[str, Any]]] = {}  # (method's place, series name) -> records
    for rec in records:
        c = rec["config"]
        if (c["method"] not in methods or protocol_of(c) != protocol or float(c["imbalance"]) != float(imbalance)
                or c["dataset"] != dataset or rec["epochs"] != rec["preset_epochs"]):
            continue
        name = short_name(c)
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


def plot_error_curves(ax: Any, curves: pd.DataFrame, title: str = "", colors: Mapping[str, str] | None = None,
                      legend: bool = True) -> None:
    """Each series as its mean line (epochs 1-indexed) with a +-1 std band where n > 1,
    in ``colors[series]`` (default: the colour cycle in order); ``legend=False`` leaves
    the legend to the caller (e.g. one for a figure of several panels)."""
    for k, (name, part) in enumerate(curves.groupby("series", sort=False)):
        color = colors[name] if colors else f"C{k}"
        x = part["epoch"].to_numpy() + 1
        n = part["n"].max()
        ax.plot(x, part["mean"], color=color, marker=".", label=f"{name} (n={n})")
        band = part["std"].fillna(0).to_numpy()
        if n > 1:
            ax.fill_between(x, part["mean"] - band, part["mean"] + band, color=color, alpha=0.15)
    ax.set(xlabel="epoch", ylabel="top-1 test error (%)", title=title)
    if not len(curves):
        ax.text(0.5, 0.5, "not run", ha="center", va="center", fontsize=20, color="#999", transform=ax.transAxes)
    elif legend:
        ax.legend(fontsize=8)


def error_curve_figure(records: Iterable[Mapping[str, Any]], methods: Sequence[str], protocol: str,
                       imbalances: Sequence[float], dataset: str = "cifar10-jpeg",
                       dataset_label: str = "CIFAR-10-LT (JPEG copy)") -> Any:
    """One panel per imbalance of :func:`error_curves`, a series in one colour in every
    panel, the protocol's lr decays as dotted lines, and one legend below the panels (its
    labels can be long: a series names its setting)."""
    import matplotlib.pyplot as plt

    records = list(records)
    frames = [error_curves(records, methods, protocol, rho, dataset) for rho in imbalances]
    names = list(dict.fromkeys(name for f in frames for name in f["series"]))
    colors = {name: f"C{k % 10}" for k, name in enumerate(names)}
    fig, axes = plt.subplots(1, len(imbalances), figsize=(5 * len(imbalances), 3.6), sharex=True, sharey=True,
                             squeeze=False)
    preset = next(p for p in PRESETS.values() if p.protocol == protocol and dataset in p.datasets)
    for ax, rho, frame in zip(axes[0], imbalances, frames):
        plot_error_curves(ax, frame, f"{protocol} protocol, {dataset_label}, ρ = {rho:g}", colors, legend=False)
        ax.title.set_fontsize(10)
        for e in preset.decay_epochs:  # 0-indexed epoch e trains with the decayed lr: between e and e + 1
            ax.axvline(e + 0.5, color="#999", ls=":", lw=1)
        ax.set_xlim(0, preset.epochs + 1)
    seeds = {n: max(int(f[f["series"] == n]["n"].max()) for f in frames if n in set(f["series"])) for n in names}
    handles = [plt.Line2D([], [], color=colors[n], marker=".", label=f"{n} (n={seeds[n]})") for n in names]
    rows = max(1, (len(names) + 1) // 2)
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=10, frameon=False)
    fig.tight_layout(rect=(0, min(0.45, 0.055 * rows + 0.03), 1, 1))
    return fig
