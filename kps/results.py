"""Run records: one JSON file per run at
``<out>/<dataset>/<method>/imb<ratio>/seed<k>.json``, written atomically,
immutable unless forced, schema-checked on load.  A run whose setting differs
from the paper's (e.g. the authors'-code GA variant) is stored as
``seed<k>.<setting tag>.json`` (:func:`kps.configs.setting_tag`).

Errors and accuracies are in percent.  ``top1_error`` is the final-epoch
error and ``best_top1_error`` the best over the evaluated epochs (what the
authors' code reports); both use the paper's test rule, argmax cos(theta_j)
for cosine heads (argmax of the logits for linear heads).  For KPS methods the
``*_rcos`` fields give the same under argmax r_j cos(theta_j) (the class
boundary of eq. 13), see DESIGN.md "Test rule".

Other keys: ``epochs`` (trained) and ``preset_epochs`` (the preset's full
count; fewer marks a short run), ``group_errors`` (head/mid/tail: the 3/4/3 of
ten frequency groups, Figs. 6-7) and ``per_group_errors`` (the ten groups;
None with fewer than 10 classes), ``shot_errors`` (many > 100, medium 20-100,
few < 20 training images; None for an empty group), ``history`` (per epoch:
loss, lr, time_s, and test_error / test_error_rcos when evaluated),
provenance (``device``, ``world_size``, ``torch_version``, ``git_commit``,
``git_dirty``, ``started_at`` ISO UTC) and ``wall_time_s``: seconds spent in
the epochs (training and evaluation, summed over resumed sessions; data
loading and set-up excluded).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

from kps.configs import LATER_KEYS, RunConfig, format_imbalance, setting_tag
from kps.io import atomic_write_text

__all__ = ["SCHEMA_VERSION", "record_path", "config_record_path", "record_problem", "validate_record", "write_record",
           "RecordError", "RECORD_FIX", "read_record_file", "load_record", "load_records", "main"]

SCHEMA_VERSION = 1


def record_path(out: str | Path, dataset: str, method: str, imbalance: float, seed: int, tag: str = "") -> Path:
    """``<out>/<dataset>/<method>/imb<ratio>/seed<k>[.<tag>].json`` (ratio as in imb100, imb50)."""
    name = f"seed{seed}.{tag}.json" if tag else f"seed{seed}.json"
    return Path(out) / dataset / method / format_imbalance(imbalance) / name


def config_record_path(out: str | Path, config: RunConfig) -> Path:
    """Where the record of ``config`` lives (with its setting tag)."""
    return record_path(out, config.dataset, config.method, config.imbalance, config.seed, setting_tag(config))


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _is_pct(x: Any) -> bool:
    return _is_num(x) and 0.0 <= x <= 100.0


def _opt(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda x: x is None or check(x)


def _pct_list(n: int | None) -> Callable[[Any], bool]:
    return lambda x: isinstance(x, list) and (n is None or len(x) == n) and all(_is_pct(v) for v in x)


def _pct_dict(keys: tuple[str, ...]) -> Callable[[Any], bool]:
    return lambda x: isinstance(x, dict) and set(x) == set(keys) and all(_opt(_is_pct)(x[k]) for k in keys)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_str(x: Any) -> bool:
    return isinstance(x, str)


def _history_ok(h: Any) -> bool:
    if not isinstance(h, list):
        return False
    for row in h:
        if not (isinstance(row, dict) and {"epoch", "loss", "lr"} <= set(row)):
            return False
        if not (_is_int(row["epoch"]) and _is_num(row["loss"]) and _is_num(row["lr"])):
            return False
        if not all(_is_pct(row[k]) for k in ("test_error", "test_error_rcos") if k in row):
            return False
    return True


def _fields(num_classes: int) -> dict[str, Callable[[Any], bool]]:
    return {
        "schema_version": lambda x: x == SCHEMA_VERSION,
        "config": lambda x: isinstance(x, dict),
        "dataset_label": _is_str,
        "num_classes": lambda x: _is_int(x) and x >= 2,
        "class_names": lambda x: isinstance(x, list) and len(x) == num_classes and all(map(_is_str, x)),
        "train_counts": lambda x: isinstance(x, list) and len(x) == num_classes and all(_is_int(v) and v > 0 for v in x),
        "epochs": lambda x: _is_int(x) and x >= 1,
        "preset_epochs": lambda x: _is_int(x) and x >= 1,
        "test_rule": _is_str,
        "top1_error": _is_pct,
        "best_top1_error": _is_pct,
        "best_epoch": lambda x: _is_int(x) and x >= 0,
        "top1_error_rcos": _opt(_is_pct),
        "per_class_accuracy": _pct_list(num_classes),
        "per_class_accuracy_rcos": _opt(_pct_list(num_classes)),
        "group_errors": _pct_dict(("head", "mid", "tail")),
        "per_group_errors": _pct_list(10),
        "shot_errors": _pct_dict(("many", "medium", "few")),
        "history": _history_ok,
        "device": _is_str,
        "world_size": lambda x: _is_int(x) and x >= 1,
        "torch_version": _is_str,
        "git_commit": _opt(_is_str),
        "git_dirty": lambda x: x is None or isinstance(x, bool),
        "wall_time_s": lambda x: _is_num(x) and x >= 0,
        "started_at": _is_str,
    }


def record_problem(record: Any) -> str | None:
    """What is wrong with ``record`` against the schema (the bad or missing keys), or None."""
    if not isinstance(record, dict):
        return "a record must be a JSON object"
    n = record.get("num_classes")
    fields = _fields(n if _is_int(n) else -1)
    missing = [k for k in fields if k not in record]
    if missing:
        return f"record lacks key(s) {', '.join(missing)}"
    bad = [k for k, ok in fields.items() if not ok(record[k])]
    if bad:
        return f"bad value for key(s) {', '.join(bad)}"
    config_keys = set(RunConfig.keys())
    if not config_keys - set(LATER_KEYS) <= set(record["config"]) <= config_keys:
        diff = sorted((set(record["config"]) ^ config_keys) - set(LATER_KEYS))
        return f"config keys differ from RunConfig's: {', '.join(diff)}"
    try:
        config = RunConfig.from_dict(record["config"])
    except (ValueError, TypeError) as err:  # TypeError: a value of the wrong kind (a list for a name)
        return f"bad config: {err}"
    if record["epochs"] != config.epochs or record["preset_epochs"] != config.preset_epochs:
        return "epochs/preset_epochs disagree with the config"
    if "segments" in record and not _segments_ok(record["segments"], record["epochs"]):
        return "bad value for key segments (one entry per process, from epoch 0 upwards)"
    return None


def validate_record(record: Any, source: str = "record") -> dict:
    """Check ``record`` against the schema; ValueError naming ``source`` and the bad keys."""
    problem = record_problem(record)
    if problem is not None:
        raise ValueError(f"{source}: {problem}")
    return record


def _segments_ok(segments: Any, epochs: int) -> bool:
    """Optional key (records from 2026-11-26 on): the processes that trained the run,
    each {"from_epoch", "git_commit", "git_dirty", "device", ...}, from epoch 0, rising."""
    if not (isinstance(segments, list) and segments and all(isinstance(s, dict) for s in segments)):
        return False
    starts = [s.get("from_epoch") for s in segments]
    return (all(_is_int(e) for e in starts) and starts[0] == 0 and starts == sorted(starts)
            and starts[-1] <= epochs and all(_opt(_is_str)(s.get("git_commit")) for s in segments))


def _dumps(record: dict) -> str:
    try:
        return json.dumps(record, indent=1, sort_keys=True, allow_nan=False) + "\n"
    except ValueError as err:
        raise ValueError(f"record holds a non-finite number: {err}") from err


def write_record(record: dict, out: str | Path, force: bool = False) -> Path:
    """Validate and write ``record`` atomically at its :func:`record_path`.
    An existing record is never replaced unless ``force``."""
    validate_record(record)
    path = config_record_path(out, RunConfig.from_dict(record["config"]))
    if path.exists() and not force:
        raise FileExistsError(
            f"record {path} exists; records are immutable: use another seed, or --force to overwrite"
        )
    atomic_write_text(path, _dumps(record))
    return path


# How to mend a record that cannot be read: records are written whole (kps.io) and never edited.
RECORD_FIX = "restore it from git, or train its run again with --force"


class RecordError(ValueError):
    """A record file that cannot be used: its ``path`` and ``problem`` (what is wrong with it)."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}; {RECORD_FIX}")
        self.path, self.problem = path, problem


def read_record_file(path: str | Path) -> dict:
    """The record at ``path``, validated; :class:`RecordError` naming the file and what is
    wrong with it (unreadable, not UTF-8, empty, not JSON, or against the schema)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise RecordError(path, f"not a text file ({err.reason} at byte {err.start})") from err
    except OSError as err:
        raise RecordError(path, f"cannot be read ({err.strerror or err})") from err
    if not text.strip():
        raise RecordError(path, "empty file")
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        raise RecordError(path, f"not valid JSON ({err})") from err
    problem = record_problem(record)
    if problem is not None:
        raise RecordError(path, problem)
    return record


def load_record(path: str | Path) -> dict:
    """Read and validate one record (:func:`read_record_file`), its config completed
    with the keys it predates."""
    record = read_record_file(path)
    # keys the record predates (kps.configs.LATER_KEYS) with the values the run had: its preset's
    record["config"] = RunConfig.from_dict(record["config"]).to_dict()
    return record


def load_records(out: str | Path = "results") -> list[dict]:
    """All records under ``out`` (sorted by path), each validated and checked
    to lie where its config says it belongs."""
    out = Path(out)
    records = []
    for path in sorted(out.glob("*/*/imb*/seed*.json")):
        record = load_record(path)
        expected = config_record_path(out, RunConfig.from_dict(record["config"]))
        if expected != path:
            raise RecordError(path, f"its config belongs at {expected}")
        records.append(record)
    return records


def main(argv: list[str] | None = None) -> int:
    """``python -m kps.results [FOLDER ...]``: read every record under each FOLDER
    (default results/) as the result pages do; one line naming the first bad file
    and what is wrong with it (exit 2), else how many records were read.  `make site`
    runs it first, so that a damaged record is named before any page is executed."""
    import sys

    roots = [Path(a) for a in (sys.argv[1:] if argv is None else argv)] or [Path("results")]
    read: set[Path] = set()
    try:
        for root in roots:
            load_records(root)  # the pages' reader: also checks where each record lies
            for path in sorted(root.rglob("seed*.json")):  # and the records of roots within (results/bf16-check/...)
                if not any(part.startswith(".") for part in path.relative_to(root).parts):
                    read_record_file(path)
                    read.add(path)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{len(read)} records under {', '.join(map(str, roots))}: all readable")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
