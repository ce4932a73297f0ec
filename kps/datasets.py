"""The datasets of Table 1, one spec each (:data:`DATASETS`): how results on it are
labelled, its classes, image side and head class size, the Table 1 imbalance ratios
(fixed for the sets that come long-tailed), the Table 2 preset that trains it unless
told otherwise, where it lives under a data root and how its files are read, how to
get it, and its normalisation.  Plain data: :mod:`kps.configs` (presets, validation)
and :mod:`kps.data` (loading) both read it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["CIFAR_MEAN", "CIFAR_STD", "IMAGENET_MEAN", "IMAGENET_STD", "LOADERS", "TENSOR_LOADERS", "DatasetSpec",
           "DATASETS", "DEFAULT_IMBALANCE", "SHARED_JPEG_PACK"]

# Normalisation of the reference CIFAR-LT code (LDAM-DRW), used for CIFAR-10 and CIFAR-100,
# and torchvision's ImageNet statistics for the large-image sets.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# How a dataset's files are read (kps.data): torchvision's CIFAR pickles, a JPEG tree
# <folder>/{train,test}/<class>/*.jpg, ImageNet-LT's list files, iNaturalist's COCO-style
# JSON.  The first two are small images held whole as uint8 tensors (on the training
# device); the others are read image by image through a DataLoader.
LOADERS = ("cifar-pickles", "jpeg-tree", "list-file", "coco-json")
TENSOR_LOADERS = ("cifar-pickles", "jpeg-tree")

# CIFAR-LT's imbalance is chosen (Table 1: 100, 50); 100 unless told.
DEFAULT_IMBALANCE = 100.0

# Where the team's machines keep the JPEG pack: <repo>/../shared/data (beside the clone).
SHARED_JPEG_PACK = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"


@dataclass(frozen=True)
class DatasetSpec:
    """What Table 1 says of a dataset, which preset trains it, and where it lives."""

    name: str
    label: str                     # how results on it are labelled
    num_classes: int
    image_size: int                # the images' side (the network's input side at most)
    n_max: int                     # head class size (Table 1)
    imbalances: tuple[float, ...]  # Table 1 ratios rho = max n / min n
    preset: str                    # the Table 2 preset that trains it unless told (kps.configs.PRESETS)
    loader: str                    # how its files are read (LOADERS)
    folder: str                    # under the data root
    fetch: str                     # how to get it; {root} is the data root
    mean: tuple[float, ...]
    std: tuple[float, ...]
    fixed_imbalance: float | None = None  # a set that comes long-tailed: its one ratio

    @property
    def tensors(self) -> bool:
        """Whether its images are small enough to be held whole as tensors (TENSOR_LOADERS)."""
        return self.loader in TENSOR_LOADERS


_TV_FETCH = "python -m kps download {name} --data-root {{root}}  (torchvision, needs a network; source {url})"

DATASETS: dict[str, DatasetSpec] = {s.name: s for s in (
    DatasetSpec("cifar10", "CIFAR-10", 10, 32, 5000, (100.0, 50.0), "cifar10_lt", "cifar-pickles",
                "cifar-10-batches-py",
                _TV_FETCH.format(name="cifar10", url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
                CIFAR_MEAN, CIFAR_STD),
    DatasetSpec("cifar100", "CIFAR-100", 100, 32, 500, (100.0, 50.0), "cifar100_lt", "cifar-pickles",
                "cifar-100-python",
                _TV_FETCH.format(name="cifar100", url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
                CIFAR_MEAN, CIFAR_STD),
    DatasetSpec("cifar10-jpeg", "CIFAR-10 (JPEG copy)", 10, 32, 5000, (100.0, 50.0), "cifar10_lt", "jpeg-tree",
                "cifar10-jpeg",
                f"tar -xzf {SHARED_JPEG_PACK} -C {{root}}  (i.e. tar -xzf ../shared/data/cifar10-jpeg.tar.gz "
                "-C DATA_ROOT from the repository root; or python -m kps download cifar10-jpeg --data-root {root})",
                CIFAR_MEAN, CIFAR_STD),
    DatasetSpec("imagenet_lt", "ImageNet-LT", 1000, 224, 1280, (256.0,), "imagenet_lt", "list-file", "imagenet_lt",
                "put ImageNet_LT_train.txt and ImageNet_LT_test.txt (https://github.com/zhmiao/"
                "OpenLongTailRecognition-OLTR) and the ImageNet-2012 train/ and val/ image folders they list "
                "(https://image-net.org/download.php) into {root}/imagenet_lt/",
                IMAGENET_MEAN, IMAGENET_STD, fixed_imbalance=256.0),
    DatasetSpec("inat2018", "iNaturalist 2018", 8142, 224, 1000, (500.0,), "inat2018", "coco-json", "inat2018",
                "put train2018.json, val2018.json and the train_val2018/ image folder "
                "(https://github.com/visipedia/inat_comp/tree/master/2018) into {root}/inat2018/",
                IMAGENET_MEAN, IMAGENET_STD, fixed_imbalance=500.0),
)}
