"""kps.report: the rules of the result pages (paper beside ours, 'not run',
mean +- std, final vs best, dataset label, setting, Fig. 6-7 groups)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kps import report
from kps.configs import make_config

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "book" / "paper_numbers.csv"


def record(dataset="cifar10-jpeg", method="kps_ga", imbalance=100.0, seed=0, final=20.0, best=19.0, **overrides):
    """A record as kps.train writes it, with made-up numbers (tests only)."""
    cfg = make_config(dataset, method, imbalance=imbalance, seed=seed, **overrides).to_dict()
    return {"config": cfg, "top1_error": final, "best_top1_error": best,
            "dataset_label": "CIFAR-10 (JPEG copy)" if dataset == "cifar10-jpeg" else dataset,
            "git_commit": "0123456789abcdef", "git_dirty": False, "device": "cpu",
            "torch_version": "2.14.1", "started_at": "2026-11-26T10:00:00+00:00", "wall_time_s": 7200.0}


@pytest.fixture(scope="module")
def paper() -> pd.DataFrame:
    return report.read_paper_numbers(PAPER)


def test_paper_numbers_transcription(paper):
    assert paper.groupby("table").size().to_dict() == {3: 48, 4: 36, 5: 12, 6: 12, 7: 12}
    kps3 = paper[(paper.table == 3) & (paper.method == "kps_ga")].set_index(["dataset", "imbalance"])["top1_error"]
    assert kps3.to_dict() == {("cifar10", 100): 18.77, ("cifar10", 50): 15.41,
                              ("cifar100", 100): 54.97, ("cifar100", 50): 50.82}
    # the same KPS-GA numbers appear in Tables 3, 5 and 6
    for t in (5, 6):
        other = paper[(paper.table == t) & (paper.method == "kps_ga") & paper.dataset.str.startswith("cifar")]
        assert sorted(other.top1_error) == sorted(kps3)
    # '-' cells are NaN, not zero
    eql = paper[(paper.table == 3) & (paper.method == "eql") & (paper.imbalance == 50)]
    assert eql.top1_error.isna().all() and len(eql) == 2
    assert report.paper_label(paper.iloc[0]["note"]) == "CE loss"


def test_read_paper_numbers_rejects_bad_files(tmp_path):
    bad = tmp_path / "p.csv"
    bad.write_text("table,dataset,method\n3,cifar10,ce\n")
    with pytest.raises(ValueError, match="missing column"):
        report.read_paper_numbers(bad)
    bad.write_text(",".join(report.PAPER_COLUMNS) + "\n2,cifar10,100,resnet32,ce,20.0,x\n")
    with pytest.raises(ValueError, match="table numbers must be 3-7"):
        report.read_paper_numbers(bad)
    bad.write_text(",".join(report.PAPER_COLUMNS) + "\n3,cifar10,100,resnet32,ce,120.0,x\n")
    with pytest.raises(ValueError, match="percentage"):
        report.read_paper_numbers(bad)


def test_summarize_and_format():
    s = report.summarize([18.0, 19.0, 20.0])
    assert s == report.ErrorSummary(19.0, 1.0, 3)
    assert report.format_summary(s) == "19.00 ± 1.00 (n=3)"
    assert report.format_summary(report.summarize([18.5])) == "18.50 (n=1)"
    assert report.summarize([]) is None
    assert report.format_summary(None) == "not run"
    with pytest.raises(ValueError, match="finite"):
        report.summarize([1.0, float("nan")])


def test_setting_label():
    assert report.setting_label(record()["config"]) == "paper setting"
    assert report.setting_label(record(seed=3, channels_last=True)["config"]) == "paper setting"
    short = record(epochs=30)["config"]
    assert report.setting_label(short) == "short run: 30 of 200 epochs"
    official = record(m_max=0.2, ga_variant="official")["config"]
    assert report.setting_label(official) == "GA: authors' per-sample row scale; m_max 0.2"


def test_comparison_table_not_run_and_not_implemented(paper):
    t = report.comparison_table(paper, [], 3)
    assert len(t) == 48
    ours = t.set_index(["method", "dataset", "imbalance"])
    assert ours.loc[("kps_ga", "CIFAR-10-LT", "100"), "paper"] == "18.77"
    assert ours.loc[("kps_ga", "CIFAR-10-LT", "100"), "ours final"] == "not run"
    assert ours.loc[("bbn", "CIFAR-10-LT", "100"), "ours final"] == "not in this artifact"
    assert ours.loc[("la", "CIFAR-10-LT", "50"), "paper"] == "–"


def test_comparison_table_fills_only_from_matching_records(paper):
    recs = [record(seed=s, final=f, best=b) for s, f, b in ((0, 20.0, 19.0), (1, 22.0, 20.0))]
    recs.append(record(seed=0, final=30.0, best=29.0, epochs=30))  # a short run: its own row
    recs.append(record(seed=0, method="kps", final=25.0, best=24.0))  # Table 5 only
    recs.append(record(seed=0, imbalance=50.0, final=17.0, best=16.0))
    t = report.comparison_table(paper, recs, 3)
    kps = t[(t.method == "kps_ga") & (t.dataset == "CIFAR-10-LT") & (t.imbalance == "100")]
    assert len(kps) == 2
    full = kps[kps["our setting"] == "paper setting"].iloc[0]
    assert full["ours final"] == f"21.00 ± {math.sqrt(2):.2f} (n=2)"
    assert full["ours best"] == f"19.50 ± {math.sqrt(0.5):.2f} (n=2)"
    assert full["seeds"] == "0, 1" and full["our data"] == "CIFAR-10 (JPEG copy)"
    assert kps[kps["our setting"] != "paper setting"].iloc[0]["ours final"] == "30.00 (n=1)"
    ce = t[(t.method == "ce") & (t.dataset == "CIFAR-10-LT") & (t.imbalance == "100")].iloc[0]
    assert ce["ours final"] == "not run"  # no CE record: never filled
    # CIFAR-100 rows are not matched by CIFAR-10 records
    assert (t[t.dataset == "CIFAR-100-LT"]["ours final"].isin(["not run", "not in this artifact"])).all()
    t5 = report.comparison_table(paper, recs, 5).set_index(["method", "imbalance", "dataset"])
    assert t5.loc[("kps", "100", "CIFAR-10-LT"), "ours final"] == "25.00 (n=1)"
    with pytest.raises(ValueError, match="no paper numbers for table 9"):
        report.comparison_table(paper, recs, 9)


def test_wide_table_layout(paper):
    recs = [record(seed=0, final=20.0, best=19.0)]
    w = report.wide_table(report.comparison_table(paper, recs, 3))
    assert w.shape == (12, 8)
    col = ("CIFAR-10-LT ResNet-32 ρ=100", "ours (final epoch)")
    assert w.loc["KPS loss (Ours) (kps_ga)", ("CIFAR-10-LT ResNet-32 ρ=100", "paper")] == "18.77"
    assert w.loc["KPS loss (Ours) (kps_ga)", col] == "20.00 (n=1) [CIFAR-10 (JPEG copy); paper setting]"
    assert w.loc["CE loss (ce)", col] == "not run"
    w4 = report.wide_table(report.comparison_table(paper, [], 4))
    assert ("ImageNet-LT ResNeXt-50", "paper") in w4.columns and w4.shape == (12, 6)


def test_table_records(paper):
    recs = [record(seed=0), record(method="kps", seed=0), record(dataset="cifar10-jpeg", method="ce", imbalance=10.0)]
    assert report.table_records(paper, recs, 3) == [recs[0]]
    assert report.table_records(paper, recs, 5) == recs[:2]
    assert report.table_records(paper, recs, 7) == []


def test_setting_effects():
    recs = [record(seed=0, final=20.0), record(seed=1, final=22.0),
            record(seed=0, final=18.0, **report_authors()), record(method="ce", seed=0)]
    t = report.setting_effects(recs)
    assert sorted(t["setting"]) == ["GA: authors' per-sample row scale; lr: authors' schedule; m_max 0.2; "
                                    "subset_seed 666", "paper setting"]
    assert sorted(t["final"]) == ["18.00 (n=1)", f"21.00 ± {math.sqrt(2):.2f} (n=2)"]
    assert set(t["method"]) == {"kps_ga"}  # CE ran in one setting only
    assert report.setting_effects([record()]).empty


def report_authors():
    from kps.configs import authors_code_overrides
    return authors_code_overrides("cifar10-jpeg")


def test_provenance_table():
    p = report.provenance_table([record(seed=2)])
    row = p.iloc[0]
    assert row["commit"] == "0123456789" and row["seed"] == 2 and row["wall time (h)"] == 2.0
    assert row["data"] == "CIFAR-10 (JPEG copy)" and row["setting"] == "paper setting"


def test_table1_computed_beside_paper(tmp_path):
    t1 = report.read_paper_table1(ROOT / "book" / "paper_table1.csv")
    t = report.table1(t1, tmp_path)  # no split files under tmp_path
    c10 = t.loc["CIFAR-10-LT"]
    assert c10[("imbalance ratio", "ours")].tolist() == ["100", "50"]
    assert c10[("tail class size", "ours")].tolist() == c10[("tail class size", "paper")].tolist() == ["50", "100"]
    assert t.loc["CIFAR-100-LT", ("tail class size", "ours")].tolist() == ["5", "10"]
    assert t.loc["CIFAR-10-LT", ("training images", "ours")].tolist() == ["12406", "13996"]
    inat = t.loc["iNaturalist 2018"]
    assert inat[("# classes", "paper")] == "8142" and inat[("# classes", "ours")] == "-"
    assert inat["source of ours"].iloc[0].startswith("paper's values only")

    def fake_counts(name, root, imbalance=None):
        return [1280] + [5] * 999 if name == "imagenet_lt" else report.train_class_counts(name, root, imbalance)

    t = report.table1(t1, tmp_path, counts_fn=fake_counts)
    assert t.loc["ImageNet-LT", ("imbalance ratio", "ours")] == "256"


def test_table2_agrees_with_configs():
    t2 = report.table2(pd.read_csv(ROOT / "book" / "paper_table2.csv"))
    same = t2.xs("same", axis=1, level=1)
    assert (same == "yes").all().all(), same
    assert t2.loc[("lr warm-up", "Table 2"), ("CIFAR-10-LT", "ours")] == "Yes (5 epochs)"
    assert t2.loc[("Backbone", "Table 2"), ("ImageNet-LT", "ours")] == "ResNet-50"
    assert t2.loc[("m_max", "Sec. 4.2.3"), ("iNaturalist 2018", "ours")] == "0.3"
    drift = pd.read_csv(ROOT / "book" / "paper_table2.csv")
    drift.loc[drift.setting == "Maximum epochs", "cifar10"] = "300"
    t = report.table2(drift)
    assert t.loc[("Maximum epochs", "Table 2"), ("CIFAR-10-LT", "same")] == "NO"
    drift.loc[0, "setting"] = "Dropout"
    with pytest.raises(ValueError, match="unknown Table 2 setting"):
        report.table2(drift)


def test_group_names():
    assert report.group_names() == ["Head1", "Head2", "Head3", "Mid1", "Mid2", "Mid3", "Mid4",
                                    "Tail1", "Tail2", "Tail3"]
    with pytest.raises(ValueError, match="exactly 10"):
        report.group_names(5)


def test_per_group_error_table():
    r0, r1 = record(seed=0), record(seed=1)
    r0["per_group_errors"] = [10.0] * 5 + [50.0] * 5
    r1["per_group_errors"] = [20.0] * 5 + [50.0] * 5
    t = report.per_group_error_table([r0, r1])
    head1 = t[t.group == "Head1"].iloc[0]
    assert head1["error"] == pytest.approx(15.0) and head1["n"] == 2
    assert head1["std"] == pytest.approx(np.std([10.0, 20.0], ddof=1))
    assert t[t.group == "Tail3"].iloc[0]["std"] == pytest.approx(0.0)
    single = report.per_group_error_table([r0])
    assert single["std"].isna().all() and len(single) == 10
    r0["per_group_errors"] = [1.0] * 3
    with pytest.raises(ValueError, match="10 values"):
        report.per_group_error_table([r0])


def test_find_repo_root(tmp_path):
    assert report.find_repo_root(ROOT / "notebooks") == ROOT
    with pytest.raises(FileNotFoundError, match="repository root"):
        report.find_repo_root(tmp_path)


def fake_toy():
    """A Fig. 5 file of kps.toy's layout with made-up angles (tests only)."""
    run = {"config": {"epochs": 30}, "top1_error": 12.5, "per_class_accuracy": [90.0, 50.0, 95.0],
           "device": "cpu", "git_commit": "abcdef0123456", "git_dirty": True, "started_at": "2026-11-26T18:00:00",
           "wall_time_s": 600.0,
           "train_angles": [[300, 800, 1000], [800, 300, 1000], [1200, 1300, 200]],
           "test_angles": [[300, 950, 1000, 850], [800, 300, 1000, 950], [1200, 1300, 200, 300]]}
    return {"classes": ["cat", "dog", "automobile"], "train_labels": [0, 1, 2], "test_labels": [0, 1, 2, 2],
            "runs": {"kps": run}}


def test_toy_angles_and_table():
    toy = fake_toy()
    a = report.toy_angles(toy)
    assert len(a) == 7 and set(a["split"]) == {"train", "test"}
    row = a[(a.split == "test")].iloc[1]
    assert (row["class"], row["theta1"], row["theta2"]) == ("dog", 95.0, 30.0)
    t = report.toy_table(toy).loc["kps"]
    assert t["key points, Classes 1-2 (%)"] == 50.0          # the cat at (30, 80); the dog at (95, 30) is not
    assert t["Class 3 non-key for 1-2 (%)"] == 50.0          # one of the two automobiles is beyond 90 of both
    assert t["accuracy dog (%)"] == 50.0 and t["commit"] == "abcdef0123 (dirty)" and t["wall time (min)"] == 10.0
    toy["runs"]["kps"]["test_angles"] = [[1, 2]] * 3
    with pytest.raises(ValueError, match="angles of shape"):
        report.toy_angles(toy)


def test_gradient_table():
    grad = {"class_names": ["a", "b"], "train_counts": [30, 10],
            "signals": {k: {"positive": [3.0, 2.0], "negative": [1.0, 4.0]} for k in report.GRADIENT_FORMS}}
    t = report.gradient_table(grad)
    col = report.GRADIENT_FORMS["eq22"]
    assert t.loc["a (n=30)", (col, "positive / image")] == pytest.approx(0.1)
    assert t.loc["b (n=10)", (col, "negative / image")] == pytest.approx(4.0 / 30)
    assert t.loc["b (n=10)", (col, "negative / positive")] == pytest.approx(2.0)
