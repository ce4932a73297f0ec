"""The paper's relative claims, tested on our records with paired differences
over seeds and a 95 % Student-t confidence interval.

A claim compares two rows of a grid (e.g. LDAM-DRW against KPS-GA, Table 3) on
records of the same protocol, dataset, imbalance and seed; its difference per
seed is ``a - b`` of a measure (top-1 error, or a head/tail group error) arranged
so that a positive value is what the paper claims.  The verdict:

- *supported*: the interval lies above 0 (for the tail-and-head claim: the tail
  gain above 0 and the head loss's upper bound below :data:`HEAD_LOSS_TOLERANCE`);
- *contradicted*: the interval lies below 0 (the head loss's lower bound above
  the tolerance);
- *inconclusive at n = k*: otherwise, or with one seed (no interval).

Our own question, eq. 25's column scale against the authors' row scale, has no
claimed direction: it is answered with the sign of the interval, on the overall,
the head-class and the tail-class error.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from kps.report import protocol_of

__all__ = ["CONFIDENCE", "HEAD_LOSS_TOLERANCE", "Row", "Claim", "CLAIMS", "t_quantile", "Interval",
           "interval", "paired", "claims_table", "verdict"]

CONFIDENCE = 0.95
# "little loss on head classes" (Fig. 6): at most this many points of head-class error
HEAD_LOSS_TOLERANCE = 2.0


# --------------------------------------------------------------------------- Student t

def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularised incomplete beta function."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _t_cdf(t: float, df: float) -> float:
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (bisection on the CDF)."""
    if not (0.0 < p < 1.0) or df < 1:
        raise ValueError(f"need 0 < p < 1 and df >= 1, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while _t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _t_cdf(mid, df) < p else (lo, mid)
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class Interval:
    """Mean of n paired differences with its two-sided confidence interval (None for n = 1)."""

    mean: float
    low: float | None
    high: float | None
    n: int

    def __str__(self) -> str:
        if self.low is None:
            return f"{self.mean:+.2f} (n=1, no interval)"
        return f"{self.mean:+.2f} [{self.low:+.2f}, {self.high:+.2f}] (n={self.n})"


def interval(differences: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean ± t_{(1+c)/2, n-1} s / sqrt(n) of ``differences`` (sample std, ddof = 1)."""
    d = np.asarray(list(differences), dtype=np.float64)
    if d.size == 0 or not np.all(np.isfinite(d)):
        raise ValueError(f"need one or more finite differences, got {d.tolist()}")
    mean = float(d.mean())
    if d.size == 1:
        return Interval(mean, None, None, 1)
    half = t_quantile(0.5 + confidence / 2.0, int(d.size) - 1) * float(d.std(ddof=1)) / math.sqrt(d.size)
    return Interval(mean, mean - half, mean + half, int(d.size))


# --------------------------------------------------------------------------- claims

@dataclass(frozen=True)
class Row:
    """A row of a grid: a method and the config values that set it apart (e.g. the GA variant)."""

    method: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""

    def matches(self, config: Mapping[str, Any]) -> bool:
        return config["method"] == self.method and all(config.get(k) == v for k, v in self.settings.items())

    @property
    def name(self) -> str:
        return self.label or self.method


_PAPER_GA = {"ga_variant": "paper", "lr_style": "paper", "subset_seed": 0}


def _error(record: Mapping[str, Any]) -> float:
    return float(record["top1_error"])


def _group(name: str) -> Callable[[Mapping[str, Any]], float]:
    def measure(record: Mapping[str, Any]) -> float:
        value = record["group_errors"][name]
        if value is None:
            raise ValueError(f"a record has no {name} group error")
        return float(value)
    return measure


@dataclass(frozen=True)
class Claim:
    """``a`` against ``b`` on ``measure``: the difference a - b per seed is positive
    where the paper's claim holds (errors: a is the method claimed to be worse)."""

    key: str
    text: str
    source: str
    a: Row
    b: Row
    measure: Callable[[Mapping[str, Any]], float] = _error
    measure_name: str = "top-1 error (final epoch)"
    directed: bool = True
    # a claim that a - b stays below this bound (a cost that is "little"), instead of above 0
    below: float | None = None


KPS_GA = Row("kps_ga", _PAPER_GA, "kps_ga (eq. 25)")
AUTHORS_GA = Row("kps_ga", {**_PAPER_GA, "ga_variant": "official"}, "kps_ga (authors' GA)")
CLAIMS: tuple[Claim, ...] = (
    Claim("kps_ga>ldam_drw", "KPS-GA has a lower error than LDAM-DRW", "Table 3", Row("ldam_drw"), KPS_GA),
    Claim("ldam_drw>ce", "LDAM-DRW has a lower error than CE", "Table 3", Row("ce"), Row("ldam_drw")),
    Claim("ga>drw", "for KPS, GA gives a lower error than DRW", "Table 5", Row("kps_drw"), KPS_GA),
    Claim("ga>none", "for KPS, GA gives a lower error than no re-balancing", "Table 5", Row("kps"), KPS_GA),
    Claim("mixup>kps_ga", "mixup lowers KPS-GA's error", "Table 6", KPS_GA, Row("kps_ga_mixup")),
    Claim("ga_tail", "GA lowers the tail classes' error (KPS without GA against KPS-GA)", "Fig. 6",
          Row("kps"), KPS_GA, _group("tail"), "tail-class error (final epoch)"),
    Claim("ga_head", f"GA costs the head classes little (at most {HEAD_LOSS_TOLERANCE:g} points)", "Fig. 6",
          KPS_GA, Row("kps"), _group("head"), "head-class error (final epoch)", below=HEAD_LOSS_TOLERANCE),
    Claim("row>column", "the authors' row scale against eq. 25's column scale (no claimed direction)",
          "our question", KPS_GA, AUTHORS_GA, directed=False),
    # the same pair on the head and the tail classes: the overall errors of the two GA forms can
    # agree while the forms move error between head and tail (book/differences.md)
    *(Claim(f"row>column:{part}", f"the authors' row scale against eq. 25's column scale, {part} classes",
            "our question", KPS_GA, AUTHORS_GA, _group(part), f"{part}-class error (final epoch)", directed=False)
      for part in ("head", "tail")),
)


def paired(records: Iterable[Mapping[str, Any]], claim: Claim) -> dict[tuple[str, str, float], dict[int, float]]:
    """(protocol, dataset, imbalance) -> {seed: a - b} over the seeds where both rows
    have a full-schedule record (short runs are left out)."""
    sides: dict[tuple[str, str, float, int], dict[str, Mapping[str, Any]]] = {}
    for rec in records:
        c = rec["config"]
        if rec["epochs"] != rec["preset_epochs"]:
            continue
        for side, row in (("a", claim.a), ("b", claim.b)):
            if row.matches(c):
                key = (protocol_of(c), c["dataset"], float(c["imbalance"]), int(c["seed"]))
                sides.setdefault(key, {})[side] = rec
    out: dict[tuple[str, str, float], dict[int, float]] = {}
    for (protocol, dataset, imbalance, seed), pair in sorted(sides.items()):
        if len(pair) == 2:
            out.setdefault((protocol, dataset, imbalance), {})[seed] = (
                claim.measure(pair["a"]) - claim.measure(pair["b"]))
    return out


def verdict(claim: Claim, ci: Interval) -> str:
    """Plain words for ``ci`` of ``claim`` (module docstring)."""
    if ci.low is None:
        return "inconclusive: one seed, no interval"
    if claim.below is not None:  # e.g. head error with GA minus without: the cost to the head
        if ci.high < claim.below:
            return "supported"
        return "contradicted" if ci.low > claim.below else f"inconclusive at n={ci.n}"
    if not claim.directed:
        lower = f"has the lower {claim.measure_name.split(' (')[0]}"  # e.g. 'tail-class error'
        if ci.low > 0:
            return f"{claim.b.name} {lower}"
        if ci.high < 0:
            return f"{claim.a.name} {lower}"
        return f"no difference shown at n={ci.n}"
    if ci.low > 0:
        return "supported"
    if ci.high < 0:
        return "contradicted"
    return f"inconclusive at n={ci.n}"


def claims_table(records: Sequence[Mapping[str, Any]], protocol: str,
                 claims: Sequence[Claim] = CLAIMS) -> pd.DataFrame:
    """One row per claim and (dataset label, imbalance) with paired records of
    ``protocol``: the per-seed differences, their mean with the 95 % interval, and
    the verdict.  A claim without any pair gets one row saying so."""
    labels = {rec["config"]["dataset"]: rec.get("dataset_label", rec["config"]["dataset"]) for rec in records}
    rows = []
    for claim in claims:
        found = {k: v for k, v in paired(records, claim).items() if k[0] == protocol}
        if not found:
            rows.append({"claim": claim.text, "source": claim.source, "data": "", "ρ": "",
                         "a - b by seed": "", "mean [95% CI]": "", "verdict": "no paired records yet"})
        for (_, dataset, imbalance), by_seed in found.items():
            ci = interval(list(by_seed.values()))
            rows.append({
                "claim": claim.text, "source": claim.source, "data": labels[dataset], "ρ": f"{imbalance:g}",
                "a - b by seed": ", ".join(f"{s}: {d:+.2f}" for s, d in by_seed.items()),
                "mean [95% CI]": str(ci), "verdict": verdict(claim, ci),
            })
    return pd.DataFrame(rows)
