"""kps.claims: Student-t quantiles, paired intervals and the verdicts of the claims page."""

import pytest

from kps import claims
from kps.configs import make_config


def record(method, seed, final, preset="cifar10_lt_small", head=10.0, tail=60.0, epochs=None, **overrides):
    config = make_config("cifar10-jpeg", method, seed=seed, preset=preset, **overrides)
    if epochs is not None:
        config = make_config("cifar10-jpeg", method, seed=seed, preset=preset, epochs=epochs, **overrides)
    return {"config": config.to_dict(), "top1_error": final, "epochs": config.epochs,
            "preset_epochs": config.preset_epochs, "dataset_label": "CIFAR-10 (JPEG copy)",
            "group_errors": {"head": head, "mid": 30.0, "tail": tail}}


def test_t_quantiles_match_the_tables():
    # two-sided 95 %: t_{0.975, df} (e.g. NIST/SEMATECH e-Handbook, Table 1.3.6.7.2)
    expected = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 9: 2.262, 30: 2.042}
    for df, t in expected.items():
        assert claims.t_quantile(0.975, df) == pytest.approx(t, abs=5e-4)
    assert claims.t_quantile(0.025, 2) == pytest.approx(-4.303, abs=5e-4)
    with pytest.raises(ValueError, match="need 0 < p < 1"):
        claims.t_quantile(1.0, 3)


def test_interval_by_hand():
    ci = claims.interval([1.0, 2.0, 3.0])  # mean 2, s = 1, half = 4.303 / sqrt(3)
    assert ci.mean == 2.0 and ci.n == 3
    assert ci.low == pytest.approx(2.0 - 4.3027 / 3 ** 0.5, abs=1e-3) and ci.high == pytest.approx(4.4842, abs=1e-3)
    assert str(ci) == "+2.00 [-0.48, +4.48] (n=3)"
    assert str(claims.interval([0.5])) == "+0.50 (n=1, no interval)"


def test_claims_table_pairs_by_seed_and_protocol():
    recs = [record("ldam_drw", s, e) for s, e in ((0, 30.0), (1, 31.0), (2, 29.0))]
    recs += [record("kps_ga", s, e, head=11.0 + s, tail=50.0) for s, e in ((0, 27.0), (1, 27.5), (2, 26.0))]
    recs += [record("kps", s, e, head=10.0, tail=58.0 + s) for s, e in ((0, 29.0), (1, 25.0))]
    recs += [record("kps_ga", 0, 35.0, ga_variant="official")]           # the authors' GA: another row
    recs += [record("ce", 0, 40.0, epochs=3)]                            # a short run: left out
    recs += [record("ldam_drw", 0, 20.0, preset="cifar10_lt")]           # the paper's protocol, no partner
    table = claims.claims_table(recs, "CPU-scale").set_index("claim")
    a = table.loc["KPS-GA has a lower error than LDAM-DRW"]
    assert (a["data"], a["ρ"]) == ("CIFAR-10 (JPEG copy)", "100")
    assert a["a - b by seed"] == "0: +3.00, 1: +3.50, 2: +3.00"
    assert a["verdict"] == "supported"
    assert table.loc["LDAM-DRW has a lower error than CE", "verdict"] == "no paired records yet"
    none = table.loc["for KPS, GA gives a lower error than no re-balancing"]
    assert none["a - b by seed"] == "0: +2.00, 1: -2.50" and none["verdict"] == "inconclusive at n=2"
    tail = table.loc["GA lowers the tail classes' error (KPS without GA against KPS-GA)"]
    assert tail["a - b by seed"] == "0: +8.00, 1: +9.00" and tail["verdict"] == "supported"
    head = table.loc[f"GA costs the head classes little (at most {claims.HEAD_LOSS_TOLERANCE:g} points)"]
    assert head["a - b by seed"] == "0: +1.00, 1: +2.00"   # upper bound 1.5 + 6.35 > 2
    assert head["verdict"] == "inconclusive at n=2"
    row = table.loc["the authors' row scale against eq. 25's column scale (no claimed direction)"]
    assert row["a - b by seed"] == "0: -8.00" and row["verdict"] == "inconclusive: one seed, no interval"
    # the same pair on the head and the tail classes (kps_ga seed 0: head 11, tail 50; authors' GA: 10, 60)
    same = "the authors' row scale against eq. 25's column scale"
    assert table.loc[f"{same}, head classes", "a - b by seed"] == "0: +1.00"
    assert table.loc[f"{same}, tail classes", "a - b by seed"] == "0: -10.00"
    # the paper's protocol has only the lone LDAM-DRW record: nothing is paired there
    assert set(claims.claims_table(recs, "paper")["verdict"]) == {"no paired records yet"}


def test_verdicts_contradicted_and_undirected():
    c = {k.key: k for k in claims.CLAIMS}
    assert claims.verdict(c["kps_ga>ldam_drw"], claims.interval([-1.0, -1.2, -0.9])) == "contradicted"
    assert claims.verdict(c["ga_head"], claims.interval([5.0, 5.5, 6.0])) == "contradicted"
    assert claims.verdict(c["ga_head"], claims.interval([0.1, 0.2, 0.3])) == "supported"
    assert claims.verdict(c["row>column"], claims.interval([-3.0, -3.5, -2.5])) == \
        "kps_ga (eq. 25) has the lower top-1 error"
    assert claims.verdict(c["row>column"], claims.interval([3.0, 3.5, 2.5])) == \
        "kps_ga (authors' GA) has the lower top-1 error"
    assert claims.verdict(c["row>column:tail"], claims.interval([3.0, 3.5, 2.5])) == \
        "kps_ga (authors' GA) has the lower tail-class error"
