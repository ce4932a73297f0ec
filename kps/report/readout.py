"""How a trained network's error is read out, from the records: the test rule (the paper's
argmax cos theta_j against the training scores' argmax r_j cos theta_j) and the epoch
(the final one against the best evaluated one, which the authors' code reports).

Per protocol, since what the records show differs between them: a record's test-rule
change is *mostly on the tail* when the mean accuracy change of its
:data:`END_CLASSES` smallest classes is larger in size than that of its largest ones,
else *mostly on the head*.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from kps.configs import METHODS
from kps.report.records import protocol_of, seed_groups
from kps.report.validity import short_name

__all__ = ["END_CLASSES", "rule_changes", "RuleSummary", "rule_summary", "rule_table", "final_best_table"]

END_CLASSES = 3  # the largest and the smallest classes compared (Sec. 4.5's head and tail of CIFAR-10)


def rule_changes(record: Mapping[str, Any]) -> np.ndarray:
    """Per-class accuracy under argmax r cos minus under argmax cos (points), largest class first."""
    order = np.argsort(-np.asarray(record["train_counts"]), kind="stable")
    return (np.asarray(record["per_class_accuracy_rcos"]) - np.asarray(record["per_class_accuracy"]))[order]


def _ends(record: Mapping[str, Any]) -> tuple[float, float]:
    change = rule_changes(record)
    return float(change[:END_CLASSES].mean()), float(change[-END_CLASSES:].mean())


def _with_rule(records: Sequence[Mapping[str, Any]], protocol: str) -> list[Mapping[str, Any]]:
    return [r for r in records if r.get("per_class_accuracy_rcos") and protocol_of(r["config"]) == protocol]


@dataclass(frozen=True)
class RuleSummary:
    """How many of a protocol's records the test rule changes mostly on the tail, and which
    rows (with how many of their records) it changes mostly on the head."""

    protocol: str
    records: int
    tail: int
    head_rows: dict[str, tuple[int, int]]  # row -> (records mostly on the head, its records)

    def sentence(self) -> str:
        where = "the paper's protocol" if self.protocol == "paper" else f"the {self.protocol} protocol"
        if not self.records:
            return f"At {where} no record keeps the accuracy under both rules yet."
        if self.tail == self.records:
            return (f"At {where} the two rules disagree mostly on the tail classes in every record "
                    f"({self.records} of {self.records}).")
        rows = ", ".join(f"{row} ({k} of {n})" for row, (k, n) in self.head_rows.items())
        return (f"At {where} the two rules disagree mostly on the tail classes in {self.tail} of {self.records} "
                f"records, and mostly on the head classes in the others: {rows}.")


def rule_summary(records: Sequence[Mapping[str, Any]], protocol: str) -> RuleSummary:
    """:class:`RuleSummary` of ``protocol``'s records that keep both rules' accuracy."""
    held = _with_rule(records, protocol)
    head_rows: dict[str, tuple[int, int]] = {}
    tail = 0
    order = list(METHODS)
    for group in sorted(seed_groups(held), key=lambda g: (order.index(g[0]["config"]["method"]),
                                                        short_name(g[0]["config"]))):
        on_head = sum(abs(h) >= abs(t) for h, t in map(_ends, group))
        tail += len(group) - on_head
        if on_head:
            head_rows[short_name(group[0]["config"])] = (on_head, len(group))
    return RuleSummary(protocol, len(held), tail, head_rows)


def rule_table(records: Sequence[Mapping[str, Any]], protocol: str) -> pd.DataFrame:
    """One row per method and setting of ``protocol`` (seeds pooled) whose records keep both
    rules: seeds n, mean error under argmax cos and argmax r cos (%), mean accuracy change
    from the first to the second of the :data:`END_CLASSES` largest and smallest classes, and
    per class, largest to smallest (points)."""
    rows = []
    for group in seed_groups(_with_rule(records, protocol)):
        ends = np.array([_ends(r) for r in group])
        change = np.mean([rule_changes(r) for r in group], axis=0)
        rows.append({"row": short_name(group[0]["config"]), "ρ": f"{group[0]['config']['imbalance']:g}",
                     "n": len(group),
                     "error, cos (%)": f"{np.mean([r['top1_error'] for r in group]):.2f}",
                     "error, r cos (%)": f"{np.mean([r['top1_error_rcos'] for r in group]):.2f}",
                     f"{END_CLASSES} largest": f"{ends[:, 0].mean():+.1f}",
                     f"{END_CLASSES} smallest": f"{ends[:, 1].mean():+.1f}",
                     "per class, largest to smallest": " ".join(f"{v:+.1f}" for v in change),
                     "_order": list(METHODS).index(group[0]["config"]["method"])})
    table = pd.DataFrame(rows)
    return table.sort_values(["_order", "row", "ρ"]).drop(columns="_order") if len(table) else table


def final_best_table(records: Sequence[Mapping[str, Any]], protocol: str) -> pd.DataFrame:
    """Per row of ``protocol`` (full-schedule records, seeds pooled), by imbalance: seeds n,
    how many epochs each run evaluated, in how many runs the best evaluated epoch is not the
    last, and the mean and largest final - best error (points)."""
    full = [r for r in records if r["epochs"] == r["preset_epochs"] and protocol_of(r["config"]) == protocol]
    rows = []
    order = list(METHODS)
    for group in seed_groups(full):
        c = group[0]["config"]
        gap = np.array([r["top1_error"] - r["best_top1_error"] for r in group])
        evals = sorted({sum("test_error" in h for h in r["history"]) for r in group})
        rows.append({"row": short_name(c), "ρ": f"{c['imbalance']:g}", "n": len(group),
                     "evaluated epochs": "/".join(map(str, evals)),
                     "best ≠ final": f"{int((gap > 0).sum())} of {len(group)}",
                     "final - best, mean": f"{gap.mean():.2f}", "final - best, largest": f"{gap.max():.2f}",
                     "_key": (-float(c["imbalance"]), order.index(c["method"]), short_name(c))})
    table = pd.DataFrame(rows)
    return table.sort_values("_key").drop(columns="_key") if len(table) else table
