"""Our runs as the result pages group and name them: the seed summaries (mean
+- sample std over seeds, the number of seeds), the labels of a run's setting
and variant against the paper's (``kps.configs.differences``), the records that
match a paper cell, and the overview of what has been run."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kps.configs import IDENTITY_KEYS, PRESETS, ROLES, RUN_ONLY_KEYS, SPEED, SPEED_KEYS, Preset, RunConfig, differences
from kps.report.paper import DATASET_VARIANTS
from kps.results import config_record_path

NOT_RUN = "not run"                          # a cell of ours without a record
NOT_IMPLEMENTED = "not in this artifact"     # a paper method this package does not implement


@dataclass(frozen=True)
class ErrorSummary:
    """Mean and sample standard deviation (ddof=1; None for one seed) of n errors in %."""

    mean: float
    std: float | None
    n: int


def summarize(values: Iterable[float]) -> ErrorSummary | None:
    """Summary of top-1 errors (%) over seeds; None when there are none."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        return None
    if not np.all(np.isfinite(v)):
        raise ValueError(f"errors must be finite numbers, got {v.tolist()}")
    std = float(v.std(ddof=1)) if v.size > 1 else None
    return ErrorSummary(float(v.mean()), std, int(v.size))


def format_summary(s: ErrorSummary | None, missing: str = NOT_RUN, digits: int = 2) -> str:
    """'18.77 ± 0.31 (n=3)', '18.77 (n=1)' or ``missing``."""
    if s is None:
        return missing
    spread = f" ± {s.std:.{digits}f}" if s.std is not None else ""
    return f"{s.mean:.{digits}f}{spread} (n={s.n})"


def preset_of(config: Mapping[str, Any]) -> Preset:
    """The preset a record's config ran.  An unknown one: ValueError naming it."""
    name = config["preset"]
    if name not in PRESETS:
        raise ValueError(f"a record's preset {name!r} is not known to this code (kps.configs.PRESETS: "
                         f"{', '.join(PRESETS)}); update the code or move the record out of results/")
    return PRESETS[name]


def protocols(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """The protocols that ``records`` hold: the reduced ones of :data:`kps.configs.PRESETS`
    in its order, then 'paper'."""
    held = {protocol_of(r["config"]) for r in records}
    names = [p.protocol for p in PRESETS.values() if p.protocol != "paper"] + ["paper"]
    return [name for name in dict.fromkeys(names) if name in held]


def protocol_of(config: Mapping[str, Any]) -> str:
    """'paper' or the reduced protocol's name ('CPU-scale') of a record's config."""
    return preset_of(config).protocol


def _differences(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, words) for every way ``config`` differs from the setting of its dataset,
    method and imbalance under its preset (:func:`kps.configs.differences`): a reduced
    protocol first, then a short run, then the others; speed keys (precision among
    them) are not a difference of the setting."""
    preset = preset_of(config)
    parts: list[tuple[str, str]] = []
    if preset.protocol != "paper":
        parts.append(("preset", f"{preset.protocol} protocol ({preset.name})"))
    for key, (ours, ref) in sorted(differences(config).items()):
        if ROLES[key] == SPEED or key == "preset":
            continue
        if key == "epochs":
            parts.insert(len(parts) and parts[0][0] == "preset", (key, f"short run: {ours} of {ref} epochs"))
        elif key in ("ga_variant", "lr_style") and ours == "official":
            parts.append((key, "GA: authors' per-sample row scale" if key == "ga_variant" else "lr: authors' schedule"))
        else:
            parts.append((key, f"{key} {ours}"))
    return parts


def setting_label(config: Mapping[str, Any], with_protocol: bool = True) -> str:
    """How a run's config differs from the paper's setting for its dataset and
    method (:func:`kps.configs.differences`): 'paper setting', or the differences,
    e.g. 'short run: 30 of 200 epochs; m_max 0.2'.  Speed keys, precision among them,
    are not part of a setting (the provenance table names a run's precision).
    ``with_protocol=False`` leaves out a reduced protocol's name, for tables and
    panels that name it in a header."""
    parts = [words for key, words in _differences(config) if with_protocol or key != "preset"]
    return "; ".join(parts) if parts else "paper setting"


def variant_label(config: Mapping[str, Any], with_protocol: bool = True) -> str:
    """The part of :func:`setting_label` that changes the experiment itself
    (:data:`kps.configs.IDENTITY_KEYS`, the keys of a record's setting tag, e.g. the
    authors'-code GA variant): 'paper setting' when the run differs only in how
    long, how often evaluated, or how fast it ran.  Result tables give each variant
    its own row; ``with_protocol=False`` leaves out a reduced protocol's name (the
    tables give it a column of its own)."""
    parts = [words for key, words in _differences(config)
             if key in IDENTITY_KEYS and (with_protocol or key != "preset")]
    return "; ".join(parts) if parts else "paper setting"


def run_label(config: Mapping[str, Any]) -> str:
    """The part of :func:`setting_label` that :func:`variant_label` leaves out and that
    still keeps runs apart (:func:`group_key`: a short run), e.g. 'short run: 30 of 200
    epochs'; '' for a full run. The evaluation cadence is pooled, not named."""
    pooled = set(RUN_ONLY_KEYS) - {"epochs"}
    return "; ".join(words for key, words in _differences(config) if key not in IDENTITY_KEYS and key not in pooled)


def precision_label(config: Mapping[str, Any]) -> str:
    """'bf16 autocast' or 'fp32': how a run's backbone computed (a speed key, not part of
    its setting)."""
    return "bf16 autocast" if config.get("bf16") else "fp32"


def matching_records(
    records: Iterable[Mapping[str, Any]], dataset: str, method: str, imbalance: float | None, backbone: str
) -> list[Mapping[str, Any]]:
    """Records that ran the paper row's method and backbone on one of the
    dataset's variants (CIFAR-10: official or JPEG copy) at its imbalance
    (``imbalance`` None/NaN: any, for the datasets that come long-tailed)."""
    variants = DATASET_VARIANTS[dataset]
    any_ratio = imbalance is None or (isinstance(imbalance, float) and math.isnan(imbalance))
    out = []
    for rec in records:
        c = rec["config"]
        if c["dataset"] in variants and c["method"] == method and c.get("arch") == backbone:
            if any_ratio or math.isclose(float(c["imbalance"]), float(imbalance)):
                out.append(rec)
    return out


def group_key(record: Mapping[str, Any], apart_from: tuple[str, ...] = ()) -> str:
    """What a record's runs have in common with the records it is summarised with: its
    data label and every config key but the run keys other than ``epochs`` (seed,
    evaluation cadence), the speed keys (precision among them, :class:`kps.configs.RunConfig`)
    and ``apart_from``.  A cell pools runs evaluated at different cadences (a GPU's every
    epoch, the CPU grid's every 10 and every epoch from the first decay): their final
    errors are alike, and each record's best is over its own evaluated epochs."""
    skip = {*RUN_ONLY_KEYS, *apart_from} - {"epochs"}
    cfg = {k: v for k, v in record["config"].items() if k not in skip}
    return repr(sorted((k, repr(v)) for k, v in cfg.items())) + repr(record.get("dataset_label"))


def seed_groups(records: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """Records split by everything that decides a run except the seed and the speed
    keys (:func:`group_key`), in a stable order; one group = one cell of ours,
    summarised over its seeds by :func:`summarize`."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for rec in records:
        groups.setdefault(group_key(rec), []).append(rec)
    return [groups[k] for k in sorted(groups)]


@dataclass(frozen=True)
class RunsOverview:
    """What has been run: ``counts`` has one row per protocol, data and imbalance
    ratio with its number of full-schedule records (columns protocol, data,
    imbalance, runs); ``grid_runs`` / ``grid_done`` count a grid's runs and those
    with a record; ``run_min`` is the mean wall time in minutes of the grid's records
    made on one CPU core (``timed_records``), and ``grid_hours`` the whole grid's on
    ``workers`` cores (NaN while no such record exists; the Results page words them)."""

    counts: pd.DataFrame
    grid_runs: int
    grid_done: int
    run_min: float
    grid_hours: float
    workers: int
    timed_records: tuple[Mapping[str, Any], ...] = ()

    @property
    def timed(self) -> int:
        return len(self.timed_records)


def grid_records(records: Sequence[Mapping[str, Any]], grid: Sequence[RunConfig]
                 ) -> tuple[list[Mapping[str, Any]], list[RunConfig]]:
    """The full-schedule records of ``grid``'s runs, and the runs of ``grid`` without one:
    a run is done when its record, at the path the grid would write, is a full-schedule one."""
    done = {config_record_path("", RunConfig.from_dict(r["config"])): r for r in records
            if r["epochs"] == r["preset_epochs"]}
    paths = [config_record_path("", c) for c in grid]
    return [done[p] for p in paths if p in done], [c for c, p in zip(grid, paths) if p not in done]


def runs_overview(records: Sequence[Mapping[str, Any]], grid: Sequence[RunConfig], workers: int) -> RunsOverview:
    """How many full-schedule records each protocol has (by data and imbalance),
    how much of ``grid`` is done, and how long the whole grid takes to rerun on
    ``workers`` CPU cores, from the mean wall time of its records made on a CPU."""
    full = [r for r in records if r["epochs"] == r["preset_epochs"]]
    counts: dict[tuple[str, str, float], int] = {}
    for r in full:
        c = r["config"]
        key = (protocol_of(c), r.get("dataset_label", c["dataset"]), float(c["imbalance"]))
        counts[key] = counts.get(key, 0) + 1
    table = pd.DataFrame([(p, label, f"{imb:g}", n) for (p, label, imb), n in sorted(counts.items())],
                         columns=["protocol", "data", "imbalance", "runs"])
    done, _ = grid_records(full, grid)
    timed = [r for r in done if str(r["device"]).startswith("cpu")]
    wall = sum(r["wall_time_s"] for r in timed) / len(timed) if timed else math.nan
    return RunsOverview(table, len(grid), len(done), wall / 60, len(grid) * wall / workers / 3600, workers,
                        tuple(timed))


