"""kps.report: the rules of the result pages (paper beside ours, 'not run',
mean +- std, final vs best, dataset label, setting, Fig. 6-7 groups)."""

from __future__ import annotations

import json
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
    # precision is a speed key (kps.configs.RunConfig): not part of a setting, named as provenance
    fast = record(bf16=True, compile="default", epochs=30, ga_variant="official")["config"]
    assert report.setting_label(fast) == "short run: 30 of 200 epochs; GA: authors' per-sample row scale"
    assert report.variant_label(fast) == "GA: authors' per-sample row scale"
    assert report.variant_label(record(bf16=True, epochs=30)["config"]) == "paper setting"
    assert report.precision_label(fast) == "bf16 autocast" and report.precision_label(short) == "fp32"
    assert report.provenance_table([record(bf16=True)]).iloc[0]["device, precision"] == "cpu, bf16 autocast"
    assert report.setting_label(record(eval_every=10, eval_dense_from=160)["config"]) == \
        "eval_dense_from 160; eval_every 10"
    assert report.variant_label(record(eval_every=10, eval_dense_from=160)["config"]) == "paper setting"


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


C10, C100 = "CIFAR-10-LT, ResNet-32", "CIFAR-100-LT, ResNet-32"
OURS, SMALL = "ours: paper's protocol", "ours, reduced: CPU-scale protocol"
SMALL_HEAD = "CIFAR-10-LT, ResNet-32 at half width, 16 px"
MAIN, GA_ROW = "KPS loss (Ours) (kps_ga)", "↳ kps_ga, GA: authors' per-sample row scale"


def test_wide_table_layout(paper):
    recs = [record(seed=0, final=20.0, best=19.0)]
    w = report.wide_table(report.comparison_table(paper, recs, 3))
    f = w.frame
    assert f.shape == (12, 6)       # the paper's 4 columns; ours on CIFAR-10 only (the data of the records)
    assert f.loc[MAIN, ("the paper", C10, "ρ=100")] == "18.77" and f.loc[MAIN, ("the paper", C100, "ρ=50")] == "50.82"
    assert f.loc[MAIN, (OURS, C10, "ρ=100")] == "20.00 (n=1)"          # compact: value (n), no run label
    assert f.loc["CE loss (ce)", (OURS, C10, "ρ=100")] == "—" and f.loc["BBN [23] (bbn)", (OURS, C10, "ρ=50")] == "n/a"
    assert f.loc["LA loss [56] (la)", ("the paper", C10, "ρ=50")] == "–"
    assert not any(c[0] == OURS and c[1] == C100 for c in f.columns)
    assert w.group_starts == [("the paper", C10, "ρ=100"), (OURS, C10, "ρ=100")]
    assert "- CIFAR-100-LT: the paper's numbers only; the data is not available here" in w.notes
    assert "- —: no record yet." in w.notes and "- n/a: the method is not in this artifact." in w.notes
    assert "preset `cifar10_lt` (Table 2): ResNet-32, 32 px, 200 epochs; CIFAR-10 (JPEG copy)" in w.notes
    assert "[a]" not in w.notes and "nan" not in f.to_string()
    # no record at all: our columns for the data this artifact runs on, every cell missing
    empty = report.wide_table(report.comparison_table(paper, [], 3), ["CIFAR-10-LT"], "CIFAR-10 (JPEG copy)")
    ours = empty.frame[[c for c in empty.frame.columns if c[0] == OURS]]
    assert ours.shape == (12, 2) and set(ours.to_numpy().ravel()) == {"—", "n/a"}
    assert "CIFAR-10 (JPEG copy)" in empty.notes and "[a]" not in empty.notes
    assert report.wide_table(report.comparison_table(paper, [], 3)).frame.shape == (12, 4)
    w4 = report.wide_table(report.comparison_table(paper, [], 4), ["CIFAR-10-LT"])
    assert ("the paper", "ImageNet-LT, ResNeXt-50", "") in w4.frame.columns and w4.frame.shape == (12, 3)
    assert "ImageNet-LT and iNaturalist 2018: the paper's numbers only" in w4.notes
    w7 = report.wide_table(report.comparison_table(paper, [], 7), ["CIFAR-10-LT"])
    assert "- CIFAR-100-LT, ImageNet-LT and iNaturalist 2018: the paper's numbers only" in w7.notes


def test_wide_table_marks_run_notes_and_other_data(paper):
    recs = [record(seed=0, final=20.0, bf16=True), record(seed=1, final=22.0, bf16=True),
            record(method="ce", dataset="cifar10", final=30.0), record(method="focal", epochs=30, final=40.0)]
    w = report.wide_table(report.comparison_table(paper, recs, 3), data_label="CIFAR-10 (JPEG copy)")
    col = (OURS, C10, "ρ=100")
    # letters in reading order, one per distinct note
    assert w.frame.loc["CE loss (ce)", col] == "30.00 (n=1) [a]"          # the official CIFAR-10, not the JPEG copy
    assert w.frame.loc["Focal loss [28] (focal)", col] == "40.00 (n=1) [b]"
    assert w.frame.loc[MAIN, col] == f"21.00 ± {math.sqrt(2):.2f} (n=2)"     # precision is the provenance's
    assert "- [a] cifar10." in w.notes and "- [b] short run: 30 of 200 epochs." in w.notes and "[c]" not in w.notes
    # runs evaluated at other cadences pool; runs on other data are a group of their own, a line each
    two = [record(method="cosface", seed=0, final=30.0), record(method="cosface", seed=1, final=32.0, eval_every=10),
           record(method="cosface", dataset="cifar10", seed=0, final=28.0)]
    w = report.wide_table(report.comparison_table(paper, two, 3), data_label="CIFAR-10 (JPEG copy)")
    assert w.frame.loc["CosFace [62] (cosface)", col] == f"28.00 (n=1) [a]\n31.00 ± {math.sqrt(2):.2f} (n=2)"
    assert "- [a] cifar10." in w.notes


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
    assert list(p.columns) == list(report.provenance.PROVENANCE_COLUMNS)
    assert row["run"] == "kps_ga, ρ=100, seed 2" and row["protocol"] == "paper"
    assert row["commit"] == "0123456789" and row["wall time (min)"] == "120.0"
    assert row["data"] == "CIFAR-10 (JPEG copy)" and row["setting"] == "paper setting"
    assert row["started (UTC)"] == "2026-11-26 10:00" and row["device, precision"] == "cpu, fp32"
    assert report.provenance_table([dict(record(), device="cpu (Intel(R) Xeon(R) Processor)")]).iloc[0][
        "device, precision"] == "cpu (Intel Xeon Processor), fp32"                     # trademark signs dropped
    assert row["torch"] == "2.14.1" and row["processes"] == "one"
    small = report.provenance_table([dict(record(preset="cifar10_lt_small", bf16=True, epochs=30), git_dirty=True)],
                                    errors=True)
    row = small.iloc[0]
    assert row["protocol"] == "CPU-scale (reduced)" and row["setting"] == "short run: 30 of 70 epochs"  # protocol: its column
    assert row["commit"] == "0123456789, dirty tree" and row["device, precision"] == "cpu, bf16 autocast"
    assert (row["final error (%)"], row["best error (%)"]) == ("20.00", "19.00")
    assert report.provenance_table([dict(record(), git_dirty=None)]).iloc[0]["commit"] == "0123456789, dirty tree unknown"
    seg = {"from_epoch": 0, "git_commit": None, "device": None}
    resumed = dict(record(), epochs=200, segments=[seg, dict(seg, from_epoch=130, git_commit="abcdef0123456789",
                                                              device="NVIDIA H200")])
    assert report.segments_label(resumed) == "0-129: unknown; 130-199: abcdef0 (NVIDIA H200)"
    # a segment on the record's own device does not repeat it
    assert report.segments_label(dict(resumed, device="NVIDIA H200")) == "0-129: unknown; 130-199: abcdef0"
    # consecutive processes of one commit are one span; a thread count shared by all is said once
    three = [dict(seg, git_commit="197a0d4" + "0" * 33, threads=1), dict(seg, from_epoch=32, git_commit="98effe2" + "0" * 33,
             threads=1), dict(seg, from_epoch=36, git_commit="98effe2" + "0" * 33, threads=1)]
    assert report.segments_label(dict(record(), epochs=200, segments=three)) == "0-31: 197a0d4; 32-199: 98effe2; 1 thread"
    three[2]["threads"] = 2
    assert report.segments_label(dict(record(), epochs=200, segments=three)) == \
        "0-31: 197a0d4, 1 thread; 32-35: 98effe2, 1 thread; 36-199: 98effe2, 2 threads"
    assert report.segments_label(dict(record(), segments=[dict(seg, threads=1)])) == "one, 1 thread"
    assert report.segments_label(dict(record(), segments=[dict(seg, threads=4)])) == "one, 4 threads"


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


def test_head_tail_table_pools_seeds_in_method_order():
    runs = [record(method="kps_ga", seed=0, final=40.0), record(method="kps_ga", seed=1, final=50.0),
            record(method="kps_ga", ga_variant="official", final=30.0), record(method="ce", final=60.0)]
    for r, head in zip(runs, (10.0, 20.0, 5.0, 1.0)):
        r["group_errors"] = {"head": head, "mid": 2 * head, "tail": 100.0 - head}
    t = report.head_tail_table(runs)
    assert t["method"].tolist() == ["ce", "kps_ga", "kps_ga"]  # kps.configs.METHODS order, paper setting first
    assert t["variant"].iloc[1] == "paper setting" and "authors'" in t["variant"].iloc[2]
    pooled = t.iloc[1]
    assert (pooled["n"], pooled["final error (%)"], pooled["head (%)"], pooled["mid (%)"], pooled["tail (%)"]) == \
        (2, 45.0, 15.0, 30.0, 85.0)
    assert t.iloc[2]["tail (%)"] == 95.0 and t.iloc[0]["n"] == 1
    assert set(t["data"]) == {"CIFAR-10 (JPEG copy)"} and set(t["ρ"]) == {"100"}
    assert report.head_tail_table([]).empty


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


def test_wide_table_gives_a_variant_its_own_row(paper):
    recs = [record(seed=0, final=20.0, best=19.0, bf16=True),
            record(seed=0, final=25.0, best=24.0, ga_variant="official")]
    long = report.comparison_table(paper, recs, 3)
    assert sorted(long[long["our data"] != ""]["our variant"]) == ["GA: authors' per-sample row scale", "paper setting"]
    w = report.wide_table(long).frame
    col = (OURS, C10, "ρ=100")
    assert w.shape == (13, 6) and list(w.index).index(GA_ROW) == list(w.index).index(MAIN) + 1
    assert w.loc[MAIN, col] == "20.00 (n=1)"                          # the paper's variant only (bf16: a speed key)
    assert w.loc[GA_ROW, col] == "25.00 (n=1)"
    assert w.loc[GA_ROW, ("the paper", C10, "ρ=100")] == "18.77"        # beside the paper's number
    assert w.loc[GA_ROW, (OURS, C10, "ρ=50")] == "—"
    # only the authors' variant ran: the method's own row says "—", the variant row has the number
    w = report.wide_table(report.comparison_table(paper, recs[1:], 3)).frame
    assert w.loc[MAIN, col] == "—" and w.loc[GA_ROW, col] == "25.00 (n=1)"


def test_wide_table_gives_a_reduced_protocol_its_own_columns(paper):
    small = dict(preset="cifar10_lt_small")
    recs = [record(seed=0, final=20.0),                                   # the paper's protocol
            record(seed=0, final=31.0, **small), record(seed=1, final=33.0, **small),
            record(seed=0, final=40.0, ga_variant="official", **small)]
    long = report.comparison_table(paper, recs, 3)
    ran = long[long["our data"] != ""]
    assert sorted(ran["protocol"]) == ["CPU-scale", "CPU-scale", "paper"]
    assert report.setting_label(recs[1]["config"]) == "CPU-scale protocol (cifar10_lt_small)"
    w = report.wide_table(long)
    f = w.frame
    cpu = (SMALL, SMALL_HEAD, "ρ=100")
    assert f.loc[MAIN, (OURS, C10, "ρ=100")] == "20.00 (n=1)"
    assert f.loc[MAIN, cpu] == "32.00 ± 1.41 (n=2)"
    assert f.loc[GA_ROW, cpu] == "40.00 (n=1)" and f.loc[GA_ROW, (OURS, C10, "ρ=100")] == "—"
    assert f.loc["CE loss (ce)", cpu] == "—" and f.loc["CE loss (ce)", ("the paper", C10, "ρ=100")] == "29.64"
    # one group per protocol, in order: the paper's, ours at its protocol, then the reduced one, whose
    # network is never called plain ResNet-32; CIFAR-100 has no CPU-scale preset: no such column
    groups = list(dict.fromkeys(c[0] for c in f.columns))
    assert groups == ["the paper", OURS, SMALL]
    assert {c[1] for c in f.columns if c[0] == SMALL} == {SMALL_HEAD}
    assert (SMALL, SMALL_HEAD, "ρ=50") in f.columns and not any("CIFAR-100" in c[1] for c in f.columns if c[0] == SMALL)
    assert "preset `cifar10_lt_small`: ResNet-32 at half width, 16 px, 70 epochs" in w.notes
    assert "not comparable with the paper's numbers" in w.notes
    # with only reduced records, the paper protocol's group still stands between them and the paper's
    only_small = report.wide_table(report.comparison_table(paper, recs[1:], 3)).frame
    assert list(dict.fromkeys(c[0] for c in only_small.columns)) == ["the paper", OURS, SMALL]
    assert set(only_small[[c for c in only_small.columns if c[0] == OURS]].to_numpy().ravel()) <= {"—", "n/a"}
    # no reduced-protocol record: no reduced group
    assert not any(c[0] == SMALL for c in report.wide_table(report.comparison_table(paper, recs[:1], 3)).frame.columns)


def test_detail_table_names_each_protocols_network(paper):
    small = dict(preset="cifar10_lt_small")
    recs = [record(seed=0, final=20.0, best=19.0, bf16=True), record(seed=0, final=31.0, best=30.0, **small),
            record(seed=0, final=40.0, best=38.0, ga_variant="official", **small)]
    d = report.detail_table(report.comparison_table(paper, recs, 3))
    kps = d.loc[("kps_ga", "CIFAR-10-LT", "100")]
    assert kps["protocol"].tolist() == ["paper", "CPU-scale (reduced)", "CPU-scale (reduced)"]
    assert kps["network"].tolist() == ["ResNet-32, 32 px, 200 epochs"] + ["ResNet-32 at half width, 16 px, 70 epochs"] * 2
    assert kps["paper"].tolist() == ["18.77", "", ""]                 # a reduced row never beside the paper's number
    assert kps["ours, final epoch"].tolist() == ["20.00 (n=1)", "31.00 (n=1)", "40.00 (n=1)"]
    assert kps["ours, best epoch"].tolist() == ["19.00 (n=1)", "30.00 (n=1)", "38.00 (n=1)"]
    assert kps["setting"].tolist() == ["paper setting", "paper setting", "GA: authors' per-sample row scale"]
    ce = d.loc[("ce", "CIFAR-10-LT", "50")]
    assert ce["protocol"].tolist() == ["paper", "CPU-scale (reduced)"]
    assert ce["ours, final epoch"].tolist() == ["—", "—"] and ce["paper"].tolist() == ["24.78", ""]
    assert "CIFAR-100-LT" not in d.index.get_level_values("dataset") and "bbn" not in d.index.get_level_values("method")
    assert report.detail_table(report.comparison_table(paper, [], 7), ["CIFAR-10-LT"]).empty   # MiSLAS: n/a only


# --- the committed GPU records and bench results -------------------------------------------------------

RESULTS = ROOT / "results"
BENCH = ROOT / "bench" / "results"
NOTES = ROOT / "book" / "provenance_notes.yml"


def load_json(path):
    import json
    return json.loads(Path(path).read_text())


@pytest.fixture(scope="module")
def gpu_records():
    from kps.results import load_records
    recs = [r for r in load_records(RESULTS) if r["config"]["dataset"] == "cifar10-jpeg"
            and r["config"]["method"] == "kps_ga" and r["epochs"] == 200]
    if len(recs) < 2:
        pytest.fail("the two committed KPS-GA records (paper and official GA) are missing from results/")
    return recs


def test_table3_shows_both_committed_ga_variants_apart(paper, gpu_records):
    by_variant = {r["config"]["ga_variant"]: r for r in gpu_records}
    w = report.wide_table(report.comparison_table(paper, gpu_records, 3))
    col = (OURS, C10, "ρ=100")
    paper_cell, official_cell = w.frame.loc[MAIN, col], w.frame.loc[GA_ROW, col]
    assert paper_cell == f"{by_variant['paper']['top1_error']:.2f} (n=1)"
    assert official_cell == f"{by_variant['official']['top1_error']:.2f} (n=1)"
    assert "[a]" not in w.notes and "bf16" not in w.notes          # precision: the provenance's, not a note
    assert w.frame.loc[MAIN, ("the paper", C10, "ρ=100")] == w.frame.loc[GA_ROW, ("the paper", C10, "ρ=100")] == "18.77"
    ours_cols = [c for c in w.frame.columns if c[0] == OURS]
    filled = [(m, c) for m in w.frame.index for c in ours_cols if "(n=" in w.frame.loc[m, c]]
    assert sorted(filled) == sorted([(MAIN, col), (GA_ROW, col)])             # everything else: — or n/a
    long = report.comparison_table(paper, gpu_records, 3)
    best = long[long["our variant"] == "GA: authors' per-sample row scale"]["ours best"].iloc[0]
    assert best == f"{by_variant['official']['best_top1_error']:.2f} (n=1)"
    # Table 5 and 6 show KPS-GA too, the same way
    for t in (5, 6):
        wt = report.wide_table(report.comparison_table(paper, gpu_records, t)).frame
        assert sum(i.endswith("GA: authors' per-sample row scale") for i in wt.index) == 1


def test_provenance_notes_match_the_files_and_git():
    import subprocess

    notes = report.read_provenance_notes(NOTES)
    assert [n.number for n in notes] == list(range(1, len(notes) + 1)) and notes
    for note in notes:
        if note.wall_times is not None:
            check_wall_note(note, {f: load_json(ROOT / f) for f in note.files})
            continue
        for file in note.files:
            data = load_json(ROOT / file)
            assert (data["git_commit"], data["git_dirty"]) == (note.recorded_commit, note.recorded_dirty), file
        assert note.recorded_commit[:7] in note.text and note.ran_commit[:7] in note.text
        for path in note.changed_paths:
            assert path in note.text
        if not (ROOT / ".git").exists():
            pytest.skip("no git history to check the notes' commits against")
        diff = subprocess.run(["git", "diff", "--name-only", note.recorded_commit, note.ran_commit], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout.split()
        assert sorted(diff) == sorted(note.changed_paths), note.key
        if "nothing under kps/ differs" in note.text:
            assert not any(p.startswith("kps/") for p in diff)


def check_wall_note(note, records):
    """A wall-time note names each file's wall time as the file has it (so that it marks
    the file), exactly its stopped epochs, and the minutes they hold beyond a median epoch."""
    import re

    for file, rec in records.items():
        assert report.wall_note_for(file, rec["wall_time_s"], [note]) is note, file
        slow, extra = report.stopped_epochs(rec)
        assert list(note.epochs[file]) == slow, file
        assert re.search(rf"(?<!\d){extra / 60:.0f} min\b", note.text), (file, extra / 60)


def test_a_wall_time_note_marks_its_records_wall_time_and_is_checked(tmp_path, gpu_records):
    import copy
    import yaml

    rec = copy.deepcopy(gpu_records[0])
    for h in rec["history"]:                                           # a CPU run's epochs: 40 s, 50 with a test pass
        h["time_s"] = 50.0 if "test_error" in h and h["epoch"] % 10 == 9 else 40.0
    rec["history"][3]["time_s"] += 600.0                               # a 10-min stop inside epoch 3
    rec["wall_time_s"] = round(sum(h["time_s"] for h in rec["history"]), 3)
    file = report.record_file(rec)
    slow, extra = report.stopped_epochs(rec)
    assert slow == [3] and extra == pytest.approx(600.0)
    path = tmp_path / "notes.yml"
    note = {"key": "stopped", "files": [file], "recorded_wall_time_s": {file: rec["wall_time_s"]},
            "epochs": {file: [3]}, "text": f"Epoch 3 holds a stop of {extra / 60:.0f} min."}
    path.write_text(yaml.safe_dump({"notes": [note]}))
    (parsed,) = report.read_provenance_notes(path)
    check_wall_note(parsed, {file: rec})
    row = report.provenance_table([rec], [parsed]).iloc[0]
    assert row["wall time (min)"] == f"{rec['wall_time_s'] / 60:.1f} [1]" and not row["commit"].endswith("[1]")
    assert report.provenance_footnotes([parsed], [rec]) == f"[1] Epoch 3 holds a stop of {extra / 60:.0f} min."
    # the same file rerun (another wall time) gets no note; a commit note does not mark the wall time
    other = dict(rec, wall_time_s=rec["wall_time_s"] + 1.0)
    assert report.provenance_table([other], [parsed]).iloc[0]["wall time (min)"] == f"{other['wall_time_s'] / 60:.1f}"
    assert report.provenance_footnotes([parsed], [other]) == ""
    assert report.wall_note_for(file, rec["wall_time_s"], report.read_provenance_notes(NOTES)) is None
    # a wall-time note without its epochs, or with a file's wall time missing: one line naming the note
    for bad, words in ((dict(note, epochs={}), "epochs must give each of its files"),
                       (dict(note, epochs={file: [-1]}), "epochs must give each of its files"),
                       (dict(note, recorded_wall_time_s={}), "recorded_wall_time_s must give each"),
                       (dict(note, recorded_wall_time_s={file: True}), "recorded_wall_time_s must give each"),
                       (dict(note, ran_commit="0" * 40), "it mixes a commit note's keys and a wall-time note's")):
        path.write_text(yaml.safe_dump({"notes": [bad]}))
        with pytest.raises(ValueError, match=f"note 'stopped': {words}"):
            report.read_provenance_notes(path)
    path.write_text(yaml.safe_dump({"notes": [{"key": "half", "files": [file], "text": "t"}]}))
    with pytest.raises(ValueError, match="lacks .*recorded_commit.* or give recorded_wall_time_s and epochs"):
        report.read_provenance_notes(path)


def test_provenance_table_marks_the_committed_gpu_records(gpu_records):
    notes = report.read_provenance_notes(NOTES)
    t = report.provenance_table(gpu_records, notes)
    commit = gpu_records[0]["git_commit"][:10]
    assert set(t["commit"]) == {f"{commit}, dirty tree [1]"} and set(t["device, precision"]) == {"NVIDIA H200, bf16 autocast"}
    assert list(t["wall time (min)"]) == [f"{r['wall_time_s'] / 60:.1f}" for r in gpu_records]
    assert list(t["run"]) == ["kps_ga, ρ=100, seed 0"] * 2 and set(t["torch"]) == {r["torch_version"] for r in gpu_records}
    text = report.provenance_footnotes(notes, gpu_records)
    assert text.startswith("[1] ") and "stale .git" in text and "cf36c4a" in text
    # a record with another commit (e.g. a later rerun at the same path) gets no note
    other = dict(gpu_records[0], git_commit="f" * 40, git_dirty=False)
    assert report.provenance_table([other], notes)["commit"].iloc[0] == "f" * 10
    assert report.provenance_footnotes(notes, [other]) == ""


def test_ga_variant_comparison_reads_the_records(gpu_records):
    by_variant = {r["config"]["ga_variant"]: r for r in gpu_records}
    t = report.ga_variant_comparison(gpu_records)
    assert len(t) == 1
    row = t.iloc[0]
    assert row["paper: final"] == by_variant["paper"]["top1_error"]
    assert row["official: best"] == by_variant["official"]["best_top1_error"]
    assert row["paper: seeds"] == row["official: seeds"] == "0"          # one seed each: evidence of one run
    diff = by_variant["official"]["top1_error"] - by_variant["paper"]["top1_error"]
    assert row["official - paper, final (points)"] == pytest.approx(diff)
    assert row["setting apart from GA"] == report.setting_label(by_variant["paper"]["config"])
    assert row["data"] == "CIFAR-10 (JPEG copy)"
    html = report.ga_variant_view(gpu_records).to_html()                 # the page's view: errors in %
    assert f"{by_variant['paper']['top1_error']:.2f} %" in html and f"{by_variant['official']['top1_error']:.2f} %" in html
    assert f"{diff:+.2f}" in html
    empty = report.ga_variant_comparison([by_variant["paper"]])
    assert empty.empty and tuple(empty.columns) == report.tables.GA_VARIANT_COLUMNS
    report.ga_variant_view([by_variant["paper"]]).to_html()              # renders without a pair


def test_ga_variant_per_class_head_to_tail(gpu_records):
    """The committed pair, per class from the largest class to the smallest: the
    records' own accuracies (the JPEG copy's classes are in size order already)."""
    by_variant = {r["config"]["ga_variant"]: r for r in gpu_records}
    t = report.ga_variant_per_class(gpu_records)
    assert t.loc["class size"].tolist() == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert t.loc["paper GA (eq. 25, column s_j)"].tolist() == by_variant["paper"]["per_class_accuracy"]
    assert t.loc["authors' GA (row s_y)"].tolist() == by_variant["official"]["per_class_accuracy"]
    assert t.loc["authors' - paper (points)", t.columns[-1]] == pytest.approx(
        by_variant["official"]["per_class_accuracy"][-1] - by_variant["paper"]["per_class_accuracy"][-1])
    assert t.attrs["pair"] == "CIFAR-10 (JPEG copy), ρ = 100, 200 epochs; seeds 0 (paper GA) and 0 (authors' GA)"
    # a short pair of the same protocol with more seeds is passed over for the full-schedule one
    short = [dict(r, epochs=2, config=dict(r["config"], epochs=2, seed=s)) for r in gpu_records for s in (5, 6)]
    assert report.ga_variant_per_class(short + list(gpu_records)).attrs["pair"] == t.attrs["pair"]
    assert report.ga_variant_per_class(short).attrs["pair"].startswith("CIFAR-10 (JPEG copy), ρ = 100, 2 epochs; seeds 5, 6")
    assert report.ga_variant_per_class([by_variant["paper"]]) is None
    shuffled = dict(by_variant["paper"], train_counts=by_variant["paper"]["train_counts"][::-1],
                    class_names=by_variant["paper"]["class_names"][::-1])
    flipped = report.ga_variant_per_class([shuffled, dict(by_variant["official"], train_counts=shuffled["train_counts"],
                                                          class_names=shuffled["class_names"])])
    assert flipped.loc["class size"].tolist()[0] == 5000
    assert flipped.loc["paper GA (eq. 25, column s_j)"].tolist() == by_variant["paper"]["per_class_accuracy"][::-1]


def test_ga_variant_comparison_several_seeds():
    recs = [record(seed=s, final=f, best=f - 1) for s, f in ((0, 30.0), (1, 32.0))]
    recs += [record(seed=s, final=f, best=f - 1, ga_variant="official") for s, f in ((0, 25.0), (1, 27.0))]
    recs.append(record(method="kps_drw", seed=0))          # one variant only: no pair
    t = report.ga_variant_comparison(recs)
    assert len(t) == 1 and t.iloc[0]["paper: final"] == 31.0 and t.iloc[0]["official - paper, final (points)"] == -5.0
    assert t.iloc[0]["paper: seeds"] == t.iloc[0]["official: seeds"] == "0, 1"
    assert t.iloc[0]["official: best"] == 25.0


@pytest.fixture(scope="module")
def benches():
    files = report.bench_files(BENCH, "cuda")
    assert [p.name for p in files] == ["nvidia-h200-2026-11-26-job1.json", "nvidia-h200-2026-11-26-job2.json"]
    cpu = report.bench_files(BENCH, "cpu")
    assert [p.name for p in cpu] == ["cpu-amd-epyc-2026-12-02-2.json", "cpu-amd-epyc-2026-12-02.json",
                                     "cpu-intel-r-xeon-r-processor-2026-12-01.json"]
    assert set(report.bench_files(BENCH)) == set(files) | set(cpu)
    return {p.stem: report.read_bench(p) for p in files}


def test_contender_table_reads_the_bench_json(benches):
    raw = load_json(BENCH / "nvidia-h200-2026-11-26-job2.json")
    t = report.contender_table(benches["nvidia-h200-2026-11-26-job2"])
    assert list(t.index) == ["reference", "fast_default", "fast_none", "fast_reduce-overhead"]
    ref = raw["trainers"]["reference"]["train_images_per_s"]
    assert t.loc["reference", "train images/s"] == ref and t.loc["reference", "× reference (images/s)"] == 1.0
    ro = raw["trainers"]["fast_reduce-overhead"]
    assert t.loc["fast_reduce-overhead", "× reference (images/s)"] == pytest.approx(ro["train_images_per_s"] / ref)
    for contender in t.index[1:]:   # the ratio computed here agrees with the one the bench wrote
        assert t.loc[contender, "× reference (images/s)"] == pytest.approx(
            raw["ratios"][f"{contender}_vs_reference"]["train_images_per_s"])
    assert t.loc["fast_reduce-overhead", "what"] == "kps trainer, bf16 autocast, torch.compile reduce-overhead"
    assert t.loc["reference", "what"].startswith("reference-style (DataLoader")
    assert t.loc["fast_default", "s per evaluation pass"] == raw["trainers"]["fast_default"]["eval_s_per_epoch"]
    assert t.loc["fast_default", "compile s"] == raw["trainers"]["fast_default"]["compile_overhead_s"]
    # the file predates presets in bench files: the paper protocol's, projected at the paper grid's cadence,
    # every 10 epochs and every epoch from 160: 16 + 40 = 56 evaluations in 200 epochs
    assert sum(report.speed.grid_config("cifar10_lt").evaluates(e) for e in range(200)) == 56
    minutes = (200 * ro["train_s_per_epoch"] + 56 * ro["eval_s_per_epoch"] + ro["compile_overhead_s"]) / 60
    assert t.loc["fast_reduce-overhead", "projected run, the grid's cadence (min)"] == pytest.approx(minutes)
    t1 = report.contender_table(benches["nvidia-h200-2026-11-26-job1"])
    assert "fast_reduce-overhead" not in t1.index and len(t1) == 3      # job 1 never measured it


def cpu_paper_doc(bf16=True):
    """A CPU bench of the paper protocol as bench.py writes one (its keys), with made-up times."""
    doc = load_json(BENCH / "cpu-intel-r-xeon-r-processor-2026-12-01.json")
    doc["config"].update(preset="cifar10_lt", protocol="paper", width=16, image_size=32)
    base = doc["trainers"]["fast_none"]
    entries = {"reference": (200.0, 40.0, 2.0, "fp32", "none"), "fp32": (160.0, 36.0, 1.0, "fp32", "none"),
               "bf16": (80.0, 18.0, 0.5, "bf16 autocast", "none"),
               "bf16+default": (70.0, 15.0, 95.0, "bf16 autocast", "default")}
    doc["trainers"] = {}
    for name, (train_s, eval_s, compile_s, precision, mode) in entries.items():
        if name.startswith("bf16") and not bf16:
            continue
        doc["trainers"][name] = dict(base, train_s_per_epoch=train_s, eval_s_per_epoch=eval_s,
                                     epoch_s=train_s + eval_s, compile_overhead_s=compile_s,
                                     train_images_per_s=12406 / train_s, precision=precision, compile=mode)
    if not bf16:
        doc["skipped"] = {"bf16": "bf16 needs a CPU with bf16 units (amx_bf16 or avx512_bf16); cpu (x) has none",
                          "bf16+default": "bf16 needs a CPU with bf16 units"}
    return doc


def test_contender_table_of_a_cpu_bench_of_the_paper_protocol():
    """fp32, bf16 and bf16+compile against the reference, each projected at the paper grid's
    cadence: 200 training passes, 56 evaluation passes and the compile time, in minutes."""
    t = report.contender_table(cpu_paper_doc())
    assert list(t.index) == ["reference", "fp32", "bf16", "bf16+default"]
    col = "projected run, the grid's cadence (min)"
    assert t.loc["bf16+default", col] == pytest.approx((200 * 70.0 + 56 * 15.0 + 95.0) / 60)
    assert t.loc["fp32", col] == pytest.approx((200 * 160.0 + 56 * 36.0 + 1.0) / 60)
    assert t.loc["bf16", "× reference (images/s)"] == pytest.approx(200.0 / 80.0)
    assert t.loc["bf16+default", "what"] == "kps trainer, bf16 autocast, torch.compile default"
    assert t.loc["bf16+default", "compile s"] == 95.0 and t.loc["bf16", "precision"] == "bf16 autocast"


def test_speed_page_with_and_without_a_cpu_bench_of_the_paper_protocol(tmp_path):
    for p in BENCH.glob("*.json"):
        if not p.name.startswith("cpu-amd-epyc-2026-12-02"):  # the committed paper-protocol CPU benches
            (tmp_path / p.name).write_text(p.read_text())
    without = report.speed_page(tmp_path)
    assert without.cpu_paper is None and set(without.cpu_benches) == {"CPU-scale"}
    assert list(without.gpu_benches) == ["nvidia-h200-2026-11-26-job1", "nvidia-h200-2026-11-26-job2"]
    (tmp_path / "cpu-amd-epyc-2026-12-02.json").write_text(json.dumps(cpu_paper_doc()))
    (tmp_path / "cpu-old-2026-12-02.json").write_text(json.dumps(cpu_paper_doc(bf16=False)))
    (tmp_path / "nvidia-h200-2026-12-03-job3.workers.json").write_text('{"workers": {}}')  # not a bench file
    page = report.speed_page(tmp_path)
    shown = page.cpu_paper.data
    assert list(shown.index) == [("cpu-amd-epyc-2026-12-02", n) for n in ("reference", "fp32", "bf16", "bf16+default")] \
        + [("cpu-old-2026-12-02", n) for n in ("reference", "fp32")]
    assert page.files.data.loc["cpu-old-2026-12-02", "skipped or failed"].startswith("bf16: bf16 needs a CPU")
    assert page.targets_met == without.targets_met and list(page.gpu_benches) == list(without.gpu_benches)
    assert "cpu-amd-epyc-2026-12-02" in page.cpu_paper.to_html()


def test_bench_table_footnote_only_where_it_applies(benches):
    notes = report.read_provenance_notes(NOTES)
    files = {n: f"bench/results/{n}.json" for n in benches}
    t = report.speed.bench_table(benches, files, notes)
    h2, h1 = t.loc["nvidia-h200-2026-11-26-job2"], t.loc["nvidia-h200-2026-11-26-job1"]
    assert (h2["tree"], h2["note"], h2["device"], h2["torch"], h2["date"]) == (
        "dirty tree", "[1]", "NVIDIA H200", "2.11.0+cu130", "2026-11-26")
    assert (h1["tree"], h1["note"], h1["skipped or failed"], h1["complete"]) == ("clean tree", "", "", "yes")
    assert (h2["protocol"], h2["CUDA"]) == ("paper", "13.0")
    raw = load_json(BENCH / "nvidia-h200-2026-11-26-job2.json")
    assert h2["commit"] == raw["git_commit"][:10] and h2["bf16 peak (TFLOP/s)"] == raw["peak"]["assumed_bf16_dense_tflops"]
    assert h2["training images / epoch"] == raw["config"]["train_images"]
    broken = dict(benches["nvidia-h200-2026-11-26-job2"], failed={"fast_cuda-graph": "RuntimeError: capture"},
                  complete=False)
    b = report.speed.bench_table({"x": broken}, {"x": "elsewhere.json"}, notes).loc["x"]
    assert b["skipped or failed"] == "fast_cuda-graph: RuntimeError: capture" and b["complete"].startswith("no")
    assert b["note"] == ""                                   # the note is about the committed file only


def test_read_bench_rejects_other_files(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text('{"schema": "kps-bench/0"}')
    with pytest.raises(ValueError, match="schema"):
        report.read_bench(bad)
    bad.write_text('{"schema": "kps-bench/1", "trainers": {"fast_none": {}}}')
    with pytest.raises(ValueError, match="no reference trainer"):
        report.read_bench(bad)


def test_grid_table_and_facts(benches):
    runs = load_json(BENCH / "nvidia-h200-2026-11-26-job2.runs.json")
    g = report.grid_table(runs)
    assert len(g) == 12 and list(g.index[:2]) == ["kps_ga", "kps_ga:official"]
    assert (g["status"] == "done").sum() == 2
    done = {r["run"]: r for r in runs["runs"]}
    assert g.loc["kps_ga:official", "final error (%)"] == f"{done['kps_ga:official']['top1_error']:.2f}"
    assert g.loc["kps", "epochs done"] == f"{done['kps']['epochs_done']}/200" and g.loc["kps", "final error (%)"] == ""
    assert g.loc["kps_ga", "wall s"] == done["kps_ga"]["wall_s"]
    assert g.loc["kps", "why it stopped"] == done["kps"]["reason"]
    # the grid's own time comes from runs.json; the job's log is never read
    f = report.speed.grid_facts({"job2": runs}, jobs=["job2", "job1"])
    job2 = f.loc["job2"]
    assert (job2["runs"], job2["epochs"], job2["at a time"], job2["finished"]) == (12, 200, 8, 2)
    assert job2["s until its deadline"] == pytest.approx(runs["deadline_unix"] - runs["started_unix"])
    assert job2["grid wall s"] == pytest.approx(runs["finished_unix"] - runs["started_unix"])
    assert f.loc["job1", "runs.json"] == "not committed" and math.isnan(f.loc["job1", "runs"])
    untimed = {k: v for k, v in runs.items() if k != "finished_unix"}
    assert math.isnan(report.speed.grid_facts({"j": untimed}).loc["j", "grid wall s"])
    assert not hasattr(report, "job_wall_s") and not hasattr(report.speed, "job_wall_s")


def test_speed_targets_from_the_committed_jobs(benches):
    runs = {"nvidia-h200-2026-11-26-job2": load_json(BENCH / "nvidia-h200-2026-11-26-job2.runs.json")}
    t = report.speed_targets(benches, runs)
    job2 = t[t.job == "nvidia-h200-2026-11-26-job2"].set_index("target")
    raw = load_json(BENCH / "nvidia-h200-2026-11-26-job2.json")["trainers"]
    ratio = raw["fast_reduce-overhead"]["train_images_per_s"] / raw["reference"]["train_images_per_s"]
    speed = job2.loc["train images/s ≥ 10× the reference trainer's"]
    assert speed["value"] == pytest.approx(ratio) and speed["met"] == ("yes" if ratio >= 10 else "no")
    assert speed["measured"].startswith(f"{ratio:.2f}× (fast_reduce-overhead")
    run = job2.loc["one full run ≤ 60 s"]
    assert run["value"] == raw["fast_reduce-overhead"]["projected_run_s"] and run["met"] == "no"
    done = sum(r["status"] == "done" for r in runs["nvidia-h200-2026-11-26-job2"]["runs"])
    grid = job2.loc["12 runs in one job ≤ 9 min"]
    assert grid["value"] == done and grid["met"] == "no" and grid["measured"].startswith(f"{done} of 12 runs finished")
    assert set(t.job) == set(benches) and len(t) == 5           # job 1: bench targets only (no runs.json)
    # the rule itself: a job that met everything says so; the grid's time is runs.json's start to end
    fake = {"b": {"trainers": {"reference": {"train_images_per_s": 100.0, "projected_run_s": 900.0},
                               "fast": {"train_images_per_s": 1000.0, "projected_run_s": 60.0}}}}

    def grid_ok(wall):
        return {"b": {"runs": [{"status": "done"}] * 12, "concurrency": 6, "started_unix": 0.0,
                      "deadline_unix": 600.0, "finished_unix": wall}}

    assert set(report.speed_targets(fake, grid_ok(540.0))["met"]) == {"yes"}
    assert report.speed_targets(fake, grid_ok(541.0))["met"].tolist() == ["yes", "yes", "no"]
    summary = report.speed.speed_summary(report.speed_targets(fake, grid_ok(540.0)))
    assert summary["status"].tolist() == ["met", "met", "met"]
    two = report.speed.speed_summary(report.speed_targets(fake, grid_ok(541.0))).set_index("target")
    assert (two["status"] == "met").sum() == 2 and two.loc["12 runs in one job ≤ 9 min", "status"] == "not met"


def test_speed_summary_of_the_committed_jobs(benches):
    runs = {"nvidia-h200-2026-11-26-job2": load_json(BENCH / "nvidia-h200-2026-11-26-job2.runs.json")}
    s = report.speed.speed_summary(report.speed_targets(benches, runs)).set_index("target")
    raw = {n: b["trainers"] for n, b in benches.items()}
    best = max((v["train_images_per_s"] / tr["reference"]["train_images_per_s"], n)
               for n, tr in raw.items() for k, v in tr.items() if k != "reference")
    quickest = min((v["projected_run_s"], n) for n, tr in raw.items() for k, v in tr.items() if k != "reference")
    speed, run = s.loc["train images/s ≥ 10× the reference trainer's"], s.loc["one full run ≤ 60 s"]
    assert speed["best measured"].startswith(f"{best[0]:.2f}×") and speed["job"] == best[1]
    assert run["best measured"].startswith(f"{quickest[0]:.0f} s projected") and run["job"] == quickest[1]
    assert speed["status"] == ("met" if best[0] >= 10 else "not met")
    assert run["status"] == ("met" if quickest[0] <= 60 else "not met")
    assert s.loc["12 runs in one job ≤ 9 min", "status"] == "not met"       # the grid finished 2 of 12
    assert report.speed.speed_summary(report.speed_targets({}, {}))["status"].tolist() == ["not measured"] * 3


def test_speed_chart(benches):
    fig = report.speed_chart(benches)
    bars = [p for p in fig.axes[0].patches]
    assert len(bars) == 2 * 4           # 2 jobs x 4 contenders (job 1 never measured reduce-overhead: a 0 bar)
    ref = benches["nvidia-h200-2026-11-26-job2"]["trainers"]["reference"]["train_images_per_s"]
    targets = [line.get_segments()[0][0][1] for line in fig.axes[0].collections]
    assert targets[-1] == pytest.approx(10 * ref)   # job 2's dashed line
    assert report.speed_chart({}) is None


def test_protocols_lists_the_held_ones_reduced_first():
    small, paper_run = record(preset="cifar10_lt_small"), record()
    assert report.protocols([paper_run, small, small]) == ["CPU-scale", "paper"]
    assert report.protocols([paper_run]) == ["paper"] and report.protocols([small]) == ["CPU-scale"]
    assert report.protocols([]) == []


def test_runs_overview_counts_protocols_and_times_the_grid():
    from kps.grids import cpu_grid

    def full(rec, wall, device="cpu (AMD EPYC)"):
        rec.update(epochs=rec["config"]["epochs"], preset_epochs=rec["config"]["epochs"], wall_time_s=wall,
                   device=device)
        return rec

    grid = cpu_grid()
    small = dict(preset="cifar10_lt_small", channels_last=True)
    recs = [full(record(method="ce", seed=0, **small), 600.0), full(record(method="ce", seed=1, **small), 900.0),
            full(record(method="ldam_drw", seed=0, **small), 60.0, device="NVIDIA H200"),  # a GPU's: done, untimed
            full(record(seed=0), 7200.0)]
    short = record(method="ce", seed=2, epochs=3, **small)
    short.update(epochs=3, preset_epochs=70, wall_time_s=10.0)
    o = report.runs_overview(recs + [short], grid, workers=2)
    assert o.counts.values.tolist() == [["CPU-scale", "CIFAR-10 (JPEG copy)", "100", 3],
                                        ["paper", "CIFAR-10 (JPEG copy)", "100", 1]]   # the short run: not counted
    # mean 750 s a CPU run: 42 x 750 / 2 / 3600 = 4.375 h
    assert (o.grid_runs, o.grid_done, o.timed, o.workers) == (42, 3, 2, 2)
    assert o.run_min == pytest.approx(12.5) and o.grid_hours == pytest.approx(4.375)
    none = report.runs_overview([], grid, workers=2)
    assert none.counts.empty and none.grid_done == 0 and math.isnan(none.run_min)
    assert none.timed == 0 and math.isnan(none.grid_hours)
    # the grid's own records, in the grid's order, and its runs without one (the short run's among them)
    done, missing = report.grid_records(recs + [short], grid)
    assert [(r["config"]["method"], r["config"]["seed"]) for r in done] == [("ce", 0), ("ce", 1), ("ldam_drw", 0)]
    assert len(missing) == 39
    assert (missing[0].method, missing[0].seed) == ("ce", 2) and (missing[1].method, missing[1].seed) == ("ldam_drw", 1)
    # the Results page's phrase: the CPU records' cost, saying which hold waiting time
    assert report.grid_cost_words(o) == ("one run takes 12 min on one core (mean wall time of its 2 CPU records), "
                                         "the whole grid about 4.4 h on 2 cores")
    first = report.record_file(recs[0])
    stop = report.ProvenanceNote(1, "stop", (first,), "t", wall_times={first: 600.0}, epochs={first: (3,)})
    assert ", 1 of which hold time the process spent waiting, not training, so this overstates it" in \
        report.grid_cost_words(o, [stop])
    one = report.runs_overview(recs[:1], grid, workers=2)
    assert report.grid_cost_words(one, [stop]) == (
        "one run takes 10 min on one core (wall time of its one CPU record, which holds time the process spent "
        "waiting, not training, so this overstates it: see the notes under All records, below), the whole grid "
        "about 3.5 h on 2 cores")
    assert report.grid_cost_words(none) == "no CPU record of it has landed yet"
    bench = report.CpuProjection("x.json", "cpu (AMD EPYC)", "bf16", 2.3147)
    assert report.grid_cost_words(none, [stop], bench) == (
        "no CPU record of it has landed yet; the bench `bench/results/x.json` projects about 2.3 h per run on one "
        "core of its AMD EPYC (bf16; the Speed page has its table)")


def test_cpu_run_projection_reads_the_bench_that_timed_the_most_epochs(tmp_path):
    """Of the paper protocol's CPU benches the one with more timed epochs; its bf16 row at
    the grid's cadence; the other bench alone where it is the only one; none without."""
    from kps.report.speed import grid_config, projected_minutes

    p = report.cpu_run_projection(BENCH)
    three = report.read_bench(BENCH / "cpu-amd-epyc-2026-12-02-2.json")
    assert (p.bench, p.device, p.contender) == ("cpu-amd-epyc-2026-12-02-2.json", "cpu (AMD EPYC)", "bf16")
    assert p.hours == pytest.approx(projected_minutes(three["trainers"]["bf16"], grid_config("cifar10_lt")) / 60)
    (tmp_path / "one.json").write_text((BENCH / "cpu-amd-epyc-2026-12-02.json").read_text())
    assert report.cpu_run_projection(tmp_path).bench == "one.json"
    assert report.cpu_run_projection(tmp_path / "none") is None


def test_the_committed_cpu_bench_timed_the_grids_configuration():
    """The CPU-scale protocol's bench (one core) timed what the grid runs, under the same preset."""
    bench = report.read_bench(BENCH / "cpu-intel-r-xeon-r-processor-2026-12-01.json")
    c, t = bench["config"], bench["trainers"]
    assert (c["preset"], c["protocol"], c["width"], c["image_size"], c["threads"]) == (
        "cifar10_lt_small", "CPU-scale", 8, 16, 1)
    from kps.grids import cpu_grid

    # bf16 is the CPU's own (kps.configs.fast_path): the bench's CPU has no bf16 units, so fp32
    speed_keys = ("channels_last", "fused_sgd", "compile", "width", "image_size", "preset")
    grid = cpu_grid()[0].to_dict()
    assert {k: c["fast_configs"]["none"][k] for k in speed_keys} == {k: grid[k] for k in speed_keys}
    assert c["fast_configs"]["none"]["bf16"] is False
    assert set(t) == {"reference", "fast_none"} and t["reference"]["workers"] == 0  # the same one core


def test_one_home_for_the_speed_keys_and_the_bench_keys():
    """The fast-path switches come from kps.configs (their roles), precision among them;
    only kps.report.benchfiles opens bench files; no log is parsed."""
    import ast

    folder = ROOT / "kps" / "report"
    for path in folder.glob("*.py"):
        text = path.read_text()
        assert "_SPEED_KEYS" not in text and '.log"' not in text and "import re\n" not in text, path.name
        names = {n.id for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Name)}
        if path.name != "benchfiles.py":
            assert "json" not in names, f"{path.name} reads a file that benchfiles should read"
    assert not (ROOT / "kps" / "report.py").exists()
    cfg = record(channels_last=True, fused_sgd=True, compile="default", bf16=True)["config"]
    assert report.setting_label(cfg) == "paper setting"
    assert len(report.seed_groups([record(seed=0), record(seed=1, channels_last=True),
                                   record(seed=2, bf16=True)])) == 1      # one experiment, in any precision
    assert len(report.seed_groups([record(seed=0), record(seed=1, eval_every=10)])) == 1  # evaluated otherwise


def test_table_page_and_speed_page_values(tmp_path):
    page = report.table_page(7, tmp_path)       # no records: MiSLAS is not in this artifact
    assert page.used == [] and page.footnotes == "" and set(page.long["ours final"]) == {"not in this artifact"}
    assert ">n/a<" in page.wide.to_html() and "- n/a: the method is not in this artifact." in page.wide_notes
    assert page.provenance.data == "No record fills a cell of ours in this table yet."       # a sentence, not headers
    assert page.detail.data.startswith("No cell of ours here can hold a run")
    empty = report.speed_page(tmp_path)
    assert empty.gpu_benches == {} and empty.targets_met == 0 and empty.chart is None
    assert empty.gpu is None and empty.cpu_paper is None and empty.cpu_scale is None
    assert empty.summary.data["status"].tolist() == ["not measured"] * 3 and empty.grid.data.empty


def test_a_reduced_protocol_is_never_set_beside_the_paper_protocol():
    """Detail rows of the CPU-scale protocol carry no paper number; setting_effects and the
    per-class GA pair keep protocols apart (records built from the repository's own)."""
    from kps.results import load_records

    records = load_records(ROOT / "results")
    cpu = [r for r in records if r["config"]["preset"] == "cifar10_lt_small"]
    if not cpu:
        pytest.skip("no CPU-scale records under results/")
    detail = report.detail_table(report.table_page(3).long)
    reduced = detail[detail["protocol"] == "CPU-scale (reduced)"]
    assert len(reduced) > 0 and set(reduced["paper"]) == {""}
    assert (detail[detail["protocol"] == "paper"]["paper"] != "").all()
    # the same method and cell in two protocols: two groups of one setting each, so no row
    assert report.setting_effects([record(seed=0), record(seed=0, preset="cifar10_lt_small")]).empty
    pairs = [r for r in cpu if r["config"]["method"] == "kps_ga" and r["config"]["lr_style"] == "paper"]
    if {r["config"]["ga_variant"] for r in pairs} == {"paper", "official"}:
        assert report.ga_variant_per_class(pairs) is None  # no paper-protocol pair among them
        t = report.ga_variant_per_class(pairs, protocol="CPU-scale")
        assert t.loc["class size"].tolist()[0] == 5000


def test_a_cell_pools_runs_of_other_evaluation_cadences_and_precisions_but_not_short_runs():
    """GPU records (every epoch, bf16) and the CPU grid's (every 10 and dense from 160) of
    one experiment are one cell; a short run is a cell of its own."""
    gpu = record(seed=0, eval_every=1, bf16=True)
    cpu = record(seed=1, eval_every=10, eval_dense_from=160, channels_last=True)
    short = record(seed=2, epochs=10)
    groups = report.seed_groups([gpu, cpu, short])
    assert sorted(len(g) for g in groups) == [1, 2]
    assert [r["config"]["seed"] for g in groups if len(g) == 2 for r in g] == [0, 1]


@pytest.mark.parametrize("name, timed", [("cpu-amd-epyc-2026-12-02", 1), ("cpu-amd-epyc-2026-12-02-2", 3)])
def test_the_committed_paper_protocol_cpu_bench_timed_the_paper_grids_network(name, timed):
    """The paper protocol's CPU benches (one core, one thread): the four contenders on the
    paper grid's preset, each ratio its own images/s over the reference's."""
    bench = report.read_bench(BENCH / f"{name}.json")
    assert bench["config"]["epochs_timed"] == timed
    c, t = bench["config"], bench["trainers"]
    assert (c["preset"], c["width"], c["image_size"], c["threads"]) == ("cifar10_lt", 16, 32, 1)
    assert set(t) == {"reference", "fp32", "bf16", "bf16+default"} and t["reference"]["workers"] == 0
    assert [t[k]["precision"] for k in ("fp32", "bf16")] == ["fp32", "bf16 autocast"]
    for k in ("fp32", "bf16", "bf16+default"):
        assert t[k]["train_images_per_epoch"] == t["reference"]["train_images_per_epoch"] == 12406
        assert t[k]["train_images_per_s"] == pytest.approx(12406 / t[k]["train_s_per_epoch"])
        assert bench["ratios"][f"{k}_vs_reference"]["train_images_per_s"] == pytest.approx(
            t[k]["train_images_per_s"] / t["reference"]["train_images_per_s"])


def test_the_cost_per_run_in_the_readme_and_rerun_page_is_the_bench_files():
    """The prose that states the paper-protocol grid's cost on a CPU quotes the bench file
    it names: its images/s and its projected run at the grid's cadence."""
    from kps.report.speed import grid_config, projected_minutes

    bench = report.read_bench(BENCH / "cpu-amd-epyc-2026-12-02-2.json")
    t = bench["trainers"]
    hours = projected_minutes(t["bf16"], grid_config("cifar10_lt")) / 60
    readme = " ".join((ROOT / "README.md").read_text().split())
    rerun = " ".join((ROOT / "book" / "rerun.md").read_text().split())
    for text in (readme, rerun):
        assert "cpu-amd-epyc-2026-12-02-2.json" in text
        assert f"{t['bf16']['train_images_per_s']:.0f} training images/s in bf16" in text
        assert f"{t['fp32']['train_images_per_s']:.0f} in fp32" in text
        assert f"about {hours:.1f} h" in text
    assert f"{t['reference']['train_images_per_s']:.0f} for a reference-style trainer" in readme
    assert f"`torch.compile` added nothing ({t['bf16+default']['train_images_per_s']:.0f})" in readme
    from kps.configs import fast_path                                 # the docstring that says why it is eager
    doc = " ".join(fast_path.__doc__.split())
    assert (f"trained {t['bf16+default']['train_images_per_s']:.0f} images/s against eager bf16's "
            f"{t['bf16']['train_images_per_s']:.0f} (bench/results/cpu-amd-epyc-2026-12-02-2.json" in doc)
