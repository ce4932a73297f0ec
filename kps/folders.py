"""Image datasets read from split files (Sec. 4.1.2-4.1.3 of the paper).

* ImageNet-LT (Liu et al. [52]): ``ImageNet_LT_train.txt`` / ``ImageNet_LT_test.txt``,
  one ``relative/path.JPEG label`` line per image, paths relative to the folder
  holding the list files.
* iNaturalist 2018 [65]: the official COCO-style ``train2018.json`` /
  ``val2018.json`` (``images`` with ``id`` and ``file_name``, ``annotations`` with
  ``image_id`` and ``category_id``, ``categories`` with ``id`` and ``name``).

A split is a list of ``(relative path, label)`` pairs in file order; the class
counts of the training split give the rows of Table 1.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

__all__ = [
    "ImageListDataset",
    "read_list_file",
    "read_coco_json",
    "counts_from_labels",
    "class_counts_from_list_file",
    "class_counts_from_coco_json",
]

Sample = tuple[str, int]


def read_list_file(path: str | Path) -> list[Sample]:
    """``(relative path, label)`` pairs of an ImageNet-LT style list file, in file order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"list file {str(path)!r} not found")
    samples = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit() or int(parts[1]) < 0:
            raise ValueError(f"{path}:{number}: expected 'relative/path label' with a label >= 0, got {line!r}")
        samples.append((parts[0], int(parts[1])))
    if not samples:
        raise ValueError(f"list file {str(path)!r} holds no samples")
    return samples


def read_coco_json(path: str | Path) -> tuple[list[Sample], list[str]]:
    """``(file_name, category_id)`` pairs of an iNaturalist-2018 JSON in ``images``
    order, and the class names indexed by category id (ids must be 0..K-1)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {str(path)!r} not found")
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
        label_of = {a["image_id"]: int(a["category_id"]) for a in doc["annotations"]}
        ids = sorted(int(c["id"]) for c in doc["categories"])
        names = {int(c["id"]): str(c.get("name", c["id"])) for c in doc["categories"]}
        samples = [(im["file_name"], label_of[im["id"]]) for im in doc["images"]]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{str(path)!r} is not a COCO-style iNaturalist file: {err!r}") from err
    if ids != list(range(len(ids))):
        raise ValueError(f"{str(path)!r}: category ids must be 0..K-1")
    if not samples or not all(0 <= label < len(ids) for _, label in samples):
        raise ValueError(f"{str(path)!r}: no images, or a category_id outside the categories")
    return samples, [names[i] for i in ids]


def counts_from_labels(labels: Sequence[int], num_classes: int | None = None) -> list[int]:
    """Images per class 0..K-1 (K = ``num_classes`` or max label + 1)."""
    k = num_classes if num_classes is not None else max(labels) + 1
    return torch.bincount(torch.as_tensor(list(labels), dtype=torch.long), minlength=k).tolist()


def class_counts_from_list_file(path: str | Path) -> list[int]:
    """Training images per class of an ImageNet-LT list file (Table 1)."""
    return counts_from_labels([label for _, label in read_list_file(path)])


def class_counts_from_coco_json(path: str | Path) -> list[int]:
    """Training images per class of an iNaturalist-2018 JSON file (Table 1)."""
    samples, names = read_coco_json(path)
    return counts_from_labels([label for _, label in samples], len(names))


class ImageListDataset(torch.utils.data.Dataset):
    """Images listed as ``(relative path, label)`` under ``root``, loaded with PIL
    as RGB and passed through ``transform``; ``targets`` lists the labels."""

    def __init__(self, root: str | Path, samples: Sequence[Sample], transform: Callable | None = None) -> None:
        self.root = Path(root)
        self.samples = list(samples)
        self.targets = [label for _, label in self.samples]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        relative, label = self.samples[index]
        with Image.open(self.root / relative) as image:
            image = image.convert("RGB")
        return (self.transform(image) if self.transform is not None else image), label
