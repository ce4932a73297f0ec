"""Presets match Table 2 / Sec. 4.2.3; methods; RunConfig JSON round trip and bad input."""

import dataclasses
import json

import pytest

from kps.configs import (
    METHODS,
    PRESETS,
    Preset,
    RunConfig,
    authors_code_overrides,
    format_imbalance,
    make_config,
    setting_tag,
)


def test_table2_presets():
    c10, c100, inet, inat = (PRESETS[k] for k in ("cifar10_lt", "cifar100_lt", "imagenet_lt", "inat2018"))
    for p in (c10, c100):
        assert (p.arch, p.batch_size, p.lr, p.weight_decay) == ("resnet32", 64, 0.1, 2e-4)
        assert (p.warmup_epochs, p.epochs, p.decay_epochs, p.decay_ratio) == (5, 200, (160, 180), 0.01)
        assert p.m_max == 0.5
    assert (inet.arch, inet.batch_size, inet.lr, inet.weight_decay, inet.warmup_epochs) == ("resnet50", 128, 0.1, 1e-4, 0)
    assert (inat.arch, inat.batch_size, inat.lr, inat.weight_decay, inat.warmup_epochs) == ("resnet50", 512, 0.2, 1e-4, 0)
    for p in (inet, inat):
        assert (p.epochs, p.decay_epochs, p.decay_ratio) == (180, (120, 160), 0.1)
    assert (inet.m_max, inat.m_max) == (0.35, 0.3)
    assert all(p.n_base == 50 and p.s_base == 15 for p in PRESETS.values())


def test_methods():
    assert sorted(METHODS) == sorted(
        "ce focal cb_focal cosface arcface ldam_drw la eql kps kps_drw kps_ga kps_ga_mixup".split()
    )
    assert METHODS["kps"].loss == "kps" and not METHODS["kps"].ga and not METHODS["kps"].drw
    assert METHODS["kps_ga"].ga and not METHODS["kps_ga"].mixup
    assert METHODS["kps_ga_mixup"].mixup and METHODS["ldam_drw"].drw and METHODS["kps_drw"].drw
    assert METHODS["ce"].head == "linear" and METHODS["kps_ga"].head == "cosine"


def test_make_config_fills_preset_and_method_switches():
    c = make_config("cifar10-jpeg", "kps_ga", imbalance=50, seed=3)
    assert (c.preset, c.epochs, c.batch_size, c.imbalance, c.seed) == ("cifar10_lt", 200, 64, 50.0, 3)
    assert (c.ga_switch_epoch, c.drw_epoch, c.mixup_alpha, c.ga_variant) == (120, None, 0.0, "paper")
    assert (c.momentum, c.nesterov) == (0.9, False)
    m = make_config("cifar100", "kps_ga_mixup")
    assert m.mixup_alpha == 1.0 and m.preset == "cifar100_lt"
    d = make_config("cifar10", "ldam_drw")
    assert d.drw_epoch == 160 and d.ga_switch_epoch is None
    i = make_config("imagenet_lt", "ce")
    assert i.imbalance == 256 and i.preset == "imagenet_lt" and i.preset_epochs == 180


def test_json_round_trip():
    c = make_config("cifar10-jpeg", "kps_ga", epochs=3, ga_variant="official", decay_epochs=(1, 2))
    text = c.to_json()
    back = RunConfig.from_json(text)
    assert back == c and back.decay_epochs == (1, 2)
    assert json.loads(text)["decay_epochs"] == [1, 2]
    # a partial dict takes the preset's values
    assert RunConfig.from_dict({"dataset": "cifar10-jpeg", "method": "kps_ga", "epochs": 3, "ga_variant": "official",
                                "decay_epochs": [1, 2]}) == c


def test_authors_code_overrides():
    o = authors_code_overrides("cifar10-jpeg")
    assert o == {"lr_style": "official", "ga_variant": "official", "m_max": 0.2, "subset_seed": 666}
    c = make_config("cifar10-jpeg", "kps_ga", **o)
    assert c.m_max == 0.2 and c.lr_style == "official"
    assert authors_code_overrides("imagenet_lt") == {"lr_style": "official", "ga_variant": "official"}
    # the KPS loss's settings go to the KPS methods only; the training script's to every method
    assert authors_code_overrides("cifar10-jpeg", "kps") == o
    assert authors_code_overrides("cifar10-jpeg", "ce") == {"lr_style": "official", "subset_seed": 666}
    assert authors_code_overrides("imagenet_lt", "ldam_drw") == {"lr_style": "official"}
    ce = make_config("cifar10-jpeg", "ce", **authors_code_overrides("cifar10-jpeg", "ce"))
    assert setting_tag(ce) == "lr_style-official.subset_seed-666"


@pytest.mark.parametrize("key, value", [("m_max", 0.2), ("n_base", 20.0), ("s_base", 30.0), ("ga_variant", "official")])
def test_kps_loss_settings_are_refused_for_other_methods(key, value):
    with pytest.raises(ValueError) as err:
        make_config("cifar10-jpeg", "ldam_drw", **{key: value})
    default = {"m_max": 0.5, "n_base": 50.0, "s_base": 15.0, "ga_variant": "paper"}[key]
    assert str(err.value) == (f"{key} sets the KPS loss (kps, kps_drw, kps_ga, kps_ga_mixup); method 'ldam_drw' has "
                              f"none: leave {key} at {default!r}, got {value!r}")
    assert getattr(make_config("cifar10-jpeg", "kps", **{key: value}), key) == value


def test_format_imbalance():
    assert format_imbalance(100) == "imb100"
    assert format_imbalance(50.0) == "imb50"
    assert format_imbalance(12.5) == "imb12.5"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(dataset="cifar11", method="ce"), "unknown dataset 'cifar11'; valid: cifar10,"),
        (dict(dataset="cifar10", method="kps_gaa"), "unknown method 'kps_gaa'; valid: ce,"),
        (dict(dataset="cifar10", method="ce", preset="tiny"), "unknown preset 'tiny'"),
        (dict(dataset="cifar10", method="ce", imbalance=0.5), "imbalance must be a finite number >= 1"),
        (dict(dataset="cifar10", method="ce", imbalance=float("nan")), "imbalance must be"),
        (dict(dataset="imagenet_lt", method="ce", imbalance=100), "imagenet_lt comes long-tailed"),
        (dict(dataset="cifar10", method="ce", epochs=0), "epochs must be an integer >= 1"),
        (dict(dataset="cifar10", method="ce", lr=-1), "lr must be a finite number > 0"),
        (dict(dataset="cifar10", method="ce", lr_style="fast"), "unknown lr_style 'fast'; valid: paper, official"),
        (dict(dataset="cifar10", method="kps_ga", ga_variant="row"), "unknown ga_variant"),
        (dict(dataset="cifar10", method="kps", ga_switch_epoch=3), "method 'kps' has no gradient adjustment"),
        (dict(dataset="cifar10", method="ce", drw_epoch=3), "method 'ce' has no deferred re-weighting"),
        (dict(dataset="cifar10", method="ce", mixup_alpha=1.0), "method 'ce' needs mixup_alpha 0"),
        (dict(dataset="cifar10", method="ce", decay_epochs=(5, 2)), "decay_epochs must be increasing"),
        (dict(dataset="cifar10", method="ce", bf16="yes"), "bf16 must be true or false"),
        (dict(dataset="cifar10", method="ce", compile="fast"), "unknown compile mode 'fast'; valid: none, default"),
        (dict(dataset="cifar10", method="ce", decay_ratio=2.0), "decay_ratio must be in (0, 1]"),
        (dict(dataset="cifar10", method="kps", n_base=1.0), "n_base must be > 1"),
    ],
)
def test_bad_config(kwargs, message):
    with pytest.raises(ValueError) as err:
        make_config(**kwargs)
    assert message in str(err.value)


def test_unknown_keys_rejected_listing_valid_ones():
    with pytest.raises(ValueError) as err:
        RunConfig.from_json(json.dumps({"dataset": "cifar10", "method": "ce", "learning_rate": 0.1}))
    msg = str(err.value)
    assert "unknown config key(s) 'learning_rate'" in msg and "valid keys: dataset, imbalance, method" in msg
    with pytest.raises(ValueError, match="config needs the key 'method'"):
        RunConfig.from_dict({"dataset": "cifar10"})
    with pytest.raises(ValueError, match="not valid JSON"):
        RunConfig.from_json("{dataset")


def test_setting_tag_names_every_difference_from_the_paper():
    assert setting_tag(make_config("cifar10-jpeg", "kps_ga", imbalance=50)) == ""
    fast = dict(seed=4, eval_every=5, channels_last=True, bf16=True, fused_sgd=True, compile="default")
    assert setting_tag(make_config("cifar10-jpeg", "kps_ga", **fast)) == ""
    # a short run never takes the full run's name
    assert setting_tag(make_config("cifar10-jpeg", "kps_ga", epochs=3, **fast)) == "epochs-3"
    small = make_config("cifar10-jpeg", "kps_ga", preset="cifar10_lt_small")
    assert setting_tag(small) == "preset-cifar10_lt_small"
    assert setting_tag(make_config("cifar10-jpeg", "kps_ga", preset="cifar10_lt_small", epochs=2,
                                   ga_variant="official")) == "preset-cifar10_lt_small.ga_variant-official.epochs-2"
    assert setting_tag(make_config("cifar10-jpeg", "kps_ga", ga_variant="official")) == "ga_variant-official"
    authors = make_config("cifar10-jpeg", "kps_ga", **authors_code_overrides("cifar10-jpeg"))
    assert setting_tag(authors) == "ga_variant-official.lr_style-official.m_max-0.2.subset_seed-666"
    assert setting_tag(make_config("cifar10", "ce", decay_epochs=(1, 2))) == "decay_epochs-1-2"


def test_cpu_scale_preset_scales_only_the_cost_knobs():
    paper, small = PRESETS["cifar10_lt"], PRESETS["cifar10_lt_small"]
    assert (small.width, small.image_size, small.epochs, small.eval_every) == (8, 16, 70, 5)
    assert small.protocol == "CPU-scale" and paper.protocol == "paper"
    # every epoch-valued setting x0.35 to the nearest epoch (warm-up 1.75 -> 2): the preset the grid's
    # records were made with, field by field
    made_with = Preset("cifar10_lt_small", "resnet32", 64, 0.1, 2e-4, 2, 70, (56, 63), 0.01, 0.5, 50.0, 15.0, 42, 56, 5,
                       width=8, image_size=16, protocol="CPU-scale", base="cifar10_lt")
    assert dataclasses.replace(small, not_in_paper={}) == made_with
    assert "warm-up 5 -> 2, decays 160/180 -> 56/63" in small.not_in_paper["epochs"]
    assert "stages 8/16/32; the paper's 16/32/64" in small.not_in_paper["width"]
    assert set(small.not_in_paper) == {"width", "image_size", "epochs", "ga_switch_epoch", "drw_epoch", "eval_every"}
    c = make_config("cifar10-jpeg", "kps_drw", preset="cifar10_lt_small")
    assert (c.width, c.image_size, c.epochs, c.drw_epoch, c.ga_switch_epoch) == (8, 16, 70, 56, None)
    assert c.protocol == "CPU-scale" and c.preset_epochs == 70


@pytest.mark.parametrize("overrides, message", [
    (dict(dataset="cifar100", preset="cifar10_lt_small"), "preset 'cifar10_lt_small' does not fit dataset 'cifar100'"),
    (dict(dataset="cifar10", preset="cifar100_lt"), "does not fit dataset 'cifar10'"),
    (dict(dataset="cifar10", image_size=64), "image_size 64 does not fit cifar10"),
    (dict(dataset="imagenet_lt", image_size=112), "image_size 112 does not fit imagenet_lt"),
    (dict(dataset="imagenet_lt", width=8), "keep width 16"),
    (dict(dataset="cifar10", width=0), "width must be an integer >= 1"),
])
def test_bad_preset_size_or_width(overrides, message):
    dataset = overrides.pop("dataset")
    with pytest.raises(ValueError, match=message):
        make_config(dataset, "ce", **overrides)


def test_cpu_grid_is_the_fourteen_rows_in_order_with_distinct_records():
    from kps.results import config_record_path
    from kps.grids import CPU_GRID_ORDER, cpu_grid

    grid = cpu_grid()
    assert len(CPU_GRID_ORDER) == 14 and len(grid) == 14 * 3  # rho=100 only: its rho=50 half was stopped
    assert {c.preset for c in grid} == {"cifar10_lt_small"} and {c.dataset for c in grid} == {"cifar10-jpeg"}
    # each row's three seeds before the next row
    assert [(c.imbalance, c.method, c.seed) for c in grid[:4]] == [
        (100.0, "ce", 0), (100.0, "ce", 1), (100.0, "ce", 2), (100.0, "ldam_drw", 0)]
    assert all(c.imbalance == 100.0 for c in grid)
    ga = [c for c in grid if c.method == "kps_ga" and c.seed == 0]
    assert [(c.ga_variant, c.lr_style, c.m_max, c.subset_seed) for c in ga] == [
        ("paper", "paper", 0.5, 0), ("official", "paper", 0.5, 0), ("official", "official", 0.2, 666)]
    paths = {config_record_path("results", c) for c in grid}
    assert len(paths) == len(grid)
    assert all(".preset-cifar10_lt_small" in p.name for p in paths)


def test_paper_grid_is_the_headline_seeds_then_ten_rows_in_order():
    from kps.results import config_record_path
    from kps.grids import gpu_grid, paper_grid

    grid = paper_grid("cpu")
    assert len(grid) == 4 * 3 + 10
    assert {(c.preset, c.dataset, c.imbalance, c.epochs) for c in grid} == {("cifar10_lt", "cifar10-jpeg", 100.0, 200)}
    head = [(c.method, c.ga_variant, c.seed) for c in grid[:12]]
    assert head[:4] == [("ce", "paper", 0), ("ldam_drw", "paper", 0), ("kps_ga", "paper", 0), ("kps_ga", "official", 0)]
    assert [s for _, _, s in head] == [0] * 4 + [1] * 4 + [2] * 4
    assert [c.method for c in grid[12:]] == ["kps", "kps_drw", "kps_ga", "kps_ga_mixup", "focal", "cb_focal",
                                             "cosface", "arcface", "la", "eql"]
    assert grid[14].lr_style == "official" and grid[14].m_max == 0.2 and grid[14].subset_seed == 666
    assert {(c.eval_every, c.eval_dense_from) for c in grid} == {(10, 160)}
    paths = [config_record_path("results", c) for c in grid]
    assert len(set(paths)) == len(grid)
    # the two GPU records of 2026-11-26 are rows of this grid: the workers skip them
    assert [p.as_posix() for p in paths[2:4]] == ["results/cifar10-jpeg/kps_ga/imb100/seed0.json",
                                                  "results/cifar10-jpeg/kps_ga/imb100/seed0.ga_variant-official.json"]
    gpu = gpu_grid()
    assert [config_record_path("r", c) for c in gpu[:22]] == [config_record_path("r", c) for c in grid]
    assert len(gpu) == 22 + 14 * 3 and {c.imbalance for c in gpu[22:]} == {50.0}


def test_each_grid_row_is_named_as_the_site_names_its_runs():
    """One name per row: a row's key in kps.grids.ROWS is what the site calls its runs
    (kps.report.validity.short_name), and both grids train each of the 14 rows."""
    from kps.grids import CPU_GRID_ORDER, PAPER_HEADLINE, PAPER_OTHERS, ROWS, cpu_grid, paper_grid
    from kps.report.validity import short_name

    assert sorted(CPU_GRID_ORDER) == sorted(PAPER_HEADLINE + PAPER_OTHERS) == sorted(ROWS) and len(ROWS) == 14
    assert [short_name(c.to_dict()) for c in cpu_grid()[::3]] == list(CPU_GRID_ORDER)
    assert [short_name(c.to_dict()) for c in paper_grid("cpu")] == list(PAPER_HEADLINE) * 3 + list(PAPER_OTHERS)


@pytest.mark.parametrize("flags, bf16", [
    (frozenset({"avx2", "amx_bf16", "avx512_bf16"}), True),  # Intel Sapphire Rapids and later
    (frozenset({"avx2", "avx512f", "avx512_bf16"}), True),   # AMD Zen 4
    (frozenset({"avx2", "avx512f"}), False),                 # no bf16 units: fp32
    (frozenset(), False),                                    # flags unknown (not Linux): fp32
])
def test_fast_path_on_cpu_picks_bf16_from_the_cpus_flags(flags, bf16):
    from kps.configs import fast_path

    assert fast_path("cpu", flags) == {"channels_last": True, "fused_sgd": False, "bf16": bf16, "compile": "none"}
    assert fast_path("cuda", flags)["bf16"] is True


def test_eval_dense_from_is_checked():
    with pytest.raises(ValueError, match="eval_dense_from must be an integer >= 0"):
        make_config("cifar10", "ce", eval_dense_from=-1)


def test_every_key_has_one_role_and_the_key_sets_derive_from_them():
    """One declaration of each key's role (kps.configs.RunConfig); the key sets follow from it."""
    from kps.configs import (DATA_KEYS, IDENTITY_KEYS, LATER_KEYS, RESUMABLE_KEYS, ROLES, RUN_ONLY_KEYS,
                             SPEED_KEYS)

    assert list(ROLES) == RunConfig.keys() and set(ROLES.values()) == {"data", "training", "run", "speed"}
    assert SPEED_KEYS == ("channels_last", "bf16", "fused_sgd", "compile")   # precision is a speed key
    assert DATA_KEYS == ("dataset", "imbalance", "subset_seed", "image_size")
    assert RUN_ONLY_KEYS == ("seed", "epochs", "eval_every", *SPEED_KEYS, "eval_dense_from")
    assert set(IDENTITY_KEYS) | set(RUN_ONLY_KEYS) == set(ROLES) and not set(IDENTITY_KEYS) & set(RUN_ONLY_KEYS)
    assert RESUMABLE_KEYS == ("epochs", *SPEED_KEYS)
    assert LATER_KEYS == ("width", "image_size", "eval_dense_from")


def test_differences_from_the_preset_are_computed_once_per_setting(monkeypatch):
    """setting_tag and the report's labels read kps.configs.differences, whose reference
    setting is built once per (dataset, method, imbalance, preset), not once per call."""
    import kps.configs as configs

    from kps.configs import differences

    c = make_config("cifar10-jpeg", "kps_ga", seed=4, m_max=0.2, epochs=30, bf16=True, eval_every=10)
    assert differences(c) == {"epochs": (30, 200), "m_max": (0.2, 0.5), "eval_every": (10, 1), "bf16": (True, False)}
    assert differences(c.to_dict()) == differences(c)
    assert setting_tag(c) == "m_max-0.2.epochs-30"       # neither the evaluation cadence nor the precision
    built = []
    real = configs.make_config
    monkeypatch.setattr(configs, "make_config", lambda *a, **k: built.append(a) or real(*a, **k))
    configs._reference.cache_clear()
    for seed in range(5):
        setting_tag(dataclasses.replace(c, seed=seed))
    assert len(built) == 1


def test_every_committed_record_keeps_its_file_name():
    """Every record under results/ (the precision check's roots included) lies where its
    config names it: no record name changes with this code."""
    from pathlib import Path

    from kps.results import config_record_path

    results = Path(__file__).resolve().parents[1] / "results"
    # hidden folders hold no records (results/.checkpoints/: unfinished runs' progress files)
    paths = sorted(p for p in results.rglob("seed*.json")
                   if not any(part.startswith(".") for part in p.relative_to(results).parts))
    assert len(paths) >= 49
    for path in paths:
        root = path.parents[3]  # <root>/<dataset>/<method>/imb<r>/seed<k>[.<tag>].json
        config = RunConfig.from_dict(json.loads(path.read_text())["config"])
        assert config_record_path(root, config) == path, path


def test_a_single_decay_epoch_may_be_given_as_a_number():
    assert make_config("cifar10", "ce", decay_epochs=160).decay_epochs == (160,)
    assert make_config("cifar10", "ce", decay_epochs=[150, 190]).decay_epochs == (150, 190)
