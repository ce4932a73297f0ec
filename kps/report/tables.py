"""Comparison tables: the paper's Tables 3-7 beside our records (long, in the
paper's layout with one column group per protocol, and every cell in detail),
and the comparison of the two GA variants (eq. 25's column scale against the
authors' row scale)."""

from __future__ import annotations

import string
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kps.configs import METHODS
from kps.report.paper import BACKBONE_TITLES, DATASET_TITLES, DATASET_VARIANTS, dataset_title, paper_label
from kps.report.protocols import backbone_title, network_summary, protocol_group, protocol_preset, protocol_summary
from kps.report.records import (NOT_IMPLEMENTED, NOT_RUN, format_summary, group_key, matching_records,
                                protocol_of, run_label, seed_groups, setting_label, summarize, variant_label)
from kps.report.style import page_table

MISSING = "—"             # a cell of ours without a record, in the paper's layout
NOT_HERE = "n/a"          # a method this artifact does not implement, in the paper's layout
PAPER_GROUP = "the paper"  # the column group of the paper's own numbers


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
    there is no record), our run (:func:`kps.report.records.run_label`: a short
    run), protocol ('paper' or a reduced protocol such as 'CPU-scale',
    :data:`kps.configs.PRESETS`;
    '' where there is no record). Our cells say "not run" where no record exists
    and "not in this artifact" for methods this package does not implement.
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
            out.append({**base, "ours final": missing, "ours best": missing, "seeds": "", "our data": "",
                        "our setting": "", "our variant": "", "our run": "", "protocol": ""})
            continue
        for group in seed_groups(found):
            c = group[0]["config"]
            out.append({
                **base,
                "protocol": protocol_of(c),
                "ours final": format_summary(summarize(r["top1_error"] for r in group)),
                "ours best": format_summary(summarize(r["best_top1_error"] for r in group)),
                "seeds": ", ".join(str(s) for s in sorted(r["config"]["seed"] for r in group)),
                "our data": group[0].get("dataset_label", c["dataset"]),
                "our setting": setting_label(c),
                "our variant": variant_label(c, with_protocol=False),
                "our run": run_label(c),
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


def _dataset_key(title: str) -> str:
    """The paper's dataset key of a dataset title ('CIFAR-10-LT' -> 'cifar10')."""
    return next(k for k, t in DATASET_TITLES.items() if t == title)


_ARCHS = {title: key for key, title in BACKBONE_TITLES.items()}


def _rho(imbalance: str) -> str:
    return "" if imbalance == "-" else f"ρ={imbalance}"


class _Markers:
    """Letters [a], [b], ... for the notes on cells of ours, in order of first use."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}

    def __call__(self, text: str) -> str:
        if not text:
            return ""
        if text not in self.texts:
            self.texts[text] = string.ascii_lowercase[len(self.texts) % 26]
        return f" [{self.texts[text]}]"


@dataclass
class WideTable:
    """The paper's layout (:func:`wide_table`): ``frame`` with three column levels
    (group, dataset and backbone, ρ), ``notes`` (Markdown, to print right below it)
    and ``group_starts`` (the first column of each column group)."""

    frame: pd.DataFrame
    notes: str
    group_starts: list = field(default_factory=list)


def wide_table(long: pd.DataFrame, ours_datasets: Collection[str] = (), data_label: str | None = None) -> WideTable:
    """The paper's layout of :func:`comparison_table`: methods down, labelled
    "<paper's label> (<our method name>)"; across, one column group per protocol,
    each with a column per dataset, backbone and ρ:

    - "the paper": the paper's numbers, every column of its table;
    - "ours: paper's protocol": our runs at the paper's protocol (Table 2);
    - "ours, reduced: <name> protocol", one per reduced protocol with a record in the
      table (e.g. CPU-scale), never beside the paper's numbers as like for like.

    Our groups have columns for the datasets of ``ours_datasets`` (dataset titles:
    the data this artifact runs on) and those with a record; the others hold the
    paper's numbers only, said once in the notes. A cell of ours is "mean ± std
    (n=k)" of the final-epoch error over seeds (a line per group of runs), "—" without
    a record, "n/a" for a method not in this artifact, and a letter [a] where the run
    differs from its protocol only in how long it ran (a short run) or in its data; a
    note that every run of a group shares is said once, in the group's note (precision
    and device are the provenance's: a cell pools them, :func:`group_key`). Runs of
    another variant of a method (:func:`variant_label`, e.g. the authors' GA) get a
    row of their own right below the method's, labelled "↳ <our method name>,
    <variant>", with the paper's number repeated. ``data_label`` names our data where no record does."""
    ran = long[long["our data"] != ""]
    reduced = [p for p in dict.fromkeys(ran["protocol"]) if p != "paper"]
    ours_ds = set(ours_datasets) | set(ran["dataset"])
    heads = list(dict.fromkeys(zip(long["dataset"], long["backbone"], long["imbalance"])))
    cols = [(PAPER_GROUP, f"{ds}, {bb}", _rho(imb)) for ds, bb, imb in heads]
    ours_cols: dict[tuple[str, str, str, str], tuple[str, str, str]] = {}   # (protocol, head) -> column
    presets = {}
    for protocol in ["paper", *reduced]:
        for ds, bb, imb in heads:
            preset = protocol_preset(protocol, _dataset_key(ds))
            if ds in ours_ds and preset is not None:
                presets[protocol] = preset
                bb_ours = bb if protocol == "paper" else backbone_title(preset)
                ours_cols[(protocol, ds, bb, imb)] = (protocol_group(protocol), f"{ds}, {bb_ours}", _rho(imb))
    cols += list(ours_cols.values())
    # each group's data: the data this artifact runs on, else the records' most common
    data_of = {p: data_label or (ran.loc[ran["protocol"] == p, "our data"].mode().tolist() or [""])[0] for p in presets}

    cells: dict[str, dict[tuple[str, str, str], Any]] = {}    # ours: [(summary, note), ...] per group of runs
    rows_of: dict[str, list[str]] = {}          # method row -> its variant rows, in order
    for (label, method, ds, bb, imb), sub in long.groupby(
            ["paper label", "method", "dataset", "backbone", "imbalance"], sort=False):
        label = f"{label} ({method})"
        if label not in cells:
            cells[label], rows_of[label] = {}, []
        cells[label][(PAPER_GROUP, f"{ds}, {bb}", _rho(imb))] = sub["paper"].iloc[0]
        mine = sub[sub["our data"] != ""]
        for protocol in ["paper", *reduced]:
            column = ours_cols.get((protocol, ds, bb, imb))
            if column is None:
                continue
            if (sub["ours final"] == NOT_IMPLEMENTED).all():
                cells[label][column] = NOT_HERE
                continue
            here = mine[mine["protocol"] == protocol]
            for variant, part in here.groupby("our variant", sort=False):
                row = label if variant == "paper setting" else f"↳ {method}, {variant}"
                if row not in cells:
                    cells[row] = {}
                    rows_of[label].append(row)
                cells[row][column] = [(r["ours final"], "; ".join(filter(None, (
                    r["our run"], "" if r["our data"] == data_of[protocol] else r["our data"]))))
                    for _, r in part.iterrows()]
    paper_cols = [c for c in cols if c[0] == PAPER_GROUP]
    for label, variants in rows_of.items():
        for row in variants:   # the paper's number beside each variant too
            cells[row].update({c: cells[label][c] for c in paper_cols if c in cells[label]})
    index = [row for label in rows_of for row in (label, *rows_of[label])]
    # a note every run of a group shares goes to the group's line; the others get letters, in reading order
    shared = {}
    for protocol in presets:
        group = [note for r in index for c in cols if c[0] == protocol_group(protocol)
                 for _, note in (cells[r].get(c) if isinstance(cells[r].get(c), list) else [])]
        if group and len(set(group)) == 1 and group[0]:
            shared[protocol_group(protocol)] = group[0]
    marker = _Markers()

    def shown(row: str, column: tuple[str, str, str]) -> str:
        value = cells[row].get(column, MISSING if column[0] != PAPER_GROUP else "")
        if not isinstance(value, list):
            return value
        return "\n".join(summary + ("" if column[0] in shared else marker(note))   # a line per group of runs
                         for summary, note in value)

    frame = pd.DataFrame([[shown(r, c) for c in cols] for r in index],
                         index=pd.Index(index, name="method: paper's label (our name)"),
                         columns=pd.MultiIndex.from_tuples(cols))

    notes = [f"**{PAPER_GROUP}**: top-1 error (%) as the paper prints it; \"–\" where it prints none."]
    for protocol, preset in presets.items():
        what = ("the reduced protocol's errors are not comparable with the paper's numbers"
                if protocol != "paper" else "device and precision of each record in the provenance below")
        every = f"; every run: {shared[protocol_group(protocol)]}" if protocol_group(protocol) in shared else ""
        notes.append(f"**{protocol_group(protocol)}**: {protocol_summary(preset)}; {data_of[protocol]}; top-1 error "
                     f"(%) after the last epoch, mean ± sample std over the n seeds{every}; {what}.")
    values = frame[[c for c in cols if c[0] != PAPER_GROUP]].to_numpy().ravel().tolist()
    if MISSING in values:
        notes.append(f"{MISSING}: no record yet.")
    if NOT_HERE in values:
        notes.append(f"{NOT_HERE}: the method is not in this artifact.")
    paper_only = list(dict.fromkeys(ds for ds, _, _ in heads if ds not in ours_ds))
    if paper_only:
        names = ", ".join(paper_only[:-1]) + (" and " if len(paper_only) > 1 else "") + paper_only[-1]
        notes.append(f"{names}: the paper's numbers only; the data is not available here, so no run of ours exists.")
    notes += [f"[{letter}] {text}." for text, letter in marker.texts.items()]
    starts = [c for i, c in enumerate(cols) if i == 0 or c[0] != cols[i - 1][0]]
    return WideTable(frame, "\n".join(f"- {n}" for n in notes), starts)


def detail_table(long: pd.DataFrame, ours_datasets: Collection[str] = (), data_label: str | None = None
                 ) -> pd.DataFrame:
    """Every cell of ours of :func:`wide_table` in detail, one row per paper cell,
    protocol and group of our runs (the paper's protocol first; "—" where no
    record exists): its protocol with the backbone it trains (a reduced protocol's
    in its own words), the paper's number on the paper protocol's rows only, our
    final and best-epoch error, the seeds, the data and the setting within the
    protocol. Methods not in this artifact and datasets without runs of ours are
    left out (the paper's layout shows them)."""
    ran = long[long["our data"] != ""]
    protocols = ["paper", *[p for p in dict.fromkeys(ran["protocol"]) if p != "paper"]]
    ours_ds = set(ours_datasets) | set(ran["dataset"])
    rows = []
    for (method, ds, bb, imb), sub in long.groupby(["method", "dataset", "backbone", "imbalance"], sort=False):
        if ds not in ours_ds or (sub["ours final"] == NOT_IMPLEMENTED).all():
            continue
        for protocol in protocols:
            preset = protocol_preset(protocol, _dataset_key(ds))
            if preset is None:
                continue
            cell = {"method": method, "dataset": ds, "ρ": imb,
                    "protocol": ("paper" if protocol == "paper" else f"{protocol} (reduced)"),
                    "paper": sub["paper"].iloc[0] if protocol == "paper" else ""}
            network = network_summary(preset, _ARCHS.get(bb, bb))   # records match the paper row's backbone
            mine = sub[(sub["our data"] != "") & (sub["protocol"] == protocol)]
            # the paper's setting first, then the variants by name (as the figures order them)
            mine = mine.sort_values("our variant", key=lambda v: v.map(lambda x: (x != "paper setting", x)),
                                    kind="stable")
            if mine.empty:
                rows.append({**cell, "network": network, "ours, final epoch": MISSING,
                    "ours, best epoch": MISSING, "seeds": "", "data": "", "setting": ""})
                continue
            for _, r in mine.iterrows():
                setting = "; ".join(x for x in (r["our variant"] if r["our variant"] != "paper setting" else "",
                                                r["our run"]) if x) or "paper setting"
                rows.append({**cell, "network": network, "ours, final epoch": r["ours final"],
                    "ours, best epoch": r["ours best"], "seeds": r["seeds"], "data": r["our data"],
                    "setting": setting})
    columns = ["method", "dataset", "ρ", "protocol", "network", "paper", "ours, final epoch", "ours, best epoch",
               "seeds", "data", "setting"]
    return pd.DataFrame(rows, columns=columns).set_index(["method", "dataset", "ρ"])


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


def _sparse(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame``'s index as columns, each value shown only where it changes (as pandas
    shows a MultiIndex; a page's styles need unique row labels)."""
    flat = frame.reset_index()
    levels = list(frame.index.names)
    repeated = {level: frame.index.droplevel(levels[i + 1:]).duplicated() if i + 1 < len(levels)
                else frame.index.duplicated() for i, level in enumerate(levels)}
    for level, same in repeated.items():   # a value repeats where its row's prefix of levels does
        flat.loc[same, level] = ""
    return flat


def _detail_view(detail: pd.DataFrame) -> Any:
    """:func:`detail_table` as the page shows it: each protocol's network named once
    above it, and the columns that say the same on every row (dataset, data) with it."""
    from html import escape

    from kps.report.style import Captioned, lift_constants

    networks = dict(zip(detail["protocol"], detail["network"]))
    shown, same = lift_constants(_sparse(detail.drop(columns="network")), ["dataset", "data"])
    caption = "Networks: " + "; ".join(f"<strong>{escape(p)}</strong>: {escape(n)}" for p, n in networks.items())
    if same:
        caption += ". The same in every row: " + "; ".join(f"{escape(c)} <em>{escape(v)}</em>" for c, v in same)
    return Captioned([(caption + ".", page_table(shown, wrap={"setting": 14.0}, hide_index=True))])


@dataclass
class TablePage:
    """What a page of Tables 3-7 shows: the paper's table beside ours in its layout
    (``wide``, :func:`wide_table`, with its ``wide_notes``), every cell of ours in
    detail (``detail``, :func:`detail_table`: final and best epoch, data and setting),
    the provenance of the records that fill a cell (``provenance``) and the notes that
    apply to them. The display fields are styled for the page (a sentence where a
    table would be empty); ``long`` and ``used`` are the values."""

    table: int
    long: pd.DataFrame
    used: list
    wide: Any
    wide_notes: str
    detail: Any
    provenance: Any
    footnotes: str


def ours_datasets() -> tuple[list[str], str]:
    """The dataset titles this artifact's grids run on (kps.runner: the paper-protocol
    and CPU-scale grids), and the label of the data they use ('CIFAR-10 (JPEG copy)')."""
    from kps.data import DATASETS
    from kps.grids import cpu_grid, paper_grid

    used = list(dict.fromkeys(c.dataset for c in paper_grid() + cpu_grid()))
    titles = [DATASET_TITLES[k] for k, variants in DATASET_VARIANTS.items() if set(variants) & set(used)]
    return titles, DATASETS[used[0]].label


def table_page(table: int, results: str | Path | None = None) -> TablePage:
    """The page of the paper's Table ``table`` (3-7) from the records under
    ``results`` (None: the repository's ``results/``), ``book/paper_numbers.csv``
    and ``book/provenance_notes.yml``."""
    from IPython.display import Markdown

    from kps.report.paper import find_repo_root, read_paper_numbers
    from kps.report.provenance import provenance_footnotes, provenance_view, read_provenance_notes
    from kps.results import load_records

    root = find_repo_root()
    records = load_records(root / "results" if results is None else Path(results))
    paper = read_paper_numbers(root / "book" / "paper_numbers.csv")
    notes = read_provenance_notes(root / "book" / "provenance_notes.yml")
    long = comparison_table(paper, records, table)
    used = table_records(paper, records, table)
    datasets, label = ours_datasets()
    wide = wide_table(long, datasets, label)
    detail = detail_table(long, datasets, label)
    return TablePage(
        table, long, used,
        wide=page_table(wide.frame, group_starts=wide.group_starts, wide_index=True).format_index(
            lambda v: v.replace("-", "\u2011"), axis="columns"),   # heads break at spaces, not in "ResNet-32"
        wide_notes=wide.notes,
        detail=(_detail_view(detail) if not detail.empty else
                Markdown("No cell of ours here can hold a run: the data is not available here, or the method "
                         "is not in this artifact.")),
        provenance=provenance_view(used, notes, empty="No record fills a cell of ours in this table yet."),
        footnotes=provenance_footnotes(notes, used))
