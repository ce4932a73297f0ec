"""What to run: the paper's Table 2 presets, the method list, and one run's
configuration as a plain dataclass that round-trips through JSON.

Table 2 (Sec. 4.2) and Sec. 4.2.3 give, per dataset: backbone, mini-batch,
initial lr, weight decay, lr warm-up, maximum epochs, lr decay ratio and decay
epochs, and m_max (0.5 / 0.5 / 0.35 / 0.3) with n_base = 50 and s_base = 15
(eqs. 26-30).  SGD with momentum 0.9 (Sec. 4.2).  Values the paper does not
state are listed per preset in ``Preset.not_in_paper`` with where they come from.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from kps.datasets import DATASETS, DEFAULT_IMBALANCE

__all__ = [
    "Preset",
    "PRESETS",
    "MethodSpec",
    "METHODS",
    "ARCHS",
    "STYLES",
    "COMPILE_MODES",
    "RunConfig",
    "make_config",
    "authors_code_overrides",
    "format_imbalance",
    "setting_tag",
    "differences",
    "DATA",
    "TRAINING",
    "RUN",
    "SPEED",
    "IDENTITY",
    "ROLES",
    "IDENTITY_KEYS",
    "DATA_KEYS",
    "RUN_ONLY_KEYS",
    "SPEED_KEYS",
    "RESUMABLE_KEYS",
    "fast_path",
    "LATER_KEYS",
    "write_config_list",
    "read_config_list",
    "KPS_ONLY_KEYS",
]

ARCHS = ("resnet32", "resnet50", "resnext50_32x4d")
STYLES = ("paper", "official")
# torch.compile modes of the training step and the evaluation forward ("none": eager)
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class Preset:
    """One column of Table 2 plus the KPS hyper-parameters of Sec. 4.2.3."""

    name: str
    arch: str
    batch_size: int
    lr: float
    weight_decay: float
    warmup_epochs: int
    epochs: int
    decay_epochs: tuple[int, ...]
    decay_ratio: float
    m_max: float
    n_base: float
    s_base: float
    ga_switch_epoch: int
    drw_epoch: int
    eval_every: int
    not_in_paper: dict[str, str] = field(default_factory=dict)
    width: int = 16            # ResNet-32 stage widths w, 2w, 4w (He et al.: 16)
    image_size: int = 32       # network input side; smaller than the data's: downsampled once (kps.data)
    protocol: str = "paper"    # "paper": Table 2; else a reduced protocol, named as such everywhere
    base: str = ""             # a reduced protocol's Table 2 preset ("": a Table 2 preset itself)

    @property
    def datasets(self) -> tuple[str, ...]:
        """The datasets it fits: those its Table 2 preset trains (kps.datasets)."""
        table2 = self.base or self.name
        return tuple(name for name, spec in DATASETS.items() if spec.preset == table2)


_CIFAR_ASSUMED = {
    "ga_switch_epoch": "I0 of Algorithm 1 is not stated; 120 (0-indexed) as in the authors' code",
    "drw_epoch": "DRW start as in LDAM-DRW (Cao et al.) and the authors' code: epoch 160",
    "eval_every": "the authors' code evaluates every epoch and reports the best",
}
_LARGE_ASSUMED = {
    "ga_switch_epoch": "I0 is not stated for ImageNet-LT/iNat; assumed at the first lr decay (epoch 120)",
    "drw_epoch": "not stated; assumed at the first lr decay (epoch 120)",
    "eval_every": "evaluation cadence not stated; every 5 epochs and at the end",
}

# The CPU-scale protocol: the cifar10_lt preset with only its cost knobs changed
# (book/protocol.md says what was chosen and why, from a pilot on this machine):
# half width, half the image side, every epoch-valued setting times SMALL_SCALE (rounded
# to the nearest epoch, so that the run keeps the paper's shape), evaluation every
# SMALL_EVAL_EVERY epochs and after the last.  Everything else is Table 2's.
SMALL_SCALE = 0.35
SMALL_EVAL_EVERY = 5


def _scaled(paper: Preset, name: str) -> Preset:
    """``paper`` at the CPU-scale protocol's cost (see SMALL_SCALE), with each changed
    setting named, from its values, in ``not_in_paper``."""
    def epochs(e: int) -> int:
        return math.floor(e * SMALL_SCALE + 0.5)  # to the nearest epoch (1.75 -> 2), half-way cases up

    s = dict(width=paper.width // 2, image_size=paper.image_size // 2, eval_every=SMALL_EVAL_EVERY,
             warmup_epochs=epochs(paper.warmup_epochs), epochs=epochs(paper.epochs),
             decay_epochs=tuple(epochs(e) for e in paper.decay_epochs),
             ga_switch_epoch=epochs(paper.ga_switch_epoch), drw_epoch=epochs(paper.drw_epoch))
    why = {
        "width": f"CPU-scale protocol: ResNet-32 at width {s['width']} (stages {s['width']}/{2 * s['width']}/"
                 f"{4 * s['width']}; the paper's {paper.width}/{2 * paper.width}/{4 * paper.width})",
        "image_size": f"CPU-scale protocol: {s['image_size']}x{s['image_size']} inputs, area-averaged once from "
                      f"{paper.image_size}x{paper.image_size}; crop padding scaled with the side",
        "epochs": f"CPU-scale protocol: the paper's {paper.epochs} epochs x{SMALL_SCALE:g}; warm-up "
                  f"{paper.warmup_epochs} -> {s['warmup_epochs']}, decays "
                  f"{'/'.join(map(str, paper.decay_epochs))} -> {'/'.join(map(str, s['decay_epochs']))}",
        "ga_switch_epoch": f"CPU-scale protocol: the authors' I0 = {paper.ga_switch_epoch} x{SMALL_SCALE:g}",
        "drw_epoch": f"CPU-scale protocol: LDAM-DRW's epoch {paper.drw_epoch} x{SMALL_SCALE:g}",
        "eval_every": f"CPU-scale protocol: every {s['eval_every']} epochs and after the last (evaluating the "
                      f"test set costs a sizeable part of an epoch at this size; book/protocol.md measures it)",
    }
    return dataclasses.replace(paper, name=name, not_in_paper=why, protocol="CPU-scale", base=paper.name, **s)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("cifar10_lt", "resnet32", 64, 0.1, 2e-4, 5, 200, (160, 180), 0.01,
               0.5, 50.0, 15.0, 120, 160, 1, _CIFAR_ASSUMED),
        Preset("cifar100_lt", "resnet32", 64, 0.1, 2e-4, 5, 200, (160, 180), 0.01,
               0.5, 50.0, 15.0, 120, 160, 1, _CIFAR_ASSUMED),
        Preset("imagenet_lt", "resnet50", 128, 0.1, 1e-4, 0, 180, (120, 160), 0.1,
               0.35, 50.0, 15.0, 120, 120, 5, _LARGE_ASSUMED, image_size=224),
        Preset("inat2018", "resnet50", 512, 0.2, 1e-4, 0, 180, (120, 160), 0.1,
               0.3, 50.0, 15.0, 120, 120, 5, _LARGE_ASSUMED, image_size=224),
    )
}
PRESETS["cifar10_lt_small"] = _scaled(PRESETS["cifar10_lt"], "cifar10_lt_small")


@dataclass(frozen=True)
class MethodSpec:
    """How a method of Tables 3-6 trains: loss (kps.losses registry name), head
    ("linear" logits or "cosine"), deferred re-weighting, gradient adjustment
    (Algorithm 1, eq. 25), mixup, extra keyword options for ``make_loss``, and
    ``prior_bias``: the linear head's bias starts at -log(C - 1), so that every
    class's sigmoid starts at 1/C (sigmoid losses; Cui et al.'s released CIFAR code
    initialises its sigmoid and focal heads so, src/model_base.py ``_fully_connected``)."""

    loss: str
    head: str
    drw: bool = False
    ga: bool = False
    mixup: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)
    prior_bias: bool = False


METHODS: dict[str, MethodSpec] = {
    "ce": MethodSpec("ce", "linear"),
    "focal": MethodSpec("focal", "linear"),
    "cb_focal": MethodSpec("cb_focal", "linear", prior_bias=True),
    "cosface": MethodSpec("cosface", "cosine"),
    "arcface": MethodSpec("arcface", "cosine"),
    "ldam_drw": MethodSpec("ldam", "cosine", drw=True),
    "la": MethodSpec("la", "linear"),
    "eql": MethodSpec("eql", "linear"),
    "kps": MethodSpec("kps", "cosine"),
    "kps_drw": MethodSpec("kps", "cosine", drw=True),
    "kps_ga": MethodSpec("kps", "cosine", ga=True),
    "kps_ga_mixup": MethodSpec("kps", "cosine", ga=True, mixup=True),
}


def _choice(kind: str, value: Any, valid: Mapping[str, Any] | tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in valid:  # a list or dict from a config file: no name
        raise ValueError(f"unknown {kind} {value!r}; valid: {', '.join(valid)}")


def format_imbalance(imbalance: float) -> str:
    """Folder name of an imbalance ratio: 100 -> 'imb100', 12.5 -> 'imb12.5'."""
    return f"imb{float(imbalance):g}"


# What each RunConfig key is to a run, declared once, at the key (:func:`_key`); every key
# set below, a record's name (:func:`setting_tag`) and how a config differs from its preset
# (:func:`differences`) derive from it.
DATA = "data"          # what the experiment trains and tests on
TRAINING = "training"  # how it trains: method, model, schedule, loss numbers
RUN = "run"            # which run of the experiment (its seed), how long, and how often it is evaluated
SPEED = "speed"        # how fast it runs, never what it computes beyond floating-point rounding
IDENTITY = (DATA, TRAINING)  # the roles that make an experiment what it is


def _key(role: str, *, later: bool = False, **default: Any) -> Any:
    """A RunConfig field of ``role``; ``later``: a key added after records were first
    written (a record without it ran its preset's value, or the field's default)."""
    return field(metadata={"role": role, "later": later}, **default)


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides one training run (Algorithm 1 with Table 2 settings).

    Build with :func:`make_config` (fills the preset's values) or
    :meth:`from_dict` / :meth:`from_json`; unknown keys are rejected.
    ``ga_switch_epoch`` is set only for GA methods, ``drw_epoch`` only for DRW
    methods, ``mixup_alpha`` > 0 only for mixup methods, so a record's config
    says exactly what ran.  ``lr_style`` and ``ga_variant`` pick the paper's
    reading ("paper") or the authors' code ("official"): ``ga_variant`` is the
    ``variant`` of kps.params / kps.losses.KPSLoss, i.e. eq. 25's per-class
    column scale s_j with eqs. 26-30 ("paper") or the per-sample row scale s_y
    clamped to [s_base, 50] with margins from the reversed radius list
    ("official"; the margins apply to every KPS method).  ``m_max``, ``n_base``,
    ``s_base`` and ``ga_variant`` are the KPS loss's (:data:`KPS_ONLY_KEYS`): a method
    with another loss keeps its preset's values.  ``subset_seed`` is the
    seed of the long-tailed subsampling, ``seed`` the training seed.
    ``channels_last``, ``bf16``, ``fused_sgd`` and ``compile`` select the fast path
    (kps.train): channels_last memory format, bf16 autocast of the backbone (CUDA, or
    a CPU with bf16 units), fused SGD, and a ``torch.compile`` mode ("none" = eager).
    The test set is evaluated every ``eval_every`` epochs, after the last, and, from
    epoch ``eval_dense_from`` (0-indexed) on, after every epoch (:meth:`evaluates`);
    the record's best error is the best over the evaluated epochs.

    Each key has one role (:data:`ROLES`): :data:`DATA` and :data:`TRAINING` keys make
    the experiment (a record's name lists those that differ from the preset's), a
    :data:`RUN` key says which run of it and how it is measured (the seed and a short
    run's epochs are in the name by rules of their own), a :data:`SPEED` key how fast
    it runs.  Precision is a speed key, decided so: bf16 autocast rounds the backbone's
    arithmetic differently, as another device or kernel would, but trains the same
    experiment; a bf16 run and an fp32 run of one setting and seed share a record name
    (so they live under different roots, as the precision check's do), pool into one
    seed summary, and say their precision in the record (``config.bf16``, and
    ``precision`` in each of its ``segments``); whether bf16 moves the errors is
    measured apart (:mod:`kps.report.precision`).
    """

    dataset: str = _key(DATA)
    imbalance: float = _key(DATA)
    method: str = _key(TRAINING)
    seed: int = _key(RUN)
    epochs: int = _key(RUN)
    preset: str = _key(TRAINING)
    arch: str = _key(TRAINING)
    batch_size: int = _key(TRAINING)
    lr: float = _key(TRAINING)
    momentum: float = _key(TRAINING)
    nesterov: bool = _key(TRAINING)
    weight_decay: float = _key(TRAINING)
    warmup_epochs: int = _key(TRAINING)
    decay_epochs: tuple[int, ...] = _key(TRAINING)
    decay_ratio: float = _key(TRAINING)
    lr_style: str = _key(TRAINING)
    m_max: float = _key(TRAINING)
    n_base: float = _key(TRAINING)
    s_base: float = _key(TRAINING)
    ga_variant: str = _key(TRAINING)
    ga_switch_epoch: int | None = _key(TRAINING)
    drw_epoch: int | None = _key(TRAINING)
    drw_beta: float = _key(TRAINING)
    mixup_alpha: float = _key(TRAINING)
    subset_seed: int = _key(DATA)
    eval_every: int = _key(RUN)
    width: int = _key(TRAINING, later=True, default=16)
    image_size: int = _key(DATA, later=True, default=32)
    channels_last: bool = _key(SPEED, default=False)
    bf16: bool = _key(SPEED, default=False)
    fused_sgd: bool = _key(SPEED, default=False)
    compile: str = _key(SPEED, default="none")
    eval_dense_from: int | None = _key(RUN, later=True, default=None)

    def __post_init__(self) -> None:
        _choice("dataset", self.dataset, DATASETS)
        _choice("method", self.method, METHODS)
        _choice("preset", self.preset, PRESETS)
        if self.dataset not in PRESETS[self.preset].datasets:
            fits = ", ".join(PRESETS[self.preset].datasets)
            raise ValueError(f"preset {self.preset!r} does not fit dataset {self.dataset!r} (it fits: {fits}); "
                             f"drop --preset for the dataset's own ({DATASETS[self.dataset].preset!r})")
        _choice("arch", self.arch, ARCHS)
        _choice("lr_style", self.lr_style, STYLES)
        _choice("ga_variant", self.ga_variant, STYLES)
        _choice("compile mode", self.compile, COMPILE_MODES)
        decay = (self.decay_epochs,) if isinstance(self.decay_epochs, int) else self.decay_epochs  # one decay
        if not isinstance(decay, (list, tuple)):
            raise ValueError(f"decay_epochs must be a list of epochs, e.g. [160, 180], got {decay!r}")
        object.__setattr__(self, "decay_epochs", tuple(decay))
        if (isinstance(self.imbalance, bool) or not (isinstance(self.imbalance, (int, float))
                                                     and math.isfinite(self.imbalance)) or self.imbalance < 1):
            raise ValueError(f"imbalance must be a finite number >= 1 (max/min class size), got {self.imbalance!r}")
        object.__setattr__(self, "imbalance", float(self.imbalance))
        fixed = DATASETS[self.dataset].fixed_imbalance
        if fixed is not None and self.imbalance != fixed:
            raise ValueError(f"{self.dataset} comes long-tailed with imbalance {fixed:g}; got {self.imbalance:g}")
        for name in ("seed", "subset_seed"):
            _check_int(name, getattr(self, name), minimum=0)
            if getattr(self, name) >= 2**63:  # torch's and numpy's generators take 64-bit seeds
                raise ValueError(f"{name} must be below 2**63, got {getattr(self, name)}")
        for name in ("epochs", "batch_size", "eval_every", "width"):
            _check_int(name, getattr(self, name), minimum=1)
        if self.epochs > PRESETS[self.preset].epochs:
            raise ValueError(f"epochs {self.epochs} is more than preset {self.preset!r} trains "
                             f"({PRESETS[self.preset].epochs}); fewer makes a short run, a longer schedule is "
                             "another preset")
        _check_int("image_size", self.image_size, minimum=8)
        native = DATASETS[self.dataset].image_size
        if self.image_size > native or (native > 32 and self.image_size != native):
            allowed = f"8..{native}" if native <= 32 else str(native)
            raise ValueError(f"image_size {self.image_size} does not fit {self.dataset} (images are "
                             f"{native} px; allowed: {allowed})")
        if self.arch != "resnet32" and self.width != 16:
            raise ValueError(f"width sets the ResNet-32 stage widths; {self.arch} has its own, keep width 16")
        _check_int("warmup_epochs", self.warmup_epochs, minimum=0)
        if self.eval_dense_from is not None:
            _check_int("eval_dense_from", self.eval_dense_from, minimum=0)
        for name in ("lr", "decay_ratio", "n_base", "s_base"):
            _check_positive(name, getattr(self, name))
        if self.decay_ratio > 1:
            raise ValueError(f"decay_ratio must be in (0, 1], got {self.decay_ratio!r}")
        if self.n_base <= 1:
            raise ValueError(f"n_base must be > 1 (eq. 27 divides by log(n_base)), got {self.n_base!r}")
        for name in ("momentum", "weight_decay", "m_max", "mixup_alpha"):
            _check_positive(name, getattr(self, name), allow_zero=True)
        if not 0.0 <= self.drw_beta < 1.0:
            raise ValueError(f"drw_beta must be in [0, 1), got {self.drw_beta!r}")
        for e in self.decay_epochs:
            _check_int("decay_epochs entry", e, minimum=0)
        if list(self.decay_epochs) != sorted(self.decay_epochs):
            raise ValueError(f"decay_epochs must be increasing, got {list(self.decay_epochs)}")
        for name in ("nesterov", "channels_last", "bf16", "fused_sgd"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        spec = METHODS[self.method]
        if spec.loss != "kps":  # the KPS loss's settings: another method's record must not carry them
            preset = PRESETS[self.preset]
            for name in KPS_ONLY_KEYS:
                default = "paper" if name == "ga_variant" else getattr(preset, name)
                if getattr(self, name) != default:
                    kps_methods = ", ".join(m for m, s in METHODS.items() if s.loss == "kps")
                    raise ValueError(f"{name} sets the KPS loss ({kps_methods}); method {self.method!r} has none: "
                                     f"leave {name} at {default!r}, got {getattr(self, name)!r}")
        _check_switch("ga_switch_epoch", self.ga_switch_epoch, spec.ga, self.method, "gradient adjustment")
        _check_switch("drw_epoch", self.drw_epoch, spec.drw, self.method, "deferred re-weighting")
        if spec.mixup != (self.mixup_alpha > 0):
            need = "> 0" if spec.mixup else "0"
            raise ValueError(f"method {self.method!r} needs mixup_alpha {need}, got {self.mixup_alpha!r}")

    @property
    def spec(self) -> MethodSpec:
        return METHODS[self.method]

    @property
    def protocol(self) -> str:
        """'paper' for Table 2's presets, else the reduced protocol's name (e.g. 'CPU-scale')."""
        return PRESETS[self.preset].protocol

    @property
    def preset_epochs(self) -> int:
        """The preset's full epoch count (a run with fewer epochs is a short run)."""
        return PRESETS[self.preset].epochs

    def evaluates(self, epoch: int) -> bool:
        """Whether the test set is evaluated after ``epoch`` (0-indexed): every
        ``eval_every``-th epoch, every epoch from ``eval_dense_from`` on, and the last."""
        dense = self.eval_dense_from is not None and epoch >= self.eval_dense_from
        return dense or (epoch + 1) % self.eval_every == 0 or epoch == self.epochs - 1

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["decay_epochs"] = list(self.decay_epochs)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunConfig":
        """Build from a mapping; missing keys take the preset's values (see make_config)."""
        d = dict(d)
        for required in ("dataset", "method"):
            if required not in d:
                raise ValueError(f"config needs the key {required!r}")
        return make_config(d.pop("dataset"), d.pop("method"), **d)

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"config is not valid JSON: {err}") from err
        if not isinstance(d, dict):
            raise ValueError("config JSON must be an object")
        return cls.from_dict(d)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_positive(name: str, value: Any, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")


def _check_switch(name: str, value: Any, wanted: bool, method: str, what: str) -> None:
    if wanted:
        _check_int(name, value, minimum=0)
    elif value is not None:
        raise ValueError(f"method {method!r} has no {what}; {name} must be null, got {value!r}")


def authors_code_overrides(dataset: str, method: str | None = None) -> dict[str, Any]:
    """Overrides that reproduce the configuration of the authors' public code
    (Keke921/KPSLoss, see DESIGN.md) for ``method`` (None: a KPS method).  Their
    training script's, for every method: the lr schedule (x0.1 after 160, x0.01
    after 180) and on CIFAR the LT subset seed 666.  Their KPS loss's, for the
    methods with that loss only (:data:`KPS_ONLY_KEYS`): the per-sample GA row scale
    with its margins, and on CIFAR m_max 0.2."""
    _choice("dataset", dataset, DATASETS)
    if method is not None:
        _choice("method", method, METHODS)
    kps_loss = method is None or METHODS[method].loss == "kps"
    cifar = DATASETS[dataset].preset in ("cifar10_lt", "cifar100_lt")
    overrides: dict[str, Any] = {"lr_style": "official"}
    if cifar:
        overrides["subset_seed"] = 666
    if kps_loss:
        overrides["ga_variant"] = "official"
        if cifar:
            overrides["m_max"] = 0.2
    return overrides


def make_config(dataset: str, method: str, **overrides: Any) -> RunConfig:
    """A RunConfig for ``dataset`` x ``method`` with the preset's Table 2 values,
    then ``overrides`` (any RunConfig key; unknown keys -> ValueError listing
    the valid ones)."""
    valid = RunConfig.keys()
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise ValueError(f"unknown config key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(valid)}")
    _choice("dataset", dataset, DATASETS)
    _choice("method", method, METHODS)
    spec = DATASETS[dataset]
    preset_name = overrides.get("preset", spec.preset)
    _choice("preset", preset_name, PRESETS)
    p = PRESETS[preset_name]
    method_spec = METHODS[method]
    values: dict[str, Any] = dict(
        dataset=dataset,
        imbalance=spec.fixed_imbalance or DEFAULT_IMBALANCE,
        method=method,
        seed=0,
        epochs=p.epochs,
        preset=p.name,
        arch=p.arch,
        batch_size=p.batch_size,
        lr=p.lr,
        momentum=0.9,
        nesterov=False,
        weight_decay=p.weight_decay,
        warmup_epochs=p.warmup_epochs,
        decay_epochs=p.decay_epochs,
        decay_ratio=p.decay_ratio,
        lr_style="paper",
        m_max=p.m_max,
        n_base=p.n_base,
        s_base=p.s_base,
        ga_variant="paper",
        ga_switch_epoch=p.ga_switch_epoch if method_spec.ga else None,
        drw_epoch=p.drw_epoch if method_spec.drw else None,
        drw_beta=0.9999,
        mixup_alpha=1.0 if method_spec.mixup else 0.0,
        subset_seed=0,
        eval_every=p.eval_every,
        width=p.width,
        image_size=p.image_size,
    )
    values.update(overrides)
    return RunConfig(**values)


ROLES: dict[str, str] = {f.name: f.metadata["role"] for f in dataclasses.fields(RunConfig)}
# The keys of each role, in RunConfig's order.
IDENTITY_KEYS = tuple(k for k, role in ROLES.items() if role in IDENTITY)
DATA_KEYS = tuple(k for k, role in ROLES.items() if role == DATA)   # runs with equal values share their data
SPEED_KEYS = tuple(k for k, role in ROLES.items() if role == SPEED)
RUN_ONLY_KEYS = tuple(k for k, role in ROLES.items() if role not in IDENTITY)
# Keys a resumed run may change: how fast it runs, and how long (the one run key).
RESUMABLE_KEYS = ("epochs", *SPEED_KEYS)
# Settings of the KPS loss alone (eqs. 26-30 and the GA reading): a method with another
# loss keeps its preset's values, so that its record's name never carries them.
KPS_ONLY_KEYS = ("m_max", "n_base", "s_base", "ga_variant")
# Keys added after records were first written: a record without one ran its preset's
# value (before presets had them, every run had the paper's 16 / 32 px) or the default.
LATER_KEYS = tuple(f.name for f in dataclasses.fields(RunConfig) if f.metadata["later"])


def fast_path(device_type: str, flags: frozenset[str] | None = None) -> dict[str, Any]:
    """The fast-path switches as measured fastest on ``device_type`` ("cpu" or "cuda").

    CPU: channels_last, and bf16 autocast of the backbone where the CPU reports bf16
    units (:func:`kps.env.cpu_bf16_units` of ``flags``, default this machine's), else
    fp32; eager, since torch.compile "default" does not repay itself there: over three
    timed epochs of the paper protocol on one AMD EPYC core it trained 319 images/s
    against eager bf16's 318 (bench/results/cpu-amd-epyc-2026-12-02-2.json; the other
    cpu-*.json files measure each switch).  CUDA: channels_last,
    fused SGD, bf16 autocast and torch.compile "reduce-overhead" (5.38x the
    reference-style trainer on an H200, bench/results/nvidia-h200-2026-11-26-job2.json)."""
    from kps.env import cpu_bf16_units

    cuda = device_type == "cuda"
    bf16 = cuda or bool(cpu_bf16_units(flags))
    return {"channels_last": True, "fused_sgd": cuda, "bf16": bf16, "compile": "reduce-overhead" if cuda else "none"}


@functools.lru_cache(maxsize=256)
def _reference(dataset: str, method: str, imbalance: float, preset: str) -> dict[str, Any]:
    """The preset's setting of ``dataset`` x ``method`` at ``imbalance``, as a dict
    (built once per setting: every record's name is measured against it)."""
    return make_config(dataset, method, imbalance=imbalance, preset=preset).to_dict()


def differences(config: RunConfig | Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Every key but the seed whose value in ``config`` (a RunConfig or a record's config
    dict) differs from its preset's setting of the same dataset, method and imbalance:
    key -> (ours, the preset's), in RunConfig's key order."""
    ours = config.to_dict() if isinstance(config, RunConfig) else RunConfig.from_dict(config).to_dict()
    reference = _reference(ours["dataset"], ours["method"], float(ours["imbalance"]), ours["preset"])
    return {k: (ours[k], reference[k]) for k in ROLES if k != "seed" and ours[k] != reference[k]}


def _tag_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "-".join(_tag_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def setting_tag(config: RunConfig) -> str:
    """'' for the paper's setting of ``config``'s dataset, method and imbalance; else its
    :func:`differences` in the experiment's keys (:data:`IDENTITY_KEYS`) as
    ``key-value`` words joined by '.', sorted by key (e.g.
    'ga_variant-official.lr_style-official.m_max-0.2.subset_seed-666'), so that records
    of different experiments never share a file name.  A run of another preset than the
    dataset's own starts with ``preset-<name>`` and lists its differences from that
    preset; a short run (fewer epochs than its preset) ends with ``epochs-<n>``, so it
    never takes a full run's name.  Run keys other than these and speed keys (precision
    among them, :class:`RunConfig`) are not part of the name."""
    diff = differences(config)
    words = [f"{k}-{_tag_value(diff[k][0])}" for k in sorted(diff) if k in IDENTITY_KEYS and k != "preset"]
    if config.preset != DATASETS[config.dataset].preset:
        words.insert(0, f"preset-{config.preset}")
    if "epochs" in diff:
        words.append(f"epochs-{config.epochs}")
    return ".".join(words)


def write_config_list(configs: Sequence[RunConfig]) -> str:
    """``configs`` as a JSON list (what :func:`read_config_list` reads back)."""
    return json.dumps([c.to_dict() for c in configs], indent=1, sort_keys=True) + "\n"


def read_config_list(path: str | Path) -> list[RunConfig]:
    """The configs of a JSON list file (``python -m kps train-grid --config-list FILE``), in
    order; ValueError naming the file and the entry for a bad one."""
    path = Path(path)
    try:
        entries = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read the config list {path}: {err}") from err
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError(f"{path} must hold a JSON list of config objects")
    configs = []
    for k, entry in enumerate(entries):
        try:
            configs.append(RunConfig.from_dict(entry))
        except ValueError as err:
            raise ValueError(f"{path}, entry {k}: {err}") from err
    return configs
