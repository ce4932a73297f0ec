"""Long-tailed datasets (Sec. 4.1 and Table 1 of the paper).

CIFAR-10-LT / CIFAR-100-LT follow Cui et al. [14] as implemented by the
reference CIFAR-LT code (LDAM-DRW, reused by the KPS authors): class i keeps
``n_i = int(n_max * (1/rho)^(i/(C-1)))`` training images (Sec. 4.1.1,
``n_i = n_o * mu^i`` with ``mu = rho^(-1/(C-1))``), chosen per class by a seeded
numpy shuffle (:func:`long_tailed_indices`); the test set is unchanged.
ImageNet-LT and iNaturalist 2018 come long-tailed in their split files
(:mod:`kps.folders`).

A data root is one folder holding, side by side:

* ``cifar-10-batches-py/``, ``cifar-100-python/``: torchvision's CIFAR archives
  as they extract (:func:`download` fetches them where a network is available);
* ``cifar10-jpeg/{train,test}/<class>/NNNN.jpg``: the JPEG copy of CIFAR-10
  (``tar -xzf cifar10-jpeg.tar.gz -C DATA_ROOT``), labelled "CIFAR-10 (JPEG copy)";
  decoded once into ``cifar10-jpeg/uint8-cache.npz``;
* ``imagenet_lt/`` (``ImageNet_LT_{train,test}.txt`` + images) and ``inat2018/``
  (``{train,val}2018.json`` + images).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import pickle
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from kps.augment import GPUAugment, large_image_transform
from kps.datasets import DATASETS, SHARED_JPEG_PACK, DatasetSpec
from kps.folders import ImageListDataset, counts_from_labels, read_coco_json, read_list_file
from kps.io import atomic_write_bytes

__all__ = [
    "CIFAR10_CLASSES", "LTData", "TensorSplit", "build_dataset", "downsample", "download", "extract_jpeg_pack",
    "long_tailed_counts", "long_tailed_indices", "summarize_counts", "train_class_counts", "verify_archive",
]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

JPEG_CACHE = "uint8-cache.npz"

# (algorithm, digest) of the known archives: torchvision's CIFAR md5s, the JPEG pack's sha256.
KNOWN_ARCHIVES: dict[str, tuple[str, str]] = {
    "cifar10": ("md5", "c58f30108f718f92721af3b95e74349a"),
    "cifar100": ("md5", "eb9058c3a382ffc7106e4002c42a8d85"),
    "cifar10-jpeg": ("sha256", "b3a9fa6963e063a8c607c0e204a512871f03d116d87e347ea115e6e00d0d1bb6"),
}

# Extracted CIFAR files and their md5s (torchvision.datasets.CIFAR10/100 lists).
_CIFAR_FILES: dict[str, dict[str, object]] = {
    "cifar10": {
        "train": [("data_batch_1", "c99cafc152244af753f735de768cd75f"),
                  ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
                  ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
                  ("data_batch_4", "634d18415352ddfa80567beed471001a"),
                  ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb")],
        "test": [("test_batch", "40351d587109b95175f43aff81a1287e")],
        "meta": ("batches.meta", "5ff9c542aee3614f3951f8cda6e48888", "label_names"),
        "labels": "labels",
    },
    "cifar100": {
        "train": [("train", "16019d7e3df5f24257cddd939b257f8d")],
        "test": [("test", "f0ef6b0ae62326f3e7ffdfab6717acfc")],
        "meta": ("meta", "7973b15100ade9c7d40fb424638fde48", "fine_label_names"),
        "labels": "fine_labels",
    },
}


@dataclass
class TensorSplit:
    """A whole small-image split as tensors (moved to the training device whole)."""

    images: torch.Tensor   # uint8, (N, 3, H, W)
    targets: torch.Tensor  # int64, (N,)

    def __len__(self) -> int:
        return int(self.targets.shape[0])


@dataclass
class LTData:
    """A long-tailed training split, the (balanced) test split and their description.
    ``indices``: positions of the training images in the base training split."""

    name: str
    label: str
    num_classes: int
    class_names: list[str]
    counts: list[int]
    train: TensorSplit | torch.utils.data.Dataset
    test: TensorSplit | torch.utils.data.Dataset
    indices: np.ndarray | None = None


# ---------------------------------------------------------------- long-tailed subsets

def long_tailed_counts(n_max: int, num_classes: int, imbalance: float) -> list[int]:
    """Exponential profile of Sec. 4.1.1: ``n_i = int(n_max * (1/rho)^(i/(C-1)))``,
    class 0 the head (n_max), class C-1 the tail (n_max/rho), computed in the
    reference code's floating-point order so the ints match it."""
    if not (isinstance(n_max, (int, np.integer)) and n_max >= 1):
        raise ValueError(f"n_max must be an int >= 1, got {n_max!r}")
    if not (isinstance(num_classes, (int, np.integer)) and num_classes >= 2):
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    _check_imbalance(imbalance)
    factor = 1.0 / float(imbalance)
    counts = [int(n_max * factor ** (i / (num_classes - 1.0))) for i in range(num_classes)]
    if counts[-1] < 1:
        empty = sum(n < 1 for n in counts)
        raise ValueError(f"imbalance {float(imbalance):g} leaves the last {empty} of {num_classes} classes without a "
                         f"training image (the head class has {n_max}): give an imbalance of at most {n_max}")
    return counts


def long_tailed_indices(targets: Sequence[int] | np.ndarray | torch.Tensor, counts: Sequence[int],
                        seed: int) -> np.ndarray:
    """Indices into the base split selecting ``counts[c]`` images of each class c.

    Exactly the reference CIFAR-LT selection: a legacy numpy generator seeded with
    ``seed`` (the LDAM-DRW code calls ``np.random.seed(seed)``; the KPS authors use
    666, LDAM-DRW 0); for c = 0, 1, ... take the indices of class c in dataset
    order, ``shuffle`` them in place, keep the first counts[c]; concatenate.
    A private ``np.random.RandomState(seed)`` draws the same numbers as the seeded
    global generator without disturbing the caller's global numpy state.
    """
    targets = np.asarray(targets)
    if targets.ndim != 1 or not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"targets must be a 1-D integer array, got dtype {targets.dtype}, shape {targets.shape}")
    counts = [int(n) for n in counts]
    if any(n < 0 for n in counts):
        raise ValueError(f"counts must be >= 0, got {counts}")
    if targets.size and (targets.min() < 0 or targets.max() >= len(counts)):
        raise ValueError(f"targets must lie in 0..{len(counts) - 1} (one count per class)")
    rng = np.random.RandomState(seed)
    chosen = []
    for c, n in enumerate(counts):
        idx = np.where(targets == c)[0]
        if n > idx.size:
            raise ValueError(f"class {c} has {idx.size} images, cannot select {n}")
        rng.shuffle(idx)
        chosen.append(idx[:n])
    return np.concatenate(chosen).astype(np.int64)


def summarize_counts(counts: Sequence[int]) -> dict[str, float | int]:
    """A Table 1 row from per-class training counts: classes, imbalance max/min,
    head (largest) and tail (smallest) class size, total images."""
    counts = [int(n) for n in counts]
    if not counts or min(counts) < 1:
        raise ValueError(f"counts must be a non-empty list of sizes >= 1, got {counts[:10]}")
    return {"classes": len(counts), "imbalance": max(counts) / min(counts), "head": max(counts),
            "tail": min(counts), "total": sum(counts)}


def train_class_counts(name: str, data_root: str | Path | None = None,
                       imbalance: float | None = None) -> list[int]:
    """Per-class training counts: the exponential profile for the CIFAR sets
    (no data needed), the training split file for ImageNet-LT / iNaturalist 2018."""
    spec = _spec(name)
    if not spec.tensors:
        if data_root is None:
            raise ValueError(f"{name}: counts come from its split file; give data_root")
        samples, names = _read_split(spec, Path(data_root), train=True)
        return counts_from_labels([label for _, label in samples], len(names) if names else None)
    if imbalance is None:
        raise ValueError(f"{name}: give the imbalance ratio (Table 1: {', '.join(f'{r:g}' for r in spec.imbalances)})")
    return long_tailed_counts(spec.n_max, spec.num_classes, imbalance)


# ---------------------------------------------------------------- building a dataset

def downsample(data: LTData, size: int) -> LTData:
    """``data`` with every image of its TensorSplits averaged down to ``size`` x ``size``
    (area averaging: each output pixel is the mean of the input pixels it covers,
    2x2 blocks for 32 -> 16), rounded back to uint8.  Done once, before training;
    the same images for every run.  The data's own size: ``data`` unchanged."""
    if not (isinstance(data.train, TensorSplit) and isinstance(data.test, TensorSplit)):
        raise ValueError(f"{data.name}: only the small-image (tensor) datasets can be downsampled")
    height, width = data.train.images.shape[-2:]
    if size == height == width:
        return data
    if not 1 <= size <= min(height, width):
        raise ValueError(f"{data.name}: cannot downsample {height}x{width} images to {size}x{size}")

    def shrink(split: TensorSplit) -> TensorSplit:
        pieces = [F.interpolate(chunk.float(), size=(size, size), mode="area").round_().clamp_(0, 255)
                  .to(torch.uint8) for chunk in split.images.split(4096)]
        return TensorSplit(torch.cat(pieces), split.targets)

    return dataclasses.replace(data, train=shrink(data.train), test=shrink(data.test))


def build_dataset(name: str, data_root: str | Path, imbalance: float | None, seed: int = 0,
                  classes: Sequence[int] | None = None, counts: Sequence[int] | None = None, *,
                  verify: bool = True) -> LTData:
    """The long-tailed training split and the full test split of ``name``.

    CIFAR sets (``cifar10``, ``cifar100``, ``cifar10-jpeg``): ``classes`` keeps only
    those base classes, relabelled 0..k-1 in the given order (test split too);
    per-class counts are ``counts`` if given (e.g. the 5000/500/1000 of Fig. 5),
    else :func:`long_tailed_counts` with n_max = the smallest base class size and
    ratio ``imbalance``; selection by :func:`long_tailed_indices` with ``seed``.
    With explicit ``counts``, ``imbalance`` must be None or max/min of them.
    ``verify`` checks the torchvision CIFAR files against their md5s.

    ImageNet-LT / iNaturalist 2018 come long-tailed: the training split is the
    whole split file, ``imbalance`` must be None or equal its max/min ratio
    (256 and 500 for the official files), ``seed`` is unused and ``classes`` /
    ``counts`` are not supported.
    """
    spec = _spec(name)
    root = Path(data_root)
    if not spec.tensors:
        return _build_from_split_files(spec, root, imbalance, classes, counts)

    train_x, train_y, test_x, test_y, class_names = _load_tensor_dataset(spec, root, verify)
    if classes is not None:
        classes = _check_classes(classes, len(class_names))
        train_x, train_y = _keep_classes(train_x, train_y, classes, len(class_names))
        test_x, test_y = _keep_classes(test_x, test_y, classes, len(class_names))
        class_names = [class_names[c] for c in classes]
    available = np.bincount(train_y, minlength=len(class_names))
    if counts is None:
        if imbalance is None:
            raise ValueError(f"{name}: give an imbalance ratio (Table 1: 100 or 50) or explicit counts")
        counts = long_tailed_counts(int(available.min()), len(class_names), imbalance)
    else:
        counts = [int(n) for n in counts]
        if len(counts) != len(class_names) or min(counts) < 1:
            raise ValueError(f"counts must give one size >= 1 per class ({len(class_names)}), got {counts}")
        if imbalance is not None:
            _check_imbalance(imbalance)
            if not math.isclose(float(imbalance), max(counts) / min(counts), rel_tol=1e-9):
                raise ValueError(f"imbalance {imbalance:g} disagrees with the explicit counts "
                                 f"(max/min = {max(counts) / min(counts):g}); pass imbalance=None")
    indices = long_tailed_indices(train_y, counts, seed)
    return LTData(
        name=name, label=spec.label, num_classes=len(class_names), class_names=list(class_names),
        counts=list(counts),
        train=TensorSplit(torch.from_numpy(train_x[indices]), torch.from_numpy(train_y[indices])),
        test=TensorSplit(torch.from_numpy(test_x), torch.from_numpy(test_y)),
        indices=indices,
    )


def _build_from_split_files(spec: DatasetSpec, root: Path, imbalance: float | None,
                            classes: Sequence[int] | None, counts: Sequence[int] | None) -> LTData:
    if classes is not None or counts is not None:
        raise ValueError(f"{spec.name} comes long-tailed from its split files; classes/counts are not supported")
    train, names = _read_split(spec, root, train=True)
    test, _ = _read_split(spec, root, train=False)
    num_classes = len(names) if names else max(label for _, label in train) + 1
    counts = counts_from_labels([label for _, label in train], num_classes)
    if min(counts) < 1:
        raise ValueError(f"{spec.name}: class {counts.index(0)} has no training image in the split file")
    ratio = max(counts) / min(counts)
    if imbalance is not None and not math.isclose(float(imbalance), ratio, rel_tol=1e-9):
        raise ValueError(f"{spec.name}: its training split has imbalance {ratio:g} (max/min class size); "
                         f"got imbalance={imbalance!r}; pass None or {ratio:g}")
    folder = root / spec.folder
    for relative, _ in (train[0], test[0]):
        if not (folder / relative).is_file():
            raise FileNotFoundError(f"{spec.name}: image {str(folder / relative)!r} listed in the split file is "
                                    f"missing; {spec.fetch.format(root=root)}")
    return LTData(
        name=spec.name, label=spec.label, num_classes=num_classes,
        class_names=names or [str(c) for c in range(num_classes)], counts=counts,
        train=ImageListDataset(folder, train, large_image_transform(True, spec.mean, spec.std)),
        test=ImageListDataset(folder, test, large_image_transform(False, spec.mean, spec.std)),
        indices=np.arange(len(train), dtype=np.int64),
    )


def _read_split(spec: DatasetSpec, root: Path, train: bool) -> tuple[list[tuple[str, int]], list[str]]:
    """(samples, class names or []) of one split of ImageNet-LT or iNaturalist 2018."""
    folder = root / spec.folder
    if spec.loader == "list-file":
        path = folder / ("ImageNet_LT_train.txt" if train else "ImageNet_LT_test.txt")
    else:
        path = folder / ("train2018.json" if train else "val2018.json")
    if not path.is_file():
        raise FileNotFoundError(f"{spec.name}: {str(path)!r} not found (looked in {str(folder)!r}); "
                                f"{spec.fetch.format(root=root)}")
    if spec.loader == "list-file":
        return read_list_file(path), []
    return read_coco_json(path)


def _check_imbalance(imbalance: float) -> None:
    if not (isinstance(imbalance, (int, float, np.integer, np.floating)) and math.isfinite(imbalance)
            and imbalance >= 1):
        raise ValueError(f"imbalance must be a finite ratio >= 1 (max/min class size), got {imbalance!r}")


def _check_classes(classes: Sequence[int], num_classes: int) -> list[int]:
    classes = [int(c) for c in classes]
    if not classes or len(set(classes)) != len(classes) or not all(0 <= c < num_classes for c in classes):
        raise ValueError(f"classes must be distinct indices in 0..{num_classes - 1}, got {classes}")
    return classes


def _keep_classes(images: np.ndarray, targets: np.ndarray, classes: list[int],
                  num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Samples of ``classes`` in dataset order, relabelled by position in ``classes``."""
    relabel = np.full(num_classes, -1, dtype=np.int64)
    relabel[classes] = np.arange(len(classes))
    new = relabel[targets]
    keep = new >= 0
    return images[keep], new[keep]


def _spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    return DATASETS[name]


# ---------------------------------------------------------------- tensor datasets

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]


def _load_tensor_dataset(spec: DatasetSpec, root: Path, verify: bool) -> Arrays:
    """(train images, train targets, test images, test targets, class names);
    images uint8 (N, 3, 32, 32), targets int64, in dataset order."""
    folder = root / spec.folder
    if not folder.is_dir():
        raise FileNotFoundError(f"{spec.name}: folder {str(folder)!r} not found (looked in data root "
                                f"{str(root)!r}); get it with: {spec.fetch.format(root=root)}")
    if spec.loader == "jpeg-tree":
        return _load_jpeg_tree(spec, folder)
    return _load_cifar_pickles(spec, folder, verify)


def _load_cifar_pickles(spec: DatasetSpec, folder: Path, verify: bool) -> Arrays:
    files = _CIFAR_FILES[spec.name]
    meta_name, meta_md5, meta_key = files["meta"]
    listed = [*files["train"], *files["test"], (meta_name, meta_md5)]
    fix = f"delete {str(folder)!r} and fetch it again: {spec.fetch.format(root=folder.parent)}"
    for file_name, md5 in listed:
        path = folder / file_name
        if not path.is_file():
            raise FileNotFoundError(f"{spec.name}: {str(path)!r} is missing; {fix}")
        if verify and _digest(path, "md5") != md5:
            raise ValueError(f"{spec.name}: {str(path)!r} fails its md5 check (corrupt or truncated); {fix}")
    class_names = [str(n) for n in _unpickle(folder / meta_name, fix)[meta_key]]
    if len(class_names) != spec.num_classes:
        raise ValueError(f"{spec.name}: {meta_name} lists {len(class_names)} classes, expected {spec.num_classes}")
    splits = []
    for part in ("train", "test"):
        images, targets = [], []
        for file_name, _ in files[part]:
            entry = _unpickle(folder / file_name, fix)
            data = np.asarray(entry.get("data"))
            labels = np.asarray(entry.get(files["labels"]), dtype=np.int64)
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (len(data),):
                raise ValueError(f"{spec.name}: {file_name} does not hold (N, 3072) uint8 images with N labels; {fix}")
            if labels.size and (labels.min() < 0 or labels.max() >= spec.num_classes):
                raise ValueError(f"{spec.name}: {file_name} has labels outside 0..{spec.num_classes - 1}; {fix}")
            images.append(data.reshape(-1, 3, 32, 32))
            targets.append(labels)
        splits += [np.concatenate(images), np.concatenate(targets)]
    return splits[0], splits[1], splits[2], splits[3], class_names


def _unpickle(path: Path, fix: str) -> dict:
    try:
        with open(path, "rb") as handle:
            entry = pickle.load(handle, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise ValueError(f"{str(path)!r} is corrupt or truncated ({err!r}); {fix}") from err
    if not isinstance(entry, dict):
        raise ValueError(f"{str(path)!r} is not a CIFAR pickle (a dict); {fix}")
    return entry


def _jpeg_files(split_dir: Path, fix: str) -> list[tuple[str, int, str]]:
    """(path, label, "name size mtime") of one split, class by class, by file
    number within a class (the order of the official batches, see the pack's README)."""
    found = sorted(p.name for p in split_dir.iterdir() if p.is_dir()) if split_dir.is_dir() else []
    if found != list(CIFAR10_CLASSES):
        raise FileNotFoundError(f"{str(split_dir)!r} should hold the class folders {', '.join(CIFAR10_CLASSES)}; "
                                f"found {found}; {fix}")
    files = []
    for label, name in enumerate(CIFAR10_CLASSES):
        with os.scandir(split_dir / name) as scan:
            entries = [e for e in scan if e.name.endswith(".jpg")]
        if not all(e.name[:-4].isdigit() for e in entries):
            raise ValueError(f"{str(split_dir / name)!r}: image files must be named NNNN.jpg")
        for e in sorted(entries, key=lambda e: int(e.name[:-4])):
            stat = e.stat()
            files.append((e.path, label, f"{name}/{e.name} {stat.st_size} {stat.st_mtime_ns}"))
    return files


def _load_jpeg_tree(spec: DatasetSpec, folder: Path) -> Arrays:
    """Decode the JPEG copy once (PIL, as ImageFolder) and cache it as uint8 arrays
    in ``folder/uint8-cache.npz``; the cache is keyed by every file's name, size
    and modification time, so a changed tree is decoded again."""
    fix = f"re-extract it: rm -rf {folder} && {spec.fetch.format(root=folder.parent)}"
    train_files, test_files = _jpeg_files(folder / "train", fix), _jpeg_files(folder / "test", fix)
    per_class = np.bincount([label for _, label, _ in train_files], minlength=10)
    if len(test_files) != 10000 or not (per_class == spec.n_max).all():
        raise ValueError(f"{spec.name}: found {len(train_files)} training images (per class {per_class.tolist()}) "
                         f"and {len(test_files)} test images in {str(folder)!r}, expected 5000 per class and "
                         f"10000; the extraction is incomplete or the archive truncated; {fix}")
    keys = [f"train/{key}" for _, _, key in train_files] + [f"test/{key}" for _, _, key in test_files]
    fingerprint = hashlib.sha256("\n".join(keys).encode()).hexdigest()
    cache = folder / JPEG_CACHE
    cached = _read_cache(cache, fingerprint)
    if cached is not None:
        return cached
    arrays = (*_decode(train_files, fix), *_decode(test_files, fix))
    buffer = io.BytesIO()
    np.savez(buffer, train_images=arrays[0], train_targets=arrays[1], test_images=arrays[2],
             test_targets=arrays[3], fingerprint=np.array(fingerprint))
    atomic_write_bytes(cache, buffer.getvalue())
    return (*arrays, list(CIFAR10_CLASSES))


def _read_cache(cache: Path, fingerprint: str) -> Arrays | None:
    """The cached arrays if ``cache`` exists, is readable and matches ``fingerprint``."""
    try:
        with np.load(cache) as z:
            if str(z["fingerprint"]) != fingerprint:
                return None
            return (z["train_images"], z["train_targets"], z["test_images"], z["test_targets"],
                    list(CIFAR10_CLASSES))
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def _decode(files: list[tuple[str, int, str]], fix: str) -> tuple[np.ndarray, np.ndarray]:
    images = np.empty((len(files), 32, 32, 3), dtype=np.uint8)
    for i, (path, _, _) in enumerate(files):
        try:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))
        except OSError as err:
            raise ValueError(f"{path!r} cannot be decoded ({err}); {fix}") from err
        if pixels.shape != (32, 32, 3):
            raise ValueError(f"{path!r} is {pixels.shape[1]}x{pixels.shape[0]}, expected 32x32")
        images[i] = pixels
    targets = np.array([label for _, label, _ in files], dtype=np.int64)
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2)), targets


# ---------------------------------------------------------------- archives

def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_archive(path: str | Path, name: str) -> Path:
    """Check a downloaded archive of ``name`` against its known checksum
    (torchvision's md5 for the CIFAR tarballs, sha256 for the JPEG pack)."""
    if name not in KNOWN_ARCHIVES:
        raise ValueError(f"no known archive for {name!r}; known: {', '.join(KNOWN_ARCHIVES)}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"archive {str(path)!r} not found")
    algorithm, expected = KNOWN_ARCHIVES[name]
    actual = _digest(path, algorithm)
    if actual != expected:
        raise ValueError(f"archive {str(path)!r} fails its {algorithm} check ({actual} != {expected}): "
                         "it is corrupt or truncated; fetch it again")
    return path


@contextlib.contextmanager
def _folder_kept_only_on_success(folder: Path) -> Iterator[None]:
    """Create ``folder`` (with its missing parents) for the block; if the block fails,
    remove what was created here, so that a failed download leaves no empty folder
    (a folder that was there before is left as it was)."""
    created = None
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            break
        created = candidate  # the topmost folder this call creates
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise


def extract_jpeg_pack(archive: str | Path, data_root: str | Path) -> Path:
    """Verify the CIFAR-10 JPEG pack and extract it to ``data_root/cifar10-jpeg``
    (into a temporary folder first, renamed into place when complete)."""
    archive, root = verify_archive(archive, "cifar10-jpeg"), Path(data_root)
    target = root / "cifar10-jpeg"
    if target.exists():
        raise ValueError(f"{str(target)!r} already exists; remove it to extract again")
    with _folder_kept_only_on_success(root):
        scratch = Path(tempfile.mkdtemp(prefix=".cifar10-jpeg.", dir=root))
        try:
            with tarfile.open(archive, "r:gz") as tar:
                if not all(m.name == "cifar10-jpeg" or m.name.startswith("cifar10-jpeg/") for m in tar.getmembers()):
                    raise ValueError(f"{str(archive)!r} holds files outside cifar10-jpeg/")
                tar.extractall(scratch, filter="data")
            os.replace(scratch / "cifar10-jpeg", target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return target


def download(name: str, data_root: str | Path, archive: str | Path | None = None) -> None:
    """Fetch ``name`` into ``data_root``: torchvision's CIFAR-10/100 download
    (needs a network; torchvision checks the archive's md5), or extraction of the
    JPEG pack (``archive``, default ``../shared/data/cifar10-jpeg.tar.gz`` beside
    the repository). ImageNet-LT and iNaturalist 2018 must be fetched by hand."""
    spec = _spec(name)
    root = Path(data_root)
    if name in ("cifar10", "cifar100"):
        import torchvision.datasets as tvd

        base = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
        try:
            with _folder_kept_only_on_success(root):
                for train in (True, False):
                    base(str(root), train=train, download=True)
        except OSError as err:  # URLError, timeouts, refused connections
            url = base.url
            raise ValueError(f"cannot download {name} ({type(err).__name__}: {getattr(err, 'reason', err)}); "
                             f"offline, fetch {url} elsewhere and extract it into {root}/ "
                             f"(mkdir -p {root} && tar -xzf {url.rsplit('/', 1)[1]} -C {root})") from err
    elif name == "cifar10-jpeg":
        extract_jpeg_pack(archive if archive is not None else SHARED_JPEG_PACK, root)
    else:
        raise ValueError(f"{name} cannot be downloaded automatically: {spec.fetch.format(root=root)}")
