"""Comparison tables: the paper's Tables 3-7 beside our records (long and in the
paper's layout), with a reduced protocol's runs in columns of their own, and the
comparison of the two GA variants (eq. 25's column scale against the authors'
row scale)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kps.configs import METHODS, PRESETS
from kps.report.paper import BACKBONE_TITLES, DATASET_TITLES, DATASET_VARIANTS, dataset_title, paper_label
from kps.report.records import (NOT_IMPLEMENTED, NOT_RUN, format_summary, group_key, matching_records,
                                protocol_of, seed_groups, setting_label, summarize, variant_label)


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
        for group in seed_groups(found):
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
    short run, named in the cell) fill the method's own row.
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


def _ga_variant_pairs(records: Sequence[Mapping[str, Any]]) -> list[dict[str, list[Mapping[str, Any]]]]:
    """Groups of records alike but for seed, speed keys and ``ga_variant``
    (:func:`kps.report.records.group_key`) that hold both variants: {"paper": [...],
    "official": [...]}, in a stable order."""
    by_key: dict[str, dict[str, list[Mapping[str, Any]]]] = {}
    for rec in records:
        by_key.setdefault(group_key(rec, apart_from=("ga_variant",)), {}).setdefault(
            rec["config"]["ga_variant"], []).append(rec)
    return [by_key[k] for k in sorted(by_key) if {"paper", "official"} <= set(by_key[k])]


def ga_variant_per_class(records: Sequence[Mapping[str, Any]], protocol: str = "paper") -> pd.DataFrame | None:
    """Per-class test accuracy (argmax cos, mean over seeds) of one pair of
    :func:`_ga_variant_pairs` run at ``protocol`` (a reduced protocol's pair is never
    shown as the paper protocol's): full-schedule pairs first, then the one with the
    most seeds.  Classes from the largest to the smallest training count; rows: class
    size, paper GA, authors' GA, authors' minus paper; ``attrs["pair"]`` names the
    pair (data, imbalance, epochs, each variant's seeds).  None without such a pair."""
    pairs = [v for v in _ga_variant_pairs(records) if protocol_of(v["paper"][0]["config"]) == protocol]
    if not pairs:
        return None
    v = min(pairs, key=lambda v: (v["paper"][0]["epochs"] != v["paper"][0]["preset_epochs"],
                                  -min(len(v["paper"]), len(v["official"]))))
    first = v["paper"][0]
    order = np.argsort(-np.asarray(first["train_counts"]), kind="stable")
    names = [first["class_names"][i] for i in order]
    acc = {name: np.mean([r["per_class_accuracy"] for r in v[name]], axis=0)[order] for name in ("paper", "official")}
    table = pd.DataFrame({"class size": np.asarray(first["train_counts"])[order],
                          "paper GA (eq. 25, column s_j)": acc["paper"],
                          "authors' GA (row s_y)": acc["official"],
                          "authors' - paper (points)": acc["official"] - acc["paper"]},
                         index=pd.Index(names, name="class")).T
    seeds = {name: ", ".join(str(r["config"]["seed"]) for r in v[name]) for name in ("paper", "official")}
    table.attrs["pair"] = (f"{first.get('dataset_label', first['config']['dataset'])}, "
                           f"ρ = {float(first['config']['imbalance']):g}, {first['epochs']} epochs; seeds "
                           f"{seeds['paper']} (paper GA) and {seeds['official']} (authors' GA)")
    return table


GA_VARIANT_COLUMNS = ("data", "method", "imbalance", "epochs", "setting apart from GA",
                      *(f"{v}: {k}" for v in ("paper", "official") for k in ("seeds", "final", "best")),
                      "official - paper, final (points)", "official - paper, best (points)")


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
    return pd.DataFrame(rows, columns=GA_VARIANT_COLUMNS)


def ga_variant_view(records: Sequence[Mapping[str, Any]]) -> Any:
    """:func:`ga_variant_comparison` as the differences page shows it: one column
    per configuration, errors in % with two decimals, differences signed."""
    table = ga_variant_comparison(records).set_index(list(GA_VARIANT_COLUMNS[:5])).T
    errors = [r for r in table.index if r.endswith((": final", ": best"))]
    diffs = [r for r in table.index if r.startswith("official - paper")]
    return (table.style.format("{:.2f} %", subset=(errors, table.columns))
            .format("{:+.2f}", subset=(diffs, table.columns)))


def setting_effects(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Runs of one protocol, dataset, method, imbalance and backbone made in more
    than one setting (e.g. the paper's and the authors' code's), side by side: one
    row per setting with final and best-epoch error (mean ± std over seeds)."""
    by_cell: dict[tuple, list[Mapping[str, Any]]] = {}
    for rec in records:
        c = rec["config"]
        # one protocol per group: a reduced protocol's runs are never set beside the paper protocol's
        by_cell.setdefault((protocol_of(c), c["dataset"], c["method"], float(c["imbalance"]), c["arch"]),
                           []).append(rec)
    rows = []
    for (_, dataset, method, imbalance, arch), recs in sorted(by_cell.items()):
        groups = seed_groups(recs)
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


@dataclass
class TablePage:
    """What a page of Tables 3-7 shows: the paper's table beside ours in its layout
    (``wide``, :func:`wide_table`), every cell in detail (``detail``: final and best
    epoch, data and setting), the provenance of the records that fill a cell
    (``provenance``, empty where none does) and the notes that apply to them.  The
    display fields are styled for the page; ``long`` and ``used`` are the values."""

    table: int
    long: pd.DataFrame
    used: list
    wide: Any
    detail: Any
    provenance: Any
    footnotes: str


def table_page(table: int, results: str | Path | None = None) -> TablePage:
    """The page of the paper's Table ``table`` (3-7) from the records under
    ``results`` (None: the repository's ``results/``), ``book/paper_numbers.csv``
    and ``book/provenance_notes.yml``."""
    from kps.report.paper import read_paper_numbers
    from kps.report.provenance import provenance_footnotes, provenance_table, read_provenance_notes
    from kps.report.paper import find_repo_root
    from kps.results import load_records

    root = find_repo_root()
    records = load_records(root / "results" if results is None else Path(results))
    paper = read_paper_numbers(root / "book" / "paper_numbers.csv")
    notes = read_provenance_notes(root / "book" / "provenance_notes.yml")
    long = comparison_table(paper, records, table)
    used = table_records(paper, records, table)
    detail = long.drop(columns=["paper label", "our variant"])
    # a reduced protocol's row never shows the paper's number beside its own
    detail.loc[~detail["protocol"].isin(["", "paper"]), "paper"] = ""
    detail = detail.set_index(["method", "dataset", "imbalance", "backbone"])
    return TablePage(table, long, used, wide=wide_table(long).style, detail=detail.style,
                     provenance=provenance_table(used, notes).style.hide(axis="index"),
                     footnotes=provenance_footnotes(notes, used))
