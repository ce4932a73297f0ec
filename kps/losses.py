"""KPS loss (eqs. 15 and 25), its gradient-adjustment stage, and the baselines
of Tables 3-4, all behind one registry (``LOSSES`` / ``make_loss``).

Every loss is an ``nn.Module`` with
  * ``input_kind``: "logits" (linear head) or "cosine" (cosine head: scores are
    cos(theta_j) in [-1, 1]);
  * ``weight``: per-class weights (DRW sets it; None = unweighted), any 1-D
    array-like of C positive numbers;
  * ``forward(scores (B, C) float, target)`` -> mean loss.  ``target`` is either
    class indices (B,) (integer dtype) or soft labels (B, C) (float dtype, rows
    are probability vectors; mixup);
  * ``check_values`` (settable, default True): check the *values* of every
    call's input (finite scores, target in range, soft rows valid), which reads
    one flag vector back from the device per call (a host synchronisation).
    False skips them, for a training loop that watches its mean loss instead:
    NaN scores then give a NaN loss (no ValueError); the structural checks
    (types, shapes, dtypes) stay, and the maths is the same.

Soft targets are read as a *mixture of hard targets*: loss(x, t) = sum_k t_k
loss(x, k).  For mixup, t = lam e_a + (1 - lam) e_b, this is exactly
lam loss(x, a) + (1 - lam) loss(x, b), the mixup criterion of the authors'
code, with every margin applied to its own target class.  The cost grows with
the number of non-zero entries per row (two for mixup).

Averaging: sum_b sum_k t_bk w_k loss(x_b, k) / sum_b sum_k t_bk w_k (w = weight,
or 1), i.e. ``F.cross_entropy(..., weight=w)`` for hard targets.  The
exception is class-balanced focal loss, which averages over the batch as
Cui et al. do.

Softmax losses (CE, focal, LA, LDAM, CosFace, ArcFace, EQL, KPS) are thin
wrappers over one function, :func:`margin_softmax_loss`.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kps.params import VARIANTS, effective_number_weights, kps_parameters, validate_counts

__all__ = [
    "margin_softmax_loss",
    "CrossEntropyLoss",
    "FocalLoss",
    "ClassBalancedFocalLoss",
    "LDAMLoss",
    "LogitAdjustedLoss",
    "CosFaceLoss",
    "ArcFaceLoss",
    "EqualizationLoss",
    "KPSLoss",
    "LOSSES",
    "make_loss",
]

# Rows of soft targets must sum to 1 within this tolerance.
_SOFT_ROW_SUM_ATOL = 1e-3

Candidates = list[tuple[Tensor, "Tensor | None"]]


def _describe(x: object) -> str:
    if isinstance(x, Tensor):
        return f"tensor of shape {tuple(x.shape)} and dtype {x.dtype}"
    return f"{type(x).__name__}"


def _check_scores_shape(scores: object, num_classes: int | None = None) -> None:
    """Cheap structural checks of scores (no device synchronisation)."""
    if not isinstance(scores, Tensor) or scores.ndim != 2 or not scores.is_floating_point():
        raise ValueError(f"scores must be a float tensor of shape (B, C), got {_describe(scores)}")
    if scores.shape[0] == 0 or scores.shape[1] == 0:
        raise ValueError(f"scores is empty: shape {tuple(scores.shape)}")
    if num_classes is not None and scores.shape[1] != num_classes:
        raise ValueError(f"scores have {scores.shape[1]} columns but the loss was built for {num_classes} classes")


def _candidates(scores: Tensor, target: object, validate: bool = True) -> Candidates:
    """Validate scores and target; return the target as hard-target candidates
    [(class index (B,), probability mass (B,) or None for hard targets)].

    With ``validate``, all value checks (finite scores, target range / soft-label
    validity) are fused into a single host synchronisation; the diagnosis runs
    only on error.  Without, only the structural checks run: no synchronisation
    for hard targets (soft targets still read their row width back).
    """
    _check_scores_shape(scores)
    b, c = scores.shape
    if not isinstance(target, Tensor):
        raise ValueError(f"target must be a tensor of class indices (B,) or soft labels (B, C), got {_describe(target)}")
    if target.is_floating_point():
        if target.shape != scores.shape:
            raise ValueError(f"soft target must have the shape of scores {tuple(scores.shape)}, got {tuple(target.shape)}")
        nonzero = (target > 0).sum(dim=1).max()
        if not validate:
            width = int(nonzero)
            mass, index = target.topk(width, dim=1)
            return [(index[:, k], mass[:, k]) for k in range(width)]
        finite = torch.isfinite(scores).all()
        flags = torch.stack([
            finite,
            torch.isfinite(target).all(),
            (target >= 0).all(),
            ((target.sum(dim=1) - 1).abs() <= _SOFT_ROW_SUM_ATOL).all(),
        ])
        *ok, width = torch.cat([flags.to(torch.int64), nonzero.reshape(1)]).tolist()
        problems = ["scores contain NaN or inf", "soft target contains NaN or inf",
                    "soft target has negative entries", "soft target rows must sum to 1"]
        for good, problem in zip(ok, problems):
            if not good:
                raise ValueError(problem)
        mass, index = target.topk(int(width), dim=1)
        return [(index[:, k], mass[:, k]) for k in range(int(width))]
    if target.dtype == torch.bool or target.is_complex():
        raise ValueError(f"hard target must have an integer dtype, got {target.dtype}")
    if target.shape != (b,):
        raise ValueError(f"hard target must have shape ({b},) to match scores {tuple(scores.shape)}, got {tuple(target.shape)}")
    if not validate:
        return [(target.long(), None)]
    finite = torch.isfinite(scores).all()
    ok_finite, ok_low, ok_high = torch.stack([finite, (target >= 0).all(), (target < c).all()]).tolist()
    if not ok_finite:
        raise ValueError("scores contain NaN or inf")
    if not (ok_low and ok_high):
        raise ValueError(f"target out of range [0, {c - 1}]: min {int(target.min())}, max {int(target.max())}")
    return [(target.long(), None)]


def _weighted_mean(terms: list[tuple[Tensor, Tensor, "Tensor | None"]], weight: Tensor | None) -> Tensor:
    """sum of coef * loss / sum of coef, coef = probability mass * weight[target]."""
    num = den = None
    for loss, index, mass in terms:
        coef = torch.ones_like(loss) if mass is None else mass.to(loss.dtype)
        if weight is not None:
            coef = coef * weight[index]
        num = (coef * loss).sum() if num is None else num + (coef * loss).sum()
        den = coef.sum() if den is None else den + coef.sum()
    return num / den


def _per_class(name: str, value: Tensor | None, num_classes: int, like: Tensor) -> Tensor | None:
    if value is None:
        return None
    value = torch.as_tensor(value).to(device=like.device, dtype=like.dtype)
    if value.shape != (num_classes,):
        raise ValueError(f"{name} must have shape ({num_classes},), got {tuple(value.shape)}")
    return value


def margin_softmax_loss(
    scores: Tensor,
    target: Tensor,
    *,
    radius: Tensor | None = None,
    margin: Tensor | None = None,
    column_scale: float | Tensor | None = None,
    row_scale: Tensor | None = None,
    weight: Tensor | None = None,
    gamma: float = 0.0,
    exclude: Tensor | None = None,
    validate: bool = True,
) -> Tensor:
    """The one softmax core: mean cross-entropy of, for a sample with target y,

        logit_j = row_scale[y] * column_scale_j * (radius_j * score_j - margin_j [j = y])

    (each factor optional).  KPS stage 1 (eq. 15): radius r, margin m,
    column_scale s_base.  KPS-GA, paper (eq. 25): column_scale s (per class).
    KPS-GA, authors' code: row_scale s (scale of the target class, per row).
    LDAM / CosFace: margin and a scalar scale.  CE: nothing.

    Arguments (C classes, B rows):
      radius, row_scale, weight: shape (C,).  margin: (C,) or (B, C) (a per-row
      margin, as ArcFace's cos(theta) - cos(theta + m)).  column_scale: a
      number or shape (C,).
      gamma: focal modulation, loss = -(1 - p_y)^gamma log p_y (Lin et al. 2017).
      exclude: bool (B, C); True removes a *non-target* column from the
      softmax denominator (eq. 23 with w_j = 0; equalization loss).
      weight: per-class weights of the average (see module docstring).
      validate: run the value checks of the input (one host synchronisation;
      see ``check_values`` in the module docstring); False skips them.

    The gradient w.r.t. the final score zhat_j = radius_j score_j - margin_j [j=y]
    is column_scale_j row_scale_y (p_j - [j = y]) (eq. 22 for a single scale s).
    """
    candidates = _candidates(scores, target, validate)
    b, c = scores.shape
    z = scores.to(torch.promote_types(scores.dtype, torch.float32))
    radius = _per_class("radius", radius, c, z)
    row_scale = _per_class("row_scale", row_scale, c, z)
    weight = _per_class("weight", weight, c, z)
    if isinstance(column_scale, Tensor):
        column_scale = _per_class("column_scale", column_scale, c, z)
    if margin is not None:
        margin = torch.as_tensor(margin).to(device=z.device, dtype=z.dtype)
        if margin.shape not in ((c,), (b, c)):
            raise ValueError(f"margin must have shape ({c},) or ({b}, {c}), got {tuple(margin.shape)}")
    if exclude is not None and (exclude.shape != (b, c) or exclude.dtype != torch.bool):
        raise ValueError(f"exclude must be a bool tensor of shape ({b}, {c}), got {_describe(exclude)}")
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma!r}")

    if radius is not None:
        z = z * radius
    terms = []
    for index, mass in candidates:
        column = index[:, None]
        logits = z
        if margin is not None:
            target_margin = margin[index][:, None] if margin.ndim == 1 else margin.gather(1, column)
            logits = logits.scatter_add(1, column, -target_margin)
        if column_scale is not None:
            logits = logits * column_scale
        if row_scale is not None:
            logits = logits * row_scale[index][:, None]
        if exclude is not None:
            logits = logits.masked_fill(exclude.scatter(1, column, False), float("-inf"))
        log_p = F.log_softmax(logits, dim=1).gather(1, column).squeeze(1)
        loss = -log_p
        if gamma > 0:
            one_minus_p = (-torch.expm1(log_p)).clamp_min(torch.finfo(z.dtype).tiny)
            loss = loss * one_minus_p**gamma
        terms.append((loss, index, mass))
    return _weighted_mean(terms, weight)


class _LongTailLoss(nn.Module):
    """Common part: validated class counts, the settable ``weight``, buffers."""

    input_kind = "logits"
    check_values: bool = True  # value checks of every call's input (see the module docstring)
    generator: torch.Generator | None = None  # the loss's random draws (EQL); None: torch's global RNG

    def __init__(self, counts) -> None:
        super().__init__()
        self.counts = validate_counts(counts)
        self.num_classes = len(self.counts)
        self.register_buffer("_weight", None, persistent=False)

    @property
    def weight(self) -> Tensor | None:
        """Per-class weights (C,) or None; set from any array-like of C positive numbers."""
        return self._weight

    @weight.setter
    def weight(self, value) -> None:
        if value is None:
            self._weight = None
            return
        w = torch.as_tensor(np.asarray(value.detach().cpu() if isinstance(value, Tensor) else value, dtype=np.float64))
        if w.shape != (self.num_classes,):
            raise ValueError(f"weight must have shape ({self.num_classes},), got {tuple(w.shape)}")
        if not bool(torch.isfinite(w).all()) or bool((w <= 0).any()):
            raise ValueError(f"weight entries must be finite and > 0, got {w.tolist()}")
        self._weight = w.to(value.device) if isinstance(value, Tensor) else w  # stay on the caller's device

    def _vector(self, name: str, values) -> None:
        """Register a per-class constant as a float64 buffer (cast to the scores' dtype when used)."""
        self.register_buffer(name, torch.as_tensor(np.asarray(values, dtype=np.float64)), persistent=False)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, input_kind={self.input_kind!r}"


def _positive(name: str, value: float) -> float:
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return float(value)


def _non_negative(name: str, value: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return float(value)


class CrossEntropyLoss(_LongTailLoss):
    """Softmax cross-entropy on logits (baseline "CE loss" of Tables 3-4)."""

    input_kind = "logits"

    def forward(self, scores: Tensor, target: Tensor) -> Tensor:
        _check_scores_shape(scores, self.num_classes)
        return margin_softmax_loss(scores, target, weight=self.weight,
                                   validate=self.check_values)


class FocalLoss(_LongTailLoss):
    """Softmax focal loss, -(1 - p_y)^gamma log p_y (Lin et al., ICCV 2017), on
    logits.  gamma = 0 is CE.  Default gamma = 1 as in the focal baselines of
    LDAM-DRW's and the KPS authors' code for CIFAR.  The modulating factor is
    differentiated (Lin et al.), not detached."""

    input_kind = "logits"

    def __init__(self, counts, *, gamma: float = 1.0) -> None:
        super().__init__(counts)
        self.gamma = _non_negative("gamma", gamma)

    def forward(self, scores: Tensor, target: Tensor) -> Tensor:
        _check_scores_shape(scores, self.num_classes)
        return margin_softmax_loss(scores, target, weight=self.weight, gamma=self.gamma,
                                   validate=self.check_values)


class ClassBalancedFocalLoss(_LongTailLoss):
    """Class-balanced focal loss of Cui et al. (CVPR 2019), sigmoid form, on logits:

        CB(z, y) = w_y sum_j (1 - p_j^t)^gamma * BCE(z_j, [j = y]),
        p_j^t = sigmoid(z_j) if j = y else sigmoid(-z_j),
        w_y = (1 - beta) / (1 - beta^{n_y}), normalised to sum C,

    averaged over the batch (sum / B), as in Cui et al.'s released code (which
    the KPS paper's CB-Focal numbers come from).  The modulator is computed as
    exp(-gamma (y z + softplus(-z))) for stability.  A DRW ``weight``, if set,
    multiplies w.  Defaults beta = 0.9999, gamma = 1.0.  The method ``cb_focal``
    starts its linear head's bias at -log(C - 1), as that code does
    (:class:`kps.configs.MethodSpec` ``prior_bias``).
    """

    input_kind = "logits"

    def __init__(self, counts, *, beta: float = 0.9999, gamma: float = 1.0) -> None:
        super().__init__(counts)
        self.beta = float(beta)
        self.gamma = _non_negative("gamma", gamma)
        self._vector("class_balance", effective_number_weights(self.counts, self.beta))

    def forward(self, scores: Tensor, target: Tensor) -> Tensor:
        _check_scores_shape(scores, self.num_classes)
        candidates = _candidates(scores, target, self.check_values)
        z = scores.to(torch.promote_types(scores.dtype, torch.float32))
        w = self.class_balance.to(device=z.device, dtype=z.dtype)
        if self.weight is not None:
            w = w * self.weight.to(device=z.device, dtype=z.dtype)
        total = z.new_zeros(())
        for index, mass in candidates:
            onehot = torch.zeros_like(z).scatter_(1, index[:, None], 1.0)
            bce = F.binary_cross_entropy_with_logits(z, onehot, reduction="none")
            modulator = torch.exp(-self.gamma * (onehot * z + F.softplus(-z)))
            per_row = (modulator * bce).sum(dim=1) * w[index]
            total = total + (per_row if mass is None else per_row * mass.to(z.dtype)).sum()
        return total / z.shape[0]


class LDAMLoss(_LongTailLoss):
    """LDAM loss (Cao et al., NeurIPS 2019) on cosines: CE of
    scale * (cos_j - m_j [j = y]) with m_j proportional to n_j^{-1/4}, largest
    margin ``max_margin`` (0.5); scale 30.  LDAM-DRW = this + DRW ``weight``."""

    input_kind = "cosine"

    def __init__(self, counts, *, max_margin: float = 0.5, scale: float = 30.0) -> None:
        super().__init__(counts)
        self.max_margin = _non_negative("max_margin", max_margin)
        self.scale = _positive("scale", scale)
        m = self.counts.astype(np.float64) ** -0.25
        self._vector("margin", m * (self.max_margin / m.max()))

    def forward(self, scores: Tensor, target: Tensor) -> Tensor:
        _check_scores_shape(scores, self.num_classes)
        return margin_softmax_loss(scores, target, margin=self.margin, column_scale=self.scale, weight=self.weight,
                                   validate=self.check_values)


class LogitAdjustedLoss(_LongTailLoss):
    """Logit-adjusted loss (Menon et al., ICLR 2021, eq. 10) on logits: CE of
    z_j + tau * log(pi_j), pi_j = n_j / N the training prior.  tau = 0 is CE."""

    input_kind = "logits"

    def __init__(self, counts, *, tau: float = 1.0) -> None:
        super().__init__(counts)
        if not math.isfinite(tau):
            raise ValueError(f"tau must be finite, got {tau!r}")
        self.tau = float(tau)
        n = self.counts.astype(np.float64)
        self._vector("log_prior", np.log(n / n.sum()))

    def forward(self, scores: Tensor, target: Tensor) -> Tensor:
        _check_scores_shape(scores, self.num_classes)
        adjusted = scores + self.tau * self.log_prior.to(device=scores.device, dtype=scores.dtype)
        return margin_softmax_loss(adjusted, target, weight=self.weight,
                                   validate=self.check_values)


class CosFaceLoss(_LongTailLoss):
    """CosFace / large-margin cosine loss (Wang et al., CVPR 2018) on cosines:
    CE of scale * (cos_j - margin [j = y]); one margin for all classes.
    Defaults margin 0.35 (CosFace paper) and scale 30 (the scale LDAM uses on
    the same CIFAR backbones; the paper's 64 was for face recognition)."""

    input_kind = "cosine"

    def __init__(self, counts, *, scale: float = 30.0, margin: float = 0.35) -> None:
        super().__init__(counts)
        self.scale = _positive("scale", scale)
        self.margin_value = _non_negative("margin", margin)
        self._vector("margin", np.full(self.num_classes, self.margin_value))

    def forward(self, scores: Tensor, target: Tensor) -> Tensor:
        _check_scores_shape(scores, self.num_classes)
        return margin_softmax_loss(scores, target, margin=self.margin, column_scale=self.scale, weight=self.weight,
                                   validate=self.check_values)


class ArcFaceLoss(_LongTailLoss):
    """ArcFace / additive angular margin (Deng et al., CVPR 2019) on cosines:
    CE with target logit scale * cos(theta_y + margin), others scale * cos(theta_j).

    No arccos is taken: cos(theta + m) = cos(theta) cos(m) - sin(theta) sin(m)
    with sin(theta) = sqrt(max(1 - cos^2, eps)) (eps: machine epsilon of the
    dtype), so gradients stay finite at |cos| = 1.  Where theta + m > pi (cos(theta) <= cos(pi - m)) the target
    logit is cos(theta) - m sin(m) instead, keeping it decreasing in theta (the
    fallback of the reference insightface implementation).  Defaults margin 0.5
    (ArcFace paper), scale 30 (as CosFace here)."""

    input_kind = "cosine"

    def __init__(self, counts, *, scale: float = 30.0, margin: float = 0.5) -> None:
        super().__init__(counts)
        self.scale = _positive("scale", scale)
        if not 0.0 <= margin < math.pi / 2:
            raise ValueError(f"margin must be an angle in [0, pi/2) radians, got {margin!r}")
        self.margin = float(margin)

    def forward(self, scores: Tensor, target: Tensor) -> Tensor:
        _check_scores_shape(scores, self.num_classes)
        m = self.margin
        scores = scores.to(torch.promote_types(scores.dtype, torch.float32))
        cos = scores.clamp(-1.0, 1.0)
        sin = torch.sqrt((1.0 - cos * cos).clamp_min(torch.finfo(cos.dtype).eps))
        phi = cos * math.cos(m) - sin * math.sin(m)
        phi = torch.where(cos > math.cos(math.pi - m), phi, cos - m * math.sin(m))
        return margin_softmax_loss(scores, target, margin=scores - phi, column_scale=self.scale, weight=self.weight,
                                   validate=self.check_values)


class EqualizationLoss(_LongTailLoss):
    """Softmax equalization loss (Tan et al., CVPR 2020, the softmax form they
    use for image classification), on logits:

        p~_y = exp(z_y) / sum_k w~_k exp(z_k),
        w~_k = 1 - beta_k T_lambda(f_k) (1 - [k = y]),

    f_k = n_k / N the class frequency, T_lambda(f) = 1 if f < lambda else 0,
    beta_k ~ Bernoulli(gamma) drawn per sample and class (from ``generator``, on the
    scores' device; torch's global RNG if None).
    So a sample's negative gradient to a rare class (frequency below lambda)
    is dropped with probability gamma; this is eq. 23 of the KPS paper with
    w~ in {0, 1}.  Defaults threshold (lambda) = 5e-3 and gamma = 0.9 are
    those of the Bag-of-Tricks-LT code (Zhang et al., AAAI 2021), which
    implements exactly this formula; gamma = 0 is CE."""

    input_kind = "logits"

    def __init__(self, counts, *, threshold: float = 5e-3, gamma: float = 0.9) -> None:
        super().__init__(counts)
        self.threshold = _non_negative("threshold", threshold)
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma is a probability and must be in [0, 1], got {gamma!r}")
        self.gamma = float(gamma)
        freq = self.counts / self.counts.sum()
        self.register_buffer("rare", torch.as_tensor(freq < self.threshold), persistent=False)
        self._suppresses = bool((freq < self.threshold).any()) and self.gamma > 0

    def forward(self, scores: Tensor, target: Tensor) -> Tensor:
        _check_scores_shape(scores, self.num_classes)
        exclude = None
        if self._suppresses:
            beta = torch.rand(scores.shape, device=scores.device, generator=self.generator) < self.gamma
            exclude = beta & self.rare.to(scores.device)
        return margin_softmax_loss(scores, target, exclude=exclude, weight=self.weight,
                                   validate=self.check_values)


class KPSLoss(_LongTailLoss):
    """Key Point Sensitive loss on cosines, with optional gradient adjustment.

    ``ga = False`` (Algorithm 1, lines 1-5): eq. 15,
        -log softmax_y( s_base * (r_j cos_j - m_j [j = y]) ).
    ``ga = True`` (lines 6-10):
      * ``variant="paper"``: eq. 25, each column j scaled by its own s_j,
        -log( exp(s_y zhat_y) / sum_j exp(s_j zhat_j) ), zhat of eq. 20;
      * ``variant="official"``: the authors' code, the whole row scaled by the
        target's s_y (clamped to [s_base, 50]).
    r, m, s come from :func:`kps.params.kps_parameters` (eqs. 26-30, or the
    official-code version for ``variant="official"``); ``params`` holds them.
    """

    input_kind = "cosine"

    def __init__(
        self,
        counts,
        *,
        m_max: float = 0.5,
        s_base: float = 15.0,
        n_base: float = 50,
        ga: bool = False,
        variant: str = "paper",
    ) -> None:
        super().__init__(counts)
        if variant not in VARIANTS:
            raise ValueError(f"unknown KPS variant {variant!r}; valid: {', '.join(VARIANTS)}")
        self.params = kps_parameters(self.counts, n_base=n_base, m_max=m_max, s_base=s_base, variant=variant)
        self.variant = variant
        self.s_base = float(s_base)
        self.ga = bool(ga)
        self._vector("radius", self.params.r)
        self._vector("margin", self.params.m)
        self._vector("scale", self.params.s)

    def forward(self, scores: Tensor, target: Tensor) -> Tensor:
        _check_scores_shape(scores, self.num_classes)
        common = dict(radius=self.radius, margin=self.margin, weight=self.weight, validate=self.check_values)
        if not self.ga:
            return margin_softmax_loss(scores, target, column_scale=self.s_base, **common)
        if self.variant == "paper":
            return margin_softmax_loss(scores, target, column_scale=self.scale, **common)
        return margin_softmax_loss(scores, target, row_scale=self.scale, **common)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, variant={self.variant!r}, ga={self.ga}, s_base={self.s_base}"


LOSSES: dict[str, type[_LongTailLoss]] = {
    "ce": CrossEntropyLoss,
    "focal": FocalLoss,
    "cb_focal": ClassBalancedFocalLoss,
    "ldam": LDAMLoss,
    "la": LogitAdjustedLoss,
    "cosface": CosFaceLoss,
    "arcface": ArcFaceLoss,
    "eql": EqualizationLoss,
    "kps": KPSLoss,
}


def make_loss(name: str, counts, **options) -> nn.Module:
    """Build a registered loss: ``LOSSES[name](counts, **options)``.

    ValueError for an unknown name (listing the valid ones) or an option the
    loss does not take (listing the ones it does)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid: {', '.join(LOSSES)}")
    cls = LOSSES[name]
    accepted = [p.name for p in inspect.signature(cls.__init__).parameters.values() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for loss {name!r}; valid: {accepted or 'none'}")
    return cls(counts, **options)
