"""How a result page shows a table: class ``kps-table`` (``book/_static/companion.css``:
compact, padded cells, headers that wrap), values on one line, and only the
columns of prose allowed to wrap, so that a table fits the page's column at
1280 px instead of hiding columns or leaving rows tall with text out of sight."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

TABLE_CLASS = "kps-table"


def page_table(frame: pd.DataFrame, wrap: Sequence[Any] | Mapping[Any, float] = (), hide_index: bool = False,
               group_starts: Sequence[Any] = (), wide_index: bool = False) -> Any:
    """``frame`` styled for a page: every value on one line but the columns ``wrap``
    (prose: settings, notes), which wrap within 6 rem (or the width ``wrap`` maps the
    column to, in rem) and 18 rem; a rule left of the columns ``group_starts`` (the
    first column of each column group); the index (row labels) wraps within 12-20 rem
    where ``wide_index`` (long row labels)."""
    style = frame.style.set_table_attributes(f'class="{TABLE_CLASS}"')
    if hide_index:
        style = style.hide(axis="index")
    widths = dict(wrap) if isinstance(wrap, Mapping) else dict.fromkeys(wrap, 6.0)
    for column, rem in widths.items():
        if column in frame.columns:
            style = style.set_properties(subset=[column], **{"white-space": "normal", "min-width": f"{rem:g}rem",
                                                             "max-width": "18rem"})
    starts = [c for c in group_starts if c in frame.columns]
    if starts:
        style = style.set_properties(subset=starts, **{"border-left": "2px solid #999"})
    if wide_index:
        style = style.set_table_styles([{"selector": "tbody th", "props": [("white-space", "normal"),
                                                                          ("min-width", "11rem"),
                                                                          ("max-width", "20rem")]}],
                                       overwrite=False)
    return style


def lift_constants(frame: pd.DataFrame, columns: Sequence[str]) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """``frame`` without those of ``columns`` that hold one value in every row (of two
    or more; empty cells aside), and those (column, value) pairs, for a line above the
    table: a column that says the same thing on every row only widens it."""
    if len(frame) < 2:
        return frame, []
    values = {c: set(frame[c].astype(str)) - {""} for c in columns if c in frame.columns}   # '': nothing to say
    same = [c for c, v in values.items() if len(v) == 1]
    return frame.drop(columns=same), [(c, values[c].pop()) for c in same]


class Captioned:
    """Tables shown one after another, each under a line of its own (HTML)."""

    def __init__(self, parts: Sequence[tuple[str, Any]]):
        self.parts = list(parts)   # (caption HTML, Styler)

    def _repr_html_(self) -> str:
        return "\n".join(f'<p class="kps-caption">{caption}</p>\n{table.to_html()}' for caption, table in self.parts)
