"""kps.report.validity, .scale and .readout: a protocol's validity rules, the scale study
and the differences page's read-outs, on hand-made records and on the committed ones."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from kps import report
from kps.configs import make_config
from kps.data import long_tailed_counts, long_tailed_indices
from kps.params import kps_parameters
from kps.report import readout, scale, validity
from kps.results import load_records

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def paper():
    return report.read_paper_numbers(ROOT / "book" / "paper_numbers.csv")


@pytest.fixture(scope="module")
def committed():
    return load_records(ROOT / "results")


def record(method, final, seed=0, preset="cifar10_lt_small", head=15.0, mid=40.0, tail=60.0, best=None,
           rcos=None, evals=(4, 9), **overrides):
    """A record with made-up numbers: errors, groups, per-class accuracy (and under argmax r cos:
    ``rcos`` = the per-class changes, largest class first), the evaluated epochs."""
    config = make_config("cifar10-jpeg", method, seed=seed, preset=preset, **overrides)
    counts = long_tailed_counts(5000, 10, 100)
    acc = [90.0 - 5 * i for i in range(10)]
    rec = {"config": config.to_dict(), "top1_error": final, "best_top1_error": final if best is None else best,
           "epochs": config.epochs, "preset_epochs": config.preset_epochs, "num_classes": 10,
           "dataset_label": "CIFAR-10 (JPEG copy)", "train_counts": counts, "per_class_accuracy": acc,
           "group_errors": {"head": head, "mid": mid, "tail": tail},
           "history": [{"epoch": e, "loss": 1.0, **({"test_error": final} if e in evals else {})}
                       for e in range(config.epochs)]}
    if rcos is not None:
        rec["per_class_accuracy_rcos"] = [a + d for a, d in zip(acc, rcos)]
        rec["top1_error_rcos"] = final - float(np.mean(rcos))
    return rec


# --------------------------------------------------------------------------- Kendall's tau

def test_kendall_tau_by_hand():
    assert validity.kendall_tau([1, 2, 3], [1, 3, 2]) == (pytest.approx(1 / 3), 2, 1)
    assert validity.kendall_tau([1, 2, 3, 4], [4, 3, 2, 1])[0] == -1.0
    # a tie counts against agreement (conservative p)
    assert validity.kendall_tau([1, 2, 3], [1, 2, 2]) == (pytest.approx(1 / 3), 2, 1)
    with pytest.raises(ValueError, match="equal-length"):
        validity.kendall_tau([1, 2], [1, 2, 3])


def test_kendall_p_is_exact():
    """Against all 6! orders counted one by one, and the textbook critical value at n = 8."""
    n = 6
    discordant = [sum(p[i] > p[j] for i in range(n) for j in range(i + 1, n)) for p in itertools.permutations(range(n))]
    for q in range(16):
        assert validity.kendall_p(n, q) == pytest.approx(sum(d <= q for d in discordant) / math.factorial(n))
    assert validity.kendall_p(4, 0) == pytest.approx(1 / 24)
    # n = 8: tau >= 0.571 (S >= 16) is the one-sided 5 % critical value; tau = 0.43 (S = 12) is not
    assert validity.tau_needed(8) == pytest.approx(16 / 28)
    assert validity.kendall_p(8, 8) == pytest.approx(0.0894, abs=5e-4)
    assert validity.tau_needed(3) is None and validity.tau_needed(4) == 1.0


def test_rank_agreement_words():
    ranked = validity.rank_agreement({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0, "e": 5.0},
                                     {"a": 10.0, "b": 20.0, "c": 30.0, "d": 40.0, "e": 50.0, "f": 1.0})
    assert ranked.methods == ("a", "b", "c", "d", "e") and ranked.tau == 1.0 and ranked.preserved
    assert str(ranked) == ("τ = 1.00 (n = 5, one-sided p = 0.008); preserved needs p ≤ 0.05, i.e. τ ≥ 0.80 at "
                           "n = 5: preserved")
    assert validity.rank_agreement({"a": 1.0, "b": 2.0, "c": 3.0}, {"a": 1.0, "b": 2.0, "c": 3.0}).preserved is None
    assert "not enough rows yet (n=1" in str(validity.rank_agreement({"a": 1.0}, {"a": 2.0}))


def test_chance_rule():
    assert validity.chance_error(10) == 90.0 and validity.CHANCE_MARGIN == 10.0
    assert validity.clearly_above_chance(80.0, 10) and not validity.clearly_above_chance(80.01, 10)


# --------------------------------------------------------------------------- a protocol's validity

BASELINES = ("ce", "focal", "cosface", "arcface", "ldam_drw", "cb_focal", "eql", "la")


def test_protocol_validity_on_made_up_records(paper):
    assert validity.table3_baselines(paper, "cifar10-jpeg", 100.0) == list(BASELINES)
    assert validity.table3_baselines(paper, "cifar10-jpeg", 50.0) == ["ce", "focal", "cosface", "arcface",
                                                                       "ldam_drw", "cb_focal"]  # EQL, LA: '-'
    # errors twice the paper's: the same order (tau = 1); arcface at chance; a variant row never ranks
    p = {m: validity.paper_error(paper, m, "cifar10-jpeg", 100.0) for m in BASELINES}
    recs = [record(m, 2 * p[m], seed=s) for m in BASELINES if m != "arcface" for s in (0, 1)]
    recs += [record("arcface", 85.0, tail=100.0), record("kps_ga", 60.0, head=82.0),
             record("kps_ga", 10.0, ga_variant="official"),
             record("ce", 30.0, preset="cifar10_lt")]                         # the paper's protocol: apart
    check = validity.protocol_validity(recs, paper, "CPU-scale", 100.0)
    rows = check.rows.set_index("name")
    assert rows.loc["ce", "n"] == 2 and rows.loc["ce", "error (%)"] == pytest.approx(2 * 29.64)
    assert rows.loc["kps_ga, authors' GA", "paper's error (%)"] == 18.77
    assert check.untrained == ["arcface"]
    assert check.groups_at_chance("tail") == ["arcface (100.0 %)"]
    assert check.groups_at_chance("head") == ["kps_ga (82.0 %)"]
    # arcface at 85 breaks the order (the paper has it 4th of 8): tau from the pairs it inverts
    assert check.rank.n == 8 and check.rank.tau < 1.0 and check.missing == ()
    lines = "\n".join(check.lines())
    assert "1 of 10 rows did not train clearly above chance: arcface" in lines
    assert "final error at most 80 %" in lines and "**Tail classes not above chance**" in lines
    # the paper's protocol has one CE record: no rank test, the missing baselines named
    at_paper = validity.protocol_validity(recs, paper, "paper", 100.0)
    assert at_paper.rank.n == 1 and at_paper.missing == BASELINES[1:]
    assert "not enough rows yet (n=1" in at_paper.lines()[-1]
    assert validity.protocol_validity(recs, paper, "paper", 50.0).lines() == ["No full-schedule record at ρ = 50 yet."]


def test_short_names():
    assert validity.short_name(make_config("cifar10-jpeg", "ce").to_dict()) == "ce"
    assert validity.short_name(make_config("cifar10-jpeg", "kps_ga", ga_variant="official", bf16=True,
                                           eval_every=10).to_dict()) == "kps_ga, authors' GA"
    assert validity.short_name(make_config("cifar10-jpeg", "kps_ga", preset="cifar10_lt_small", ga_variant="official",
                                           lr_style="official", m_max=0.2, subset_seed=666).to_dict()) == \
        "kps_ga, authors' code"
    assert validity.short_name(make_config("cifar10-jpeg", "ldam_drw", lr=0.2, drw_beta=0.99).to_dict()) == \
        "ldam_drw, drw_beta=0.99, lr=0.2"


def test_the_committed_cpu_scale_validity(paper, committed):
    """The protocol page's figures, recomputed here from the record files."""
    check = validity.protocol_validity(committed, paper, "CPU-scale", 100.0)
    ours, rows = {}, {}
    for r in committed:
        c = r["config"]
        if c["preset"] == "cifar10_lt_small" and c["imbalance"] == 100 and r["epochs"] == r["preset_epochs"]:
            rows.setdefault(validity.short_name(c), []).append(r["top1_error"])
            if validity.short_name(c) in BASELINES:
                ours.setdefault(c["method"], []).append(r["top1_error"])
    means = {m: float(np.mean(v)) for m, v in ours.items()}
    pairs = list(itertools.combinations(sorted(means), 2))
    p = {m: validity.paper_error(paper, m, "cifar10-jpeg", 100.0) for m in means}
    s = sum(np.sign((means[a] - means[b]) * (p[a] - p[b])) for a, b in pairs)
    assert check.rank.n == len(means) and check.rank.tau == pytest.approx(s / len(pairs))
    assert sorted(check.untrained) == sorted(name for name, e in rows.items() if np.mean(e) > 80.0)
    assert len(check.rows) == len(rows)


# --------------------------------------------------------------------------- the scale study

def test_scale_rows_label_the_paper_protocol_side(paper):
    recs = [record("ce", 48.0, seed=s, head=14.0, tail=81.0) for s in (0, 1)]
    recs += [record("kps_ga", 54.0, head=14.0, tail=95.0), record("kps_ga", 30.0, preset="cifar10_lt", head=8.5,
                                                                  tail=48.7)]
    recs += [record("kps", 53.0, head=81.0, tail=26.0), record("la", 35.0, head=27.0, tail=35.0),
             record("arcface", 89.0, head=78.0, tail=100.0)]
    rows = scale.scale_rows(recs, paper).set_index("name")
    assert rows.loc["kps_ga", "paper source"] == scale.SOURCE_OURS and rows.loc["kps_ga", "paper tail"] == 48.7
    assert rows.loc["ce", "paper source"] == scale.SOURCE_PAPER and rows.loc["ce", "paper error"] == 29.64
    assert math.isnan(rows.loc["ce", "paper head"])
    assert rows.loc["ce", "ratio"] == pytest.approx(48.0 / 29.64)
    assert rows.loc["ce", "breaks"] == "tail classes at chance (81.0 %)"
    assert rows.loc["kps", "breaks"] == "head classes at chance (81.0 %)"
    assert rows.loc["arcface", "breaks"] == "at chance overall (89.0 %)" and rows.loc["la", "breaks"] == ""
    lines = scale.scale_summary(rows.reset_index()).lines()
    assert lines[0].startswith("4 of 5 rows break at the CPU-scale protocol")
    assert "- tail classes at chance: ce (81.0 %), kps_ga (95.0 %);" in lines
    assert lines[-1].endswith("linear-head rows 1.6-1.8 times (2 rows); cosine-classifier rows 1.8-3.4 times "
                              "(3 rows).")
    table = scale.scale_table(rows.reset_index())
    assert table.loc[0, ("paper's protocol (cifar10_lt)", "source")] == "the paper's"
    assert table.loc[0, ("paper's protocol (cifar10_lt)", "head")] == "—"
    kps_ga = table[table[("row", "name")] == "kps_ga"].iloc[0]
    assert kps_ga[("paper's protocol (cifar10_lt)", "source")] == "ours, n=1"


# --------------------------------------------------------------------------- the differences page

def test_rule_summary_reads_each_record():
    tail_heavy = [2.0, 1.0, 0.0, 0, 0, 0, 0, -10.0, -20.0, -30.0]   # largest +1, smallest -20: the tail
    head_heavy = [80.0, 90.0, 20.0, 0, 0, 0, 0, -5.0, -10.0, -60.0]  # largest +63.3, smallest -25: the head
    recs = [record("kps", 50.0, seed=s, rcos=head_heavy) for s in (0, 1)] + [record("kps", 50.0, seed=2, rcos=tail_heavy)]
    recs += [record("kps_ga", 30.0, preset="cifar10_lt", rcos=tail_heavy), record("ce", 40.0)]
    assert readout.rule_summary(recs, "paper").sentence() == (
        "At the paper's protocol the two rules disagree mostly on the tail classes in every record (1 of 1).")
    assert readout.rule_summary(recs, "CPU-scale").sentence() == (
        "At the CPU-scale protocol the two rules disagree mostly on the tail classes in 1 of 3 records, and "
        "mostly on the head classes in the others: kps (2 of 3).")
    table = readout.rule_table(recs, "CPU-scale").iloc[0]
    assert (table["row"], table["n"], table["3 largest"], table["3 smallest"]) == ("kps", 3, "+42.6", "-23.3")
    assert readout.rule_summary([], "paper").sentence() == \
        "At the paper's protocol no record keeps the accuracy under both rules yet."


def test_final_best_table():
    recs = [record("ce", 40.0, seed=0, best=39.5), record("ce", 41.0, seed=1), record("ce", 30.0, preset="cifar10_lt")]
    row = readout.final_best_table(recs, "CPU-scale").iloc[0]
    assert (row["row"], row["n"], row["evaluated epochs"], row["best ≠ final"]) == ("ce", 2, "2", "1 of 2")
    assert (row["final - best, mean"], row["final - best, largest"]) == ("0.25", "0.50")
    assert len(readout.final_best_table(recs, "paper")) == 1


def test_the_differences_pages_reasoning_holds_on_the_committed_files():
    """Sentences of book/differences.md that conclude from numbers, checked against them."""
    counts = long_tailed_counts(5000, 10, 100)
    p = kps_parameters(counts)
    # "that product [s_j r_j] is nearly the same for every class": within 20 %, where r_j alone spans 2x
    assert (p.s * p.r).max() / (p.s * p.r).min() < 1.2 and p.r.max() / p.r.min() > 2
    # the GA forms move the negative/positive gradient ratio in the directions the page says
    grad = json.loads((ROOT / "results" / "toy" / "gradients.json").read_text())
    ratio = report.gradient_table(grad).xs("negative / positive", axis=1, level=1)
    stage1, column, row = (ratio[report.GRADIENT_FORMS[k]].to_numpy() for k in ("eq22", "eq25_column", "authors_row"))
    assert (column[:3] < stage1[:3]).all() and (column[-3:] > stage1[-3:]).all()   # falls largest, rises smallest
    assert (row[:3] > stage1[:3]).all() and (row[-3:] < stage1[-3:]).all()         # the reverse
    # "The head class keeps all its 5000 images whatever the seed; the tail classes share only a small part"
    labels = np.repeat(np.arange(10), 5000)
    a, b = long_tailed_indices(labels, counts, seed=0), long_tailed_indices(labels, counts, seed=666)
    shared = [len(np.intersect1d(a[labels[a] == c], b[labels[b] == c])) / n for c, n in enumerate(counts)]
    assert counts[0] == 5000 and shared[0] == 1.0 and max(shared[-3:]) < 0.05


def test_error_curve_legend_sits_below_the_panels():
    """One legend for the figure, under the panels, each series in one colour in every panel."""
    import matplotlib
    matplotlib.use("Agg")
    from kps import curves

    recs = [record(m, 40.0 + k, seed=s, evals=(4, 9, 69), **o) for k, (m, o) in enumerate(
        (("ce", {}), ("kps_ga", {}), ("kps_ga", {"ga_variant": "official", "lr_style": "official", "m_max": 0.2,
                                               "subset_seed": 666}))) for s in (0, 1)]
    recs += [record("ce", 45.0, imbalance=50.0, evals=(4, 69))]
    fig = curves.error_curve_figure(recs, ("ce", "kps_ga"), "CPU-scale", (100.0, 50.0))
    fig.canvas.draw()
    [legend] = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["ce (n=2)", "kps_ga (n=2)", "kps_ga, authors' code (n=2)"]
    box = legend.get_window_extent()
    for ax in fig.axes:
        assert box.y1 <= ax.get_window_extent().y0 and ax.get_legend() is None
    ce = [line.get_color() for ax in fig.axes for line in ax.get_lines() if line.get_label().startswith("ce")]
    assert len(ce) == 2 and len(set(ce)) == 1
