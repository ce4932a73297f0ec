"""GPUAugment against torchvision's RandomCrop(32, padding=4) + RandomHorizontalFlip:
exact pixels for fixed parameters, same distribution of the random parameters."""

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image

from kps.augment import GPUAugment, crop_flip, large_image_transform
from kps.datasets import CIFAR_MEAN, CIFAR_STD

# chi-square 0.999 quantiles (df=80: 9x9 offsets; df=8: 9 positions, two-sample)
CHI2_999_DF80 = 124.84
CHI2_999_DF8 = 26.12


def _batch(n=6, seed=0):
    return torch.randint(0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_fixed_offsets_equal_torchvision_functional():
    images = _batch()
    top = torch.tensor([0, 8, 4, 2, 7, 0])
    left = torch.tensor([0, 8, 4, 5, 1, 8])
    flipped = torch.tensor([False, True, False, True, True, False])
    aug = GPUAugment(CIFAR_MEAN, CIFAR_STD)
    ours = aug.normalize(crop_flip(images, 4, 32, top, left, flipped))
    for k in range(len(images)):
        # torchvision on PIL, the reference pipeline: pad(fill 0) -> crop -> flip -> ToTensor -> Normalize
        pil = Image.fromarray(images[k].permute(1, 2, 0).numpy())
        crop = TF.crop(TF.pad(pil, 4), int(top[k]), int(left[k]), 32, 32)
        if flipped[k]:
            crop = TF.hflip(crop)
        ref = TF.normalize(TF.to_tensor(crop), CIFAR_MEAN, CIFAR_STD)
        assert torch.equal(ours[k], ref), k


def _encoded_image():
    """Channel 0 holds row+1, channel 1 col+1 (the zero padding stays 0)."""
    ar = torch.arange(1, 33, dtype=torch.uint8)
    return torch.stack([ar[:, None].expand(32, 32), ar[None, :].expand(32, 32), torch.zeros(32, 32, dtype=torch.uint8)])


def _decode(out):
    """(top, left, flipped) of crops of the encoded image, read off the central pixels."""
    v = out.round().long()
    top = v[:, 0, 16, 16] - 13
    flipped = v[:, 1, 16, 17] < v[:, 1, 16, 16]
    left = torch.where(flipped, v[:, 1, 16, 16] - 12, v[:, 1, 16, 16] - 13)
    return top, left, flipped


def _identity_scale():
    return GPUAugment((0.0, 0.0, 0.0), (1 / 255,) * 3)  # output = pixel value


def test_offsets_uniform_over_81_positions_and_flip_half():
    aug, gen = _identity_scale(), torch.Generator().manual_seed(0)
    batch = _encoded_image().expand(2000, 3, 32, 32).contiguous()
    tops, lefts, flips = zip(*(_decode(aug(batch, gen)) for _ in range(10)))
    top, left, flip = torch.cat(tops), torch.cat(lefts), torch.cat(flips)
    assert top.min() == 0 and top.max() == 8 and left.min() == 0 and left.max() == 8
    cells = torch.bincount(top * 9 + left, minlength=81).double()
    expected = len(top) / 81
    assert ((cells - expected) ** 2 / expected).sum() < CHI2_999_DF80
    assert abs(flip.double().mean() - 0.5) < 4 * (0.25 / len(flip)) ** 0.5
    # flip independent of offset: flip rate in the corner-vs-centre halves agree
    corner = (top < 4) & (left < 4)
    assert abs(flip[corner].double().mean() - flip[~corner].double().mean()) < 0.03


def test_same_distribution_as_torchvision_pipeline():
    torch.manual_seed(1)
    ref_t = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()])
    image = _encoded_image()
    ref = torch.stack([ref_t(image) for _ in range(3000)]).double()
    ours = _identity_scale()(image.expand(3000, 3, 32, 32).contiguous(), torch.Generator().manual_seed(2))
    for a, b in zip(_decode(ref), _decode(ours)):
        na = torch.bincount(a.long(), minlength=9).double()
        nb = torch.bincount(b.long(), minlength=9).double()
        keep = (na + nb) > 0
        chi2 = ((na - nb)[keep] ** 2 / (na + nb)[keep]).sum()  # two-sample, equal sizes
        assert chi2 < CHI2_999_DF8


def test_generator_makes_it_deterministic_and_flip_false_never_flips():
    images, aug = _batch(32), GPUAugment(CIFAR_MEAN, CIFAR_STD)
    a = aug(images, torch.Generator().manual_seed(5))
    b = aug(images, torch.Generator().manual_seed(5))
    c = aug(images, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.dtype == torch.float32 and a.shape == (32, 3, 32, 32)
    _, _, flipped = GPUAugment(CIFAR_MEAN, CIFAR_STD, flip=False).sample(500, 32, 32, torch.Generator().manual_seed(0))
    assert not flipped.any()


def test_normalize_matches_to_tensor_normalize_and_rejects_float():
    images, aug = _batch(2), GPUAugment(CIFAR_MEAN, CIFAR_STD)
    ref = TF.normalize(images.float().div(255), CIFAR_MEAN, CIFAR_STD)
    assert torch.equal(aug.normalize(images), ref)
    with pytest.raises(ValueError, match="uint8"):
        aug(images.float())
    with pytest.raises(ValueError, match="std"):
        GPUAugment((0.5,), (0.0,))


def test_normalize_reuses_its_mean_std_per_device(monkeypatch):
    """mean/std tensors are made once per device, not copied to the device per batch."""
    images, aug = _batch(2), GPUAugment(CIFAR_MEAN, CIFAR_STD)
    first = aug.normalize(images)
    made = []
    real = torch.tensor
    monkeypatch.setattr(torch, "tensor", lambda *a, **k: made.append(a) or real(*a, **k))
    for _ in range(3):
        assert torch.equal(aug.normalize(images), first)
        aug(images, torch.Generator().manual_seed(0))
    assert made == []
    mean, std = aug.stats("cpu")
    assert mean is aug.stats(torch.device("cpu"))[0] and mean.shape == (1, 3, 1, 1)
    assert torch.equal(std.flatten(), real(CIFAR_STD))


def test_large_image_transforms_resize_256_crop_224():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))
    test_out = large_image_transform(train=False)(image)
    resized = TF.resize(image, 256)
    assert resized.size == (341, 256)  # shorter side 256, aspect kept
    expected = TF.normalize(TF.to_tensor(TF.center_crop(resized, 224)), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert torch.equal(test_out, expected)
    train_out = large_image_transform(train=True)(image)
    assert train_out.shape == (3, 224, 224) and not torch.equal(train_out, test_out)
