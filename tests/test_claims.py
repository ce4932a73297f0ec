"""kps.claims: Student-t quantiles, paired intervals, the rows claims compare and the
verdicts of the claims page, on hand-made records."""

import pytest

from kps import claims
from kps.configs import make_config


def record(method, seed, final, preset="cifar10_lt", head=10.0, tail=60.0, started="2026-12-01T00:00:00", **overrides):
    config = make_config("cifar10-jpeg", method, seed=seed, preset=preset, **overrides)
    return {"config": config.to_dict(), "top1_error": final, "epochs": config.epochs,
            "preset_epochs": config.preset_epochs, "dataset_label": "CIFAR-10 (JPEG copy)",
            "group_errors": {"head": head, "mid": 30.0, "tail": tail}, "started_at": started, "device": "cpu"}


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


def table(records, protocol="paper"):
    return claims.claims_table(records, protocol)


def rows_of(tab, key):
    """The rows of claim ``key``; their last column (the verdict, or what the scale shows) as 'verdict'."""
    text = {c.key: c.text for c in claims.CLAIMS}[key]
    return tab[tab["claim"] == text].rename(columns={claims.VERDICT: "verdict", claims.SCALE_SHOWS: "verdict"})


def test_verdicts_at_the_paper_protocol():
    # ldam_drw against kps_ga: a - b = +3.0, +3.5, +3.0 (seeds 0-2): the interval lies above 0
    recs = [record("ldam_drw", s, e) for s, e in ((0, 30.0), (1, 31.0), (2, 29.0))]
    recs += [record("kps_ga", s, e) for s, e in ((0, 27.0), (1, 27.5), (2, 26.0))]
    # ce against ldam_drw: ce lower at every seed: contradicted
    recs += [record("ce", s, e) for s, e in ((0, 25.0), (1, 25.5), (2, 24.0))]
    # kps against kps_ga at two seeds only: not enough runs for a verdict
    recs += [record("kps", s, e) for s, e in ((0, 40.0), (1, 41.0))]
    tab = table(recs)
    a = rows_of(tab, "kps_ga>ldam_drw").iloc[0]
    assert (a["data"], a["ρ"], a["measure"], a["claimed a - b"]) == ("CIFAR-10 (JPEG copy)", "100", "top-1 error", "> +0")
    assert a["a - b by seed"] == "0: +3.00, 1: +3.50, 2: +3.00" and a["verdict"] == "supported"
    assert rows_of(tab, "ldam_drw>ce").iloc[0]["verdict"] == "contradicted"
    assert rows_of(tab, "ga>none").iloc[0]["verdict"] == "not enough runs yet (n=2)"
    assert rows_of(tab, "ga>drw").iloc[0]["verdict"] == "not enough runs yet (n=0)"
    # an interval holding zero at n = 3
    recs += [record("kps_drw", s, e) for s, e in ((0, 28.0), (1, 26.0), (2, 27.0))]
    assert rows_of(table(recs), "ga>drw").iloc[0]["verdict"] == "inconclusive at n=3"
    assert claims.MIN_SEEDS == 3


def test_a_reduced_protocol_yields_no_verdict_on_the_paper():
    """The same records at the CPU-scale protocol: the differences are shown, never as
    the paper's claim supported, contradicted or inconclusive; and no verdict at the paper's."""
    recs = [record("ldam_drw", s, e, preset="cifar10_lt_small") for s, e in ((0, 30.0), (1, 31.0), (2, 29.0))]
    recs += [record("kps_ga", s, e, preset="cifar10_lt_small") for s, e in ((0, 27.0), (1, 27.5), (2, 26.0))]
    recs += [record("ce", s, e, preset="cifar10_lt_small") for s, e in ((0, 25.0), (1, 25.5), (2, 24.0))]
    recs += [record("kps", 0, 40.0, preset="cifar10_lt_small")]
    small = table(recs, "CPU-scale")
    assert small.columns[-1] == claims.SCALE_SHOWS and claims.VERDICT not in small.columns
    said = " ".join(small[claims.SCALE_SHOWS])
    for word in ("supported", "contradicted", "inconclusive", "not enough runs"):
        assert word not in said
    assert rows_of(small, "kps_ga>ldam_drw").iloc[0]["verdict"] == "kps_ga (eq. 25) has the lower top-1 error"
    assert rows_of(small, "ldam_drw>ce").iloc[0]["verdict"] == "ce has the lower top-1 error"
    assert rows_of(small, "ga>none").iloc[0]["verdict"] == "one seed, no interval"
    assert rows_of(small, "ga>drw").iloc[0]["verdict"] == "no paired records"
    assert set(table(recs, "paper")[claims.VERDICT]) == {"not enough runs yet (n=0)"}


def test_fig6_is_one_joint_claim():
    """Tail error falls (interval below zero) and head error rises by at most the tolerance."""
    tol = claims.HEAD_LOSS_TOLERANCE

    def verdict(head_rise, tail_fall):
        recs = [record("kps", s, 30.0, head=10.0, tail=60.0) for s in range(3)]
        recs += [record("kps_ga", s, 29.0, head=10.0 + h, tail=60.0 - t)
                 for s, (h, t) in enumerate(zip(head_rise, tail_fall))]
        rows = rows_of(table(recs), "ga_tail_head")
        assert list(rows["measure"]) == ["tail-class error", "head-class error"]
        assert list(rows["claimed a - b"]) == ["> +0", f"> {-tol:+g}"]
        assert rows["verdict"].nunique() == 1      # one verdict for the joint claim
        return rows.iloc[0]["verdict"]

    assert verdict([0.4, 0.5, 0.6], [8.0, 9.0, 10.0]) == "supported"                 # head +0.50 [+0.25, +0.75]
    assert verdict([tol + 3, tol + 3.5, tol + 4], [8.0, 9.0, 10.0]) == "contradicted"  # the head pays: GA swaps ends
    assert verdict([0.4, 0.5, 0.6], [-8.0, -9.0, -10.0]) == "contradicted"          # the tail gets worse
    assert verdict([0.0, 1.0, 5.0], [8.0, 9.0, 10.0]) == "inconclusive at n=3"      # head interval holds the tolerance
    assert verdict([0.4, 0.5, 0.6], [8.0, -1.0, 10.0]) == "inconclusive at n=3"     # tail interval holds zero
    # the same records at the reduced protocol: what the scale does, per condition
    recs = [record("kps", s, 30.0, preset="cifar10_lt_small", head=10.0, tail=60.0) for s in range(3)]
    recs += [record("kps_ga", s, 29.0, preset="cifar10_lt_small", head=80.0 + s, tail=20.0) for s in range(3)]
    assert rows_of(table(recs, "CPU-scale"), "ga_tail_head").iloc[0]["verdict"] == (
        "kps_ga (eq. 25) has the lower tail-class error; kps has the lower head-class error")


def test_rows_pin_every_setting_that_defines_them():
    kps_ga = claims.KPS_GA
    assert kps_ga.matches(record("kps_ga", 0, 20.0)["config"])
    for other in ({"m_max": 0.2}, {"ga_variant": "official"}, {"lr_style": "official"}, {"subset_seed": 666},
                  {"ga_switch_epoch": 100}, {"s_base": 30.0}):
        assert not kps_ga.matches(record("kps_ga", 0, 20.0, **other)["config"]), other
    ldam = claims.Row("ldam_drw")
    assert ldam.matches(record("ldam_drw", 0, 20.0)["config"])
    for other in ({"subset_seed": 666}, {"drw_epoch": 150}, {"lr": 0.05}, {"width": 8}, {"image_size": 16}):
        assert not ldam.matches(record("ldam_drw", 0, 20.0, **other)["config"]), other
    # what only says how a run was made (cadence, speed switches, seed) does not set a row apart
    assert ldam.matches(record("ldam_drw", 2, 20.0, eval_every=10, eval_dense_from=160, bf16=True,
                               channels_last=True)["config"])
    assert claims.AUTHORS_GA.matches(record("kps_ga", 0, 20.0, ga_variant="official")["config"])
    assert not claims.AUTHORS_GA.matches(record("kps_ga", 0, 20.0, ga_variant="official", m_max=0.2)["config"])
    # a variant record cannot enter a claim: the authors'-code run does not pair with ldam_drw
    recs = [record("ldam_drw", s, 30.0) for s in range(3)]
    recs += [record("kps_ga", s, 20.0, ga_variant="official", lr_style="official", m_max=0.2, subset_seed=666)
             for s in range(3)]
    assert rows_of(table(recs), "kps_ga>ldam_drw").iloc[0]["verdict"] == "not enough runs yet (n=0)"
    assert claims.rows_table().set_index("claim").loc[
        "KPS-GA has a lower error than LDAM-DRW", "a pins"] == "every setting the preset's"


def test_two_records_for_one_row_and_seed_are_an_error_naming_both():
    recs = [record("ldam_drw", 0, 30.0), record("kps_ga", 0, 20.0),
            record("kps_ga", 0, 21.0, eval_every=10, started="2026-12-02T09:00:00")]  # a second run of one row
    with pytest.raises(ValueError) as err:
        claims.claims_table(recs, "paper")
    message = str(err.value)
    assert message.count("results/cifar10-jpeg/kps_ga/imb100/seed0.json") == 2
    assert "2026-12-01T00:00:00" in message and "2026-12-02T09:00:00" in message
    assert "kps_ga (eq. 25), seed 0" in message


def test_short_runs_and_other_protocols_stay_out():
    recs = [record("ldam_drw", s, 30.0) for s in range(3)] + [record("kps_ga", s, 20.0) for s in range(3)]
    recs += [record("kps_ga", 0, 90.0, epochs=3)]                       # a short run: left out, no duplicate
    recs += [record("kps_ga", 0, 50.0, preset="cifar10_lt_small")]      # the reduced protocol: its own table
    row = rows_of(table(recs), "kps_ga>ldam_drw").iloc[0]
    assert row["a - b by seed"] == "0: +10.00, 1: +10.00, 2: +10.00"


def test_the_undirected_question_on_overall_head_and_tail():
    recs = [record("kps_ga", s, 30.0 + s, head=8.0, tail=50.0) for s in range(3)]
    recs += [record("kps_ga", s, 25.0 + s, head=14.0, tail=30.0 + s, ga_variant="official") for s in range(3)]
    rows = rows_of(table(recs), "row>column")
    assert list(rows["measure"]) == ["top-1 error", "head-class error", "tail-class error"]
    assert set(rows["claimed a - b"]) == {"(no direction)"}
    assert rows.iloc[0]["verdict"] == ("kps_ga (authors' GA) has the lower top-1 error; kps_ga (eq. 25) has the "
                                       "lower head-class error; kps_ga (authors' GA) has the lower tail-class error")
    view = claims.claims_view(table(recs))
    shown = view.data.set_index(view.data.index)
    shown = shown[shown["source"].eq("our question") | shown["claim"].eq("")]
    assert list(shown[claims.VERDICT]) == [rows.iloc[0]["verdict"], "", ""]
    assert "data" not in view.data.columns and view.caption == "Data: CIFAR-10 (JPEG copy)."
