"""The paper's relative claims, tested on our records with paired differences
over seeds and a 95 % Student-t confidence interval.

A claim compares two rows of a grid (e.g. LDAM-DRW against KPS-GA, Table 3) on
records of the same protocol, dataset, imbalance and seed.  A row pins every
setting that defines an experiment (every :class:`kps.configs.RunConfig` key but
:data:`kps.configs.RUN_ONLY_KEYS`) to its preset's value or to the row's own, so
no variant record can enter it; two records for one row and seed are an error
naming both files.  A claim holds one or more conditions, each a measure (top-1
error, or a head/tail group error) whose difference ``a - b`` per seed must lie
above a bound: 0 for "a has the higher error", ``-HEAD_LOSS_TOLERANCE`` for "b's
head error is at most that much above a's".  Fig. 6's claim is one such joint
claim: GA lowers the tail classes' error *and* raises the head classes' by at
most :data:`HEAD_LOSS_TOLERANCE` points.

Verdicts on the paper are given only at the paper's protocol, and only with at
least :data:`MIN_SEEDS` paired seeds ("not enough runs yet (n=k)" below that):

- *supported*: every condition's interval lies above its bound;
- *contradicted*: some condition's interval lies below its bound;
- *inconclusive at n = k*: otherwise.

At a reduced protocol the same differences are shown as what that scale does:
for each condition, which row has the lower error, if the interval shows one;
never as the paper's claim supported or contradicted.  Our own question, eq.
25's column scale against the authors' row scale, has no claimed direction and
is read that way at every protocol.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from kps.configs import RUN_ONLY_KEYS, make_config
from kps.report.provenance import record_file
from kps.report.records import protocol_of

__all__ = ["CONFIDENCE", "HEAD_LOSS_TOLERANCE", "MIN_SEEDS", "PAPER_PROTOCOL", "Row", "Condition", "Claim",
           "CLAIMS", "VERDICT", "SCALE_SHOWS", "t_quantile", "Interval", "interval", "paired", "differences", "verdict", "claims_table",
           "claims_view", "rows_table"]

CONFIDENCE = 0.95
# "little loss on head classes" (Fig. 6): GA may raise the head classes' error by at most this many points
HEAD_LOSS_TOLERANCE = 2.0
# A verdict on the paper needs this many paired seeds: with 2 the interval rests on one degree of
# freedom (t = 12.7); the paper-protocol grid trains 3 seeds of its headline rows.
MIN_SEEDS = 3
PAPER_PROTOCOL = "paper"  # the one protocol whose records give verdicts on the paper's claims


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
    """A row of a grid: a method and the settings that set it apart from its preset's
    (e.g. the authors' GA variant).  Every other setting that defines an experiment is
    pinned to the preset's value: :meth:`matches` compares all RunConfig keys but
    :data:`kps.configs.RUN_ONLY_KEYS` (seed, length, evaluation cadence, speed switches)."""

    method: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""

    def reference(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The row's config at ``config``'s dataset, preset and imbalance."""
        return make_config(config["dataset"], self.method, preset=config["preset"],
                           imbalance=config["imbalance"], **self.settings).to_dict()

    def matches(self, config: Mapping[str, Any]) -> bool:
        if config["method"] != self.method:
            return False
        reference = self.reference(config)
        return all(config.get(k) == v for k, v in reference.items() if k not in RUN_ONLY_KEYS)

    @property
    def name(self) -> str:
        return self.label or self.method

    @property
    def pinned(self) -> str:
        """The row's own settings in words; every other one is its preset's."""
        own = ", ".join(f"{k}={v}" for k, v in sorted(self.settings.items()))
        return f"{own}; the rest the preset's" if own else "every setting the preset's"


def _error(record: Mapping[str, Any]) -> float:
    return float(record["top1_error"])


def _group(name: str) -> Callable[[Mapping[str, Any]], float]:
    def measure(record: Mapping[str, Any]) -> float:
        value = record["group_errors"][name]
        if value is None:
            raise ValueError(f"{record_file(record)}: the record has no {name} group error")
        return float(value)
    return measure


@dataclass(frozen=True)
class Condition:
    """One measure of a claim: its difference a - b must lie above ``bound``."""

    name: str                                        # e.g. 'tail-class error'
    measure: Callable[[Mapping[str, Any]], float] = _error
    bound: float = 0.0


ERROR = Condition("top-1 error")
HEAD, TAIL = Condition("head-class error", _group("head")), Condition("tail-class error", _group("tail"))


@dataclass(frozen=True)
class Claim:
    """``a`` against ``b``: for each condition, the difference a - b per seed (final
    epoch) lies above the condition's bound where the paper's claim holds (errors: a is
    the row claimed to be worse).  ``directed=False``: a question without a claimed
    direction, answered with which row has the lower error."""

    key: str
    text: str
    source: str
    a: Row
    b: Row
    conditions: tuple[Condition, ...] = (ERROR,)
    directed: bool = True


_PAPER_GA = {"ga_variant": "paper"}
KPS_GA = Row("kps_ga", _PAPER_GA, "kps_ga (eq. 25)")
AUTHORS_GA = Row("kps_ga", {"ga_variant": "official"}, "kps_ga (authors' GA)")
CLAIMS: tuple[Claim, ...] = (
    Claim("kps_ga>ldam_drw", "KPS-GA has a lower error than LDAM-DRW", "Table 3", Row("ldam_drw"), KPS_GA),
    Claim("ldam_drw>ce", "LDAM-DRW has a lower error than CE", "Table 3", Row("ce"), Row("ldam_drw")),
    Claim("ga>drw", "for KPS, GA gives a lower error than DRW", "Table 5", Row("kps_drw"), KPS_GA),
    Claim("ga>none", "for KPS, GA gives a lower error than no re-balancing", "Table 5", Row("kps"), KPS_GA),
    Claim("mixup>kps_ga", "mixup lowers KPS-GA's error", "Table 6", KPS_GA, Row("kps_ga_mixup")),
    # one joint claim: the tail gains, and the head loses little (a - b = head(kps) - head(kps_ga))
    Claim("ga_tail_head", f"GA lowers the tail classes' error and raises the head classes' by at most "
                          f"{HEAD_LOSS_TOLERANCE:g} points (KPS without GA against KPS-GA)", "Fig. 6",
          Row("kps"), KPS_GA, (TAIL, Condition(HEAD.name, HEAD.measure, -HEAD_LOSS_TOLERANCE))),
    Claim("row>column", "the authors' row scale against eq. 25's column scale (no claimed direction)",
          "our question", KPS_GA, AUTHORS_GA, (ERROR, HEAD, TAIL), directed=False),
)


Pairs = dict[tuple[str, str, float], dict[int, tuple[Mapping[str, Any], Mapping[str, Any]]]]


def _describe(record: Mapping[str, Any]) -> str:
    return f"{record_file(record)} (started {record.get('started_at', '?')} on {record.get('device', '?')})"


def paired(records: Iterable[Mapping[str, Any]], claim: Claim) -> Pairs:
    """(protocol, dataset, imbalance) -> {seed: (record of a, record of b)} over the seeds
    where both rows have a full-schedule record (short runs are left out).  ValueError
    naming both files when two records fill one row at one seed."""
    sides: dict[tuple[str, str, float, int], dict[str, Mapping[str, Any]]] = {}
    for rec in records:
        c = rec["config"]
        if rec["epochs"] != rec["preset_epochs"]:
            continue
        for side, row in (("a", claim.a), ("b", claim.b)):
            if not row.matches(c):
                continue
            key = (protocol_of(c), c["dataset"], float(c["imbalance"]), int(c["seed"]))
            held = sides.setdefault(key, {})
            if side in held:
                raise ValueError(f"two records for the row {row.name}, seed {key[3]} ({key[0]} protocol, "
                                 f"{key[1]}, rho {key[2]:g}): {_describe(held[side])} and {_describe(rec)}; "
                                 f"keep one of them under results/")
            held[side] = rec
    out: Pairs = {}
    for (protocol, dataset, imbalance, seed), pair in sorted(sides.items()):
        if len(pair) == 2:
            out.setdefault((protocol, dataset, imbalance), {})[seed] = (pair["a"], pair["b"])
    return out


def differences(pairs: Mapping[int, tuple[Mapping[str, Any], Mapping[str, Any]]],
                condition: Condition) -> dict[int, float]:
    """{seed: a - b} of ``condition``'s measure."""
    return {seed: condition.measure(a) - condition.measure(b) for seed, (a, b) in pairs.items()}


def _lower(claim: Claim, condition: Condition, ci: Interval) -> str:
    """Which row has the lower value of ``condition``'s measure, if the interval shows one."""
    if ci.low is None:
        return "one seed, no interval"
    if ci.low > 0:
        return f"{claim.b.name} has the lower {condition.name}"
    if ci.high < 0:
        return f"{claim.a.name} has the lower {condition.name}"
    return f"no difference in {condition.name} shown at n={ci.n}"


def verdict(claim: Claim, intervals: Sequence[Interval], protocol: str = PAPER_PROTOCOL) -> str:
    """Plain words for ``claim``'s intervals (one per condition) at ``protocol``
    (module docstring): a verdict on the paper at its protocol, else what the scale does."""
    n = intervals[0].n if intervals else 0
    if protocol == PAPER_PROTOCOL and n < MIN_SEEDS:
        return f"not enough runs yet (n={n})"
    if protocol != PAPER_PROTOCOL or not claim.directed:
        if not intervals:
            return "no paired records"
        return "; ".join(_lower(claim, c, ci) for c, ci in zip(claim.conditions, intervals))
    if all(ci.low > c.bound for c, ci in zip(claim.conditions, intervals)):
        return "supported"
    if any(ci.high < c.bound for c, ci in zip(claim.conditions, intervals)):
        return "contradicted"
    return f"inconclusive at n={n}"


CLAIMS_COLUMNS = ("claim", "source", "data", "ρ", "measure", "claimed a - b", "a - b by seed", "mean [95% CI]")
VERDICT = "verdict on the paper"      # the last column at the paper's protocol
SCALE_SHOWS = "what this scale shows"  # the last column at a reduced protocol: never a verdict on the paper


def claims_table(records: Sequence[Mapping[str, Any]], protocol: str,
                 claims: Sequence[Claim] = CLAIMS) -> pd.DataFrame:
    """One row per claim, condition and (dataset label, imbalance) with paired records of
    ``protocol``: the per-seed differences, their mean with the 95 % interval, and the
    claim's verdict (:func:`verdict`: on the paper at its protocol, else what the scale
    does), in a last column named for which of the two it is (:data:`VERDICT` or
    :data:`SCALE_SHOWS`).  A claim without any pair gets one row saying so."""
    last = VERDICT if protocol == PAPER_PROTOCOL else SCALE_SHOWS
    labels = {rec["config"]["dataset"]: rec.get("dataset_label", rec["config"]["dataset"]) for rec in records}
    rows = []
    for claim in claims:
        found = {k: v for k, v in paired(records, claim).items() if k[0] == protocol}
        if not found:
            rows.append({"claim": claim.text, "source": claim.source, "data": "", "ρ": "",
                         "measure": "; ".join(c.name for c in claim.conditions), "claimed a - b": "",
                         "a - b by seed": "", "mean [95% CI]": "", last: verdict(claim, [], protocol)})
        for (_, dataset, imbalance), pairs in found.items():
            diffs = [differences(pairs, c) for c in claim.conditions]
            intervals = [interval(list(d.values())) for d in diffs]
            said = verdict(claim, intervals, protocol)
            for condition, by_seed, ci in zip(claim.conditions, diffs, intervals):
                rows.append({
                    "claim": claim.text, "source": claim.source, "data": labels[dataset], "ρ": f"{imbalance:g}",
                    "measure": condition.name,
                    "claimed a - b": f"> {condition.bound:+g}" if claim.directed else "(no direction)",
                    "a - b by seed": ", ".join(f"{s}: {d:+.2f}" for s, d in by_seed.items()),
                    "mean [95% CI]": str(ci), last: said})
    return pd.DataFrame(rows, columns=[*CLAIMS_COLUMNS, last])


def claims_view(table: pd.DataFrame) -> Any:
    """``table`` for reading: a claim's text, source and verdict once, on its first
    condition's row; the data in the caption where every paired row has the same; the
    site's table style."""
    shown = table.copy()
    again = shown.duplicated(subset=["claim", "data", "ρ"])
    shown.loc[again, ["claim", "source", shown.columns[-1]]] = ""
    held = sorted(set(shown["data"]) - {""})
    style = shown.drop(columns="data") if len(held) <= 1 else shown
    style = style.style.hide(axis="index").set_table_attributes('class="dataframe"')
    return style.set_caption(f"Data: {held[0]}.") if len(held) == 1 else style


def rows_table(claims: Sequence[Claim] = CLAIMS) -> pd.DataFrame:
    """Which rows each claim compares, what each pins, and its conditions."""
    return pd.DataFrame([{"claim": c.text, "source": c.source, "a": c.a.name, "a pins": c.a.pinned,
                          "b": c.b.name, "b pins": c.b.pinned,
                          "conditions (a - b, final epoch)": "; ".join(
                              f"{k.name} > {k.bound:+g}" if c.directed else f"{k.name} (no direction)"
                              for k in c.conditions)} for c in claims])
