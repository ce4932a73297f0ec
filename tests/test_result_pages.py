"""Tables 3, 5 and 6, Figs. 6-7 and the landing page's counts read right with none, some or
all of the paper-protocol grid's records: missing runs show as missing ("—", said in a
note), never as nan, and every figure stays readable."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from kps import report
from kps.results import load_records, write_record
from kps.grids import paper_grid

ROOT = Path(__file__).resolve().parents[1]
CELL = re.compile(r"^(—|n/a|\d+\.\d\d( ± \d+\.\d\d)? \(n=\d+\)( \[[a-z]\])?)$")


def grid_records(n: int | None, folder: Path) -> Path:
    """The first ``n`` runs of the paper-protocol grid (None: all) as records under
    ``folder``, made from a committed record with the run's config and a made-up error."""
    template = next(r for r in load_records(ROOT / "results") if r["config"]["preset"] == "cifar10_lt")
    for k, config in enumerate(paper_grid("cuda")[:n]):
        rec = copy.deepcopy(template)
        rec["config"] = config.to_dict()
        rec["top1_error"], rec["best_top1_error"] = 20.0 + k, 19.0 + k
        write_record(rec, folder)
    return folder


@pytest.mark.parametrize("n", [0, 5, None])
def test_result_pages_with_none_some_or_all_paper_protocol_records(tmp_path, n):
    folder = grid_records(n, tmp_path / "results")
    expected = len(paper_grid("cuda")[:n])
    for table in (3, 5, 6):
        page = report.table_page(table, folder)
        frame = page.wide.data
        ours = frame[[c for c in frame.columns if c[0] == "ours: paper's protocol"]]
        assert not ours.empty and all(CELL.match(v) for v in ours.to_numpy().ravel()), ours
        assert not re.search(r"\bnan\b", frame.to_string() + page.wide_notes)
        assert not any(c[0].startswith("ours, reduced") for c in frame.columns)     # no reduced record here
        filled = sum("(n=" in v for v in ours.to_numpy().ravel())
        assert (filled == 0) == (expected == 0) or table != 3
        if filled < ours.size:
            assert "- —: no record yet." in page.wide_notes
    per_class = report.per_class_page(folder)
    assert report.figures.figure_problems(per_class.fig6) == []
    assert report.figures.figure_problems(per_class.fig7) == []
    runs = report.runs_by_protocol(load_records(folder), paper_grid())
    assert (runs["total"], runs["paper"], runs["grid_done"], runs["reduced"]) == (expected, expected, expected, 0)
    assert runs["reduced_words"] == "none"


def test_all_paper_protocol_records_fill_table3(tmp_path):
    folder = grid_records(None, tmp_path / "results")
    page = report.table_page(3, folder)
    frame = page.wide.data
    col = ("ours: paper's protocol", "CIFAR-10-LT, ResNet-32", "ρ=100")
    assert frame.loc["CE loss (ce)", col] == "24.00 ± 4.00 (n=3)"                # seeds 0-2 of CE: 20, 24, 28
    assert frame.loc["KPS loss (Ours) (kps_ga)", col].endswith("(n=3)")
    assert frame.loc["↳ kps_ga, GA: authors' per-sample row scale", col].endswith("(n=3)")
    assert frame.loc["↳ kps_ga, GA: authors' per-sample row scale; lr: authors' schedule; m_max 0.2; "
                     "subset_seed 666", col].endswith("(n=1)")
    # precision and evaluation cadence pool (the provenance names them): no letter in any cell
    assert "[a]" not in page.wide_notes
