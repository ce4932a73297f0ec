"""bf16 autocast on a CPU against fp32: the precision check (:func:`kps.grids.bf16_check`).

Precision is not part of a record's name, so the check's records live under roots of
their own (``results/bf16-check/bf16`` and ``.../fp32``) and pair with the record of the
same name under the other root, or under ``results/``: the same configuration, seed
and data, run once in each precision.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from kps.claims import Interval, interval
from kps.results import config_record_path, load_record
from kps.configs import RunConfig

__all__ = ["CHECK_ROOT", "PrecisionCheck", "paired_errors", "precision_summary", "loss_pairs", "precision_check"]

CHECK_ROOT = Path("bf16-check")  # under results/


def _twin(record: Mapping[str, Any], root: Path) -> dict[str, Any] | None:
    """The record of ``record``'s name under ``root``, or None."""
    path = config_record_path(root, RunConfig.from_dict(record["config"]))
    return load_record(path) if path.is_file() else None


def paired_errors(bf16: Sequence[Mapping[str, Any]], fp32_root: str | Path) -> pd.DataFrame:
    """One row per full-schedule bf16 record with an fp32 twin under ``fp32_root``: method,
    seed, the final top-1 error in each precision and bf16 - fp32 (points)."""
    rows = []
    for r in bf16:
        if r["epochs"] != r["preset_epochs"] or not r["config"]["bf16"]:
            continue
        twin = _twin(r, Path(fp32_root))
        if twin is None or twin["config"]["bf16"]:
            continue
        rows.append({"method": r["config"]["method"], "seed": r["config"]["seed"], "fp32": twin["top1_error"],
                     "bf16": r["top1_error"], "bf16 - fp32": r["top1_error"] - twin["top1_error"],
                     "fp32 device": twin["device"], "bf16 device": r["device"]})
    columns = ["method", "seed", "fp32", "bf16", "bf16 - fp32", "fp32 device", "bf16 device"]
    return pd.DataFrame(rows, columns=columns).sort_values(["method", "seed"], ignore_index=True)


def precision_summary(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per method: n pairs, the mean paired difference with its 95 % interval, the fp32
    seeds' standard deviation (the seed noise it is measured against) and whether bf16
    moves the error: yes when the interval excludes zero (:func:`moves_error`)."""
    rows = []
    for method, group in pairs.groupby("method", sort=False):
        ci = interval(group["bf16 - fp32"].tolist())
        rows.append({"method": method, "n": ci.n, "mean bf16 - fp32": ci.mean,
                     "95% interval": "—" if ci.low is None else f"[{ci.low:+.2f}, {ci.high:+.2f}]",
                     "fp32 seed std": float(group["fp32"].std(ddof=1)) if len(group) > 1 else np.nan,
                     "bf16 moves the error": moves_error(ci)})
    return pd.DataFrame(rows, columns=["method", "n", "mean bf16 - fp32", "95% interval", "fp32 seed std",
                                       "bf16 moves the error"])


def moves_error(ci: Interval) -> str:
    """The check's rule: bf16 moves a method's error beyond seed noise when the 95 %
    interval of its paired differences excludes zero ("unknown" with one pair)."""
    if ci.low is None:
        return "unknown (n=1)"
    return "yes" if ci.low > 0 or ci.high < 0 else "no"


def loss_pairs(bf16: Mapping[str, Any], fp32: Mapping[str, Any]) -> pd.DataFrame:
    """Epoch by epoch training loss of a run in each precision (the same config and seed),
    and their relative difference."""
    a = {h["epoch"]: h["loss"] for h in fp32["history"]}
    b = {h["epoch"]: h["loss"] for h in bf16["history"]}
    epochs = sorted(set(a) & set(b))
    return pd.DataFrame({"epoch": [e + 1 for e in epochs], "fp32 loss": [a[e] for e in epochs],
                         "bf16 loss": [b[e] for e in epochs],
                         "relative difference": [(b[e] - a[e]) / a[e] for e in epochs]})


@dataclass(frozen=True)
class PrecisionCheck:
    pairs: pd.DataFrame        # paired final errors at the reduced protocol
    summary: pd.DataFrame      # per method, the paired difference and its interval
    losses: pd.DataFrame       # the paper protocol's first epochs, both precisions
    devices: list[str]         # the devices the check's bf16 records ran on
    runs_missing: int          # configurations of the check without a record yet


def precision_check(results: str | Path) -> PrecisionCheck:
    """The check as its records stand under ``results``/bf16-check (nothing missing is
    filled in: absent runs are counted in ``runs_missing``)."""
    from kps.grids import bf16_check, bf16_check_paper

    results = Path(results)
    bf16_root, fp32_root = results / CHECK_ROOT / "bf16", results / CHECK_ROOT / "fp32"
    wanted = bf16_check()
    found = [load_record(p) for c in wanted if (p := config_record_path(bf16_root, c)).is_file()]
    pairs = paired_errors(found, results)
    short_b, short_f = (config_record_path(root, bf16_check_paper(b)) for root, b in
                        ((bf16_root, True), (fp32_root, False)))
    losses = (loss_pairs(load_record(short_b), load_record(short_f)) if short_b.is_file() and short_f.is_file()
              else pd.DataFrame(columns=["epoch", "fp32 loss", "bf16 loss", "relative difference"]))
    missing = len(wanted) - len(found) + (not short_f.is_file())
    return PrecisionCheck(pairs, precision_summary(pairs), losses, sorted({r["device"] for r in found}), missing)
