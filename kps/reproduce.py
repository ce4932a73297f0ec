"""``python -m kps reproduce --table N``: train the missing records of one of the
paper's tables, then re-render the table.

For every cell of Table N (``book/paper_numbers.csv``) whose method this
package implements, and every seed 0..K-1, the driver looks for the record
``kps.train`` would write (``kps.results.config_record_path``).  The missing ones
are one list of configurations, handed to the runner that ``python -m kps
train-grid`` uses (:func:`kps.runner.run_worker`: data loaded once for consecutive
runs, checkpoints resumed); an existing record is left alone.  Then
``notebooks/tableN.ipynb`` is executed on the records and the table is printed.
Tables 1 and 2 have nothing to train and are only re-rendered.

    python -m kps reproduce --table 3 --seeds 3 --device cuda
    python -m kps reproduce --table 5 --methods kps_ga --cifar10 cifar10-jpeg --dry-run
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from kps.configs import METHODS, PRESETS, ROLES, SPEED_KEYS, RunConfig, authors_code_overrides, make_config
from kps.datasets import DATASETS
from kps.report import comparison_table, find_repo_root, read_paper_numbers
from kps.results import config_record_path, load_record
from kps.checkpoints import default_checkpoint_dir
from kps.env import check_device_name

__all__ = ["PlannedRun", "plan_runs", "main"]

TABLES = range(1, 8)


@dataclass(frozen=True)
class PlannedRun:
    """One configuration of a table: ``status`` is 'run' (no record yet),
    'exists' (its record is there), 'exists, differs' (a record of the same
    name holds another run-only setting, e.g. fewer epochs; kept unless
    --force) or 'no data' (the dataset folder is missing; ``note`` says how to
    get it)."""

    config: RunConfig
    record: Path
    status: str
    note: str = ""


def _same_run(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two configs of one record name ran alike but for their speed keys."""
    return all(a.get(k) == b.get(k) for k in ROLES if k not in SPEED_KEYS)


def plan_runs(
    paper: pd.DataFrame,
    table: int,
    *,
    seeds: int,
    out: Path,
    data_root: Path,
    cifar10: str = "cifar10",
    epochs: int | None = None,
    methods: Sequence[str] | None = None,
    authors_code: bool = False,
    force: bool = False,
    preset: str | None = None,
) -> list[PlannedRun]:
    """The configurations behind Table ``table``'s cells of ours, one per
    (paper cell with a number, seed), in the paper's row order, without
    duplicates. CIFAR-10 cells run on ``cifar10`` ("cifar10" or the JPEG copy
    "cifar10-jpeg").  ``preset`` (e.g. the CPU-scale ``cifar10_lt_small``) trains
    every cell it fits under that preset and leaves the others out."""
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    if table not in TABLES:
        raise ValueError(f"--table must be one of 1-7, got {table}")
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    if cifar10 not in ("cifar10", "cifar10-jpeg"):
        raise ValueError(f"--cifar10 must be cifar10 or cifar10-jpeg, got {cifar10!r}")
    unknown = sorted(set(methods or ()) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; valid: {', '.join(METHODS)}")
    rows = paper[(paper["table"] == table) & paper["method"].isin(methods or list(METHODS))
                 & paper["top1_error"].notna()]  # a '-' cell of the paper has nothing to compare with
    planned: dict[Path, PlannedRun] = {}
    for _, row in rows.iterrows():
        dataset = cifar10 if row["dataset"] == "cifar10" else row["dataset"]
        if preset is not None and dataset not in PRESETS[preset].datasets:
            continue  # a cell this preset does not fit
        folder = Path(data_root) / DATASETS[dataset].folder
        for seed in range(seeds):
            overrides: dict[str, Any] = {"seed": seed, "arch": row["backbone"],
                                         "imbalance": DATASETS[dataset].fixed_imbalance or row["imbalance"]}
            if epochs is not None:
                overrides["epochs"] = epochs
            if preset is not None:
                overrides["preset"] = preset
            if authors_code:
                overrides.update(authors_code_overrides(dataset, row["method"]))
            config = make_config(dataset, row["method"], **overrides)
            path = config_record_path(out, config)
            if path in planned:
                continue
            if path.exists() and not force:
                same = _same_run(load_record(path)["config"], config.to_dict())
                status, note = ("exists", "") if same else ("exists, differs", "a record of another run-only "
                                                            "setting (e.g. epochs) is there; --force replaces it")
            elif not folder.is_dir():
                status, note = "no data", DATASETS[dataset].fetch.format(root=data_root)
            else:
                status, note = "run", ""
            planned[path] = PlannedRun(config, path, status, note)
    return list(planned.values())


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kps reproduce",
        description="Train the missing records of one of the paper's tables (the runner of train-grid), skip the "
                    "existing ones, then re-render notebooks/tableN.ipynb.")
    p.add_argument("--table", type=int, required=True, help="the paper's table number, 1-7")
    p.add_argument("--seeds", type=int, default=1, help="seeds 0..K-1 per cell (default 1)")
    p.add_argument("--device", default="auto", help="cpu, cuda, or auto (default)")
    p.add_argument("--methods", nargs="+", help="only these methods (default: all the table's methods)")
    p.add_argument("--cifar10", default="cifar10", choices=("cifar10", "cifar10-jpeg"),
                   help="which CIFAR-10 to train on (default cifar10; cifar10-jpeg is the lossy JPEG copy)")
    p.add_argument("--epochs", type=int, help="short runs of this many epochs (labelled as such on every page)")
    p.add_argument("--authors-code", action="store_true", help="the authors' code's setting (see the book)")
    p.add_argument("--preset", help="train the cells under this preset (e.g. cifar10_lt_small, the CPU-scale "
                                    "protocol: only the cells it fits); default: each dataset's Table 2 preset")
    p.add_argument("--force", action="store_true", help="rerun and replace existing records")
    p.add_argument("--data-root", default=None, help="dataset folder (default: the repository's data/)")
    p.add_argument("--out", default=None, help="records folder (default: the repository's results/)")
    p.add_argument("--checkpoints", default=None,
                   help="checkpoint folder, for resuming killed runs (default: OUT/.checkpoints)")
    p.add_argument("--log-dir", default=None,
                   help="the executed table notebook goes here (default: _build/reproduce/ in the repository)")
    p.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    return p


def _device(name: str) -> str:
    """``auto``: a GPU where there is one, else the CPU."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m kps reproduce``; returns the exit status
    (0: every attempted run succeeded; 1: a run failed)."""
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    check_device_name(args.device)  # before any plan: each run's notebook would fail on it
    root = find_repo_root()
    data_root = Path(args.data_root).resolve() if args.data_root else root / "data"
    out = Path(args.out).resolve() if args.out else root / "results"
    checkpoints = Path(args.checkpoints).resolve() if args.checkpoints else default_checkpoint_dir(out)
    log_dir = Path(args.log_dir).resolve() if args.log_dir else root / "_build" / "reproduce"
    paper = read_paper_numbers(root / "book" / "paper_numbers.csv")
    runs = plan_runs(paper, args.table, seeds=args.seeds, out=out, data_root=data_root, cifar10=args.cifar10,
                     epochs=args.epochs, methods=args.methods, authors_code=args.authors_code, force=args.force,
                     preset=args.preset)
    if args.table in (3, 4, 5, 6, 7) and not runs:
        print(f"Table {args.table}: no cell of ours to train (its methods are not in this artifact)")
    for run in runs:
        print(f"{run.status:>16}  {run.record}" + (f"  ({run.note})" if run.note else ""))
    if args.dry_run:
        return 0

    import papermill  # imported on use: only this command needs it

    from kps.runner import run_worker

    failed = run_worker([r.config for r in runs if r.status == "run"], data_root=data_root, out=out,
                        checkpoint_dir=checkpoints, device=_device(args.device), force=args.force, quiet=False,
                        log=lambda line: print(line, flush=True))
    log_dir.mkdir(parents=True, exist_ok=True)
    rendered = log_dir / f"table{args.table}.ipynb"
    table_params = {1: {"data_root": str(data_root)}, 2: {}}.get(args.table, {"results": str(out)})
    papermill.execute_notebook(str(root / "notebooks" / f"table{args.table}.ipynb"), str(rendered),
                               parameters=table_params, cwd=str(root / "notebooks"), progress_bar=False)
    print(f"re-rendered: {rendered}  (`make site` rebuilds the website)")
    if args.table >= 3:
        from kps.results import load_records

        table = comparison_table(paper, load_records(out), args.table)
        with pd.option_context("display.width", 200, "display.max_rows", 500, "display.max_colwidth", 60):
            print(table[["method", "dataset", "imbalance", "backbone", "paper", "ours final", "ours best",
                         "our data", "our setting"]].to_string(index=False))
    return 1 if failed else 0
