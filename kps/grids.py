"""The named lists of runs the site's results come from (:data:`GRIDS`), beside the
presets they train: the CPU-scale protocol's grid, the paper protocol's grid (on a CPU
or a GPU), a GPU job's list and the precision check's.  ``python -m kps train-grid
--grid NAME`` hands one to the workers of :mod:`kps.runner`."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from kps.configs import RunConfig, authors_code_overrides, fast_path, make_config

__all__ = ["GRIDS", "ROWS", "CPU_GRID_ORDER", "CPU_GRID_SEEDS", "CPU_GRID_IMBALANCES", "cpu_grid",
           "PAPER_HEADLINE", "PAPER_OTHERS", "PAPER_GRID_SEEDS", "PAPER_GRID_EVAL", "paper_grid", "gpu_grid",
           "bf16_check", "bf16_check_paper"]

# Every row the grids train: its name on the site (kps.report.validity.short_name of its
# configs) -> (method, config overrides).  The three KPS-GA rows: eq. 25 as written, the
# authors' per-sample row scale alone, and the authors' whole CIFAR setting (--authors-code).
ROWS: dict[str, tuple[str, dict[str, Any]]] = {
    "ce": ("ce", {}),
    "ldam_drw": ("ldam_drw", {}),
    "kps": ("kps", {}),
    "kps_drw": ("kps_drw", {}),
    "kps_ga": ("kps_ga", {}),
    "kps_ga, authors' GA": ("kps_ga", {"ga_variant": "official"}),
    "kps_ga, authors' code": ("kps_ga", authors_code_overrides("cifar10-jpeg")),
    "focal": ("focal", {}),
    "cb_focal": ("cb_focal", {}),
    "cosface": ("cosface", {}),
    "arcface": ("arcface", {}),
    "la": ("la", {}),
    "eql": ("eql", {}),
    "kps_ga_mixup": ("kps_ga_mixup", {}),
}

# The CPU-scale grid fills the rows in this order.
CPU_GRID_ORDER: tuple[str, ...] = tuple(ROWS)
CPU_GRID_SEEDS = (0, 1, 2)
CPU_GRID_IMBALANCES = (100.0,)  # its rho=50 half was stopped: those cores train the paper protocol


def cpu_grid(imbalances: Sequence[float] = CPU_GRID_IMBALANCES, seeds: Sequence[int] = CPU_GRID_SEEDS,
             dataset: str = "cifar10-jpeg") -> list[RunConfig]:
    """The CPU-scale protocol's grid (preset ``cifar10_lt_small``) in its order: per
    imbalance, each row of :data:`CPU_GRID_ORDER` for every seed, then the next row.
    In fp32 with channels_last, as its records were made (the bf16 check pairs bf16
    runs with them), on any CPU."""
    return [make_config(dataset, method, preset="cifar10_lt_small", imbalance=imbalance, seed=seed,
                        channels_last=True, **overrides)
            for imbalance in imbalances for method, overrides in (ROWS[r] for r in CPU_GRID_ORDER)
            for seed in seeds]


# The paper protocol's grid (preset ``cifar10_lt``, Table 2, 200 epochs), in the order it
# is filled, on a CPU or a GPU alike: seeds 0-2 of the four headline rows (seed-major,
# so that each seed completes the four-way comparison), then seed 0 of the ten others.
PAPER_HEADLINE: tuple[str, ...] = ("ce", "ldam_drw", "kps_ga", "kps_ga, authors' GA")
PAPER_OTHERS: tuple[str, ...] = ("kps", "kps_drw", "kps_ga, authors' code", "kps_ga_mixup", "focal", "cb_focal",
                                 "cosface", "arcface", "la", "eql")
PAPER_GRID_SEEDS = (0, 1, 2)
# Evaluation every 10 epochs, and every epoch from the first lr decay (epoch 160,
# 0-indexed) on, where the best epoch lies (both paper-protocol GPU records, evaluated
# every epoch, have their best after it); the site's Speed page measures the cost.
PAPER_GRID_EVAL: dict[str, Any] = {"eval_every": 10, "eval_dense_from": 160}


def paper_grid(device_type: str = "cpu", imbalance: float = 100.0, dataset: str = "cifar10-jpeg"
               ) -> list[RunConfig]:
    """The paper protocol's grid at ``imbalance``, in its order, with the fast path
    measured on ``device_type`` (:func:`kps.configs.fast_path`) and :data:`PAPER_GRID_EVAL`."""
    def config(row: str, seed: int) -> RunConfig:
        method, overrides = ROWS[row]
        return make_config(dataset, method, imbalance=imbalance, seed=seed, **fast_path(device_type),
                           **PAPER_GRID_EVAL, **overrides)

    return ([config(row, seed) for seed in PAPER_GRID_SEEDS for row in PAPER_HEADLINE]
            + [config(row, 0) for row in PAPER_OTHERS])


def gpu_grid(seeds: Sequence[int] = PAPER_GRID_SEEDS, dataset: str = "cifar10-jpeg") -> list[RunConfig]:
    """A GPU job's list: the paper protocol's grid at rho=100 (:func:`paper_grid`), then
    seeds 0-2 of every row at rho=50."""
    rho50 = [make_config(dataset, m, imbalance=50.0, seed=seed, **fast_path("cuda"), **PAPER_GRID_EVAL, **o)
             for seed in seeds for m, o in (ROWS[r] for r in PAPER_HEADLINE + PAPER_OTHERS)]
    return paper_grid("cuda", dataset=dataset) + rho50


def bf16_check() -> list[RunConfig]:
    """bf16 autocast on a CPU against fp32 (book/results.md): seeds 0-2 of ce and
    kps_ga at the CPU-scale protocol in bf16, each paired with the CPU-scale grid's
    fp32 record of its seed, and the first 10 epochs of ce seed 0 at the paper's
    protocol in bf16 (its fp32 twin: the same config with bf16 off).  Its records
    go to a root of their own (``--out results/bf16-check/bf16``), since precision
    is not part of a record's name."""
    reduced = [make_config("cifar10-jpeg", m, preset="cifar10_lt_small", seed=s, channels_last=True, bf16=True)
               for m in ("ce", "kps_ga") for s in CPU_GRID_SEEDS]
    return reduced + [bf16_check_paper(bf16=True)]


def bf16_check_paper(bf16: bool) -> RunConfig:
    """The precision check's paper-protocol pair: ce seed 0, its first 10 epochs."""
    return make_config("cifar10-jpeg", "ce", seed=0, epochs=10, eval_every=10, channels_last=True, bf16=bf16)


GRIDS: dict[str, Callable[[], list[RunConfig]]] = {"paper": paper_grid, "cpu": cpu_grid, "gpu": gpu_grid,
                                                   "bf16-check": bf16_check}
