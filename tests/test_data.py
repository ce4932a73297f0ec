"""Long-tailed datasets: profile, reference selection, CIFAR archives (synthetic, real
pickle format), the CIFAR-10 JPEG pack (real data), ImageNet-LT and iNaturalist-2018 trees."""

import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

import kps.data as data
from kps.data import (build_dataset, download, extract_jpeg_pack, long_tailed_counts, long_tailed_indices,
                      summarize_counts, train_class_counts, verify_archive)
from kps.datasets import DATASETS
from kps.folders import class_counts_from_coco_json, class_counts_from_list_file, read_list_file

from conftest import PACK


def reference_selection(targets, counts, seed):
    """The reference CIFAR-LT code (LDAM-DRW gen_imbalanced_data), global numpy RNG."""
    np.random.seed(seed)
    chosen = []
    for the_class, the_img_num in zip(np.unique(targets), counts):
        idx = np.where(targets == the_class)[0]
        np.random.shuffle(idx)
        chosen.append(idx[:the_img_num])
    return np.concatenate(chosen)


# ---------------------------------------------------------------- profile and selection

@pytest.mark.parametrize("n_max,classes,imbalance,total,tail", [
    (5000, 10, 100, 12406, 50), (5000, 10, 50, 13996, 100), (500, 100, 100, 10847, 5), (500, 100, 50, 12608, 10)])
def test_long_tailed_totals(n_max, classes, imbalance, total, tail):
    counts = long_tailed_counts(n_max, classes, imbalance)
    assert sum(counts) == total and counts[0] == n_max and counts[-1] == tail
    assert counts == sorted(counts, reverse=True)


def test_long_tailed_counts_cifar10_100_exact_and_bad_input():
    assert long_tailed_counts(5000, 10, 100) == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert long_tailed_counts(7, 4, 1) == [7, 7, 7, 7]
    for bad in (0.5, 0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="imbalance"):
            long_tailed_counts(5000, 10, bad)
    with pytest.raises(ValueError, match="num_classes"):
        long_tailed_counts(5000, 1, 10)


def test_indices_match_reference_and_leave_global_rng_alone():
    targets = np.random.default_rng(3).integers(0, 5, 400)
    counts = [50, 30, 20, 10, 5]
    np.random.seed(99)
    ours = long_tailed_indices(targets, counts, seed=7)
    assert np.random.random() == np.random.RandomState(99).random_sample()  # caller's global state untouched
    assert np.array_equal(ours, reference_selection(targets, counts, 7))
    assert np.array_equal(np.bincount(targets[ours]), counts)
    assert not np.array_equal(ours, long_tailed_indices(targets, counts, seed=8))
    with pytest.raises(ValueError, match="class 0 has"):
        long_tailed_indices(targets, [500, 1, 1, 1, 1], 0)
    with pytest.raises(ValueError, match="targets"):
        long_tailed_indices(targets, [1, 1], 0)


def test_table1_rows_from_profile():
    assert summarize_counts(train_class_counts("cifar10", imbalance=100)) == {
        "classes": 10, "imbalance": 100.0, "head": 5000, "tail": 50, "total": 12406}
    row = summarize_counts(train_class_counts("cifar100", imbalance=50))
    assert (row["head"], row["tail"], row["imbalance"]) == (500, 10, 50.0)
    with pytest.raises(ValueError, match="unknown dataset 'cifar1000'"):
        train_class_counts("cifar1000", imbalance=100)


# ---------------------------------------------------------------- synthetic torchvision archives

def _write_pickle(path, obj):
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=2)


def _make_cifar10(root, per_class=20, test_per_class=5):
    """cifar-10-batches-py with data_batch_1..5, test_batch, batches.meta; labels interleaved."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    labels = rng.permutation(np.repeat(np.arange(10), per_class))
    images = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
    for b, part in enumerate(np.array_split(np.arange(len(labels)), 5), 1):
        _write_pickle(folder / f"data_batch_{b}", {"batch_label": f"training batch {b} of 5",
                      "labels": labels[part].tolist(), "data": images[part], "filenames": [f"{i}.png" for i in part]})
    test_labels = np.repeat(np.arange(10), test_per_class)
    test_images = rng.integers(0, 256, (len(test_labels), 3072), dtype=np.uint8)
    _write_pickle(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": test_labels.tolist(),
                                          "data": test_images, "filenames": []})
    _write_pickle(folder / "batches.meta", {"label_names": list(data.CIFAR10_CLASSES), "num_vis": 3072})
    return images, labels, test_images, test_labels


def _make_cifar100(root, per_class=3):
    rng = np.random.default_rng(1)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    labels = rng.permutation(np.repeat(np.arange(100), per_class))
    images = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
    _write_pickle(folder / "train", {"fine_labels": labels.tolist(), "coarse_labels": (labels // 5).tolist(),
                                     "data": images})
    _write_pickle(folder / "test", {"fine_labels": list(range(100)), "coarse_labels": [0] * 100,
                                    "data": rng.integers(0, 256, (100, 3072), dtype=np.uint8)})
    _write_pickle(folder / "meta", {"fine_label_names": [f"c{i}" for i in range(100)],
                                    "coarse_label_names": [f"s{i}" for i in range(20)]})
    return images, labels


def test_cifar10_archive_long_tailed_subset(tmp_path):
    images, labels, test_images, test_labels = _make_cifar10(tmp_path)
    lt = build_dataset("cifar10", tmp_path, imbalance=10, seed=3, verify=False)
    expected = long_tailed_counts(20, 10, 10)
    assert expected == [20, 15, 11, 9, 7, 5, 4, 3, 2, 2]
    assert lt.counts == expected and lt.num_classes == 10 and lt.label == "CIFAR-10"
    assert lt.class_names == list(data.CIFAR10_CLASSES)
    assert np.array_equal(lt.indices, reference_selection(labels, expected, 3))
    assert torch.equal(lt.train.images, torch.from_numpy(images[lt.indices].reshape(-1, 3, 32, 32)))
    assert torch.equal(lt.train.targets, torch.from_numpy(labels[lt.indices]))
    assert lt.train.images.dtype == torch.uint8 and lt.train.targets.dtype == torch.int64
    # the test split is the whole test batch, CHW from the row-major R, G, B planes
    assert len(lt.test) == 50 and torch.equal(lt.test.targets, torch.from_numpy(test_labels))
    assert lt.test.images[0, 1, 0, 0] == test_images[0, 1024]


def test_cifar100_archive(tmp_path):
    images, labels = _make_cifar100(tmp_path)
    lt = build_dataset("cifar100", tmp_path, imbalance=3, seed=0, verify=False)
    assert lt.counts == long_tailed_counts(3, 100, 3) and lt.counts[0] == 3 and lt.counts[-1] == 1
    assert lt.class_names[:2] == ["c0", "c1"] and len(lt.test) == 100
    assert np.array_equal(lt.indices, reference_selection(labels, lt.counts, 0))


def test_class_subset_and_explicit_counts_for_fig5(tmp_path):
    images, labels, _, test_labels = _make_cifar10(tmp_path)
    lt = build_dataset("cifar10", tmp_path, None, seed=0, classes=[3, 0, 7], counts=[20, 2, 4], verify=False)
    assert lt.num_classes == 3 and lt.counts == [20, 2, 4] and lt.class_names == ["cat", "airplane", "horse"]
    base = np.array([3, 0, 7])[lt.train.targets.numpy()]
    assert np.array_equal(base, labels[np.isin(labels, [3, 0, 7])][lt.indices])
    assert np.bincount(lt.train.targets.numpy()).tolist() == [20, 2, 4]
    assert sorted(set(lt.test.targets.tolist())) == [0, 1, 2] and len(lt.test) == 15
    assert build_dataset("cifar10", tmp_path, 10, classes=[3, 0, 7], counts=[20, 2, 4], verify=False).counts == [20, 2, 4]
    with pytest.raises(ValueError, match="disagrees"):
        build_dataset("cifar10", tmp_path, 100, classes=[3, 0, 7], counts=[20, 2, 4], verify=False)
    with pytest.raises(ValueError, match="classes"):
        build_dataset("cifar10", tmp_path, 10, classes=[3, 3], verify=False)
    with pytest.raises(ValueError, match="cannot select 21"):
        build_dataset("cifar10", tmp_path, None, counts=[21] + [1] * 9, verify=False)
    with pytest.raises(ValueError, match="imbalance"):
        build_dataset("cifar10", tmp_path, 0.5, verify=False)


def test_cifar_checksum_truncation_and_missing(tmp_path):
    _make_cifar10(tmp_path)
    with pytest.raises(ValueError, match="md5"):
        build_dataset("cifar10", tmp_path, 10)  # synthetic files are not the official ones
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:5000])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        build_dataset("cifar10", tmp_path, 10, verify=False)
    batch.unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        build_dataset("cifar10", tmp_path, 10, verify=False)
    with pytest.raises(FileNotFoundError, match=rf"cifar-100-python.*python -m kps download cifar100 --data-root {re.escape(str(tmp_path))}"):
        build_dataset("cifar100", tmp_path, 10)


def test_download_uses_torchvision_with_download_true(tmp_path, monkeypatch):
    import torchvision.datasets as tvd
    calls = []
    monkeypatch.setattr(tvd, "CIFAR100", lambda root, train, download: calls.append((root, train, download)))
    download("cifar100", tmp_path / "d")
    assert calls == [(str(tmp_path / "d"), True, True), (str(tmp_path / "d"), False, True)]
    with pytest.raises(ValueError, match="ImageNet_LT_train.txt"):
        download("imagenet_lt", tmp_path)


# ---------------------------------------------------------------- the JPEG pack

def test_corrupt_jpeg_pack_is_rejected(tmp_path):
    bad = tmp_path / "cifar10-jpeg.tar.gz"
    bad.write_bytes(b"\x1f\x8b" + b"0" * 1000)
    with pytest.raises(ValueError, match="sha256"):
        verify_archive(bad, "cifar10-jpeg")
    with pytest.raises(ValueError, match="corrupt or truncated"):
        download("cifar10-jpeg", tmp_path / "root", archive=bad)
    assert not (tmp_path / "root" / "cifar10-jpeg").exists()


def test_missing_and_incomplete_jpeg_tree(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"tar -xzf .*cifar10-jpeg.tar.gz -C {re.escape(str(tmp_path))}"):
        build_dataset("cifar10-jpeg", tmp_path, 100)
    for split in ("train", "test"):
        for name in data.CIFAR10_CLASSES:
            (tmp_path / "cifar10-jpeg" / split / name).mkdir(parents=True)
            (tmp_path / "cifar10-jpeg" / split / name / "0000.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="incomplete"):
        build_dataset("cifar10-jpeg", tmp_path, 100)


def _independent_selection(root, counts, seed):
    """Re-derive the selection from the file tree: class-major order, files by
    number; per class a permutation from RandomState(seed), consumed class by class."""
    rng = np.random.RandomState(seed)
    offset, chosen = 0, []
    for c, name in enumerate(data.CIFAR10_CLASSES):
        n = len(os.listdir(root / "cifar10-jpeg" / "train" / name))
        # shuffle(x) and x[permutation(len(x))] draw the same numbers the same way
        chosen.append(offset + rng.permutation(n)[:counts[c]])
        offset += n
    return np.concatenate(chosen)


@pytest.mark.parametrize("imbalance,counts", [
    (100, [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]),
    (50, [5000, 3237, 2096, 1357, 878, 568, 368, 238, 154, 100])])
def test_jpeg_pack_long_tailed(jpeg_root, imbalance, counts):
    lt = build_dataset("cifar10-jpeg", jpeg_root, imbalance, seed=0)
    assert lt.label == "CIFAR-10 (JPEG copy)" and lt.counts == counts
    assert np.bincount(lt.train.targets.numpy()).tolist() == counts
    assert lt.train.images.shape == (sum(counts), 3, 32, 32) and len(lt.test) == 10000
    assert np.array_equal(lt.indices, _independent_selection(jpeg_root, counts, 0))
    assert lt.indices[:5].tolist() == [398, 3833, 4836, 4572, 636]  # class 0 (airplane), seed 0
    # the pixels are the files': spot-check selected images against a direct decode
    for k in (0, 5000, len(lt.indices) - 1):
        index, label = int(lt.indices[k]), int(lt.train.targets[k])
        path = jpeg_root / "cifar10-jpeg" / "train" / data.CIFAR10_CLASSES[label] / f"{index - 5000 * label:04d}.jpg"
        assert torch.equal(lt.train.images[k], TF.pil_to_tensor(Image.open(path).convert("RGB")))


def test_jpeg_pack_seed_666_and_decoded_means(jpeg_root):
    lt = build_dataset("cifar10-jpeg", jpeg_root, 100, seed=666)
    assert lt.indices[:5].tolist() == [1778, 4083, 4613, 1221, 1320]
    assert np.array_equal(lt.indices, _independent_selection(jpeg_root, lt.counts, 666))
    assert (jpeg_root / "cifar10-jpeg" / data.JPEG_CACHE).is_file()
    full = build_dataset("cifar10-jpeg", jpeg_root, 1)  # all 50,000 training images
    means = full.train.images.sum(dim=(0, 2, 3), dtype=torch.int64).double() / (50000 * 32 * 32 * 255)
    assert torch.allclose(means, torch.tensor([0.49125, 0.48209, 0.44652], dtype=torch.float64), atol=1e-5)


def test_real_pack_checksum():
    if not PACK.is_file():
        pytest.skip(f"CIFAR-10 JPEG pack not found at {PACK}")
    assert verify_archive(PACK, "cifar10-jpeg") == PACK


# ---------------------------------------------------------------- ImageNet-LT and iNaturalist 2018

def _jpeg(path, size, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def _make_imagenet_lt(root):
    folder = root / "imagenet_lt"
    train = [(f"train/n0{c}/n0{c}_{i}.JPEG", c) for c, n in enumerate([4, 2, 1]) for i in range(n)]
    test = [(f"val/ILSVRC2012_val_{c:08d}.JPEG", c) for c in range(3)]
    for k, (rel, _) in enumerate(train + test):
        _jpeg(folder / rel, (40, 30), k)
    (folder / "ImageNet_LT_train.txt").write_text("".join(f"{p} {c}\n" for p, c in train))
    (folder / "ImageNet_LT_test.txt").write_text("".join(f"{p} {c}\n" for p, c in test))
    return folder, train, test


def test_imagenet_lt_from_list_files(tmp_path):
    folder, train, test = _make_imagenet_lt(tmp_path)
    lt = build_dataset("imagenet_lt", tmp_path, None)
    assert lt.counts == [4, 2, 1] and lt.num_classes == 3 and lt.label == "ImageNet-LT"
    assert class_counts_from_list_file(folder / "ImageNet_LT_train.txt") == [4, 2, 1]
    assert lt.train.targets == [c for _, c in train] and len(lt.test) == 3
    x, y = lt.test[2]
    ref = TF.normalize(TF.to_tensor(TF.center_crop(TF.resize(Image.open(folder / test[2][0]).convert("RGB"), 256), 224)),
                       (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert y == 2 and torch.equal(x, ref)
    assert lt.train[0][0].shape == (3, 224, 224)
    assert build_dataset("imagenet_lt", tmp_path, 4).counts == [4, 2, 1]  # the file's own ratio is accepted
    with pytest.raises(ValueError, match="imbalance 4"):
        build_dataset("imagenet_lt", tmp_path, 256)
    with pytest.raises(ValueError, match="not supported"):
        build_dataset("imagenet_lt", tmp_path, None, classes=[0, 1])
    (folder / train[0][0]).unlink()
    with pytest.raises(FileNotFoundError, match="n00_0.JPEG"):
        build_dataset("imagenet_lt", tmp_path, None)


def test_imagenet_lt_missing_and_malformed(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"ImageNet_LT_train.txt.*OLTR"):
        build_dataset("imagenet_lt", tmp_path, None)
    bad = tmp_path / "list.txt"
    bad.write_text("a.jpg 0\nb.jpg x\n")
    with pytest.raises(ValueError, match="list.txt:2"):
        read_list_file(bad)


def test_inat2018_from_coco_json(tmp_path):
    folder = tmp_path / "inat2018"
    sizes = [3, 1, 2]
    images = [{"id": 100 + k, "file_name": f"train_val2018/Plantae/{c}/{k}.jpg"}
              for k, c in enumerate(c for c, n in enumerate(sizes) for _ in range(n))]
    labels = [c for c, n in enumerate(sizes) for _ in range(n)]
    cats = [{"id": c, "name": f"species {c}", "supercategory": "Plantae"} for c in range(3)]
    annotations = [{"id": k, "image_id": im["id"], "category_id": c}
                   for k, (im, c) in reversed(list(enumerate(zip(images, labels))))]  # order differs from images
    (folder).mkdir()
    (folder / "train2018.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                                       "categories": cats}))
    val = [{"id": 1, "file_name": images[0]["file_name"]}]
    (folder / "val2018.json").write_text(json.dumps({"images": val, "annotations": [
        {"id": 0, "image_id": 1, "category_id": 0}], "categories": cats}))
    for k, im in enumerate(images):
        _jpeg(folder / im["file_name"], (24, 24), k)
    lt = build_dataset("inat2018", tmp_path, None)
    assert lt.counts == sizes and lt.class_names == ["species 0", "species 1", "species 2"]
    assert lt.train.targets == labels and lt.label == "iNaturalist 2018" and len(lt.test) == 1
    assert class_counts_from_coco_json(folder / "train2018.json") == sizes
    assert summarize_counts(train_class_counts("inat2018", tmp_path))["imbalance"] == 3.0
    with pytest.raises(ValueError, match="imbalance 3"):
        build_dataset("inat2018", tmp_path, 500)


def test_registry():
    """One table of datasets (kps.datasets): Table 1's sizes, the preset that trains each,
    the fixed imbalance of those that come long-tailed, and how each is read."""
    from kps.configs import PRESETS, make_config

    assert set(DATASETS) == {"cifar10", "cifar100", "cifar10-jpeg", "imagenet_lt", "inat2018"}
    assert [DATASETS[n].n_max for n in ("cifar10", "cifar100", "imagenet_lt", "inat2018")] == [5000, 500, 1280, 1000]
    assert DATASETS["cifar10-jpeg"].label == "CIFAR-10 (JPEG copy)"
    assert {n: s.preset for n, s in DATASETS.items()} == {
        "cifar10": "cifar10_lt", "cifar100": "cifar100_lt", "cifar10-jpeg": "cifar10_lt", "imagenet_lt": "imagenet_lt",
        "inat2018": "inat2018"}
    assert {n: s.fixed_imbalance for n, s in DATASETS.items() if s.fixed_imbalance} == {"imagenet_lt": 256.0,
                                                                                        "inat2018": 500.0}
    assert {n: s.loader for n, s in DATASETS.items()} == {
        "cifar10": "cifar-pickles", "cifar100": "cifar-pickles", "cifar10-jpeg": "jpeg-tree",
        "imagenet_lt": "list-file", "inat2018": "coco-json"}
    assert [n for n, s in DATASETS.items() if s.tensors] == ["cifar10", "cifar100", "cifar10-jpeg"]
    # the presets' datasets and the configs' defaults come from the table
    assert PRESETS["cifar10_lt"].datasets == PRESETS["cifar10_lt_small"].datasets == ("cifar10", "cifar10-jpeg")
    assert PRESETS["inat2018"].datasets == ("inat2018",)
    assert make_config("inat2018", "ce").imbalance == 500.0 and make_config("cifar100", "ce").imbalance == 100.0
    with pytest.raises(ValueError, match="unknown dataset"):
        build_dataset("svhn", "data", 100)


def test_downsample_averages_each_block_once():
    from kps.data import LTData, TensorSplit, downsample

    images = torch.arange(2 * 3 * 4 * 4, dtype=torch.uint8).reshape(2, 3, 4, 4) * 3
    split = TensorSplit(images, torch.tensor([0, 1]))
    lt = LTData("cifar10", "CIFAR-10", 2, ["a", "b"], [1, 1], split, split)
    small = downsample(lt, 2)
    assert small.train.images.shape == (2, 3, 2, 2) and small.train.images.dtype == torch.uint8
    # top-left output pixel of image 0, channel 0: mean of 0, 3, 12, 15 -> 7.5, rounded half to even: 8
    block = images[0, 0, :2, :2].double().mean()
    assert block == 7.5 and small.train.images[0, 0, 0, 0] == 8
    expected = images.double().reshape(2, 3, 2, 2, 2, 2).mean(dim=(3, 5)).round().to(torch.uint8)
    assert torch.equal(small.train.images, expected) and torch.equal(small.test.images, expected)
    assert downsample(lt, 4) is lt
    with pytest.raises(ValueError, match="cannot downsample 4x4 images to 8x8"):
        downsample(lt, 8)


def test_jpeg_pack_at_the_cpu_scale_protocol(jpeg_root):
    from kps.configs import make_config
    from kps.batches import augment_for, load_data

    lt = load_data(make_config("cifar10-jpeg", "ce", preset="cifar10_lt_small"), jpeg_root)
    assert lt.train.images.shape == (12406, 3, 16, 16) and lt.test.images.shape == (10000, 3, 16, 16)
    full = build_dataset("cifar10-jpeg", jpeg_root, 100)
    assert torch.equal(lt.train.images[7], full.train.images[7:8].double().reshape(1, 3, 16, 2, 16, 2)
                       .mean(dim=(3, 5)).round().to(torch.uint8)[0])
    augment = augment_for(lt)
    assert (augment.pad, augment.crop) == (2, 16) and augment(lt.train.images[:5]).shape == (5, 3, 16, 16)


def test_download_offline_says_where_to_put_the_archive(tmp_path, monkeypatch):
    import urllib.error

    import torchvision.datasets as tvd

    class Offline:
        url = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"

        def __init__(self, root, train, download):
            raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tvd, "CIFAR10", Offline)
    with pytest.raises(ValueError) as err:
        download("cifar10", tmp_path / "d")
    message = str(err.value)
    assert "cannot download cifar10 (URLError: [Errno -3]" in message and "\n" not in message
    assert f"tar -xzf cifar-10-python.tar.gz -C {tmp_path / 'd'}" in message and Offline.url in message
    assert not (tmp_path / "d").exists()  # no empty folder left behind
    # the folders it created go, a folder that was there stays as it was
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    for root in (tmp_path / "new" / "deeper" / "d", tmp_path / "mine" / "d", tmp_path / "mine"):
        with pytest.raises(ValueError, match="cannot download cifar10"):
            download("cifar10", root)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["mine", "mine/notes.txt"]


def test_an_imbalance_that_empties_the_tail_is_named():
    assert long_tailed_counts(5000, 10, 5000)[-1] == 1
    with pytest.raises(ValueError) as err:
        long_tailed_counts(5000, 10, 1e9)
    assert str(err.value) == ("imbalance 1e+09 leaves the last 6 of 10 classes without a training image (the head "
                              "class has 5000): give an imbalance of at most 5000")
