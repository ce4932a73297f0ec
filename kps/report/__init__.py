"""The result pages' functions, one module per job:

- :mod:`kps.report.records`: seed summaries, groups and labels of our runs;
- :mod:`kps.report.paper`: the paper's numbers and labels, Tables 1-2 recomputed;
- :mod:`kps.report.tables`: the paper's Tables 3-7 beside our records, the GA-variant comparison;
- :mod:`kps.report.provenance`: where records and bench files came from, and the notes on them;
- :mod:`kps.report.figures`: the data and drawing of Figs. 5-7 and of the gradient page;
- :mod:`kps.report.benchfiles`: the keys of the bench's files, read in one place;
- :mod:`kps.report.speed`: the Speed page.

The functions return values, DataFrames and figures; the notebooks and book
pages place them among their Markdown.  The names the notebooks, book pages and
other kps modules import are re-exported here."""

from kps.report.benchfiles import BENCH_SCHEMA, bench_files, read_bench, read_grids
from kps.report.figures import (GRADIENT_FORMS, PerClassPage, gradient_table, group_names, per_class_figure,
                                per_class_page, per_group_error_table, head_tail_table, toy_angles, toy_table)
from kps.report.paper import (PAPER_COLUMNS, dataset_title, not_in_paper, paper_label, read_paper_numbers,
                              read_paper_table1, table1, table1_page, table2, table2_page)
from kps.report.provenance import (ProvenanceNote, note_for, provenance_footnotes, provenance_table,
                                   provenance_view, read_provenance_notes, record_file, record_wall_note,
                                   segments_label, stopped_epochs, wall_note_for)
from kps.report.protocols import (backbone_title, network_summary, protocol_group, protocol_preset, protocol_summary,
                                  runs_by_protocol)
from kps.report.style import page_table
from kps.report.paper import find_repo_root
from kps.report.records import (NOT_IMPLEMENTED, NOT_RUN, ErrorSummary, RunsOverview,
                                format_summary, grid_records, matching_records, precision_label, preset_of, protocol_of,
                                protocols, run_label, runs_overview, seed_groups, setting_label, summarize,
                                variant_label)
from kps.report.speed import (SPEED_TARGETS, CpuProjection, SpeedPage, bench_table, contender_table, contender_title,
                              cpu_bench_facts, cpu_bench_table, cpu_benches, cpu_run_projection, grid_cost_words,
                              grid_facts, grid_table, projected_minutes,
                              speed_chart, speed_page, speed_summary, speed_targets)
from kps.report.tables import (MISSING, NOT_HERE, TablePage, WideTable, comparison_table, detail_table,
                               ga_variant_comparison, ga_variant_per_class, ga_variant_view, ours_datasets,
                               setting_effects, table_page, table_records, wide_table)
from kps.data import train_class_counts  # the dataset builders' counts, which Table 1 summarises

__all__ = [
    "BENCH_SCHEMA", "bench_files", "read_bench", "read_grids",
    "GRADIENT_FORMS", "PerClassPage", "gradient_table", "group_names", "per_class_figure", "per_class_page",
    "per_group_error_table", "head_tail_table", "toy_angles", "toy_table",
    "PAPER_COLUMNS", "dataset_title", "not_in_paper", "paper_label", "read_paper_numbers", "read_paper_table1",
    "table1", "table1_page", "table2", "table2_page",
    "ProvenanceNote", "note_for", "provenance_footnotes", "provenance_table", "provenance_view",
    "read_provenance_notes", "record_file", "record_wall_note", "segments_label", "stopped_epochs", "wall_note_for",
    "backbone_title", "network_summary", "protocol_group", "protocol_preset", "protocol_summary", "runs_by_protocol",
    "page_table",
    "NOT_IMPLEMENTED", "NOT_RUN", "ErrorSummary", "RunsOverview", "find_repo_root", "format_summary",
    "grid_records", "matching_records", "precision_label", "preset_of", "protocol_of", "protocols", "run_label", "runs_overview", "seed_groups", "setting_label", "summarize",
    "variant_label",
    "SPEED_TARGETS", "CpuProjection", "SpeedPage", "bench_table", "contender_table", "contender_title", "cpu_bench_facts",
    "cpu_bench_table", "cpu_benches", "cpu_run_projection", "grid_cost_words", "grid_facts", "grid_table", "projected_minutes", "speed_chart", "speed_page",
    "speed_summary", "speed_targets",
    "MISSING", "NOT_HERE", "TablePage", "WideTable", "comparison_table", "detail_table", "ga_variant_comparison",
    "ga_variant_per_class", "ga_variant_view", "ours_datasets", "setting_effects", "table_page", "table_records",
    "wide_table",
    "train_class_counts",
]
