"""How a run's images reach the training device, batch by batch.

CIFAR (a :class:`kps.data.TensorSplit`) stays on the device as uint8 and is
augmented there (:class:`kps.data.GPUAugment`: pad, crop, flip; Sec. 4.2.1);
large-image datasets (ImageNet-LT, iNaturalist) go through a torch DataLoader
with CPU transforms.  Both follow the trainer's permutation of the training set."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from kps.configs import DATA_KEYS, RunConfig
from kps.augment import GPUAugment
from kps.data import LTData, TensorSplit, build_dataset, downsample
from kps.datasets import DATASETS

__all__ = ["TensorBatches", "LoaderBatches", "crop_padding", "augment_for", "shard", "load_data", "to_device", "data_key",
           "targets_of"]


def crop_padding(size: int, native: int) -> int:
    """The random crop's padding at input side ``size`` for data of side ``native``:
    Sec. 4.2.1's 4 pixels at 32, scaled with the side (2 at 16 px: the same fraction)."""
    return max(1, round(4 * size / native))


def augment_for(data: LTData) -> GPUAugment:
    """Sec. 4.2.1's pad-4 crop-32 flip at the data's image size (:func:`crop_padding`)."""
    spec = DATASETS[data.name]
    size = int(data.train.images.shape[-1])
    return GPUAugment(spec.mean, spec.std, pad=crop_padding(size, spec.image_size), crop=size)


def shard(order: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """This rank's part of a permutation, as torch's DistributedSampler does it:
    pad by wrapping to a multiple of the world size, then every world_size-th index."""
    if world_size == 1:
        return order
    total = math.ceil(len(order) / world_size) * world_size
    padded = torch.cat([order, order[: total - len(order)]])
    return padded[rank:total:world_size]


class TensorBatches:
    """A TensorSplit dataset resident on the training device as uint8;
    batches augmented there and normalised."""

    def __init__(self, data: LTData, device: torch.device, augment: GPUAugment) -> None:
        self.train = TensorSplit(data.train.images.to(device), data.train.targets.to(device))
        self.test = TensorSplit(data.test.images.to(device), data.test.targets.to(device))
        self.augment = augment
        self.generator_device = device

    def train_batches(self, indices: torch.Tensor, batch_size: int,
                      generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for chunk in indices.split(batch_size):
            yield self.augment(self.train.images[chunk], generator), self.train.targets[chunk]

    def test_batches(self, indices: torch.Tensor, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for chunk in indices.split(batch_size):
            yield self.augment.normalize(self.test.images[chunk]), self.test.targets[chunk]


class LoaderBatches:
    """A map-style dataset (ImageNet-LT, iNat) read by a DataLoader with CPU
    transforms, following the trainer's permutation; the DataLoader's generator
    (seeding its workers' augmentation) is the trainer's augmentation generator."""

    def __init__(self, data: LTData, device: torch.device, num_workers: int) -> None:
        self.train, self.test, self.device, self.num_workers = data.train, data.test, device, num_workers
        self.generator_device = torch.device("cpu")

    def _load(self, dataset: Any, indices: torch.Tensor, batch_size: int, generator: torch.Generator | None):
        loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(dataset, indices.tolist()), batch_size=batch_size, shuffle=False,
            num_workers=self.num_workers, pin_memory=self.device.type == "cuda", generator=generator,
        )
        for x, y in loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def train_batches(self, indices: torch.Tensor, batch_size: int, generator: torch.Generator):
        return self._load(self.train, indices.cpu(), batch_size, generator)

    def test_batches(self, indices: torch.Tensor, batch_size: int):
        return self._load(self.test, indices.cpu(), batch_size, None)


def targets_of(split: Any) -> torch.Tensor:
    """The labels of a TensorSplit or of a map-style dataset with ``targets``."""
    return split.targets if isinstance(split, TensorSplit) else torch.as_tensor(split.targets)


def load_data(config: RunConfig, data_root: str | Path) -> LTData:
    """The long-tailed training set and the test set of ``config``, at its input size
    (small-image sets downsampled once, :func:`kps.data.downsample`)."""
    data = build_dataset(config.dataset, data_root, config.imbalance, seed=config.subset_seed)
    if isinstance(data.train, TensorSplit):
        data = downsample(data, config.image_size)
    return data


def data_key(config: RunConfig) -> tuple:
    """Configurations with the same key train on the same data: the values of their
    data keys (:data:`kps.configs.DATA_KEYS`)."""
    return tuple(getattr(config, k) for k in DATA_KEYS)


def to_device(data: LTData, device: torch.device) -> LTData:
    """``data`` with its TensorSplits moved to ``device`` (other datasets unchanged)."""
    move = lambda s: TensorSplit(s.images.to(device), s.targets.to(device)) if isinstance(s, TensorSplit) else s  # noqa: E731
    return replace(data, train=move(data.train), test=move(data.test))
