"""The trainer's numbers, bit for bit: short CPU runs of every Algorithm 1 switch
reproduce the records written at the commit named in golden_records.json."""

import json

import pytest
from golden import GOLDEN, RUNS, golden_records


def test_golden_runs_reproduce_their_records_bit_for_bit():
    saved = json.loads(GOLDEN.read_text())
    assert set(saved["records"]) == set(RUNS)
    now = golden_records()
    for name, record in saved["records"].items():
        assert now[name] == record, f"golden run {name} no longer reproduces its record (written at {saved['commit']})"
    assert len({json.dumps(r["history"]) for r in now.values()}) == len(RUNS)  # no two runs train alike


@pytest.mark.parametrize("name", ["kps_ga", "ldam_drw"])
def test_golden_records_cover_the_switches(name):
    history = json.loads(GOLDEN.read_text())["records"][name]["history"]
    assert [("test_error" in h) for h in history] == [False, True, False, True]
    assert len({h["lr"] for h in history}) >= 2  # warm-up and decay both in the run
