"""The trainer's numbers, bit for bit: short CPU runs of every Algorithm 1 switch
reproduce the records written at the commit named in golden_records.json, on the
same CPU model (float results differ between CPU models: see tests/golden.py)."""

import json

import pytest
from golden import GOLDEN, RUNS, golden_records, saved_records, this_device


def test_golden_runs_reproduce_their_records_bit_for_bit():
    saved = saved_records(this_device())
    if saved is None:
        known = ", ".join(json.loads(GOLDEN.read_text())["by_device"])
        pytest.skip(f"no golden set for {this_device()} (sets for: {known}); add one at a trusted commit with "
                    "python tests/golden.py --write")
    assert set(saved["records"]) == set(RUNS)
    now = golden_records()
    for name, record in saved["records"].items():
        assert now[name] == record, f"golden run {name} no longer reproduces its record (written at {saved['commit']})"
    assert len({json.dumps(r["history"]) for r in now.values()}) == len(RUNS)  # no two runs train alike


@pytest.mark.parametrize("device", sorted(json.loads(GOLDEN.read_text())["by_device"]))
@pytest.mark.parametrize("name", ["kps_ga", "ldam_drw"])
def test_golden_records_cover_the_switches(name, device):
    history = saved_records(device)["records"][name]["history"]
    assert [("test_error" in h) for h in history] == [False, True, False, True]
    assert len({h["lr"] for h in history}) >= 2  # warm-up and decay both in the run


def test_golden_sets_differ_between_cpu_models_only_in_float_results():
    """The sets of two CPU models ran the same configurations: only numbers differ."""
    sets = [s["records"] for s in json.loads(GOLDEN.read_text())["by_device"].values()]
    assert len(sets) >= 2
    for name in RUNS:
        configs = {json.dumps(s[name]["config"], sort_keys=True) for s in sets}
        assert len(configs) == 1, name
        assert len({len(s[name]["history"]) for s in sets}) == 1
