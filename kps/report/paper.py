"""The paper's own numbers and labels: Tables 1-7 as transcribed under ``book/``
(``paper_numbers.csv`` for Tables 3-7, ``paper_table1.csv``, ``paper_table2.csv``),
the paper's dataset and backbone titles, and Tables 1-2 recomputed by this code
beside the paper's values (Sec. 4.1.1, Sec. 4.2).  The paper's numbers are only
ever shown as the paper's."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from kps.configs import PRESETS, make_config
from kps.data import summarize_counts, train_class_counts


def find_repo_root(start: str | Path | None = None) -> Path:
    """The repository root above ``start`` (default: the working folder): the
    first folder holding both ``_toc.yml`` and ``kps/``. Notebooks run from
    ``notebooks/`` (jupyter-book) or from the root (papermill, reproduce)."""
    here = Path(start if start is not None else Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").is_file() and (folder / "kps").is_dir():
            return folder
    raise FileNotFoundError(f"no repository root (a folder with _toc.yml and kps/) at or above {here}")


PAPER_COLUMNS = ("table", "dataset", "imbalance", "backbone", "method", "top1_error", "note")


# A paper row on CIFAR-10 may be matched by a run on the official CIFAR-10 or
# on the JPEG copy; the record's own dataset label then says which one ran.
DATASET_VARIANTS: dict[str, tuple[str, ...]] = {
    "cifar10": ("cifar10", "cifar10-jpeg"),
    "cifar100": ("cifar100",),
    "imagenet_lt": ("imagenet_lt",),
    "inat2018": ("inat2018",),
}


DATASET_TITLES = {
    "cifar10": "CIFAR-10-LT",
    "cifar100": "CIFAR-100-LT",
    "imagenet_lt": "ImageNet-LT",
    "inat2018": "iNaturalist 2018",
}


BACKBONE_TITLES = {"resnet32": "ResNet-32", "resnet50": "ResNet-50", "resnext50_32x4d": "ResNeXt-50"}


def read_paper_numbers(path: str | Path) -> pd.DataFrame:
    """The paper's Tables 3-7 as transcribed in ``book/paper_numbers.csv``.

    One row per table cell; ``top1_error`` is NaN where the paper prints '-';
    ``imbalance`` is NaN for ImageNet-LT / iNaturalist (fixed by their lists).
    ValueError when a column is missing, a table number is outside 3-7, or an
    error is not a percentage.
    """
    df = pd.read_csv(path)
    missing = [c for c in PAPER_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected {list(PAPER_COLUMNS)}")
    bad_tables = sorted(set(df["table"]) - {3, 4, 5, 6, 7})
    if bad_tables:
        raise ValueError(f"{path}: table numbers must be 3-7, got {bad_tables}")
    bad_sets = sorted(set(df["dataset"]) - set(DATASET_VARIANTS))
    if bad_sets:
        raise ValueError(f"{path}: unknown dataset(s) {bad_sets}; valid: {sorted(DATASET_VARIANTS)}")
    err = df["top1_error"].dropna()
    if ((err < 0) | (err > 100)).any():
        raise ValueError(f"{path}: top1_error must be a percentage in [0, 100]")
    if df[df["method"].isna()].shape[0]:
        raise ValueError(f"{path}: every row needs a method name")
    return df


def read_paper_table1(path: str | Path) -> pd.DataFrame:
    """The paper's Table 1 (dataset summary) from ``book/paper_table1.csv``."""
    df = pd.read_csv(path)
    need = ("dataset", "num_classes", "imbalance", "tail_class_size", "head_class_size")
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    return df


def paper_label(note: str) -> str:
    """The paper's own row label: the note's text before the first ';'."""
    return str(note).split(";")[0].strip()


def dataset_title(dataset: str) -> str:
    """'cifar10' -> 'CIFAR-10-LT' (the paper's column titles)."""
    if dataset not in DATASET_TITLES:
        raise ValueError(f"unknown paper dataset {dataset!r}; valid: {sorted(DATASET_TITLES)}")
    return DATASET_TITLES[dataset]


def table1(
    paper_t1: pd.DataFrame,
    data_root: str | Path,
    counts_fn: Callable[..., list[int]] = train_class_counts,
) -> pd.DataFrame:
    """Table 1 recomputed: for each row of the paper's Table 1, the class
    counts from the dataset builders (``kps.data.train_class_counts``: the
    exponential profile of Sec. 4.1.1 for CIFAR, the split files for
    ImageNet-LT / iNaturalist 2018) summarised as the paper does, beside the
    paper's values. Where a split file is not under ``data_root`` the row keeps
    only the paper's values and says so in ``source``."""
    rows = []
    for _, p in paper_t1.iterrows():
        name = p["dataset"]
        fixed = name in ("imagenet_lt", "inat2018")
        try:
            counts = counts_fn(name, data_root) if fixed else counts_fn(name, None, float(p["imbalance"]))
        except FileNotFoundError as err:
            ours, source = None, f"paper's values only: split file not present ({err})"
        else:
            ours = summarize_counts(counts)
            source = "split file under data root" if fixed else "kps.data.long_tailed_counts (Sec. 4.1.1)"
        row = {"dataset": dataset_title(name)}
        for label, paper_key, our_key in (("# classes", "num_classes", "classes"),
                                          ("imbalance ratio", "imbalance", "imbalance"),
                                          ("tail class size", "tail_class_size", "tail"),
                                          ("head class size", "head_class_size", "head")):
            row[(label, "paper")] = f"{p[paper_key]:g}"
            row[(label, "ours")] = "-" if ours is None else f"{ours[our_key]:g}"
        row[("training images", "ours")] = "-" if ours is None else f"{ours['total']:g}"
        row["source of ours"] = source
        rows.append(row)
    frame = pd.DataFrame(rows).set_index("dataset")
    frame.columns = pd.MultiIndex.from_tuples([c if isinstance(c, tuple) else (c, "") for c in frame.columns])
    return frame


# Table 2 / Sec. 4.2 settings -> RunConfig field.
_TABLE2_FIELDS = {
    "Backbone": "arch", "Mini-batch size": "batch_size", "Initial lr": "lr", "Weight decay": "weight_decay",
    "lr warm-up": "warmup_epochs", "Maximum epochs": "epochs", "lr decay ratio": "decay_ratio",
    "lr decay epochs": "decay_epochs", "SGD momentum": "momentum", "m_max": "m_max", "n_base": "n_base",
    "s_base": "s_base",
}


def _table2_cell(setting: str, paper_value: str, ours: Any) -> tuple[str, bool]:
    """Our value formatted like the paper's cell, and whether the two agree."""
    if setting == "Backbone":
        title = BACKBONE_TITLES[ours]
        return title, title in [v.strip() for v in paper_value.split(",")]
    if setting == "lr warm-up":
        return (f"Yes ({ours} epochs)" if ours else "No"), (paper_value == "Yes") == (ours > 0)
    if setting == "lr decay epochs":
        want = [int(v) for v in paper_value.strip("{}").split(",")]
        return "{" + ",".join(str(e) for e in ours) + "}", list(ours) == want
    return f"{ours:g}", math.isclose(float(paper_value), float(ours))


def table2(paper_t2: pd.DataFrame) -> pd.DataFrame:
    """Table 2 (and the settings of Secs. 4.2 and 4.2.3) as the paper gives
    them beside the values ``kps.configs.make_config`` fills in for each
    dataset, with a column saying whether they agree."""
    unknown = sorted(set(paper_t2["setting"]) - set(_TABLE2_FIELDS))
    if unknown:
        raise ValueError(f"unknown Table 2 setting(s) {unknown}; known: {sorted(_TABLE2_FIELDS)}")
    datasets = [c for c in paper_t2.columns if c not in ("setting", "source")]
    configs = {d: make_config(d, "kps_ga").to_dict() for d in datasets}
    rows = []
    for _, p in paper_t2.iterrows():
        row: dict[Any, Any] = {("setting", ""): p["setting"], ("source", ""): p["source"]}
        for d in datasets:
            ours, same = _table2_cell(p["setting"], str(p[d]), configs[d][_TABLE2_FIELDS[p["setting"]]])
            row[(dataset_title(d), "paper")] = str(p[d])
            row[(dataset_title(d), "ours")] = ours
            row[(dataset_title(d), "same")] = "yes" if same else "NO"
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.columns = pd.MultiIndex.from_tuples(frame.columns)
    return frame.set_index([("setting", ""), ("source", "")]).rename_axis(["setting", "source"])


def table1_page(data_root: str | Path | None = None) -> pd.DataFrame:
    """The Table 1 page: :func:`table1` of ``book/paper_table1.csv`` with the split
    files under ``data_root`` (None: the repository's ``data/``)."""
    root = find_repo_root()
    return table1(read_paper_table1(root / "book" / "paper_table1.csv"),
                  root / "data" if data_root is None else Path(data_root))


def not_in_paper() -> pd.DataFrame:
    """Every value a run needs that the paper does not give, by preset (``Preset.not_in_paper``):
    our value and where it comes from."""
    return pd.DataFrame(
        [{"preset": name, "setting": key, "our value": getattr(p, key), "why": why}
         for name, p in PRESETS.items() for key, why in p.not_in_paper.items()]
    ).set_index(["preset", "setting"])


def table2_page() -> tuple[Any, Any]:
    """The Table 2 page: :func:`table2` of ``book/paper_table2.csv`` and
    :func:`not_in_paper`, styled so that no cell is cut short."""
    root = find_repo_root()
    return table2(pd.read_csv(root / "book" / "paper_table2.csv")).style, not_in_paper().style
