"""Training-time augmentation (Sec. 4.2.1 and 4.2.2 of the paper).

* Small images (CIFAR-10/100-LT, Sec. 4.2.1, following He et al. [67]): zero-pad
  4 pixels on each side, take a random 32x32 crop, flip horizontally with
  probability 0.5, then normalise.  :class:`GPUAugment` does this for a whole
  uint8 batch at once on the batch's device; its distribution is that of
  ``torchvision.transforms.RandomCrop(32, padding=4)`` followed by
  ``RandomHorizontalFlip()`` (crop offsets uniform over the 9x9 positions, flip
  with probability 0.5, independent), and for a fixed offset and flip the
  pixels are exactly those of torchvision's functional ``pad``/``crop``/``hflip``.
* Large images (ImageNet-LT, iNaturalist 2018, Sec. 4.2.2): shorter side
  resized to 256, random 224x224 crop, horizontal flip; at test time the
  central 224x224 crop (:func:`large_image_transform`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torchvision import transforms

from kps.datasets import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["GPUAugment", "crop_flip", "large_image_transform"]


def crop_flip(images: torch.Tensor, pad: int, crop: int, top: torch.Tensor, left: torch.Tensor,
              flipped: torch.Tensor) -> torch.Tensor:
    """Zero-pad ``images`` (B, C, H, W) by ``pad`` pixels, crop ``crop`` x ``crop``
    at per-sample offsets ``top``/``left`` (in padded coordinates) and mirror the
    crops where ``flipped`` is true. One gather; same dtype and device as ``images``."""
    if images.dim() != 4:
        raise ValueError(f"images must be a (B, C, H, W) batch, got shape {tuple(images.shape)}")
    batch, channels = images.shape[:2]
    padded = F.pad(images, (pad, pad, pad, pad)) if pad else images
    device = images.device
    steps = torch.arange(crop, device=device)
    top, left, flipped = top.to(device), left.to(device), flipped.to(device)
    rows = top[:, None] + steps  # (B, crop)
    cols = torch.where(flipped[:, None], left[:, None] + (crop - 1) - steps, left[:, None] + steps)
    b = torch.arange(batch, device=device)[:, None, None, None]
    c = torch.arange(channels, device=device)[None, :, None, None]
    return padded[b, c, rows[:, None, :, None], cols[:, None, None, :]]


class GPUAugment:
    """Pad-crop-flip-normalise a uint8 batch on its own device (Sec. 4.2.1).

    ``generator`` (optional ``torch.Generator``, any device) makes the draws
    reproducible; without one the default generator of the batch's device is used.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], pad: int = 4, crop: int = 32,
                 flip: bool = True) -> None:
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError(f"mean and std need one entry per channel and std > 0; got {mean!r}, {std!r}")
        if pad < 0 or crop < 1:
            raise ValueError(f"need pad >= 0 and crop >= 1, got pad={pad}, crop={crop}")
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.pad, self.crop, self.flip = pad, crop, flip
        self._stats: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def stats(self, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) as float32 (1, C, 1, 1) tensors on ``device``, made once per device
        (no host-to-device copy per batch)."""
        device = torch.device(device)
        if device not in self._stats:
            shape = (1, len(self.mean), 1, 1)
            self._stats[device] = (torch.tensor(self.mean, device=device).view(shape),
                                   torch.tensor(self.std, device=device).view(shape))
        return self._stats[device]

    def sample(self, batch: int, height: int, width: int, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Random (top, left, flipped) for ``batch`` images of size ``height`` x ``width``:
        offsets uniform over the ``H + 2 pad - crop + 1`` positions (torchvision's
        ``RandomCrop.get_params``), flip with probability 0.5 (``RandomHorizontalFlip``)."""
        rows, cols = height + 2 * self.pad - self.crop + 1, width + 2 * self.pad - self.crop + 1
        if rows < 1 or cols < 1:
            raise ValueError(f"crop {self.crop} is larger than the padded image {height + 2 * self.pad}x"
                             f"{width + 2 * self.pad}")
        where = generator.device if generator is not None else torch.device(device)
        top = torch.randint(0, rows, (batch,), generator=generator, device=where)
        left = torch.randint(0, cols, (batch,), generator=generator, device=where)
        if self.flip:
            flipped = torch.rand(batch, generator=generator, device=where) < 0.5
        else:
            flipped = torch.zeros(batch, dtype=torch.bool, device=where)
        return top, left, flipped

    def __call__(self, images_uint8: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augmented, normalised float batch (B, C, crop, crop) on the batch's device."""
        _check_uint8(images_uint8)
        batch, _, height, width = images_uint8.shape
        top, left, flipped = self.sample(batch, height, width, generator, images_uint8.device)
        return self.normalize(crop_flip(images_uint8, self.pad, self.crop, top, left, flipped))

    def normalize(self, images_uint8: torch.Tensor) -> torch.Tensor:
        """Test-time path: ``(x / 255 - mean) / std`` per channel, as ``ToTensor`` + ``Normalize``."""
        _check_uint8(images_uint8)
        if images_uint8.shape[1] != len(self.mean):
            raise ValueError(f"images have {images_uint8.shape[1]} channels, mean/std have {len(self.mean)}")
        mean, std = self.stats(images_uint8.device)
        return images_uint8.float().div(255).sub(mean).div(std)


def _check_uint8(images: torch.Tensor) -> None:
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"expected a uint8 (B, C, H, W) batch, got {images.dtype} of shape {tuple(images.shape)}")


def large_image_transform(train: bool, mean: Sequence[float] = IMAGENET_MEAN,
                          std: Sequence[float] = IMAGENET_STD) -> transforms.Compose:
    """Sec. 4.2.2: shorter side to 256, then a random 224x224 crop and a random
    horizontal flip (train) or the central 224x224 crop (test); ToTensor + Normalize."""
    if train:
        steps = [transforms.Resize(256), transforms.RandomCrop(224), transforms.RandomHorizontalFlip()]
    else:
        steps = [transforms.Resize(256), transforms.CenterCrop(224)]
    return transforms.Compose([*steps, transforms.ToTensor(), transforms.Normalize(mean, std)])
