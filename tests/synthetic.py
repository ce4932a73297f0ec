"""Tiny synthetic long-tailed data for the trainer tests (CPU, seconds), and the
comparison of run records without their timing."""

import torch

from kps.data import LTData, TensorSplit

COUNTS = (20, 16, 12, 10, 8, 6, 5, 4, 3, 2)


def synthetic_data(counts=COUNTS, n_test: int = 5, seed: int = 0) -> LTData:
    """10 classes of 32x32 uint8 images: a random prototype per class plus noise,
    ``counts`` training images per class, ``n_test`` test images per class.
    Named "cifar10" so the trainer uses the CIFAR augmentation."""
    g = torch.Generator().manual_seed(seed)
    c = len(counts)
    proto = torch.randint(0, 256, (c, 3, 32, 32), generator=g)

    def images(y: torch.Tensor) -> torch.Tensor:
        noise = torch.randint(-60, 60, (len(y), 3, 32, 32), generator=g)
        return (proto[y] + noise).clamp(0, 255).to(torch.uint8)

    y_train = torch.cat([torch.full((n,), k, dtype=torch.long) for k, n in enumerate(counts)])
    y_test = torch.arange(c).repeat_interleave(n_test)
    return LTData("cifar10", "synthetic", c, [f"class{k}" for k in range(c)], list(counts),
                  TensorSplit(images(y_train), y_train), TensorSplit(images(y_test), y_test))


def tiny_overrides(**more):
    """Config overrides for a seconds-long CPU run."""
    return dict(dict(epochs=2, batch_size=16, warmup_epochs=1, decay_epochs=(1,), decay_ratio=0.1), **more)


class FolderLike(torch.utils.data.Dataset):
    """A map-style dataset like kps.folders.ImageListDataset (CPU transform with
    torch's global RNG, ``targets`` attribute) over a TensorSplit."""

    def __init__(self, split: TensorSplit) -> None:
        self.split, self.targets = split, split.targets.tolist()

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        image = self.split.images[i].float() / 255 - 0.5
        if torch.rand(()) < 0.5:
            image = image.flip(-1)
        return image, self.targets[i]


def folder_data() -> LTData:
    """synthetic_data() with both splits as map-style datasets (the large-image path)."""
    data = synthetic_data()
    data.train, data.test = FolderLike(data.train), FolderLike(data.test)
    return data


# when it ran, and which commit (others may commit while the suite runs)
TIMING = ("wall_time_s", "started_at", "git_commit", "git_dirty", "segments")


def strip_timing(record: dict) -> dict:
    out = {k: v for k, v in record.items() if k not in TIMING}
    out["history"] = [{k: v for k, v in row.items() if k != "time_s"} for row in record["history"]]
    return out
