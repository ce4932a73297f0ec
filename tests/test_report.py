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
    # bf16 changes the arithmetic: named in the setting, but not a variant of its own
    fast = record(bf16=True, compile="default", epochs=30, ga_variant="official")["config"]
    assert report.setting_label(fast) == "short run: 30 of 200 epochs; bf16 autocast; GA: authors' per-sample row scale"
    assert report.variant_label(fast) == "GA: authors' per-sample row scale"
    assert report.variant_label(record(bf16=True, epochs=30)["config"]) == "paper setting"


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
    assert w.frame.loc[MAIN, col] == f"21.00 ± {math.sqrt(2):.2f} (n=2) [c]"
    assert "- [a] cifar10." in w.notes and "- [b] short run: 30 of 200 epochs." in w.notes
    assert "- [c] bf16 autocast." in w.notes
    # two groups of runs in one cell (alike but for how often they were evaluated): a line each
    two = [record(method="cosface", seed=0, final=30.0), record(method="cosface", seed=1, final=32.0, eval_every=10)]
    w = report.wide_table(report.comparison_table(paper, two, 3))
    assert w.frame.loc["CosFace [62] (cosface)", col] == "30.00 (n=1)\n32.00 (n=1) [a]"
    assert "- [a] eval_every 10." in w.notes


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
    assert row["torch"] == "2.14.1" and row["processes"] == "one"
    small = report.provenance_table([dict(record(preset="cifar10_lt_small", bf16=True), git_dirty=True)], errors=True)
    row = small.iloc[0]
    assert row["protocol"] == "CPU-scale (reduced)" and row["setting"] == "bf16 autocast"   # the protocol has its column
    assert row["commit"] == "0123456789, dirty tree" and row["device, precision"] == "cpu, bf16"
    assert (row["final error (%)"], row["best error (%)"]) == ("20.00", "19.00")
    assert report.provenance_table([dict(record(), git_dirty=None)]).iloc[0]["commit"] == "0123456789, dirty tree unknown"
    seg = {"from_epoch": 0, "git_commit": None, "device": None}
    resumed = dict(record(), epochs=200, segments=[seg, dict(seg, from_epoch=130, git_commit="abcdef0123456789",
                                                              device="NVIDIA H200")])
    assert report.segments_label(resumed) == "epochs 0-129: unknown commit; 130-199: abcdef0123 (NVIDIA H200)"
    resumed["segments"][1]["stacked_runs"] = 2
    assert report.segments_label(resumed).endswith("130-199: abcdef0123 (NVIDIA H200), 2 runs stacked as one network")
    stacked = dict(record(), segments=[dict(seg, stacked_runs=10)])
    assert report.segments_label(stacked) == "one, 10 runs stacked as one network"
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
    assert w.loc[MAIN, col] == "20.00 (n=1) [a]"                      # the paper's variant only; [a]: bf16
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
    assert kps["setting"].tolist() == ["bf16 autocast", "paper setting", "GA: authors' per-sample row scale"]
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
    assert "over the n seeds; every run: bf16 autocast;" in w.notes and "[a]" not in w.notes   # said once
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


def test_provenance_table_marks_the_committed_gpu_records(gpu_records):
    notes = report.read_provenance_notes(NOTES)
    t = report.provenance_table(gpu_records, notes)
    commit = gpu_records[0]["git_commit"][:10]
    assert set(t["commit"]) == {f"{commit}, dirty tree [1]"} and set(t["device, precision"]) == {"NVIDIA H200, bf16"}
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
    assert [p.name for p in cpu] == ["cpu-intel-r-xeon-r-processor-2026-12-01.json"]
    assert set(report.bench_files(BENCH)) == set(files) | set(cpu)
    return {p.stem: report.read_bench(p) for p in files}


def test_speed_table_reads_the_bench_json(benches):
    raw = load_json(BENCH / "nvidia-h200-2026-11-26-job2.json")
    t = report.speed_table(benches["nvidia-h200-2026-11-26-job2"])
    assert list(t.index) == ["reference", "fast_none", "fast_default", "fast_reduce-overhead"]
    ref = raw["trainers"]["reference"]["train_images_per_s"]
    assert t.loc["reference", "train images/s"] == ref and t.loc["reference", "× reference (images/s)"] == 1.0
    ro = raw["trainers"]["fast_reduce-overhead"]
    assert t.loc["fast_reduce-overhead", "× reference (images/s)"] == pytest.approx(ro["train_images_per_s"] / ref)
    for trainer in t.index[1:]:   # the ratio computed here agrees with the one the bench wrote
        assert t.loc[trainer, "× reference (images/s)"] == pytest.approx(
            raw["ratios"][f"{trainer}_vs_reference"]["train_images_per_s"])
    assert t.loc["fast_reduce-overhead", "projected 200-epoch run (s)"] == ro["projected_run_s"]
    assert t.loc["fast_reduce-overhead", "fraction of bf16 peak"] == pytest.approx(
        ro["achieved_tflops"] / raw["peak"]["assumed_bf16_dense_tflops"])
    assert t.loc["fast_default", "eval s/epoch"] == raw["trainers"]["fast_default"]["eval_s_per_epoch"]
    t1 = report.speed_table(benches["nvidia-h200-2026-11-26-job1"])
    assert "fast_reduce-overhead" not in t1.index and len(t1) == 3      # job 1 never measured it


def test_bench_table_footnote_only_where_it_applies(benches):
    notes = report.read_provenance_notes(NOTES)
    files = {n: f"bench/results/{n}.json" for n in benches}
    t = report.speed.bench_table(benches, files, notes)
    h2, h1 = t.loc["nvidia-h200-2026-11-26-job2"], t.loc["nvidia-h200-2026-11-26-job1"]
    assert (h2["tree"], h2["note"], h2["device"], h2["torch"], h2["date"]) == (
        "dirty tree", "[1]", "NVIDIA H200", "2.11.0+cu130", "2026-11-26")
    assert (h1["tree"], h1["note"], h1["failed trainers"], h1["complete"]) == ("clean tree", "", "", "yes")
    raw = load_json(BENCH / "nvidia-h200-2026-11-26-job2.json")
    assert h2["commit"] == raw["git_commit"][:10] and h2["bf16 peak (TFLOP/s)"] == raw["peak"]["assumed_bf16_dense_tflops"]
    assert h2["training images / epoch"] == raw["config"]["train_images"]
    broken = dict(benches["nvidia-h200-2026-11-26-job2"], failed={"fast_cuda-graph": "RuntimeError: capture"},
                  complete=False)
    b = report.speed.bench_table({"x": broken}, {"x": "elsewhere.json"}, notes).loc["x"]
    assert b["failed trainers"] == "fast_cuda-graph: RuntimeError: capture" and b["complete"].startswith("no")
    assert b["note"] == ""                                   # the note is about the committed file only
    assert report.trainer_order(["fast_x", "fast_cuda-graph", "reference", "fast_none"]) == [
        "reference", "fast_none", "fast_cuda-graph", "fast_x"]


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
    assert set(g["stacked runs"]) == {""}  # written before stacking: not recorded
    stacked = dict(runs, runs=[dict(r, stacked_runs=6 if r["run"] == "kps_ga" else 1) for r in runs["runs"]])
    g = report.grid_table(stacked)
    assert g.loc["kps_ga", "stacked runs"] == 6 and g.loc["kps_ga:official", "stacked runs"] == 1
    assert g.loc["kps", "stacked runs"] == ""  # not done: its record would say
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


def test_speed_chart_data(benches):
    d = report.speed_chart_data(benches)
    assert len(d) == 7
    ref = benches["nvidia-h200-2026-11-26-job2"]["trainers"]["reference"]["train_images_per_s"]
    assert set(d[d.bench == "nvidia-h200-2026-11-26-job2"]["target images/s"]) == {10 * ref}


def bench_doc(name="b", *, ref_epoch_s=20.0, alone_epoch_s=4.0, runs=4, mode="none", round_s=8.0,
              train_images=12000, failed=None):
    """A bench JSON (kps-bench/1) with made-up numbers: the reference and one fast
    trainer timed alone, and, with ``runs``, a ``together`` entry derived from the
    round time as bench/bench.py derives it (tests only)."""
    doc = {"schema": report.BENCH_SCHEMA, "device": f"GPU {name}", "date": "2026-12-01",
           "config": {"train_images": train_images},
           "trainers": {"reference": {"epoch_s": ref_epoch_s, "train_images_per_s": train_images / ref_epoch_s},
                        "fast_none": {"epoch_s": alone_epoch_s, "train_images_per_s": train_images / alone_epoch_s}}}
    if runs:
        rate = runs / round_s
        alone = doc["trainers"].get(f"fast_{mode}")
        doc["together"] = {"runs": runs, "compile": mode, "seeds": list(range(runs)), "warmup_epochs": 1,
                           "round_s": [30.0, round_s, round_s], "round_s_median": round_s, "epochs_per_s": rate,
                           "train_images_per_s": runs * train_images / round_s, "wall_s": 46.0,
                           "train_losses": [[2.0, 1.5, 1.2]] * runs,
                           "epoch_rate_vs_reference": ref_epoch_s * rate,
                           "epoch_rate_vs_alone": None if alone is None else alone["epoch_s"] * rate}
    if failed:
        doc["failed"] = failed
    return doc


def test_together_table_reads_the_aggregate_rates():
    benches = {"a": bench_doc("a"),                                   # 4 runs, a round 8 s: 0.5 epochs/s
               "alone-only": bench_doc("x", runs=0),
               "c": bench_doc("c", runs=2, mode="cuda-graph", round_s=5.0)}   # no fast_cuda-graph timed alone
    t = report.together_table(benches)
    assert list(t.index) == ["a", "c"] and tuple(t.columns) == report.TOGETHER_COLUMNS
    a = t.loc["a"]
    assert (a["device"], a["date"], a["runs side by side"], a["compile mode"]) == ("GPU a", "2026-12-01", 4, "none")
    assert a["one round (s)"] == 8.0 and a["epochs/s, all runs"] == 0.5
    assert a["training images/s, all runs (eval time included)"] == 6000.0      # 4 x 12000 images / 8 s
    assert a["× one run alone (epoch rate)"] == 2.0          # alone 4 s/epoch = 0.25 epochs/s; together 0.5
    assert a["× reference (epoch rate)"] == 10.0             # reference 20 s/epoch = 0.05 epochs/s
    c = t.loc["c"]
    assert c["epochs/s, all runs"] == 0.4 and math.isnan(c["× one run alone (epoch rate)"])
    assert c["× reference (epoch rate)"] == 8.0
    empty = report.together_table({"alone-only": bench_doc(runs=0)})
    assert empty.empty and tuple(empty.columns) == report.TOGETHER_COLUMNS


def test_together_status_measured_failed_or_not_measured():
    st = report.speed.measurement_status({"a": bench_doc("a"), "b": bench_doc("b", runs=0),
                                          "f": bench_doc("f", runs=0, failed={"together": "x"})}, "together")
    assert st["status"].to_dict() == {"a": "measured", "b": "not measured", "f": "failed"}
    assert st.loc["f", "error"] == "x" and st.loc["a", "error"] == ""
    assert report.speed.measurement_status({}, "together").empty


def test_together_failures_and_the_bench_table(benches):
    oom = "RuntimeError: CUDA out of memory"
    docs = {"ok": bench_doc("ok"), "bad": bench_doc("bad", runs=0, failed={"together": oom, "fast_default": "E"})}
    st = report.speed.measurement_status(docs, "together")
    assert st.loc["bad", "status"] == "failed" and st.loc["bad", "error"] == oom and st.loc["ok", "status"] == "measured"
    broken = dict(benches["nvidia-h200-2026-11-26-job2"], failed={"together": oom, "fast_default": "E"})
    row = report.speed.bench_table({"x": broken}, {"x": "elsewhere.json"}).loc["x"]
    assert row["failed trainers"] == "fast_default: E"       # the measurement's failure is its status, not a trainer's


def test_grid_runs_per_process(benches):
    runs = load_json(BENCH / "nvidia-h200-2026-11-26-job2.runs.json")
    assert "per_process" not in runs and "checkpoints_left_out" not in runs   # written before --per-process
    assert report.speed.grid_per_process(runs) == "1 (one run per process)"
    f = report.speed.grid_facts({"j": runs}).loc["j"]
    assert (f["runs per process"], f["compile mode"], f["checkpoints left out"]) == (
        "1 (one run per process)", "reduce-overhead", "")
    newer = dict(runs, per_process=3, checkpoints_left_out=["cifar10-jpeg/ce/imb100/seed0.pt"])
    assert report.speed.grid_per_process(newer) == "up to 3 (side by side in one process, one CUDA stream each)"
    assert report.speed.grid_per_process(dict(runs, per_process=1)) == "1 (one run per process)"
    assert report.speed.grid_facts({"j": newer}).loc["j", "checkpoints left out"] == "cifar10-jpeg/ce/imb100/seed0.pt"


def stacked_doc(name="s", *, copies=6, round_s=4.0, together=6, losses=((2.0, 1.5, 1.2), (2.0, 1.5, 1.2)),
                max_rel=1e-3, failed=None):
    """bench_doc with a ``stacked`` entry derived from the round time as bench/bench.py
    derives it (``together`` runs side by side with a round of 8 s; 0: none)."""
    doc = bench_doc(name, runs=together, mode="none", failed=failed)
    rate = copies / round_s
    side = doc.get("together")
    doc["stacked"] = {"runs": copies, "compile": "none", "seeds": [0] * copies, "warmup_epochs": 1,
                      "round_s": [20.0, round_s, round_s], "round_s_median": round_s, "epochs_per_s": rate,
                      "train_images_per_s": copies * 12000 / round_s, "wall_s": 30.0,
                      "train_losses": [list(x) for x in losses], "stacked_runs": [copies] * copies,
                      "epoch_rate_vs_reference": 20.0 * rate, "epoch_rate_vs_alone": 4.0 * rate,
                      "epoch_rate_vs_together": rate / side["epochs_per_s"] if side and side["runs"] == copies else None,
                      "train_loss_vs_alone": {"max_abs_diff": 1.2 * max_rel, "max_rel_diff": max_rel,
                                              "epochs_compared": 3} if max_rel is not None else None}
    return doc


def test_stacked_table_reads_the_aggregate_rates():
    benches = {"s": stacked_doc("s"),                          # 6 copies, a round 4 s: 1.5 epochs/s
               "old": bench_doc("old"),                        # predates --stack
               "t": stacked_doc("t", copies=4, together=2, max_rel=None)}
    t = report.stacked_table(benches)
    assert list(t.index) == ["s", "t"] and tuple(t.columns) == report.STACKED_COLUMNS
    s = t.loc["s"]
    assert (s["device"], s["runs stacked"], s["compile mode"], s["one round (s)"]) == ("GPU s", 6, "none", 4.0)
    assert s["epochs/s, all stacked runs"] == 1.5
    assert s["training images/s, all stacked runs (eval time included)"] == 18000.0   # 6 x 12000 / 4 s
    assert s["× one run alone (epoch rate)"] == 6.0             # alone 4 s/epoch: 0.25 epochs/s
    assert s["× the same runs side by side (epoch rate)"] == 2.0  # 6 runs side by side, a round 8 s: 0.75
    assert s["× reference (epoch rate)"] == 30.0                # reference 20 s/epoch: 0.05
    assert s["largest training-loss difference to the run alone (relative)"] == 1e-3
    u = t.loc["t"]  # 4 stacked, 2 side by side: not comparable; no loss comparison
    assert math.isnan(u["× the same runs side by side (epoch rate)"])
    assert math.isnan(u["largest training-loss difference to the run alone (relative)"])
    empty = report.stacked_table({"old": bench_doc("old")})
    assert empty.empty and tuple(empty.columns) == report.STACKED_COLUMNS


def test_stacked_status_measured_failed_or_not_measured(benches):
    st = report.speed.measurement_status({"s": stacked_doc("s"), "old": bench_doc("old"),
                                          "broken": bench_doc("broken", failed={"stacked": "RuntimeError: x"})},
                                         "stacked")
    assert st["status"].to_dict() == {"s": "measured", "old": "not measured", "broken": "failed"}
    assert set(report.speed.measurement_status(benches, "stacked")["status"]) == {"not measured"}  # they predate it


def test_stacked_failures_and_the_bench_table(benches):
    oom = "RuntimeError: CUDA out of memory"
    st = report.speed.measurement_status({"ok": stacked_doc("ok"), "bad": bench_doc("bad", failed={"stacked": oom})},
                                         "stacked")
    assert st.loc["bad", "error"] == oom and st.loc["ok", "status"] == "measured"
    broken = dict(benches["nvidia-h200-2026-11-26-job2"], failed={"stacked": oom, "fast_default": "E"})
    assert report.speed.bench_table({"x": broken}, {"x": "e.json"}).loc["x", "failed trainers"] == "fast_default: E"


def test_grid_per_process_says_stacked():
    runs = load_json(BENCH / "nvidia-h200-2026-11-26-job2.runs.json")
    stacked = dict(runs, per_process=12, stack=True)
    assert report.speed.grid_per_process(stacked) == ("up to 12 (runs that can share a network stacked as one, the "
                                                      "others side by side, one CUDA stream each)")
    assert report.speed.grid_facts({"j": stacked}).loc["j", "runs per process"].startswith("up to 12 (runs that can")
    assert report.speed.grid_per_process(dict(runs, per_process=6, stack=False)) == \
        "up to 6 (side by side in one process, one CUDA stream each)"


SEED_LAST = [1.0, 1.04, 1.08, 1.12, 1.16, 1.2]   # last-epoch losses of seeds 0..5: the band is [1.0, 1.2]


def loss_doc(last=None, *, seeds=SEED_LAST, mode="cuda-graph"):
    """A newer bench doc's loss fields (tests only): one warm-up and two timed
    epochs per trainer, ``last`` = {trainer: last-epoch loss}, and, with
    ``seeds``, runs of those seeds side by side ending at those losses."""
    last = last or {"reference": 1.15, "fast_none": 1.1, "fast_cuda-graph": 1.1, "fast_cuda-graph-compiled": 1.5}
    doc = bench_doc(runs=0)
    doc["config"].update(warmup_epochs=1, epochs_timed=2)
    doc["trainers"] = {name: {"train_losses": [2.0, 1.5, x]} for name, x in last.items()}
    if seeds:
        doc["together"] = {"runs": len(seeds), "compile": mode, "seeds": list(range(len(seeds))),
                           "warmup_epochs": 1, "train_losses": [[2.0 + k / 100, 1.5, x] for k, x in enumerate(seeds)]}
    return doc


def test_train_loss_table_rows_epochs_and_seed_range():
    t = report.train_loss_table(loss_doc())
    assert list(t.columns) == ["epoch 0 (warm-up)", "epoch 1 (timed)", "epoch 2 (timed)"]
    band = "min–max over 6 seeds (0–5), fast path cuda-graph"
    assert list(t.index) == ["reference", "fast_none", "fast_cuda-graph", "fast_cuda-graph-compiled", band]
    assert t.loc["fast_cuda-graph-compiled"].tolist() == [2.0, 1.5, 1.5]
    assert t.loc[band].tolist() == ["2.0000–2.0500", "1.5000–1.5000", "1.0000–1.2000"]
    short = loss_doc(seeds=None)
    short["trainers"]["fast_none"]["train_losses"] = [2.0, 1.4]        # one epoch fewer: NaN after it
    s = report.train_loss_table(short)
    assert len(s) == 4 and s.loc["fast_none", "epoch 1 (timed)"] == 1.4 and math.isnan(s.loc["fast_none", "epoch 2 (timed)"])
    assert not any(i.startswith("min–max") for i in s.index)


def test_train_loss_verdicts_against_the_seed_range():
    v = report.speed.train_loss_verdicts(loss_doc())
    assert list(v.index) == ["reference", "fast_none", "fast_cuda-graph", "fast_cuda-graph-compiled"]
    assert set(v["noise band low"]) == {1.0} and set(v["noise band high"]) == {1.2}
    assert v.loc["fast_cuda-graph", "verdict"] == "within" and v.loc["fast_cuda-graph", "last-epoch loss"] == 1.1
    assert v.loc["fast_cuda-graph-compiled", "verdict"] == "outside (above)"
    assert v.loc["fast_cuda-graph-compiled", "beyond the band"] == pytest.approx(0.3)
    assert v.loc["reference", "verdict"] == "within"
    assert v["minus fast_none's"].isna().all()                            # with a band: no differences
    b = report.speed.noise_bands({"b": loss_doc()}).loc["b"]
    assert (b["seeds"], b["k"], b["epoch"], b["band low"], b["band high"]) == (
        "6 seeds (0–5), fast path cuda-graph", 6, 2, 1.0, 1.2)
    assert b["P(one more run outside)"] == pytest.approx(2 / 7)
    assert b["fast modes' spread"] == pytest.approx(0.4)                  # the 3 fast modes: 1.1, 1.1, 1.5
    # the bounds count as within, nothing beyond them does (the range is not widened)
    edges = report.speed.train_loss_verdicts(loss_doc({"reference": 0.999, "fast_none": 1.0, "fast_default": 1.2,
                                                       "fast_cuda-graph": 1.2001}))
    assert edges.loc["fast_none", "verdict"] == edges.loc["fast_default", "verdict"] == "within"
    assert edges.loc["fast_cuda-graph", "verdict"] == "outside (above)"
    assert edges.loc["fast_cuda-graph", "beyond the band"] == pytest.approx(0.0001)
    assert edges.loc["reference", "verdict"] == "outside (below)"
    assert edges.loc["reference", "beyond the band"] == pytest.approx(0.001)
    # a trainer of the bench with no loss recorded is named, not judged
    partial = loss_doc()
    partial["trainers"]["fast_default"] = {}
    assert report.speed.train_loss_verdicts(partial).loc["fast_default", "verdict"] == "no loss recorded"


def test_train_loss_verdicts_without_seeds_give_differences_only():
    v = report.speed.train_loss_verdicts(loss_doc(seeds=None))
    assert set(v["verdict"]) == {"noise band not measured"} and v["noise band low"].isna().all()
    d = v["minus fast_none's"]
    assert d["reference"] == pytest.approx(0.05) and d["fast_cuda-graph-compiled"] == pytest.approx(0.4)
    assert d["fast_cuda-graph"] == pytest.approx(0.0) and math.isnan(d["fast_none"])
    one_seed = report.speed.train_loss_verdicts(loss_doc(seeds=[1.1]))     # one seed measures no spread
    assert set(one_seed["verdict"]) == {"noise band not measured"}
    assert math.isnan(report.speed.noise_bands({"b": loss_doc(seeds=[1.1])}).loc["b", "band low"])
    failed = loss_doc(seeds=None)
    failed["failed"] = {"together": "RuntimeError: CUDA out of memory"}
    assert set(report.speed.train_loss_verdicts(failed)["verdict"]) == {
        "noise band not measured (the runs of several seeds failed)"}
    no_base = report.speed.train_loss_verdicts(loss_doc({"reference": 1.15, "fast_default": 0.95}, seeds=None))
    assert no_base["minus fast_none's"].isna().all() and no_base.loc["fast_default", "last-epoch loss"] == 0.95
    below = report.speed.train_loss_verdicts(loss_doc({"fast_none": 1.1, "fast_default": 1.05}, seeds=None))
    assert below.loc["fast_default", "minus fast_none's"] == pytest.approx(-0.05)


def test_train_loss_of_the_committed_benches_predates_the_record(benches):
    for bench in benches.values():
        assert report.speed.train_loss_table(bench).empty
        assert set(report.speed.train_loss_verdicts(bench)["verdict"]) == {"no loss recorded"}
    assert report.speed.train_loss_tables(benches).empty


def test_protocols_lists_the_held_ones_reduced_first():
    small, paper_run = record(preset="cifar10_lt_small"), record()
    assert report.protocols([paper_run, small, small]) == ["CPU-scale", "paper"]
    assert report.protocols([paper_run]) == ["paper"] and report.protocols([small]) == ["CPU-scale"]
    assert report.protocols([]) == []


def test_runs_overview_counts_protocols_and_times_the_grid():
    from kps.runner import cpu_grid

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
    assert o.duration == ("one run takes 12.5 min on one core (mean of its 2 CPU records), so the whole grid "
                          "takes about 4.4 h on 2 cores")
    assert "not measured yet" in none.duration and "nan" not in none.duration
    # the grid's own records, in the grid's order, and its runs without one (the short run's among them)
    done, missing = report.grid_records(recs + [short], grid)
    assert [(r["config"]["method"], r["config"]["seed"]) for r in done] == [("ce", 0), ("ce", 1), ("ldam_drw", 0)]
    assert len(missing) == 39
    assert (missing[0].method, missing[0].seed) == ("ce", 2) and (missing[1].method, missing[1].seed) == ("ldam_drw", 1)


def test_the_committed_cpu_bench_timed_the_grids_configuration():
    """The CPU-scale protocol's bench (one core) timed what the grid runs, under the same preset."""
    (path,) = report.bench_files(BENCH, "cpu")
    bench = report.read_bench(path)
    c, t = bench["config"], bench["trainers"]
    assert (c["preset"], c["protocol"], c["width"], c["image_size"], c["threads"]) == (
        "cifar10_lt_small", "CPU-scale", 8, 16, 1)
    from kps.runner import cpu_grid

    speed_keys = ("channels_last", "fused_sgd", "bf16", "compile", "width", "image_size", "preset")
    grid = cpu_grid()[0].to_dict()
    assert {k: c["fast_configs"]["none"][k] for k in speed_keys} == {k: grid[k] for k in speed_keys}
    assert set(t) == {"reference", "fast_none"} and t["reference"]["workers"] == 0  # the same one core


def test_one_home_for_the_speed_keys_and_the_bench_keys():
    """The fast-path switches come from kps.configs.SPEED_KEYS (bf16 named apart, as it
    changes the arithmetic); only kps.report.benchfiles opens bench files; no log is parsed."""
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
    assert report.setting_label(cfg) == "bf16 autocast"
    assert len(report.seed_groups([record(seed=0), record(seed=1, channels_last=True),
                                   record(seed=2, bf16=True)])) == 2      # bf16 runs are summarised apart


def test_table_page_and_speed_page_values(tmp_path):
    page = report.table_page(7, tmp_path)       # no records: MiSLAS is not in this artifact
    assert page.used == [] and page.footnotes == "" and set(page.long["ours final"]) == {"not in this artifact"}
    assert ">n/a<" in page.wide.to_html() and "- n/a: the method is not in this artifact." in page.wide_notes
    assert page.provenance.data == "No record fills a cell of ours in this table yet."       # a sentence, not headers
    assert page.detail.data.startswith("No cell of ours here can hold a run")
    empty = report.speed_page(tmp_path)
    assert empty.benches == {} and empty.targets_met == 0 and empty.chart is None
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
