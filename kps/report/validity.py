"""Whether a protocol's records can speak to the paper's comparisons, measured from them.

Two tests, each with its rule stated where it is computed:

- **trained above chance**: a row (a method in one setting, seeds pooled) has trained when
  its final-epoch top-1 error lies at least :data:`CHANCE_MARGIN` points below chance, the
  error of a constant guess on the balanced test set, 100 (1 - 1/C) %.  The same rule,
  applied to Sec. 4.5's head, mid and tail classes, says which end of the class list a
  row left untrained;
- **rank agreement with Table 3**: Kendall's tau between our errors and the paper's over
  Table 3's baselines that this artifact implements (the paper's own method left out:
  its rank is what the paper claims), with the exact one-sided p-value of tau under
  independence at that n (all n! orders equally likely).  The ordering counts as
  preserved when p <= :data:`RANK_ALPHA`, i.e. tau at or above :func:`tau_needed`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from kps.configs import METHODS, RUN_ONLY_KEYS, authors_code_overrides, make_config
from kps.data import DATASETS
from kps.report.paper import DATASET_VARIANTS
from kps.report.records import protocol_of, seed_groups, variant_label

__all__ = ["CHANCE_MARGIN", "RANK_ALPHA", "GROUPS", "chance_error", "clearly_above_chance", "kendall_tau",
           "kendall_p", "tau_needed", "paper_error", "table3_baselines", "RankAgreement", "rank_agreement",
           "short_name", "method_rows", "validity_table",
           "ProtocolValidity", "protocol_validity"]

# A row has trained when its error is at least this many points below chance (a constant
# guess): for CIFAR-10, 80 % or less, i.e. at least twice chance's accuracy.
CHANCE_MARGIN = 10.0
# One-sided level at which Kendall's tau counts as an ordering preserved.
RANK_ALPHA = 0.05
GROUPS = ("head", "mid", "tail")  # Sec. 4.5's groups of classes, as records hold them
# the paper's tables that give a method's CIFAR error, in the order they are read
_PAPER_TABLES = (3, 5, 6)


def chance_error(num_classes: int) -> float:
    """Top-1 error (%) of a constant guess on a balanced test set of ``num_classes`` classes."""
    if num_classes < 2:
        raise ValueError(f"chance needs at least 2 classes, got {num_classes}")
    return 100.0 * (1.0 - 1.0 / num_classes)


def clearly_above_chance(error: float, num_classes: int) -> bool:
    """The module's rule: ``error`` lies at least :data:`CHANCE_MARGIN` points below chance."""
    return error <= chance_error(num_classes) - CHANCE_MARGIN


# --------------------------------------------------------------------------- Kendall's tau

def kendall_tau(x: Sequence[float], y: Sequence[float]) -> tuple[float, int, int]:
    """Kendall's tau-a of paired values, with the numbers of concordant and discordant pairs.
    A pair tied in either variable is counted as discordant: the exact null distribution
    (:func:`kendall_p`) assumes no ties, and counting them against agreement keeps the
    p-value conservative."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size < 2:
        raise ValueError(f"need two equal-length lists of at least 2 values, got {a.size} and {b.size}")
    concordant = discordant = 0
    for i in range(a.size):
        for j in range(i + 1, a.size):
            s = (a[i] - a[j]) * (b[i] - b[j])
            concordant += s > 0
            discordant += s <= 0
    pairs = a.size * (a.size - 1) // 2
    return (concordant - discordant) / pairs, int(concordant), int(discordant)


def _inversion_counts(n: int) -> list[int]:
    """How many of the n! orders of n items have k discordant pairs, k = 0..n(n-1)/2
    (the Mahonian numbers: one item added at a time adds 0..m-1 inversions)."""
    counts = [1]
    for m in range(2, n + 1):
        nxt = [0] * (len(counts) + m - 1)
        for k, c in enumerate(counts):
            for extra in range(m):
                nxt[k + extra] += c
        counts = nxt
    return counts


def kendall_p(n: int, discordant: int) -> float:
    """Exact one-sided p-value of Kendall's tau at ``n``: the share of the n! orders with
    at most ``discordant`` discordant pairs (tau at least as high as observed)."""
    if n < 2:
        raise ValueError(f"Kendall's tau needs n >= 2, got {n}")
    counts = _inversion_counts(n)
    return sum(counts[:discordant + 1]) / math.factorial(n)


def tau_needed(n: int, alpha: float = RANK_ALPHA) -> float | None:
    """The smallest tau whose one-sided p-value at ``n`` is at most ``alpha``; None when
    even a perfect agreement cannot reach it (n! < 1 / alpha)."""
    pairs = n * (n - 1) // 2
    best = None
    for q in range(pairs + 1):
        if kendall_p(n, q) > alpha:
            break
        best = 1.0 - 2.0 * q / pairs
    return best


@dataclass(frozen=True)
class RankAgreement:
    """Kendall's tau of our errors against the paper's over ``methods``."""

    methods: tuple[str, ...]
    tau: float | None
    p: float | None
    needed: float | None

    @property
    def n(self) -> int:
        return len(self.methods)

    @property
    def preserved(self) -> bool | None:
        """True/False by the rule; None when there are too few rows to test it."""
        if self.tau is None or self.needed is None:
            return None
        return self.p <= RANK_ALPHA

    def __str__(self) -> str:
        if self.tau is None:
            return f"not enough rows yet (n={self.n}; the rank test needs at least 2)"
        if self.needed is None:
            return (f"τ = {self.tau:.2f} (n = {self.n}; at this n not even a perfect agreement reaches "
                    f"p ≤ {RANK_ALPHA:g}: not enough rows yet)")
        words = "preserved" if self.preserved else "not preserved"
        return (f"τ = {self.tau:.2f} (n = {self.n}, one-sided p = {self.p:.3f}); preserved needs p ≤ "
                f"{RANK_ALPHA:g}, i.e. τ ≥ {self.needed:.2f} at n = {self.n}: {words}")


def rank_agreement(ours: Mapping[str, float], paper: Mapping[str, float]) -> RankAgreement:
    """:class:`RankAgreement` over the methods that have both our error and the paper's."""
    methods = tuple(m for m in ours if m in paper and not math.isnan(paper[m]))
    if len(methods) < 2:
        return RankAgreement(methods, None, None, None)
    tau, _, discordant = kendall_tau([ours[m] for m in methods], [paper[m] for m in methods])
    return RankAgreement(methods, tau, kendall_p(len(methods), discordant), tau_needed(len(methods)))


# --------------------------------------------------------------------------- a protocol's rows

def paper_error(paper: pd.DataFrame, method: str, dataset: str, imbalance: float) -> float:
    """The paper's top-1 error (%) of ``method`` on ``dataset`` (ours, e.g. 'cifar10-jpeg')
    at ``imbalance``: Table 3's, else Table 5's, else Table 6's; NaN where none gives one."""
    names = [d for d, variants in DATASET_VARIANTS.items() if dataset in variants]
    for table in _PAPER_TABLES:
        hit = paper[(paper["table"] == table) & paper["dataset"].isin(names) & (paper["method"] == method)
                    & np.isclose(paper["imbalance"].astype(float), float(imbalance))]["top1_error"].dropna()
        if len(hit):
            return float(hit.iloc[0])
    return math.nan


def table3_baselines(paper: pd.DataFrame, dataset: str, imbalance: float) -> list[str]:
    """Table 3's rows on ``dataset`` at ``imbalance`` that this artifact implements and the
    paper gives a number for, other than the paper's own method (KPS-GA)."""
    names = [d for d, variants in DATASET_VARIANTS.items() if dataset in variants]
    rows = paper[(paper["table"] == 3) & paper["dataset"].isin(names)
                 & np.isclose(paper["imbalance"].astype(float), float(imbalance))].dropna(subset=["top1_error"])
    return [m for m in dict.fromkeys(rows["method"]) if m in METHODS and m != "kps_ga"]


def short_name(config: Mapping[str, Any]) -> str:
    """A row's name in a few words: the method, and the settings that set it apart from its
    preset's ('authors' code' for all of ``--authors-code``; else key=value)."""
    reference = make_config(config["dataset"], config["method"], preset=config["preset"],
                            imbalance=config["imbalance"]).to_dict()
    own = {k: v for k, v in config.items() if k not in RUN_ONLY_KEYS and reference.get(k) != v}
    if not own:
        return config["method"]
    authors = authors_code_overrides(config["dataset"])
    if own == authors:
        return f"{config['method']}, authors' code"
    if own == {"ga_variant": "official"}:
        return f"{config['method']}, authors' GA"
    return f"{config['method']}, " + ", ".join(f"{k}={v}" for k, v in sorted(own.items()))


METHOD_ROW_COLUMNS = ("method", "variant", "name", "n", "error (%)", "paper's error (%)", *(f"{g} (%)" for g in GROUPS),
                      "above chance")


def method_rows(records: Sequence[Mapping[str, Any]], paper: pd.DataFrame, protocol: str, imbalance: float,
                dataset: str = "cifar10-jpeg") -> pd.DataFrame:
    """One row per method and setting (seeds pooled) of the full-schedule records of
    ``protocol`` on ``dataset`` at ``imbalance``, in :data:`kps.configs.METHODS`' order:
    seeds n, the mean final-epoch error and head/mid/tail errors, the paper's error of the
    method, and whether the row trained clearly above chance (:func:`clearly_above_chance`)."""
    chosen = [r for r in records if protocol_of(r["config"]) == protocol and r["config"]["dataset"] == dataset
              and math.isclose(float(r["config"]["imbalance"]), float(imbalance)) and r["epochs"] == r["preset_epochs"]]
    rows = []
    for group in seed_groups(chosen):
        c = group[0]["config"]
        error = float(np.mean([r["top1_error"] for r in group]))
        row = {"method": c["method"], "variant": variant_label(c, with_protocol=False), "name": short_name(c),
               "n": len(group),
               "error (%)": error, "paper's error (%)": paper_error(paper, c["method"], dataset, imbalance)}
        for g in GROUPS:
            row[f"{g} (%)"] = float(np.mean([r["group_errors"][g] for r in group]))
        row["above chance"] = clearly_above_chance(error, DATASETS[dataset].num_classes)
        rows.append(row)
    order = list(METHODS)
    rows.sort(key=lambda r: (order.index(r["method"]), r["variant"] != "paper setting", r["variant"]))
    return pd.DataFrame(rows, columns=METHOD_ROW_COLUMNS)


@dataclass(frozen=True)
class ProtocolValidity:
    """A protocol's validity at one imbalance: its rows (:func:`method_rows`), chance, the
    rank agreement of its baseline rows with Table 3, and the baselines it lacks."""

    protocol: str
    imbalance: float
    rows: pd.DataFrame
    chance: float
    rank: RankAgreement
    missing: tuple[str, ...]

    @property
    def untrained(self) -> list[str]:
        """Rows whose error is not clearly above chance."""
        return [r["name"] for _, r in self.rows.iterrows() if not r["above chance"]]

    def groups_at_chance(self, group: str) -> list[str]:
        """Rows whose ``group`` classes' error is not clearly above chance, with that error."""
        limit = self.chance - CHANCE_MARGIN
        return [f"{r['name']} ({r[f'{group} (%)']:.1f} %)" for _, r in self.rows.iterrows()
                if r[f"{group} (%)"] > limit]

    def lines(self) -> list[str]:
        """The validity figures as Markdown list items, each with its rule."""
        if self.rows.empty:
            return [f"No full-schedule record at ρ = {self.imbalance:g} yet."]
        limit = self.chance - CHANCE_MARGIN
        trained = (f"every row ({len(self.rows)}) trained clearly above chance" if not self.untrained else
                   f"{len(self.untrained)} of {len(self.rows)} rows did not train clearly above chance: "
                   f"{', '.join(self.untrained)}")
        out = [f"**Above chance** (rule: final error at most {limit:g} %, i.e. at least {CHANCE_MARGIN:g} points "
               f"below chance, {self.chance:g} % for a constant guess over the classes): {trained}."]
        for group in GROUPS:
            at = self.groups_at_chance(group)
            if at:
                out.append(f"**{group.capitalize()} classes not above chance** (the same rule on their error): "
                           f"{', '.join(at)}.")
        missing = f"; Table 3 baselines with no record yet: {', '.join(self.missing)}" if self.missing else ""
        over = (f"over its baselines that have a record here, {', '.join(self.rank.methods)}" if self.rank.methods
                else "over its baselines that have a record here")
        out.append(f"**Rank agreement with Table 3** (Kendall's τ of our errors against the paper's {over}): "
                   f"{self.rank}{missing}.")
        return out


def protocol_validity(records: Sequence[Mapping[str, Any]], paper: pd.DataFrame, protocol: str,
                      imbalance: float = 100.0, dataset: str = "cifar10-jpeg") -> ProtocolValidity:
    """The validity of ``protocol`` at ``imbalance`` from its full-schedule records (module docstring)."""
    rows = method_rows(records, paper, protocol, imbalance, dataset)
    baselines = table3_baselines(paper, dataset, imbalance)
    base = rows[(rows["variant"] == "paper setting") & rows["method"].isin(baselines)]
    ours = dict(zip(base["method"], base["error (%)"]))
    rank = rank_agreement(ours, dict(zip(base["method"], base["paper's error (%)"])))
    return ProtocolValidity(protocol, float(imbalance), rows, chance_error(DATASETS[dataset].num_classes), rank,
                            tuple(m for m in baselines if m not in ours))


def validity_table(check: ProtocolValidity) -> Any:
    """``check``'s rows for reading: each row's error beside the paper's for its method (the
    paper's number labelled as such), its head/mid/tail errors, and the chance rule's answer."""
    rows = check.rows
    limit = check.chance - CHANCE_MARGIN
    shown = pd.DataFrame({
        "row": rows["name"], "n": rows["n"],
        f"error, {check.protocol} protocol (%)": [f"{v:.2f}" for v in rows["error (%)"]],
        "the paper's error (%)": ["—" if math.isnan(v) else f"{v:.2f}" for v in rows["paper's error (%)"]],
        **{f"{g} (%)": [f"{v:.1f}" for v in rows[f"{g} (%)"]] for g in GROUPS},
        f"above chance (error ≤ {limit:g} %)": ["yes" if v else "NO" for v in rows["above chance"]],
    })
    return shown.style.hide(axis="index").set_table_attributes('class="dataframe"')
