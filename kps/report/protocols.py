"""How the result pages name a protocol: its column group or panel title, its
preset and backbone in words (a reduced protocol's half-width ResNet-32 on 16 px
is never called plain "ResNet-32"), all read from :data:`kps.configs.PRESETS`;
and how many records each protocol has, for the landing page."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kps.configs import PRESETS, Preset, RunConfig
from kps.datasets import DATASETS
from kps.report.paper import BACKBONE_TITLES, DATASET_VARIANTS

_FRACTIONS = {0.5: "half", 0.25: "quarter"}


def protocol_preset(protocol: str, dataset: str) -> Preset | None:
    """The preset of ``protocol`` ('paper' or a reduced one) that runs on the paper's
    ``dataset`` (a key of :data:`kps.report.paper.DATASET_VARIANTS`), or None."""
    variants = set(DATASET_VARIANTS.get(dataset, (dataset,)))
    for preset in PRESETS.values():
        if preset.protocol == protocol and variants & set(preset.datasets):
            return preset
    return None


def backbone_title(preset: Preset, arch: str | None = None) -> str:
    """The network ``arch`` (default the preset's) at ``preset``'s width and input side
    in words: 'ResNet-32' at the paper's, else e.g. 'ResNet-32 at half width, 16 px'
    (against the dataset's own preset)."""
    arch = arch or preset.arch
    name = BACKBONE_TITLES.get(arch, arch)
    own = _own(preset)
    parts = []
    if preset.width != own.width:
        ratio = preset.width / own.width
        parts.append(f"at {_FRACTIONS.get(ratio, f'{ratio:g}x')} width")
    if preset.image_size != own.image_size:
        parts.append(f"{preset.image_size} px")
    return f"{name} {', '.join(parts)}" if parts else name


def _own(preset: Preset) -> Preset:
    """The paper's preset of the dataset ``preset`` runs on."""
    return PRESETS[DATASETS[preset.datasets[0]].preset] if preset.datasets else preset


def protocol_group(protocol: str) -> str:
    """The head of the column group (or panel) that holds our runs of ``protocol``."""
    return "ours: paper's protocol" if protocol == "paper" else f"ours, reduced: {protocol} protocol"


def network_summary(preset: Preset, arch: str | None = None) -> str:
    """What ``preset`` trains, in words: 'ResNet-32, 32 px, 200 epochs', or for a
    reduced one e.g. 'ResNet-32 at half width, 16 px, 70 epochs' (``arch``: see
    :func:`backbone_title`)."""
    size = f"{preset.image_size} px, " if preset.image_size == _own(preset).image_size else ""  # else named already
    return f"{backbone_title(preset, arch)}, {size}{preset.epochs} epochs"


def protocol_summary(preset: Preset) -> str:
    """One line on ``preset``: 'preset `cifar10_lt` (Table 2): ResNet-32, 32 px, 200
    epochs' (:func:`network_summary`)."""
    table2 = " (Table 2)" if preset.protocol == "paper" else ""
    return f"preset `{preset.name}`{table2}: {network_summary(preset)}"


def runs_by_protocol(records: Sequence[Mapping[str, Any]], grid: Sequence[RunConfig]) -> dict[str, Any]:
    """What has been run, for the landing page: ``total`` full-schedule records;
    ``paper`` of them at the paper's protocol, ``grid_done`` of the ``grid_runs`` runs
    of ``grid`` (the paper-protocol grid); ``reduced`` at a reduced protocol, and
    ``reduced_words``, e.g. 'the CPU-scale protocol: ResNet-32 at half width, 16 px,
    70 epochs' (with each protocol's count where there are several; 'none' without
    any); ``short``: records shorter than their protocol's schedule (not counted above)."""
    from kps.report.records import grid_records, preset_of, protocol_of

    full = [r for r in records if r["epochs"] == r["preset_epochs"]]
    by: dict[str, list[Mapping[str, Any]]] = {}
    for r in full:
        by.setdefault(protocol_of(r["config"]), []).append(r)
    reduced = {p: rs for p, rs in by.items() if p != "paper"}
    words = []
    for protocol, rs in reduced.items():
        networks = "; ".join(dict.fromkeys(network_summary(preset_of(r["config"])) for r in rs))
        count = f"{len(rs)} at " if len(reduced) > 1 else ""
        words.append(f"{count}the {protocol} protocol: {networks}")
    done, _ = grid_records(full, grid)
    return {"total": len(full), "paper": len(by.get("paper", [])), "grid_done": len(done), "grid_runs": len(grid),
            "reduced": sum(len(rs) for rs in reduced.values()), "reduced_words": "; ".join(words) or "none",
            "short": len(records) - len(full)}
