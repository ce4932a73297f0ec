"""Figs. 6-7 as a reader sees them: every series told apart, legends readable, inside the
figure and off the other panels (kps.report.figures.figure_problems), and the check
itself failing on figures broken on purpose."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from kps import report  # noqa: E402
from kps.configs import authors_code_overrides, make_config  # noqa: E402
from kps.report.figures import FIG6, FIG7, figure_problems, per_class_figure  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def record(method="kps_ga", seed=0, errors=None, **overrides):
    """A record with made-up per-class errors (tests only)."""
    cfg = make_config("cifar10-jpeg", method, imbalance=100.0, seed=seed, **overrides).to_dict()
    errors = errors or [10.0 * i + seed for i in range(10)]
    return {"config": cfg, "top1_error": 40.0, "best_top1_error": 39.0, "dataset_label": "CIFAR-10 (JPEG copy)",
            "per_group_errors": errors, "epochs": cfg["epochs"], "preset_epochs": cfg["epochs"]}


def bar_styles(ax) -> list[tuple]:
    """(face colour, hatch) of each bar series of ``ax``, one entry per series."""
    from matplotlib.container import BarContainer

    return [(tuple(round(c, 3) for c in bars.patches[0].get_facecolor()), bars.patches[0].get_hatch())
            for bars in ax.containers if isinstance(bars, BarContainer)]


def reduced_runs() -> list[dict]:
    small = {"preset": "cifar10_lt_small"}
    runs = []
    for seed in (0, 1, 2):
        runs += [record("kps", seed, **small), record("kps_drw", seed, **small), record("kps_ga", seed, **small),
                 record("kps_ga", seed, ga_variant="official", **small),
                 record("kps_ga", seed, **authors_code_overrides("cifar10-jpeg"), **small)]
    return runs


def test_every_series_has_its_own_look_and_the_legends_read():
    runs = reduced_runs() + [record("kps_ga", bf16=True), record("kps_ga", ga_variant="official", bf16=True),
                             record("kps_ga", seed=1, epochs=30)]
    fig, used, summary = per_class_figure(runs, "Fig. 6", FIG6)
    assert len(used) == len(runs) and figure_problems(fig) == []
    paper_ax, small_ax = fig.axes          # the paper's protocol first, the reduced one in a panel of its own
    assert "paper's protocol (ResNet-32, 32 px, 200 epochs)" in paper_ax.get_title()
    assert "reduced: CPU-scale protocol (ResNet-32 at half width, 16 px, 70 epochs)" in small_ax.get_title()
    styles = bar_styles(small_ax)
    assert len(styles) == 5 and len(set(styles)) == 5                   # kps, kps_drw and three kps_ga variants
    assert len({hatch for _, hatch in styles[2:]}) == 3                  # the kps_ga variants: a hatch each
    labels = [t.get_text().replace("\n", " ") for t in small_ax.get_legend().get_texts()]
    assert labels[2:] == ["kps_ga (n=3)", "kps_ga, GA: authors' per-sample row scale (n=3)",
                          "kps_ga, GA: authors' per-sample row scale; lr: authors' schedule; m_max 0.2; "
                          "subset_seed 666 (n=3)"]
    # one variant keeps its look in every panel
    paper_labels = [t.get_text().replace("\n", " ") for t in paper_ax.get_legend().get_texts()]
    assert paper_labels == ["kps: not run", "kps_drw: not run", "kps_ga (n=1)", "kps_ga [short run: 30 of 200 epochs] (n=1)",
                            "kps_ga, GA: authors' per-sample row scale (n=1)"]        # precision: the provenance's
    paper_styles = bar_styles(paper_ax)
    assert paper_styles[2][1] == styles[3][1] and len(set(paper_styles)) == 3   # the short run: its own shade
    assert {p["panel"].iloc[0] for p in summary} == {"CIFAR-10-LT: paper's protocol", "CIFAR-10-LT: CPU-scale (reduced)"}


def test_without_records_the_paper_protocol_panel_says_not_run():
    fig, used, summary = per_class_figure([], "Fig. 7", FIG7)
    (ax,) = fig.axes                       # no reduced or CIFAR-100 panel without their records
    assert used == [] and summary == [] and figure_problems(fig) == []
    assert "not run" in [t.get_text() for t in ax.texts]
    assert all(t.get_text().endswith(": not run") for t in ax.get_legend().get_texts())


def test_the_committed_records_draw_clean_figures():
    page = report.per_class_page()
    assert figure_problems(page.fig6) == [] and figure_problems(page.fig7) == []


def broken(kind: str):
    """A figure broken on purpose in one way (laid out once, as a careless figure is: a
    constrained layout would make room for a misplaced legend, except by squeezing)."""
    fig, axes = plt.subplots(2, 1, figsize=(9, 8), dpi=100, layout="constrained" if kind == "squeezed" else None)
    for ax in axes:
        ax.bar(range(10), range(10), label="a series")
        ax.set_xticks(range(10))
        ax.set_xticklabels([f"Head{i}" for i in range(10)])
    legend = {"outside": dict(loc="center left", bbox_to_anchor=(1.5, 0.5)),
              "over_next_panel": dict(loc="upper center", bbox_to_anchor=(0.5, -0.3)),
              "over_own_ticks": dict(loc="upper center", bbox_to_anchor=(0.5, 0.0)),
              "tiny": dict(fontsize=5)}.get(kind, {})
    if kind == "squeezed":   # a legend wide enough that the layout shrinks the panel to make room
        axes[0].legend([f"a very long legend label, number {i}, " * 2 for i in range(3)], loc="center left",
                       bbox_to_anchor=(1.0, 0.5))
    else:
        axes[0].legend(**legend)
    plt.close(fig)
    return fig


@pytest.mark.parametrize("kind, problem", [
    ("outside", "panel 0: legend reaches outside the figure"),
    ("over_next_panel", "panel 0: legend overlaps panel 1"),
    ("over_own_ticks", "panel 0: legend overlaps its own panel's labels or title"),
    ("tiny", "panel 0: legend text 6.9 px < 9 px"),
    ("squeezed", "panel 0: squeezed to"),
])
def test_figure_problems_fails_on_broken_figures(kind, problem):
    assert figure_problems(broken("fine")) == []
    found = figure_problems(broken(kind))
    assert any(p.startswith(problem) for p in found), found


def test_figure_problems_measures_text_as_shown():
    """A figure wider than the page's column is shown scaled down, and so is its text."""
    fig = broken("fine")
    assert figure_problems(fig, column_px=900) == []
    assert any("legend text" in p for p in figure_problems(fig, column_px=500))
