"""Pure functions behind the book's table and figure notebooks.

The notebooks only read files (``book/paper_numbers.csv``, ``results/``
records) and call these functions, so every rule of the result pages lives
here and is tested (tests/test_report.py):

- the paper's numbers (Tables 1, 3-7) are read from one transcription and are
  only ever shown as the paper's;
- a cell of ours is computed from records written by ``kps.train`` and from
  nothing else: mean +- sample std over seeds, the number of seeds, the
  final-epoch and the best-epoch error labelled apart, the dataset variant
  labelled (e.g. "CIFAR-10 (JPEG copy)"), every setting that differs from the
  paper's named; no record -> "not run";
- per-class/group errors of Figs. 6-7 (Sec. 4.5: Head1-3 / Mid1-4 / Tail1-3)
  come from the records' ``per_group_errors``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from kps.configs import METHODS, PRESETS, RUN_ONLY_KEYS, Preset, RunConfig, make_config
from kps.data import summarize_counts, train_class_counts
from kps.results import config_record_path

__all__ = [
    "NOT_RUN",
    "NOT_IMPLEMENTED",
    "PAPER_COLUMNS",
    "ErrorSummary",
    "summarize",
    "format_summary",
    "find_repo_root",
    "read_paper_numbers",
    "read_paper_table1",
    "paper_label",
    "dataset_title",
    "setting_label",
    "variant_label",
    "matching_records",
    "comparison_table",
    "wide_table",
    "table_records",
    "runs_overview",
    "protocol_of",
    "preset_of",
    "protocol_column",
    "setting_effects",
    "ProvenanceNote",
    "read_provenance_notes",
    "record_file",
    "note_for",
    "provenance_table",
    "provenance_footnotes",
    "ga_variant_comparison",
    "ga_variant_note",
    "table1",
    "table2",
    "group_names",
    "per_group_error_table",
    "toy_angles",
    "toy_table",
    "GRADIENT_FORMS",
    "gradient_table",
    "BENCH_SCHEMA",
    "SPEED_TARGETS",
    "bench_files",
    "read_bench",
    "bench_header",
    "speed_table",
    "speed_chart_data",
    "trainer_order",
    "grid_table",
    "grid_per_process",
    "grid_header",
    "TOGETHER_COLUMNS",
    "together_table",
    "together_note",
    "measurement_failures",
    "STACKED_COLUMNS",
    "stacked_table",
    "stacked_note",
    "train_loss_epoch_labels",
    "train_loss_table",
    "train_loss_verdict",
    "job_wall_s",
    "speed_targets",
    "speed_summary",
]

NOT_RUN = "not run"
NOT_IMPLEMENTED = "not in this artifact"
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
# Config keys that only select a faster code path (kps.train), not the maths.
_SPEED_KEYS = ("channels_last", "fused_sgd", "compile")


@dataclass(frozen=True)
class ErrorSummary:
    """Mean and sample standard deviation (ddof=1; None for one seed) of n errors in %."""

    mean: float
    std: float | None
    n: int


def summarize(values: Iterable[float]) -> ErrorSummary | None:
    """Summary of top-1 errors (%) over seeds; None when there are none."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        return None
    if not np.all(np.isfinite(v)):
        raise ValueError(f"errors must be finite numbers, got {v.tolist()}")
    std = float(v.std(ddof=1)) if v.size > 1 else None
    return ErrorSummary(float(v.mean()), std, int(v.size))


def format_summary(s: ErrorSummary | None, missing: str = NOT_RUN, digits: int = 2) -> str:
    """'18.77 ± 0.31 (n=3)', '18.77 (n=1)' or ``missing``."""
    if s is None:
        return missing
    spread = f" ± {s.std:.{digits}f}" if s.std is not None else ""
    return f"{s.mean:.{digits}f}{spread} (n={s.n})"


def find_repo_root(start: str | Path | None = None) -> Path:
    """The repository root above ``start`` (default: the working folder): the
    first folder holding both ``_toc.yml`` and ``kps/``. Notebooks run from
    ``notebooks/`` (jupyter-book) or from the root (papermill, reproduce)."""
    here = Path(start if start is not None else Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").is_file() and (folder / "kps").is_dir():
            return folder
    raise FileNotFoundError(f"no repository root (a folder with _toc.yml and kps/) at or above {here}")


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


def preset_of(config: Mapping[str, Any]) -> Preset:
    """The preset a record's config ran.  An unknown one: ValueError naming it."""
    name = config["preset"]
    if name not in PRESETS:
        raise ValueError(f"a record's preset {name!r} is not known to this code (kps.configs.PRESETS: "
                         f"{', '.join(PRESETS)}); update the code or move the record out of results/")
    return PRESETS[name]


def protocol_of(config: Mapping[str, Any]) -> str:
    """'paper' or the reduced protocol's name ('CPU-scale') of a record's config."""
    return preset_of(config).protocol


def _differences(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, words) for every way ``config`` differs from the setting of its dataset,
    method and imbalance under its preset (``make_config`` with the same seed);
    a reduced protocol first, then a short run. Keys that only pick a faster code
    path are skipped; bf16 autocast is kept (it changes the arithmetic, not only the
    speed)."""
    cfg = dict(config)
    preset = preset_of(cfg)
    reference = make_config(cfg["dataset"], cfg["method"], imbalance=cfg["imbalance"], seed=cfg["seed"],
                            preset=preset.name).to_dict()
    parts: list[tuple[str, str]] = []
    if preset.protocol != "paper":
        parts.append(("preset", f"{preset.protocol} protocol ({preset.name})"))
    for key in sorted(set(cfg) | set(reference)):
        if key in _SPEED_KEYS or key in ("seed", "preset"):
            continue
        ours, ref = cfg.get(key), reference.get(key)
        if _same(ours, ref):
            continue
        if key == "epochs":
            parts.insert(len(parts) and parts[0][0] == "preset", (key, f"short run: {ours} of {ref} epochs"))
        elif key in ("ga_variant", "lr_style") and ours == "official":
            parts.append((key, "GA: authors' per-sample row scale" if key == "ga_variant" else "lr: authors' schedule"))
        elif key == "bf16":
            parts.append((key, "bf16 autocast" if ours else "fp32"))
        else:
            parts.append((key, f"{key} {ours}"))
    return parts


def setting_label(config: Mapping[str, Any]) -> str:
    """How a run's config differs from the paper's setting for its dataset and
    method (``kps.configs.make_config`` with the same imbalance and seed):
    'paper setting', or the differences, e.g. 'short run: 30 of 200 epochs;
    m_max 0.2'. Keys that only pick a faster code path are ignored; bf16
    autocast is named ('bf16 autocast')."""
    parts = [words for _, words in _differences(config)]
    return "; ".join(parts) if parts else "paper setting"


def variant_label(config: Mapping[str, Any], with_protocol: bool = True) -> str:
    """The part of :func:`setting_label` that changes the experiment itself
    (the keys of a record's setting tag, e.g. the authors'-code GA variant):
    'paper setting' when the run differs only in how long, how often
    evaluated, or how fast/precise it ran (``kps.configs.RUN_ONLY_KEYS``).
    Result tables give each variant its own row; ``with_protocol=False`` leaves out
    a reduced protocol's name (the tables give it a column of its own)."""
    parts = [words for key, words in _differences(config)
             if key not in RUN_ONLY_KEYS and (with_protocol or key != "preset")]
    return "; ".join(parts) if parts else "paper setting"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return list(a or []) == list(b or [])
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(float(a), float(b))
    return a == b


def matching_records(
    records: Iterable[Mapping[str, Any]], dataset: str, method: str, imbalance: float | None, backbone: str
) -> list[Mapping[str, Any]]:
    """Records that ran the paper row's method and backbone on one of the
    dataset's variants (CIFAR-10: official or JPEG copy) at its imbalance
    (``imbalance`` None/NaN: any, for the datasets that come long-tailed)."""
    variants = DATASET_VARIANTS[dataset]
    any_ratio = imbalance is None or (isinstance(imbalance, float) and math.isnan(imbalance))
    out = []
    for rec in records:
        c = rec["config"]
        if c["dataset"] in variants and c["method"] == method and c.get("arch") == backbone:
            if any_ratio or math.isclose(float(c["imbalance"]), float(imbalance)):
                out.append(rec)
    return out


def _groups(records: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """Records split by everything that decides a run except the seed (and the
    speed-only switches), in a stable order; one group = one cell of ours."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for rec in records:
        cfg = {k: v for k, v in rec["config"].items() if k != "seed" and k not in _SPEED_KEYS}
        key = repr(sorted((k, repr(v)) for k, v in cfg.items())) + repr(rec.get("dataset_label"))
        groups.setdefault(key, []).append(rec)
    return [groups[k] for k in sorted(groups)]


def comparison_table(
    paper: pd.DataFrame,
    records: Sequence[Mapping[str, Any]],
    table: int,
    implemented: Collection[str] = tuple(METHODS),
) -> pd.DataFrame:
    """The paper's table ``table`` beside our records, one row per paper cell
    and group of our runs (a paper cell without runs gets one row).

    Columns: method, paper label, dataset, imbalance, backbone, paper (the
    paper's top-1 error, '–' where it prints '-'), ours final / ours best (top-1
    error of the last epoch / of the best epoch, mean ± std over seeds),
    seeds, our data (the records' dataset label), our setting (see
    :func:`setting_label`), our variant (see :func:`variant_label`; '' where
    there is no record), protocol ('paper' or a reduced protocol such as
    'CPU-scale', :data:`kps.configs.PRESETS`; '' where there is no record).
    Our cells say "not run" where no record exists and "not in this artifact"
    for methods this package does not implement.
    """
    rows = paper[paper["table"] == table]
    if rows.empty:
        raise ValueError(f"no paper numbers for table {table}; tables present: {sorted(set(paper['table']))}")
    out = []
    for _, p in rows.iterrows():
        imb = None if pd.isna(p["imbalance"]) else float(p["imbalance"])
        base = {
            "method": p["method"],
            "paper label": paper_label(p["note"]),
            "dataset": dataset_title(p["dataset"]),
            "imbalance": "-" if imb is None else f"{imb:g}",
            "backbone": BACKBONE_TITLES.get(p["backbone"], p["backbone"]),
            "paper": "–" if pd.isna(p["top1_error"]) else f"{p['top1_error']:.2f}",
        }
        found = matching_records(records, p["dataset"], p["method"], imb, p["backbone"])
        if not found:
            missing = NOT_RUN if p["method"] in implemented else NOT_IMPLEMENTED
            out.append({**base, "ours final": missing, "ours best": missing, "seeds": "",
                        "our data": "", "our setting": "", "our variant": "", "protocol": ""})
            continue
        for group in _groups(found):
            out.append({
                **base,
                "protocol": protocol_of(group[0]["config"]),
                "ours final": format_summary(summarize(r["top1_error"] for r in group)),
                "ours best": format_summary(summarize(r["best_top1_error"] for r in group)),
                "seeds": ", ".join(str(s) for s in sorted(r["config"]["seed"] for r in group)),
                "our data": group[0].get("dataset_label", group[0]["config"]["dataset"]),
                "our setting": setting_label(group[0]["config"]),
                "our variant": variant_label(group[0]["config"], with_protocol=False),
            })
    return pd.DataFrame(out)


def runs_overview(records: Sequence[Mapping[str, Any]], grid: Sequence[RunConfig], workers: int) -> str:
    """Markdown: how many full-schedule records each protocol has (by data and imbalance),
    how much of ``grid`` (the CPU grid) is done, and how long the whole grid takes to
    rerun with ``workers`` runs side by side, from the mean wall time of its records."""
    full = [r for r in records if r["epochs"] == r["preset_epochs"]]
    counts: dict[tuple[str, str, float], int] = {}
    for r in full:
        c = r["config"]
        key = (protocol_of(c), r.get("dataset_label", c["dataset"]), float(c["imbalance"]))
        counts[key] = counts.get(key, 0) + 1
    lines = ["**What has been run.** " + ("; ".join(
        f"{protocol} protocol, {label}, ρ = {imb:g}: {n} run{'s' if n != 1 else ''}"
        for (protocol, label, imb), n in sorted(counts.items())) or "no full-schedule run yet") + "."]
    wanted = {config_record_path("", c) for c in grid}
    done = [r for r in full if config_record_path("", RunConfig.from_dict(r["config"])) in wanted]
    if grid:
        line = f"**The CPU grid** ({len(grid)} runs): {len(done)} done"
        if done:
            wall = sum(r["wall_time_s"] for r in done) / len(done)
            line += (f"; one run takes {wall / 60:.1f} min on one core (mean of its records), so the whole grid "
                     f"takes about {len(grid) * wall / workers / 3600:.1f} h on {workers} cores "
                     f"(`python -m kps train-grid --grid cpu --jobs {workers}`)")
        lines.append(line + ".")
    small = any(protocol_of(r["config"]) != "paper" for r in full)
    if small:
        lines.append("Runs of the CPU-scale protocol are a reduced protocol: they have columns of their own and "
                     "are never set beside the paper's numbers as like for like.")
    return "\n\n".join(lines)


def table_records(paper: pd.DataFrame, records: Sequence[Mapping[str, Any]], table: int) -> list[Mapping[str, Any]]:
    """The records that fill some cell of ours in the paper's table ``table``
    (in the order given), for its provenance list."""
    rows = paper[paper["table"] == table]
    used = {id(r) for _, p in rows.iterrows()
            for r in matching_records(records, p["dataset"], p["method"],
                                      None if pd.isna(p["imbalance"]) else float(p["imbalance"]), p["backbone"])}
    return [r for r in records if id(r) in used]


def protocol_column(protocol: str) -> str:
    """The sub-column of a table head that holds our runs of ``protocol``."""
    return "ours (final epoch)" if protocol == "paper" else f"ours, {protocol} protocol (final epoch)"


def _protocol_fits(protocol: str, dataset_title_: str) -> bool:
    """Whether a preset of ``protocol`` runs on the paper column's dataset."""
    datasets = {d for p in PRESETS.values() if p.protocol == protocol for d in p.datasets}
    return any(DATASET_TITLES.get(base) == dataset_title_ for base, variants in DATASET_VARIANTS.items()
               if set(variants) & datasets)


def wide_table(long: pd.DataFrame) -> pd.DataFrame:
    """The paper's layout (methods down, labelled "<paper's label> (<our
    method name>)"; dataset x imbalance x backbone across) with a 'paper' and
    an 'ours (final epoch)' column under each.

    Our runs in the paper's setting (up to run-only differences such as a
    short run or bf16 autocast, named in the cell) fill the method's own row.
    Runs of another variant (:func:`variant_label`, e.g. the authors'-code GA)
    get a row of their own right below it, labelled "<paper's label> (<our
    method name>), <variant>", with the paper's number repeated beside them
    and "not run" where that variant has no record. Several groups of our
    runs for one cell are joined with ' | ', each followed by its dataset
    label and setting in brackets.

    Runs of a reduced protocol (``protocol`` column, e.g. 'CPU-scale') never
    share a column with the paper's protocol: each such protocol with a record
    in the table gets its own column under every head whose dataset it runs on
    ("ours, CPU-scale protocol (final epoch)", :func:`protocol_column`), its
    variant rows matched by the variant within that protocol."""
    def ours(sub: pd.DataFrame) -> str:
        return " | ".join(f"{r['ours final']} [{r['our data']}; {r['our setting']}]" for _, r in sub.iterrows())

    reduced = [p for p in dict.fromkeys(long.get("protocol", pd.Series(dtype=str))) if p and p != "paper"]
    cols: list[tuple[str, str]] = []
    cells: dict[str, dict[tuple[str, str], str]] = {}
    rows_of: dict[str, list[str]] = {}          # method row -> its variant rows, in order
    paper_of: dict[str, dict[str, str]] = {}    # method row -> column head -> the paper's number
    ours_cols: dict[str, list[str]] = {}        # column head -> its columns of ours
    order: list[str] = []
    for (label, method, ds, imb, bb), sub in long.groupby(
            ["paper label", "method", "dataset", "imbalance", "backbone"], sort=False):
        label = f"{label} ({method})"
        head = f"{ds} {bb}" + ("" if imb == "-" else f" ρ={imb}")
        if head not in ours_cols:
            ours_cols[head] = [protocol_column("paper")] + [protocol_column(p) for p in reduced
                                                            if _protocol_fits(p, ds)]
            cols.extend((head, c) for c in ("paper", *ours_cols[head]))
        if label not in cells:
            cells[label], rows_of[label], paper_of[label] = {}, [], {}
            order.append(label)
        paper_of[label][head] = sub["paper"].iloc[0]
        cells[label][(head, "paper")] = sub["paper"].iloc[0]
        ran = sub[sub["our data"] != ""]
        for protocol in ["paper", *reduced]:
            column = protocol_column(protocol)
            if column not in ours_cols[head]:
                continue
            mine = ran[ran["protocol"] == protocol]
            variants = mine["our variant"]
            main = mine[variants == "paper setting"]
            if ran.empty:  # no record at all: "not run" or "not in this artifact"
                cells[label][(head, column)] = sub["ours final"].iloc[0]
            else:
                cells[label][(head, column)] = ours(main) if not main.empty else NOT_RUN
            for variant in dict.fromkeys(variants[variants != "paper setting"]):
                row = f"{label}, {variant}"
                if row not in cells:
                    cells[row] = {}
                    rows_of[label].append(row)
                cells[row][(head, column)] = ours(mine[variants == variant])
    for label, variants in rows_of.items():
        for row in variants:
            for head, number in paper_of[label].items():
                cells[row][(head, "paper")] = number
                for column in ours_cols[head]:
                    cells[row].setdefault((head, column), NOT_RUN)
    index = [row for label in order for row in (label, *rows_of[label])]
    frame = pd.DataFrame([[cells[m].get(c, "") for c in cols] for m in index], index=index,
                         columns=pd.MultiIndex.from_tuples(cols))
    frame.index.name = "method: paper's label (our name)"
    return frame


def setting_effects(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Runs of one dataset, method, imbalance and backbone made in more than
    one setting (e.g. the paper's and the authors' code's), side by side: one
    row per setting with final and best-epoch error (mean ± std over seeds)."""
    by_cell: dict[tuple, list[Mapping[str, Any]]] = {}
    for rec in records:
        c = rec["config"]
        by_cell.setdefault((c["dataset"], c["method"], float(c["imbalance"]), c["arch"]), []).append(rec)
    rows = []
    for (dataset, method, imbalance, arch), recs in sorted(by_cell.items()):
        groups = _groups(recs)
        if len(groups) < 2:
            continue
        for group in groups:
            rows.append({
                "data": group[0].get("dataset_label", dataset), "method": method, "imbalance": f"{imbalance:g}",
                "backbone": BACKBONE_TITLES.get(arch, arch), "setting": setting_label(group[0]["config"]),
                "final": format_summary(summarize(r["top1_error"] for r in group)),
                "best": format_summary(summarize(r["best_top1_error"] for r in group)),
            })
    return pd.DataFrame(rows, columns=["data", "method", "imbalance", "backbone", "setting", "final", "best"])


@dataclass(frozen=True)
class ProvenanceNote:
    """A fact about where committed files came from that the files themselves
    get wrong or cannot say (``book/provenance_notes.yml``). The files are
    never edited; the pages that show their provenance print the note as a
    numbered footnote. It applies to a file listed in ``files`` whose own
    provenance still reads ``recorded_commit`` / ``recorded_dirty``."""

    number: int
    key: str
    files: tuple[str, ...]
    recorded_commit: str
    recorded_dirty: bool
    ran_commit: str
    changed_paths: tuple[str, ...]
    text: str

    @property
    def marker(self) -> str:
        return f"[{self.number}]"


def read_provenance_notes(path: str | Path) -> list[ProvenanceNote]:
    """The notes of ``book/provenance_notes.yml``, numbered from 1 in file
    order; ValueError naming the note when a field is missing or malformed."""
    import yaml

    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    notes = []
    for i, item in enumerate(data.get("notes") or [], start=1):
        need = ("key", "files", "recorded_commit", "recorded_dirty", "ran_commit", "changed_paths", "text")
        missing = [k for k in need if k not in item]
        if missing:
            raise ValueError(f"{path}: note {i} lacks {missing}")
        for k in ("recorded_commit", "ran_commit"):
            if not (isinstance(item[k], str) and len(item[k]) == 40 and all(c in "0123456789abcdef" for c in item[k])):
                raise ValueError(f"{path}: note {item['key']!r}: {k} must be a 40-hex commit")
        if not isinstance(item["recorded_dirty"], bool):
            raise ValueError(f"{path}: note {item['key']!r}: recorded_dirty must be true or false")
        notes.append(ProvenanceNote(i, str(item["key"]), tuple(item["files"]), item["recorded_commit"],
                                    item["recorded_dirty"], item["ran_commit"], tuple(item["changed_paths"]),
                                    " ".join(str(item["text"]).split())))
    return notes


def record_file(record: Mapping[str, Any]) -> str:
    """Where ``record`` lies in the repository: 'results/<dataset>/<method>/imb<r>/seed<k>[.<tag>].json'."""
    return config_record_path(Path("results"), RunConfig.from_dict(record["config"])).as_posix()


def note_for(file: str, commit: Any, dirty: Any, notes: Iterable[ProvenanceNote]) -> ProvenanceNote | None:
    """The note about ``file`` (a repository path), if one applies to a file
    with this recorded commit and dirty flag."""
    for note in notes:
        if file in note.files and commit == note.recorded_commit and bool(dirty) == note.recorded_dirty:
            return note
    return None


def _record_note(rec: Mapping[str, Any], notes: Iterable[ProvenanceNote]) -> ProvenanceNote | None:
    return note_for(record_file(rec), rec.get("git_commit"), rec.get("git_dirty"), notes)


def provenance_table(records: Iterable[Mapping[str, Any]], notes: Iterable[ProvenanceNote] = ()) -> pd.DataFrame:
    """One row per record: what ran (dataset label, method, imbalance, seed,
    epochs, setting) and where it came from as the record says it (commit,
    dirty tree, device, torch version, start time in UTC, wall time of the
    epochs in minutes), and the marker of a note of ``notes`` that applies
    to it (see :func:`provenance_footnotes`)."""
    notes = list(notes)
    rows = []
    for rec in records:
        c = rec["config"]
        note = _record_note(rec, notes)
        dirty = rec.get("git_dirty")
        rows.append({
            "data": rec.get("dataset_label", c["dataset"]),
            "method": c["method"],
            "imbalance": f"{float(c['imbalance']):g}",
            "seed": c["seed"],
            "epochs": c["epochs"],
            "setting": setting_label(c),
            "commit": str(rec.get("git_commit") or "unknown")[:10],
            "dirty tree": "unknown" if dirty is None else ("yes" if dirty else "no"),
            "note": note.marker if note else "",
            "device": rec.get("device", "unknown"),
            "torch": rec.get("torch_version", "unknown"),
            "started (UTC)": str(rec.get("started_at", "unknown"))[:16].replace("T", " "),
            "wall time (min)": f"{float(rec['wall_time_s']) / 60:.1f}" if rec.get("wall_time_s") is not None else "unknown",
            "processes": segments_label(rec),
        })
    return pd.DataFrame(rows)


def segments_label(rec: Mapping[str, Any]) -> str:
    """How many processes trained the run, and where a resumed one took over:
    'one' (also for records before segments were kept), or e.g. 'epochs 0-129:
    unknown; 130-199: 1a2b3c4d5e (H200)'."""
    segments = rec.get("segments") or []
    if len(segments) <= 1:
        return "one" + (_stacked(segments[0]) if segments else "")
    ends = [s["from_epoch"] for s in segments[1:]] + [rec["epochs"]]
    parts = []
    for seg, end in zip(segments, ends):
        who = str(seg["git_commit"])[:10] if seg.get("git_commit") else "unknown commit"
        if seg.get("device"):
            who += f" ({seg['device']})"
        parts.append(f"{seg['from_epoch']}-{end - 1}: {who}{_stacked(seg)}")
    return "epochs " + "; ".join(parts)


def _stacked(segment: Mapping[str, Any]) -> str:
    """', k runs stacked as one network' for a segment trained in a kps.stack.Stack."""
    k = segment.get("stacked_runs")
    return f", {k} runs stacked as one network" if k else ""


def provenance_footnotes(notes: Iterable[ProvenanceNote], records: Iterable[Mapping[str, Any]] = (),
                         files: Iterable[tuple[str, Any, Any]] = ()) -> str:
    """Markdown: '[n] text' for each note that applies to one of ``records``
    or of ``files`` ((path, recorded commit, recorded dirty flag) triples),
    in note order; '' when none applies."""
    notes = list(notes)
    used = {n.number for n in filter(None, (_record_note(r, notes) for r in records))}
    used |= {n.number for n in filter(None, (note_for(f, c, d, notes) for f, c, d in files))}
    return "\n\n".join(f"{n.marker} {n.text}" for n in notes if n.number in used)


def _ga_variant_pairs(records: Sequence[Mapping[str, Any]]) -> list[dict[str, list[Mapping[str, Any]]]]:
    """Groups of records alike but for seed and ``ga_variant`` that hold both
    variants: {"paper": [...], "official": [...]}, in a stable order."""
    by_key: dict[str, dict[str, list[Mapping[str, Any]]]] = {}
    for rec in records:
        cfg = {k: v for k, v in rec["config"].items() if k not in ("seed", "ga_variant")}
        key = repr(sorted((k, repr(v)) for k, v in cfg.items())) + repr(rec.get("dataset_label"))
        by_key.setdefault(key, {}).setdefault(rec["config"]["ga_variant"], []).append(rec)
    return [by_key[k] for k in sorted(by_key) if {"paper", "official"} <= set(by_key[k])]


def ga_variant_per_class(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame | None:
    """Per-class test accuracy (argmax cos, mean over seeds) of the first pair of
    :func:`_ga_variant_pairs`, classes from the largest to the smallest training
    count; rows: class size, paper GA, authors' GA, authors' minus paper.  None
    without such a pair."""
    pairs = _ga_variant_pairs(records)
    if not pairs:
        return None
    v = pairs[0]
    first = v["paper"][0]
    order = np.argsort(-np.asarray(first["train_counts"]), kind="stable")
    names = [first["class_names"][i] for i in order]
    acc = {name: np.mean([r["per_class_accuracy"] for r in v[name]], axis=0)[order] for name in ("paper", "official")}
    return pd.DataFrame({"class size": np.asarray(first["train_counts"])[order],
                         "paper GA (eq. 25, column s_j)": acc["paper"],
                         "authors' GA (row s_y)": acc["official"],
                         "authors' - paper (points)": acc["official"] - acc["paper"]},
                        index=pd.Index(names, name="class")).T


def ga_variant_comparison(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Runs of one configuration made with both GA variants (``ga_variant``
    'paper': eq. 25's per-class column scale; 'official': the authors'
    per-sample row scale) and otherwise alike (seeds aside): one row per such
    configuration with each variant's final and best error (mean over seeds)
    and the seeds, and official minus paper in points."""
    rows = []
    for v in _ga_variant_pairs(records):
        c = v["paper"][0]["config"]
        row: dict[str, Any] = {"data": v["paper"][0].get("dataset_label", c["dataset"]), "method": c["method"],
                               "imbalance": f"{float(c['imbalance']):g}", "epochs": c["epochs"],
                               "setting apart from GA": setting_label(c)}
        for name in ("paper", "official"):
            row[f"{name}: seeds"] = ", ".join(str(r["config"]["seed"]) for r in v[name])
            row[f"{name}: final"] = float(np.mean([r["top1_error"] for r in v[name]]))
            row[f"{name}: best"] = float(np.mean([r["best_top1_error"] for r in v[name]]))
        row["official - paper, final (points)"] = row["official: final"] - row["paper: final"]
        row["official - paper, best (points)"] = row["official: best"] - row["paper: best"]
        rows.append(row)
    return pd.DataFrame(rows)


def ga_variant_note(records: Sequence[Mapping[str, Any]]) -> str | None:
    """One sentence per row of :func:`ga_variant_comparison`, with the numbers
    of the records and how much evidence they are; None without such runs."""
    t = ga_variant_comparison(records)
    if t.empty:
        return None
    out = []
    for _, r in t.iterrows():
        n_paper, n_official = len(r["paper: seeds"].split(", ")), len(r["official: seeds"].split(", "))
        diff = r["official - paper, final (points)"]
        word = "lower" if diff < 0 else "higher" if diff > 0 else "the same"
        amount = f"{abs(diff):.2f} points {word}" if diff else "the same"
        jpeg = " on the JPEG copy" if "JPEG" in str(r["data"]) else ""
        if max(n_paper, n_official) == 1:
            caveat = (f"This is one seed{jpeg}: an observation, not a conclusion; the spread between seeds "
                      "is not measured yet.")
        else:
            caveat = (f"Means over {n_paper} and {n_official} seeds{jpeg}; the tables give the spread "
                      "between seeds.")
        out.append(
            f"Measured, {r['method']} on {r['data']}, ρ = {r['imbalance']}, {r['epochs']} epochs "
            f"(seeds {r['paper: seeds']} / {r['official: seeds']}; both runs: {r['setting apart from GA']}): the paper's variant (column scale, eq. 25) ended "
            f"at {r['paper: final']:.2f} % top-1 error (best epoch {r['paper: best']:.2f} %), the authors' variant "
            f"(row scale s_y, margins from the reversed radius list) at {r['official: final']:.2f} % (best {r['official: best']:.2f} %), {amount}. {caveat}")
    return "\n\n".join(out)


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


def group_names(n_groups: int = 10) -> list[str]:
    """Fig. 6-7 names: the 3 most frequent Head1-3, the next 4 Mid1-4, the last 3 Tail1-3."""
    if n_groups != 10:
        raise ValueError(f"the paper names exactly 10 classes/groups (Head1-3, Mid1-4, Tail1-3), got {n_groups}")
    return [f"Head{i}" for i in (1, 2, 3)] + [f"Mid{i}" for i in (1, 2, 3, 4)] + [f"Tail{i}" for i in (1, 2, 3)]


def per_group_error_table(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Long table for Figs. 6-7: one row per (group of runs, class/group) with
    the mean and sample std (NaN for one seed) over seeds of the records'
    ``per_group_errors`` (top-1 error in % of the 10 classes of CIFAR-10-LT, or
    of the 10 frequency groups of CIFAR-100-LT, most frequent first)."""
    rows = []
    names = group_names()
    for group in _groups(records):
        errs = np.array([r["per_group_errors"] for r in group], dtype=np.float64)
        if errs.shape[1] != len(names):
            raise ValueError(f"per_group_errors must hold {len(names)} values, got {errs.shape[1]}")
        std = errs.std(axis=0, ddof=1) if len(group) > 1 else np.full(len(names), np.nan)
        c = group[0]["config"]
        for i, name in enumerate(names):
            rows.append({"method": c["method"], "setting": setting_label(c), "variant": variant_label(c), "group": name,
                         "error": errs[:, i].mean(), "std": std[i], "n": len(group),
                         "data": group[0].get("dataset_label", c["dataset"])})
    return pd.DataFrame(rows)


def toy_angles(toy: Mapping[str, Any]) -> pd.DataFrame:
    """The Fig. 5 file (``python -m kps.toy``) as one row per (method, split,
    sample): its class name and its angles in degrees to the anchors of
    Class 1, 2 and 3 (columns theta1, theta2, theta3)."""
    names = toy["classes"]
    frames = []
    for method, run in toy["runs"].items():
        for split in ("train", "test"):
            angles = np.asarray(run[f"{split}_angles"], dtype=np.float64) / 10.0
            labels = np.asarray(toy[f"{split}_labels"])
            if angles.shape != (len(names), labels.size):
                raise ValueError(f"{method} {split}: angles of shape {angles.shape} for {labels.size} samples")
            frame = pd.DataFrame({f"theta{j + 1}": angles[j] for j in range(len(names))})
            frame.insert(0, "class", [names[k] for k in labels])
            frame.insert(0, "split", split)
            frame.insert(0, "method", method)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def toy_table(toy: Mapping[str, Any]) -> pd.DataFrame:
    """One row per loss of the toy experiment: test error, per-class test
    accuracy, the share of Class 1-2 test samples that are key points (within
    90 degrees of both anchors, Fig. 1), the share of Class 3 test samples
    that are non-key points for Classes 1-2 (beyond 90 degrees of both), and
    the run's provenance."""
    angles = toy_angles(toy)
    names = toy["classes"]
    rows = []
    for method, run in toy["runs"].items():
        test = angles[(angles["method"] == method) & (angles["split"] == "test")]
        pair = test[test["class"].isin(names[:2])]
        third = test[test["class"] == names[2]]
        row = {"loss": method, "test error (%)": round(run["top1_error"], 2)}
        row.update({f"accuracy {n} (%)": round(a, 1) for n, a in zip(names, run["per_class_accuracy"])})
        row["key points, Classes 1-2 (%)"] = round(100 * ((pair.theta1 < 90) & (pair.theta2 < 90)).mean(), 1)
        row["Class 3 non-key for 1-2 (%)"] = round(100 * ((third.theta1 >= 90) & (third.theta2 >= 90)).mean(), 1)
        row.update({"epochs": run["config"]["epochs"], "device": run["device"],
                    "commit": str(run["git_commit"])[:10] + (" (dirty)" if run["git_dirty"] else ""),
                    "started": run["started_at"][:19], "wall time (min)": round(run["wall_time_s"] / 60, 1)})
        rows.append(row)
    return pd.DataFrame(rows).set_index("loss")


GRADIENT_FORMS = {"eq22": "KPS, eq. 22 (one scale s)", "eq25_column": "KPS-GA, eq. 25 (column s_j)",
                  "authors_row": "KPS-GA, authors' code (row s_y)"}


def gradient_table(grad: Mapping[str, Any]) -> pd.DataFrame:
    """The gradient file (``python -m kps.gradients``) per class: its training
    count, and for each form the summed positive and negative gradient
    magnitude on cos(theta_i) per training image of the class, and their ratio."""
    counts = np.asarray(grad["train_counts"], dtype=np.float64)
    total = counts.sum()
    rows: dict[tuple[str, str], Any] = {}
    for key, title in GRADIENT_FORMS.items():
        pos = np.asarray(grad["signals"][key]["positive"])
        neg = np.asarray(grad["signals"][key]["negative"])
        rows[(title, "positive / image")] = pos / counts
        rows[(title, "negative / image")] = neg / (total - counts)
        rows[(title, "negative / positive")] = neg / pos
    frame = pd.DataFrame(rows, index=[f"{n} (n={int(c)})" for n, c in zip(grad["class_names"], counts)])
    frame.columns = pd.MultiIndex.from_tuples(frame.columns)
    return frame


# ---------------------------------------------------------------------------
# Speed: the GPU bench (bench/bench.py, schema kps-bench/1) and the one-job grid
# (bench/grid.py's runs.json), as committed under bench/results/.

BENCH_SCHEMA = "kps-bench/1"
# Issue 6's targets for the GPU path (what the page measures against).
SPEED_TARGETS = {"speedup": 10.0, "run_s": 60.0, "job_runs": 12, "job_s": 540.0}
TRAINER_TITLES = {
    "reference": "reference (DataLoader + CPU transforms, fp32, eager)",
    "fast_none": "fast path, eager",
    "fast_default": "fast path, torch.compile default",
    "fast_reduce-overhead": "fast path, torch.compile reduce-overhead (CUDA graphs)",
    "fast_cuda-graph": "fast path, whole step in one CUDA graph, eager kernels",
    "fast_cuda-graph-compiled": "fast path, whole step in one CUDA graph, compiled kernels",
}


def bench_files(folder: str | Path, device_type: str | None = None) -> list[Path]:
    """The bench results under ``folder`` (``*.json`` other than the grids'
    ``*.runs.json``), sorted by name (device slug, date, job); with ``device_type``
    ('cuda', 'cpu') only those measured on such a device."""
    files = sorted(p for p in Path(folder).glob("*.json") if not p.name.endswith(".runs.json"))
    if device_type is None:
        return files
    return [p for p in files if json.loads(p.read_text()).get("device_type") == device_type]


def read_bench(path: str | Path) -> dict:
    """One bench JSON; ValueError naming the file unless it has schema
    kps-bench/1, a reference trainer and the fields the page reads."""
    path = Path(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("schema") != BENCH_SCHEMA:
        raise ValueError(f"{path}: schema {data.get('schema')!r}, expected {BENCH_SCHEMA!r}")
    trainers = data.get("trainers") or {}
    if "reference" not in trainers:
        raise ValueError(f"{path}: no reference trainer, so no ratio can be computed")
    need = ("train_images_per_s", "epoch_s", "eval_s_per_epoch", "projected_run_s", "achieved_tflops",
            "fraction_of_bf16_peak")
    for name, t in trainers.items():
        missing = [k for k in need if k not in t]
        if missing:
            raise ValueError(f"{path}: trainer {name!r} lacks {missing}")
    for k in ("device", "date", "git_commit", "git_dirty", "torch_version", "peak"):
        if k not in data:
            raise ValueError(f"{path}: lacks {k!r}")
    return data


def trainer_order(names: Iterable[str]) -> list[str]:
    known = list(TRAINER_TITLES)
    return sorted(names, key=lambda n: (known.index(n) if n in known else len(known), n))


def bench_header(bench: Mapping[str, Any], file: str, notes: Iterable[ProvenanceNote] = ()) -> str:
    """Markdown line: device, date, commit and dirty flag (with the marker of
    a note that applies), torch / CUDA, the peak the fractions refer to."""
    note = note_for(file, bench["git_commit"], bench["git_dirty"], notes)
    dirty = {True: "dirty tree", False: "clean tree"}.get(bench["git_dirty"], "tree state unknown")
    peak = bench["peak"]
    measured = peak.get("measured_bf16_matmul_tflops")
    return (f"`{file}`: **{bench['device']}**, {bench['date']} (started {bench.get('started_at', '?')}), "
            f"commit `{str(bench['git_commit'])[:10]}` as recorded ({dirty}){' ' + note.marker if note else ''}, "
            f"torch {bench['torch_version']}, CUDA {bench.get('cuda_version', '?')}; "
            f"{bench['config']['train_images']} training and {bench['config']['test_images']} test images of "
            f"{bench['config']['dataset_label']} per epoch, {bench['config']['epochs_timed']} timed epochs after "
            f"warm-up; bf16 peak taken as {peak['assumed_bf16_dense_tflops']:g} TFLOP/s ({peak.get('source', '')}"
            + (f"; a bf16 matrix product measured {measured:.0f} TFLOP/s" if measured else "") + ")."
            + "".join(f" Trainer `{name}` failed: {why}." for name, why in sorted((bench.get("failed") or {}).items())
                      if name not in ("together", "stacked"))  # not trainers: measurement_failures shows them
            + ("" if bench.get("complete", True) else " The bench was cut off before every trainer ran."))


def speed_table(bench: Mapping[str, Any]) -> pd.DataFrame:
    """One row per trainer of a bench JSON, in the order reference, eager,
    compiled: train images/s, s/epoch (train + eval), eval s per epoch, the
    bench's projection of a full run (its epochs x s/epoch plus the measured
    compile time), achieved TFLOP/s and fraction of the card's dense bf16
    peak, and train images/s divided by the reference trainer's."""
    trainers = bench["trainers"]
    ref = trainers["reference"]["train_images_per_s"]
    epochs = bench["config"].get("preset_epochs", 200)
    rows = []
    for name in trainer_order(trainers):
        t = trainers[name]
        rows.append({
            "trainer": name,
            "what": TRAINER_TITLES.get(name, name),
            "precision": t.get("precision", ""),
            "train images/s": t["train_images_per_s"],
            "s/epoch": t["epoch_s"],
            "eval s/epoch": t["eval_s_per_epoch"],
            f"projected {epochs}-epoch run (s)": t["projected_run_s"],
            "TFLOP/s": t["achieved_tflops"],
            "fraction of bf16 peak": t["fraction_of_bf16_peak"],
            "× reference (images/s)": t["train_images_per_s"] / ref,
        })
    return pd.DataFrame(rows).set_index("trainer")


def speed_chart_data(benches: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Long table for the bar chart: one row per (bench file, trainer) with
    its train images/s, and 10x the reference's images/s of that file (the
    speed target)."""
    rows = []
    for name, bench in benches.items():
        ref = bench["trainers"]["reference"]["train_images_per_s"]
        for trainer in trainer_order(bench["trainers"]):
            rows.append({"bench": name, "trainer": trainer,
                         "train images/s": bench["trainers"][trainer]["train_images_per_s"],
                         "target images/s": SPEED_TARGETS["speedup"] * ref})
    return pd.DataFrame(rows)


def grid_table(runs: Mapping[str, Any]) -> pd.DataFrame:
    """A grid's runs.json, one row per run in priority order: status, epochs
    done (of the grid's epochs), epochs kept in its last checkpoint, wall
    seconds (process start to end), final and best top-1 error (finished runs
    only), how many runs its (last) process trained as one network with it
    (``stacked_runs``, 1: not stacked; blank where not recorded) and why a run stopped,
    or why its first attempt failed where it was tried again (``retried_after``)."""
    epochs = runs.get("epochs")
    rows = []
    for r in sorted(runs["runs"], key=lambda r: r.get("priority", 0)):
        done = r.get("status") == "done"
        rows.append({
            "run": r["run"], "GA variant": r.get("ga_variant", ""), "status": r["status"],
            "epochs done": f"{r.get('epochs_done', 0)}/{epochs}" if epochs else r.get("epochs_done", 0),
            "checkpoint epochs": r.get("checkpoint_epochs"),
            "wall s": r.get("wall_s"),
            "stacked runs": r.get("stacked_runs") if done and r.get("stacked_runs") is not None else "",
            "final error (%)": f"{r['top1_error']:.2f}" if done and r.get("top1_error") is not None else "",
            "best error (%)": f"{r['best_top1_error']:.2f}" if done and r.get("best_top1_error") is not None else "",
            "why it stopped": "; ".join(filter(None, [
                r.get("reason", ""),
                f"first attempt failed ({r['retried_after']}), tried once more alone in "
                f"`{runs.get('retry_compile')}`" if r.get("retried_after") else ""])),
        })
    return pd.DataFrame(rows).set_index("run")


def grid_per_process(runs: Mapping[str, Any]) -> str:
    """Runs trained side by side in one process (runs.json ``per_process``), and
    whether runs of equal stack key were stacked as one network (``stack``).  A
    runs.json without ``per_process`` is from a grid.py before ``--per-process``,
    which gave every process exactly one ``--run``: "1 (one run per process)"; one
    without ``stack`` from before ``--stack``: not stacked."""
    k = runs.get("per_process", 1)
    if runs.get("stack"):
        return (f"up to {k} (runs that can share a network stacked as one, the others side by side, "
                "one CUDA stream each)")
    return "1 (one run per process)" if k == 1 else f"up to {k} (side by side in one process, one CUDA stream each)"


def grid_header(runs: Mapping[str, Any], wall: float | None = None) -> str:
    """Markdown line over a grid's table: runs, epochs, runs at a time and per
    process, compile mode, time to the deadline (and the job's wall time where
    given), runs finished, and unfinished runs' checkpoints left out of the
    returned parts (runs.json ``checkpoints_left_out``, where recorded)."""
    done = sum(r["status"] == "done" for r in runs["runs"])
    left_out = runs.get("checkpoints_left_out") or []
    lost = (f" The checkpoints of {len(left_out)} unfinished run{'s' if len(left_out) != 1 else ''} did not fit "
            "the returned parts: " + ", ".join(f"`{c}`" for c in left_out) + ".") if left_out else ""
    return (f"{len(runs['runs'])} runs of {runs['epochs']} epochs, {runs['concurrency']} at a time, runs per "
            f"process: {grid_per_process(runs)}, compile mode `{runs['compile']}`; the grid had "
            f"{runs['deadline_unix'] - runs['started_unix']:.0f} s until its deadline"
            + (f" in a {wall:.0f} s job" if wall is not None else "") + f"; {done} finished." + lost)


TOGETHER_COLUMNS = ("device", "date", "runs side by side", "compile mode", "one round (s)",
                    "epochs/s, all runs", "training images/s, all runs (eval time included)",
                    "× one run alone (epoch rate)", "× reference (epoch rate)")


def together_table(benches: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per bench result with a ``together`` measurement (bench.py
    --together K: K fast runs side by side in one process, one CUDA stream
    each), indexed by bench: device, date, K, compile mode, the median round
    (every run one epoch of training and evaluation) in s, the aggregate
    epochs/s and training images/s of all K runs, and that epoch rate divided
    by one fast run's alone (same file and mode; NaN where not timed alone) and
    by the reference trainer's, as the bench wrote them.  No rows without one."""
    rows = []
    for name, bench in benches.items():
        t = bench.get("together")
        if not t:
            continue
        alone = t.get("epoch_rate_vs_alone")
        rows.append(dict(zip(TOGETHER_COLUMNS, (
            bench["device"], bench["date"], t["runs"], t["compile"], t["round_s_median"], t["epochs_per_s"],
            t["train_images_per_s"], math.nan if alone is None else alone, t["epoch_rate_vs_reference"])),
            bench=name))
    return pd.DataFrame(rows, columns=["bench", *TOGETHER_COLUMNS]).set_index("bench")


def together_note(benches: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown over :func:`together_table`: that its rates are the sum over
    several runs sharing one GPU, not one run's speed, and that issue 6's
    speed target compares one fast run with the reference; or, where no bench
    has a ``together`` measurement, that runs side by side are not measured yet."""
    if not any(b.get("together") for b in benches.values()):
        return ("**Runs side by side have not been measured yet**: no bench result here has a `together` "
                "measurement (`bench/bench.py --together K` writes one).")
    return ("These are **aggregate rates of several runs sharing one GPU** (one process, one CUDA stream per run), "
            "not the speed of one run: every run does one epoch per round, so one run's own epoch rate is the "
            "aggregate divided by the runs side by side. **× one run alone** divides that rate by one fast run's "
            "alone on the card (above 1: side by side gets more done than one run at a time); **× reference** by the "
            f"reference trainer's. Issue 6's {SPEED_TARGETS['speedup']:g}× target is about one run of the fast path "
            "against the reference (the tables above), not about these sums.")


def measurement_failures(benches: Mapping[str, Mapping[str, Any]], key: str, what: str) -> str:
    """Markdown list of the bench results whose ``key`` measurement ("together":
    the runs side by side, "stacked": the stacked runs, named ``what``) failed
    (``failed[key]``), with the recorded error; "" when none failed."""
    return "\n".join(f"- `{name}`: {what} **failed**: {bench['failed'][key]}"
                      for name, bench in benches.items() if (bench.get("failed") or {}).get(key))


STACKED_COLUMNS = ("device", "date", "runs stacked", "compile mode", "one round (s)",
                   "epochs/s, all stacked runs", "training images/s, all stacked runs (eval time included)",
                   "× one run alone (epoch rate)", "× the same runs side by side (epoch rate)",
                   "× reference (epoch rate)", "largest training-loss difference to the run alone (relative)")


def stacked_table(benches: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per bench result with a ``stacked`` measurement (bench.py --stack S:
    S copies of one run, seed 0, trained as one network by kps.stack), indexed by
    bench: device, date, S, compile mode, the median round (every copy one epoch of
    training and evaluation) in s, the aggregate epochs/s and training images/s of
    all S, that epoch rate divided by one fast run's alone (NaN where not timed
    alone), by the same number of runs side by side on streams (NaN where the bench
    did not time as many in that mode) and by the reference trainer's, and the
    largest relative difference of a copy's training loss per epoch to the run alone
    (NaN where not compared), as the bench wrote them.  No rows without one."""
    rows = []
    for name, bench in benches.items():
        t = bench.get("stacked")
        if not t:
            continue
        agree = (t.get("train_loss_vs_alone") or {}).get("max_rel_diff")
        rows.append(dict(zip(STACKED_COLUMNS, (
            bench["device"], bench["date"], t["runs"], t["compile"], t["round_s_median"], t["epochs_per_s"],
            t["train_images_per_s"], *(math.nan if t.get(k) is None else t[k] for k in (
                "epoch_rate_vs_alone", "epoch_rate_vs_together")),
            t["epoch_rate_vs_reference"], math.nan if agree is None else agree)), bench=name))
    return pd.DataFrame(rows, columns=["bench", *STACKED_COLUMNS]).set_index("bench")


def stacked_note(benches: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown over :func:`stacked_table`: what stacking is, that its rates are
    aggregates of k runs stacked as one network, not one run's speed, and which
    bench results predate the measurement ("not measured yet"); or, where none has
    one, that stacking is not measured yet."""
    missing = [name for name, b in benches.items()
               if not b.get("stacked") and not (b.get("failed") or {}).get("stacked")]
    if not any(b.get("stacked") for b in benches.values()):
        return ("**Stacked runs: not measured yet**: no bench result here has a `stacked` measurement "
                "(`bench/bench.py --stack S` writes one; the bench results so far predate it).")
    return ("**k runs stacked as one network: aggregate, not one run.** The bench trains S copies of one run (the "
            "same configuration and seed, so the same batches) as one network: their ResNet-32 bodies side by side "
            "along the channels (grouped convolutions), each with its own head and loss, one SGD step for all "
            "(`kps.stack`, as the grid trains runs that differ only in method and loss with `--stack`). Every copy "
            "does one epoch per round, so one run's own epoch rate is the aggregate divided by S. **× one run "
            "alone** divides the aggregate by one fast run's alone on the card, **× the same runs side by side** by "
            "S runs on their own CUDA streams in one process (the table above; blank where the bench did not time "
            "as many), **× reference** by the reference trainer's. The last column is how far a copy's training "
            "loss per epoch lies from the same run trained alone: the same computation up to the order of "
            "floating-point sums, differences that training amplifies step by step as it would between two runs "
            "alone whose weights differ in the last bit, so it should be small but not zero (the GPU job stacks "
            f"the grid only if every copy's last epoch is within 10%). Issue 6's {SPEED_TARGETS['speedup']:g}× target is about one run against the "
            "reference, not about these sums."
            + "".join(f"\n- `{name}`: not measured yet (this bench predates `--stack`)." for name in missing))


# Do the trainers train alike?  Issue 6: the fast path and the plain path agree
# on a short run to within run-to-run noise.  Newer bench files record each
# trainer's mean training loss per epoch (warm-up included) and, with
# ``--together K``, the losses of K seeds of the fast path: their spread at the
# last epoch is the noise band.


def _trainer_losses(bench: Mapping[str, Any]) -> dict[str, list[float]]:
    """Each trainer's recorded training losses per epoch (``train_losses``), in
    :func:`trainer_order`; trainers without a non-empty record are left out."""
    trainers = bench.get("trainers") or {}
    return {name: [float(v) for v in trainers[name]["train_losses"]] for name in trainer_order(trainers)
            if trainers[name].get("train_losses")}


def _seed_losses(bench: Mapping[str, Any]) -> list[list[float]]:
    """The training losses per epoch of each run of several seeds
    (``together.train_losses``); [] where the bench has none."""
    runs = (bench.get("together") or {}).get("train_losses") or []
    return [[float(v) for v in run] for run in runs if run]


def _seeds_label(bench: Mapping[str, Any], quote: str = "`") -> str:
    """'6 seeds (0–5), fast path `none`': the runs of several seeds in words
    (the compile mode between ``quote``: '' for a table's plain-text label)."""
    t = bench["together"]
    seeds = list(t.get("seeds") or range(len(_seed_losses(bench))))
    contiguous = seeds == list(range(seeds[0], seeds[0] + len(seeds))) if seeds else False
    which = f"{seeds[0]}–{seeds[-1]}" if contiguous and len(seeds) > 1 else ", ".join(str(s) for s in seeds)
    return f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} ({which}), fast path {quote}{t.get('compile', '?')}{quote}"


def train_loss_epoch_labels(bench: Mapping[str, Any], epochs: int) -> list[str]:
    """Column labels for ``epochs`` epochs of a bench: 'epoch 0 (warm-up)' for
    the first ``config.warmup_epochs``, then 'epoch k (timed)' (0-based, as
    bench.py's log counts them)."""
    warm = int((bench.get("config") or {}).get("warmup_epochs", 0))
    return [f"epoch {e} ({'warm-up' if e < warm else 'timed'})" for e in range(epochs)]


def train_loss_table(bench: Mapping[str, Any], digits: int = 4) -> pd.DataFrame:
    """Mean training loss per epoch of one bench: one row per trainer with a
    loss record (numbers; NaN past a trainer's last epoch) and, where the bench
    ran several seeds side by side, one row 'min–max over <seeds>' whose cells
    are the range as text ('1.0000–1.2000', ``digits`` decimals).  Columns are
    the epochs, labelled warm-up or timed.  Empty where nothing was recorded."""
    losses = _trainer_losses(bench)
    seeds = _seed_losses(bench)
    epochs = max((len(v) for v in [*losses.values(), *seeds]), default=0)
    if not epochs:
        return pd.DataFrame()
    columns = train_loss_epoch_labels(bench, epochs)
    rows = {name: v + [math.nan] * (epochs - len(v)) for name, v in losses.items()}
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=columns, dtype=object)
    if seeds:
        cells = []
        for e in range(epochs):
            at = [run[e] for run in seeds if e < len(run)]
            cells.append(f"{min(at):.{digits}f}–{max(at):.{digits}f}" if at else math.nan)
        frame.loc[f"min–max over {_seeds_label(bench, quote='')}"] = cells
    frame.index.name = "trainer"
    return frame


def _signed(x: float, digits: int) -> str:
    return f"{x:+.{digits}f}".replace("-", "−")


def _fast_spread(losses: Mapping[str, list[float]], digits: int) -> str:
    """Markdown sentence: the fast modes' spread (max - min) of their
    last-epoch losses; "" with fewer than two fast modes or unequal epochs."""
    fast = [n for n in losses if n != "reference"]
    if len(fast) < 2 or len({len(losses[n]) for n in fast}) != 1:
        return ""
    last = [losses[n][-1] for n in fast]
    return (f"\n\nThe {len(fast)} fast modes (seed 0, the same data order and augmentation draws) span "
            f"{max(last) - min(last):.{digits}f} among themselves at the last epoch.")


def _differences_to_fast_none(bench: Mapping[str, Any], losses: Mapping[str, list[float]], digits: int) -> str:
    """Markdown for a bench without runs of several seeds: the noise band is
    not measured; each trainer's last-epoch loss minus ``fast_none``'s (or the
    last-epoch losses alone where ``fast_none`` has none)."""
    why = (" (the runs of several seeds failed)" if (bench.get("failed") or {}).get("together")
           else " (`bench/bench.py --together K` records it)")
    head = (f"**Noise band not measured**: this bench has no runs of several seeds{why}, so it cannot say "
            "whether a difference is within run-to-run noise.")
    if "fast_none" not in losses:
        return (head + " `fast_none` has no loss record, so no differences to it are given; last-epoch "
                "training losses:\n" + "".join(f"\n- `{n}`: {v[-1]:.{digits}f}" for n, v in losses.items()))
    base = losses["fast_none"]
    lines = [f"\n- `{n}`: {_signed(v[-1] - base[-1], digits)}" if len(v) == len(base) else
             f"\n- `{n}`: not compared ({len(v)} epochs recorded, `fast_none` {len(base)})"
             for n, v in losses.items() if n != "fast_none"]
    return (head + f" Last-epoch training loss minus `fast_none`'s ({base[-1]:.{digits}f}, epoch "
            f"{len(base) - 1}):\n" + "".join(lines))


def _against_seed_range(bench: Mapping[str, Any], losses: Mapping[str, list[float]], seeds: list[list[float]],
                        digits: int) -> str:
    """Markdown: the rule (last-epoch loss in [min, max] of the seeds'
    last-epoch losses, not widened) and each trainer's loss judged by it."""
    n_epochs, last = len(seeds[0]), [run[-1] for run in seeds]
    lo, hi, k = min(last), max(last), len(seeds)
    head = (f"**Rule**: a trainer's last-epoch (epoch {n_epochs - 1}) training loss is within run-to-run noise "
            f"if it lies in the range of the last-epoch losses of {_seeds_label(bench)}: "
            f"[{lo:.{digits}f}, {hi:.{digits}f}], bounds included, not widened. With {k} seeds, even one more "
            f"run like them would fall outside their range with probability 2/{k + 1}, so *outside* flags a "
            "difference to look at; it does not prove one.\n")
    lines = []
    for n, v in losses.items():
        what = " (its own data order and augmentation, fp32)" if n == "reference" else ""
        x = v[-1]
        if len(v) != n_epochs:
            verdict = f"not compared ({len(v)} epochs recorded, the seeds {n_epochs})"
        elif not math.isfinite(x):
            verdict = f"{x}, **not a finite number**"
        elif lo <= x <= hi:
            verdict = f"{x:.{digits}f}, **within**"
        else:
            verdict = (f"{x:.{digits}f}, **outside** ({abs(x - (hi if x > hi else lo)):.{digits}f} "
                       f"{'above' if x > hi else 'below'})")
        lines.append(f"\n- `{n}`{what}: {verdict}")
    return head + "".join(lines)


def train_loss_verdict(bench: Mapping[str, Any], digits: int = 4) -> str:
    """Markdown: do the trainers of one bench train alike?  With runs of at
    least two seeds, the rule (stated in the text): a trainer's last-epoch
    training loss is within run-to-run noise if it lies in [min, max] of the
    seeds' last-epoch losses, bounds included, not widened; each fast mode and
    the reference are judged by it.  Without such runs: the noise band is not
    measured, and only the last-epoch differences to ``fast_none`` are given.
    Then the fast modes' spread among themselves.  A bench without any loss
    record predates it, and says so."""
    losses = _trainer_losses(bench)
    seeds = _seed_losses(bench)
    if not losses and not seeds:
        return ("**This bench predates the loss record**: its file has no `train_losses`, so it cannot show "
                "whether the trainers train alike.")
    body = (_against_seed_range(bench, losses, seeds, digits) if len(seeds) >= 2
            else _differences_to_fast_none(bench, losses, digits))
    missing = "".join(f"\n- `{n}`: no loss recorded" for n in trainer_order(bench.get("trainers") or {})
                      if n not in losses)
    return body + missing + _fast_spread(losses, digits)


_JOB_STAMP = re.compile(r"^\[job \d\d:\d\d:\d\d \+(\d+)s\]", re.M)


def job_wall_s(log_text: str) -> float | None:
    """Seconds from the start of a GPU job to its last ``[job HH:MM:SS +Ns]``
    line (bench/gpu_job.sh's log); None when the log has no such line."""
    stamps = [int(m) for m in _JOB_STAMP.findall(log_text)]
    return float(max(stamps)) if stamps else None


_TARGET_NAMES = {"speedup": "train images/s ≥ {speedup:g}× the reference trainer's",
                 "run_s": "one full run ≤ {run_s:g} s",
                 "job": "{job_runs} runs in one job ≤ {job_min:g} min"}


def _target_name(kind: str) -> str:
    t = SPEED_TARGETS
    return _TARGET_NAMES[kind].format(speedup=t["speedup"], run_s=t["run_s"], job_runs=t["job_runs"],
                                      job_min=t["job_s"] / 60)


def speed_targets(benches: Mapping[str, Mapping[str, Any]], grids: Mapping[str, Mapping[str, Any]],
                  job_walls: Mapping[str, float | None] | None = None) -> pd.DataFrame:
    """Issue 6's targets against what each job measured: train images/s at
    least 10x the reference trainer's (best fast trainer of each bench), one
    full run within 60 s (smallest projection of a fast trainer, one run alone
    on the card), and all 12 runs of the grid within one 540 s job (runs.json,
    and the job's wall time from its log where given). Columns: target, job,
    measured (in words), met ('yes'/'no'), kind and value (the number
    measured: ratio, seconds, runs finished) for :func:`speed_summary`."""
    t = SPEED_TARGETS
    rows = []
    for name, bench in benches.items():
        fast = {k: v for k, v in bench["trainers"].items() if k != "reference"}
        ref = bench["trainers"]["reference"]["train_images_per_s"]
        if not fast:
            rows.append({"target": _target_name("speedup"), "job": name, "measured": "no fast trainer measured",
                         "met": "no", "kind": "speedup", "value": float("nan")})
            continue
        best = max(fast, key=lambda k: fast[k]["train_images_per_s"])
        ratio = fast[best]["train_images_per_s"] / ref
        rows.append({"target": _target_name("speedup"), "job": name,
                     "measured": f"{ratio:.2f}× ({best}: {fast[best]['train_images_per_s']:.0f} vs "
                                 f"{ref:.0f} images/s)",
                     "met": "yes" if ratio >= t["speedup"] else "no", "kind": "speedup", "value": ratio})
        quick = min(fast, key=lambda k: fast[k]["projected_run_s"])
        run_s = fast[quick]["projected_run_s"]
        rows.append({"target": _target_name("run_s"), "job": name,
                     "measured": f"{run_s:.0f} s projected ({quick}, one run alone on the card)",
                     "met": "yes" if run_s <= t["run_s"] else "no", "kind": "run_s", "value": run_s})
    for name, runs in grids.items():
        done = sum(r["status"] == "done" for r in runs["runs"])
        wall = (job_walls or {}).get(name)
        within = wall is not None and wall <= t["job_s"]
        rows.append({"target": _target_name("job"), "job": name,
                     "measured": f"{done} of {len(runs['runs'])} runs finished"
                                 + (f" in a {wall:.0f} s job" if wall is not None else "")
                                 + f" ({runs.get('concurrency', '?')} at a time)",
                     "met": "yes" if done >= t["job_runs"] and done == len(runs["runs"]) and within else "no",
                     "kind": "job", "value": float(done)})
    return pd.DataFrame(rows, columns=["target", "job", "measured", "met", "kind", "value"])


def speed_summary(targets: pd.DataFrame) -> str:
    """Markdown: how many of the three targets some job met, and for each
    target the best job's measurement (largest ratio, shortest run, most runs
    finished) beside the target."""
    lines, met = [], 0
    for kind, pick in (("speedup", "max"), ("run_s", "min"), ("job", "max")):
        part = targets[(targets["kind"] == kind) & targets["value"].notna()]
        if part.empty:
            lines.append(f"- {_target_name(kind)}: **not measured**")
            continue
        best = part.loc[part["value"].idxmax() if pick == "max" else part["value"].idxmin()]
        ok = (part["met"] == "yes").any()
        met += ok
        lines.append(f"- {_target_name(kind)}: **{'met' if ok else 'not met'}**; best measured: "
                     f"{best['measured']} (`{best['job']}`)")
    head = {0: "None of the three targets is met yet.", 3: "All three targets are met."}.get(
        met, f"{met} of the three targets met.")
    return f"**{head}**\n\n" + "\n".join(lines)
