"""Provenance: where each record and bench file came from as it says itself
(commit, dirty tree, device, torch, start and wall time, the processes that
trained it), and the numbered notes of ``book/provenance_notes.yml`` for files
that say it wrongly (the files are never edited)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kps.configs import RunConfig
from kps.report.records import precision_label, protocol_of, setting_label
from kps.results import config_record_path


@dataclass(frozen=True)
class ProvenanceNote:
    """A fact about where committed files came from that the files themselves
    get wrong or cannot say (``book/provenance_notes.yml``). The files are
    never edited; the pages that show their provenance print the note as a
    numbered footnote. Two kinds, each applying to a file listed in ``files``
    while the file still says what the note speaks about:

    - a commit note (``recorded_commit``, ``recorded_dirty``, ``ran_commit``,
      ``changed_paths``): the file names a commit other than the code that ran;
    - a wall-time note (YAML ``recorded_wall_time_s``, here ``wall_times``: file -> its
      ``wall_time_s``; ``epochs``: file -> the epochs, 0-indexed, whose time holds more
      than training, :func:`stopped_epochs`, e.g. a process stopped mid-epoch): the
      file's wall time overstates what its run took."""

    number: int
    key: str
    files: tuple[str, ...]
    text: str
    recorded_commit: str | None = None
    recorded_dirty: bool | None = None
    ran_commit: str | None = None
    changed_paths: tuple[str, ...] = ()
    wall_times: Mapping[str, float] | None = None
    epochs: Mapping[str, tuple[int, ...]] | None = None

    @property
    def marker(self) -> str:
        return f"[{self.number}]"


COMMIT_NOTE_KEYS = ("recorded_commit", "recorded_dirty", "ran_commit", "changed_paths")
WALL_NOTE_KEYS = ("recorded_wall_time_s", "epochs")
# An epoch that took over this many times the record's median epoch held something
# beside training (an epoch with a test pass takes about 1.25x at the paper's protocol).
STOPPED_EPOCH_FACTOR = 2.0


def stopped_epochs(record: Mapping[str, Any]) -> tuple[list[int], float]:
    """The epochs of ``record`` that took over :data:`STOPPED_EPOCH_FACTOR` times its
    median epoch, and the seconds they took beyond that median (what a wall-time
    note names and states)."""
    history = record["history"]
    median = float(np.median([h["time_s"] for h in history]))
    slow = [h["epoch"] for h in history if h["time_s"] > STOPPED_EPOCH_FACTOR * median]
    return slow, sum(history[e]["time_s"] - median for e in slow)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_provenance_notes(path: str | Path) -> list[ProvenanceNote]:
    """The notes of ``book/provenance_notes.yml``, numbered from 1 in file
    order; ValueError naming the note when a field is missing or malformed."""
    import yaml

    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    notes = []
    for i, item in enumerate(data.get("notes") or [], start=1):
        missing = [k for k in ("key", "files", "text") if k not in item]
        if missing:
            raise ValueError(f"{path}: note {i} lacks {missing}")
        key, files, text = str(item["key"]), tuple(item["files"]), " ".join(str(item["text"]).split())
        if any(k in item for k in WALL_NOTE_KEYS):
            if any(k in item for k in COMMIT_NOTE_KEYS):
                raise ValueError(f"{path}: note {key!r}: it mixes a commit note's keys and a wall-time note's: "
                                 "make it two notes")
            walls, epochs = item.get("recorded_wall_time_s"), item.get("epochs")
            if not isinstance(walls, dict) or sorted(walls) != sorted(files) or not all(
                    _is_number(v) for v in walls.values()):
                raise ValueError(f"{path}: note {key!r}: recorded_wall_time_s must give each of its files' "
                                 "wall_time_s (a number)")
            if not isinstance(epochs, dict) or sorted(epochs) != sorted(files) or not all(
                    isinstance(v, list) and v and all(isinstance(e, int) and not isinstance(e, bool) and e >= 0
                                                      for e in v) for v in epochs.values()):
                raise ValueError(f"{path}: note {key!r}: epochs must give each of its files' epochs "
                                 "(a list of 0-indexed epochs)")
            notes.append(ProvenanceNote(i, key, files, text, wall_times={f: float(v) for f, v in walls.items()},
                                        epochs={f: tuple(v) for f, v in epochs.items()}))
            continue
        missing = [k for k in COMMIT_NOTE_KEYS if k not in item]
        if missing:
            raise ValueError(f"{path}: note {key!r} lacks {missing} (a commit note), or give "
                             "recorded_wall_time_s and epochs (a wall-time note)")
        for k in ("recorded_commit", "ran_commit"):
            if not (isinstance(item[k], str) and len(item[k]) == 40 and all(c in "0123456789abcdef" for c in item[k])):
                raise ValueError(f"{path}: note {key!r}: {k} must be a 40-hex commit")
        if not isinstance(item["recorded_dirty"], bool):
            raise ValueError(f"{path}: note {key!r}: recorded_dirty must be true or false")
        notes.append(ProvenanceNote(i, key, files, text, item["recorded_commit"], item["recorded_dirty"],
                                    item["ran_commit"], tuple(item["changed_paths"])))
    return notes


def record_file(record: Mapping[str, Any]) -> str:
    """Where ``record`` lies in the repository: 'results/<dataset>/<method>/imb<r>/seed<k>[.<tag>].json'."""
    return config_record_path(Path("results"), RunConfig.from_dict(record["config"])).as_posix()


def note_for(file: str, commit: Any, dirty: Any, notes: Iterable[ProvenanceNote]) -> ProvenanceNote | None:
    """The commit note about ``file`` (a repository path), if one applies to a file
    with this recorded commit and dirty flag."""
    for note in notes:
        if (note.recorded_commit is not None and file in note.files and commit == note.recorded_commit
                and bool(dirty) == note.recorded_dirty):
            return note
    return None


def wall_note_for(file: str, wall_time_s: Any, notes: Iterable[ProvenanceNote]) -> ProvenanceNote | None:
    """The wall-time note about ``file``, if one applies to a file with this wall time."""
    for note in notes:
        if note.wall_times is not None and file in note.wall_times and wall_time_s is not None \
                and math.isclose(float(wall_time_s), note.wall_times[file], abs_tol=1e-3):
            return note
    return None


def _record_note(rec: Mapping[str, Any], notes: Iterable[ProvenanceNote]) -> ProvenanceNote | None:
    return note_for(record_file(rec), rec.get("git_commit"), rec.get("git_dirty"), notes)


def record_wall_note(rec: Mapping[str, Any], notes: Iterable[ProvenanceNote]) -> ProvenanceNote | None:
    """The wall-time note of ``notes`` that applies to the record ``rec``, if any."""
    return wall_note_for(record_file(rec), rec.get("wall_time_s"), notes)


PROVENANCE_COLUMNS = ("run", "protocol", "data", "setting", "commit", "device, precision", "torch", "started (UTC)",
                      "wall time (min)", "processes")
ERROR_COLUMNS = ("final error (%)", "best error (%)")
# the columns a page lets wrap, and their least width (rem): a setting reads best on at most 3 lines
PROSE_COLUMNS = {"setting": 14.0, "commit": 6.0, "device, precision": 8.0, "processes": 8.0}
# what a page names once above a table when every record says the same
LIFTED_COLUMNS = ("data", "setting", "commit", "device, precision", "torch", "processes")


def provenance_table(records: Iterable[Mapping[str, Any]], notes: Iterable[ProvenanceNote] = (),
                     errors: bool = False) -> pd.DataFrame:
    """One row per record: what ran (run: method, imbalance and seed; protocol;
    dataset label; setting within the protocol) and where it came from as the
    record says it (commit, with "dirty tree" and the marker of a commit note of
    ``notes`` that applies to it, see :func:`provenance_footnotes`; device and precision;
    torch version; start time in UTC; wall time of the epochs in minutes, with the
    marker of a wall-time note; the
    processes that trained it). ``errors``: also its final and best-epoch top-1
    error (%)."""
    notes = list(notes)
    rows = []
    for rec in records:
        c = rec["config"]
        note, wall_note = _record_note(rec, notes), record_wall_note(rec, notes)
        dirty = rec.get("git_dirty")
        dirty_words = ", dirty tree unknown" if dirty is None else (", dirty tree" if dirty else "")
        protocol = protocol_of(c)
        row = {
            "run": f"{c['method']}, ρ={float(c['imbalance']):g}, seed {c['seed']}",
            "protocol": protocol if protocol == "paper" else f"{protocol} (reduced)",
            "data": rec.get("dataset_label", c["dataset"]),
            "setting": setting_label(c, with_protocol=False),
            "commit": str(rec.get("git_commit") or "unknown")[:10] + dirty_words + (f" {note.marker}" if note else ""),
            "device, precision": f"{_device(rec.get('device', 'unknown'))}, {precision_label(c)}",
            "torch": rec.get("torch_version", "unknown"),
            "started (UTC)": str(rec.get("started_at", "unknown"))[:16].replace("T", " "),
            "wall time (min)": (f"{float(rec['wall_time_s']) / 60:.1f}" + (f" {wall_note.marker}" if wall_note else "")
                                if rec.get("wall_time_s") is not None else "unknown"),
            "processes": segments_label(rec),
        }
        if errors:
            row.update({ERROR_COLUMNS[0]: f"{rec['top1_error']:.2f}", ERROR_COLUMNS[1]: f"{rec['best_top1_error']:.2f}"})
        rows.append(row)
    return pd.DataFrame(rows, columns=PROVENANCE_COLUMNS + (ERROR_COLUMNS if errors else ()))


def provenance_view(records: Iterable[Mapping[str, Any]], notes: Iterable[ProvenanceNote] = (),
                    errors: bool = False, empty: str = "No record yet.") -> Any:
    """:func:`provenance_table` as a page shows it: one table per protocol (the paper's
    first), each under a line naming the protocol, its number of records and what is
    the same for all of them (:func:`kps.report.style.lift_constants`), values on one
    line and only the prose columns wrapping; or the Markdown ``empty`` where there is
    no record (a table of headers only says nothing)."""
    from html import escape

    from IPython.display import Markdown

    from kps.report.style import Captioned, lift_constants, page_table

    table = provenance_table(records, notes, errors)
    if table.empty:
        return Markdown(empty)
    parts = []
    for protocol in sorted(dict.fromkeys(table["protocol"]), key=lambda p: p != "paper"):
        rows = table[table["protocol"] == protocol].drop(columns="protocol")
        shown, same = lift_constants(rows, LIFTED_COLUMNS)
        name = protocol.removesuffix(" (reduced)")
        title = "the paper’s protocol" if protocol == "paper" else f"the {name} protocol (reduced)"
        caption = f"<strong>{escape(title)}</strong>: {len(rows)} record{'s' if len(rows) != 1 else ''}"
        if same:
            caption += "; the same for each: " + "; ".join(f"{escape(c)} <em>{escape(v)}</em>" for c, v in same)
        parts.append((caption, page_table(shown, wrap=PROSE_COLUMNS, hide_index=True)))
    return Captioned(parts)


def _device(name: str) -> str:
    """A record's device as it says it, without trademark signs: 'cpu (Intel Xeon Processor)'."""
    return " ".join(name.replace("(R)", "").replace("(TM)", "").split())


def segments_label(rec: Mapping[str, Any]) -> str:
    """How many processes trained the run, and where a resumed one took over:
    'one' (also for records before segments were kept), or e.g. '0-129: unknown;
    130-199: 1a2b3c4 (H200)' (a segment's device where it is not the record's own).
    Consecutive processes of one commit, device and thread count are one span; a thread
    count shared by all is said once at the end."""
    segments = rec.get("segments") or []
    if len(segments) <= 1:
        return "one" + (_threads(segments[0].get("threads")) if segments else "")
    ends = [s["from_epoch"] for s in segments[1:]] + [rec["epochs"]]
    spans: list[list[Any]] = []  # [first epoch, last epoch, who, threads]
    for seg, end in zip(segments, ends):
        who = str(seg["git_commit"])[:7] if seg.get("git_commit") else "unknown"
        if seg.get("device") and seg["device"] != rec.get("device"):   # the record's own device: said once
            who += f" ({_device(seg['device'])})"
        if spans and spans[-1][2:] == [who, seg.get("threads")]:
            spans[-1][1] = end - 1
        else:
            spans.append([seg["from_epoch"], end - 1, who, seg.get("threads")])
    shared = len({t for *_, t in spans}) == 1
    parts = [f"{a}-{b}: {who}" + ("" if shared else _threads(t)) for a, b, who, t in spans]
    threads = _threads(spans[0][3]) if shared else ""
    return "; ".join(parts) + (f"; {threads.removeprefix(', ')}" if threads else "")


def _threads(k: int | None) -> str:
    """', k threads' where a segment records its thread count ``k`` (records from 2026-12-02 on)."""
    return "" if k is None else f", {k} thread{'s' if k != 1 else ''}"


def provenance_footnotes(notes: Iterable[ProvenanceNote], records: Iterable[Mapping[str, Any]] = (),
                         files: Iterable[tuple[str, Any, Any]] = ()) -> str:
    """Markdown: '[n] text' for each note that applies to one of ``records``
    or of ``files`` ((path, recorded commit, recorded dirty flag) triples),
    in note order; '' when none applies."""
    notes = list(notes)
    records = list(records)
    used = {n.number for n in filter(None, (_record_note(r, notes) for r in records))}
    used |= {n.number for n in filter(None, (record_wall_note(r, notes) for r in records))}
    used |= {n.number for n in filter(None, (note_for(f, c, d, notes) for f, c, d in files))}
    return "\n\n".join(f"{n.marker} {n.text}" for n in notes if n.number in used)
