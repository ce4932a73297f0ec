"""Backbones of Table 2 with a linear or a cosine classification head.

* ``resnet32``: He et al.'s CIFAR ResNet-32 (3 stages of 5 BasicBlocks, widths
  16/32/64, option-A shortcuts: stride-2 subsampling plus zero channel padding,
  so no shortcut parameters; Kaiming-normal init of conv and linear weights), as
  in the reference CIFAR-LT code (LDAM-DRW) used by the KPS authors.
* ``resnet50``, ``resnext50_32x4d``: torchvision's, randomly initialised
  (``weights=None``, nothing is downloaded); the final ``fc`` is replaced by the head.

Head ``"cosine"`` (:class:`CosineLinear`) returns cos(theta_j) between the
normalised feature and the normalised class weight w_j, the quantity the KPS
loss (eq. 15) and LDAM/CosFace/ArcFace work on; ``"linear"`` returns logits.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

__all__ = ["ARCHS", "HEADS", "Classifier", "CosineLinear", "ResNet32Body", "Scores", "make_model", "resnet32"]

ARCHS = ("resnet32", "resnet50", "resnext50_32x4d")
HEADS = ("cosine", "linear")


class CosineLinear(nn.Module):
    """cos(theta_j) = <x / |x|, w_j / |w_j|>; ``weight`` is (C, D), no bias.
    Initialised as the reference ``NormedLinear``: uniform(-1, 1) rows renormed to unit length."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        with torch.no_grad():
            self.weight.uniform_(-1, 1).renorm_(2, 0, 1e-5).mul_(1e5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) @ F.normalize(self.weight, dim=1).t()


class _BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity or option-A (parameter-free) shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride, self.extra = stride, planes - in_planes

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1 and self.extra == 0:
            return x
        x = x[:, :, :: self.stride, :: self.stride]
        low, high = self.extra // 2, self.extra - self.extra // 2  # zero channels each side
        return F.pad(x, (0, 0, 0, 0, low, high))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet32Body(nn.Module):
    """CIFAR ResNet-32 up to global average pooling: (B, 3, H, W) -> (B, 4 w), stage
    widths w, 2w, 4w (``width`` w = 16 in He et al. and the paper; the CPU-scale
    protocol of kps.configs uses 8)."""

    def __init__(self, blocks_per_stage: int = 5, width: int = 16) -> None:
        super().__init__()
        if not (isinstance(width, int) and width >= 1):
            raise ValueError(f"width must be an int >= 1, got {width!r}")
        self.width = width
        self.out_features = 4 * width
        self.conv1 = nn.Conv2d(3, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        stages, in_planes = [], width
        for planes, stride in ((width, 1), (2 * width, 2), (4 * width, 2)):
            blocks = []
            for i in range(blocks_per_stage):
                blocks.append(_BasicBlock(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)


class Classifier(nn.Module):
    """``body`` (images -> features) followed by ``head`` (features -> scores)."""

    def __init__(self, body: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.body, self.head = body, head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate (un-normalised) features, (B, D)."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _make_head(head: str, in_features: int, num_classes: int) -> nn.Module:
    if head == "cosine":
        return CosineLinear(in_features, num_classes)
    if head == "linear":
        return nn.Linear(in_features, num_classes)
    raise ValueError(f"unknown head {head!r}; valid: {', '.join(HEADS)}")


def resnet32(num_classes: int, head: str = "cosine", width: int = 16) -> Classifier:
    """ResNet-32 (stage widths ``width``, 2x, 4x) with Kaiming-normal conv/linear weights."""
    body = ResNet32Body(width=width)
    model = Classifier(body, _make_head(head, body.out_features, num_classes))
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight)
    return model


def make_model(arch: str, num_classes: int, head: str = "cosine", prior_bias: bool = False,
               width: int = 16) -> Classifier:
    """``arch`` in :data:`ARCHS` with a ``head`` in :data:`HEADS` over ``num_classes``
    (``width``: ResNet-32's first-stage width; the ResNet-50s keep their own);
    ``prior_bias``: a linear head's bias starts at -log(C - 1), every sigmoid at 1/C
    (for sigmoid losses, see :class:`kps.configs.MethodSpec`)."""
    if not (isinstance(num_classes, int) and num_classes >= 1):
        raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; valid: {', '.join(HEADS)}")
    if prior_bias and (head != "linear" or num_classes < 2):
        raise ValueError(f"prior_bias needs a linear head (it has the bias) over >= 2 classes, "
                         f"got a {head} head over {num_classes}")
    if arch == "resnet32":
        model = resnet32(num_classes, head, width)
    elif arch in ("resnet50", "resnext50_32x4d"):
        body = getattr(torchvision.models, arch)(weights=None)
        in_features = body.fc.in_features
        body.fc = nn.Identity()
        model = Classifier(body, _make_head(head, in_features, num_classes))
    else:
        raise ValueError(f"unknown arch {arch!r}; valid: {', '.join(ARCHS)}")
    if prior_bias:
        nn.init.constant_(model.head.bias, -math.log(num_classes - 1))
    return model


class Scores(nn.Module):
    """model(x) -> class scores, with the backbone under bf16 autocast when asked
    and the head (cosines or logits) always in float32."""

    def __init__(self, model: nn.Module, bf16: bool) -> None:
        super().__init__()
        self.model, self.bf16 = model, bf16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # no autocast weight cache: each region is one forward, which uses every weight once
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16, cache_enabled=False):
            features = self.model.features(x)
        with torch.autocast(x.device.type, enabled=False):
            return self.model.head(features.float())
