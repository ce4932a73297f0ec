"""The precision check's pairing and rule (kps.report.precision) on records made from a
committed record with chosen errors."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from kps.report.precision import CHECK_ROOT, moves_error, precision_check
from kps.claims import interval
from kps.results import write_record
from kps.grids import bf16_check, bf16_check_paper

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "results" / "cifar10-jpeg" / "ce" / "imb100" / "seed0.preset-cifar10_lt_small.json"


def made(config, final: float, losses=None) -> dict:
    r = copy.deepcopy(json.loads(TEMPLATE.read_text()))
    r["config"] = config.to_dict()
    r["top1_error"] = final
    r["epochs"] = config.epochs
    r["preset_epochs"] = config.preset_epochs
    if losses is not None:
        r["history"] = [{"epoch": e, "loss": v, "lr": 0.1, "time_s": 1.0} for e, v in enumerate(losses)]
        r["history"][-1]["test_error"] = final
    return r


@pytest.mark.parametrize("diffs, verdict", [([1.0, 2.0, 3.0], "no"), ([1.0, 1.1, 0.9], "yes"),
                                            ([-0.5, -0.6, -0.4], "yes"), ([0.3], "unknown (n=1)")])
def test_moves_error_when_the_interval_excludes_zero(diffs, verdict):
    assert moves_error(interval(diffs)) == verdict


def test_precision_check_pairs_each_bf16_record_with_its_fp32_twin(tmp_path):
    results = tmp_path / "results"
    wanted = bf16_check()
    reduced = [c for c in wanted if c.preset == "cifar10_lt_small"]
    assert [(c.method, c.seed) for c in reduced] == [("ce", 0), ("ce", 1), ("ce", 2),
                                                    ("kps_ga", 0), ("kps_ga", 1), ("kps_ga", 2)]
    fp32 = {"ce": [40.0, 41.0, 42.0], "kps_ga": [60.0, 62.0, 61.0]}
    bf16 = {"ce": [41.0, 42.1, 42.9], "kps_ga": [60.5]}  # kps_ga: seeds 1 and 2 not run yet
    for c in reduced:
        write_record(made(c.__class__(**{**c.to_dict(), "bf16": False}), fp32[c.method][c.seed]), results)
        if c.seed < len(bf16[c.method]):
            write_record(made(c, bf16[c.method][c.seed]), results / CHECK_ROOT / "bf16")
    short = [2.3, 2.0, 1.8]
    write_record(made(bf16_check_paper(False), 80.0, short), results / CHECK_ROOT / "fp32")
    write_record(made(bf16_check_paper(True), 80.5, [v * 1.01 for v in short]), results / CHECK_ROOT / "bf16")

    check = precision_check(results)
    assert check.pairs["bf16 - fp32"].round(6).tolist() == [1.0, 1.1, 0.9, 0.5]
    ce, ga = check.summary.to_dict("records")
    assert ce["n"] == 3 and ce["mean bf16 - fp32"] == pytest.approx(1.0)
    assert ce["95% interval"] == "[+0.75, +1.25]" and ce["bf16 moves the error"] == "yes"
    assert ce["fp32 seed std"] == pytest.approx(1.0)
    assert ga["n"] == 1 and ga["bf16 moves the error"] == "unknown (n=1)"
    assert check.losses["epoch"].tolist() == [1, 2, 3]
    assert check.losses["relative difference"].round(9).tolist() == [0.01, 0.01, 0.01]
    assert check.runs_missing == 2


def test_precision_check_with_no_records_says_all_are_missing(tmp_path):
    check = precision_check(tmp_path)
    assert check.pairs.empty and check.summary.empty and check.losses.empty
    assert check.runs_missing == len(bf16_check()) + 1
