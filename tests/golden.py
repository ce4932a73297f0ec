"""Golden runs: short CPU runs whose whole records (timing aside) were written once
by the trainer at a fixed commit (``golden_records.json``, with that commit), so
that any later change of the training code that alters a number fails
``test_golden.py``.

Float results depend on the CPU's kernels (oneDNN picks them by instruction set:
the same code gives other low bits on an AMD EPYC than on an Intel Xeon), so the
file holds one set per CPU model, keyed by the device name the records carry.

Add this machine's set, or rewrite it (only on purpose, when a change of the numbers
is intended and said in its commit):  ``python tests/golden.py --write``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch
from synthetic import strip_timing, synthetic_data, tiny_overrides

from kps.configs import RunConfig, make_config
from kps.env import device_name
from kps.env import git_state
from kps.train import train

GOLDEN = Path(__file__).with_name("golden_records.json")

# every switch of Algorithm 1 that the schedule can turn: GA at epoch 2, DRW at epoch 2,
# mixup, EQL's own random draws, the prior bias, channels_last, both GA readings
RUNS: dict[str, dict] = {
    "ce": {},
    "ldam_drw": dict(drw_epoch=2),
    "kps": {},
    "kps_drw": dict(drw_epoch=2),
    "kps_ga": dict(ga_switch_epoch=2),
    "kps_ga.official": dict(method="kps_ga", ga_switch_epoch=2, ga_variant="official"),
    "kps_ga_mixup": dict(ga_switch_epoch=2),
    "eql": dict(counts=(300, 20, 16, 12, 10, 8, 6, 5, 4, 1)),  # a class below EQL's 5e-3 frequency
    "cb_focal": dict(channels_last=True),
    "la": dict(seed=1),
}
OVERRIDES = dict(epochs=4, decay_epochs=(3,), eval_every=2)


def this_device() -> str:
    return device_name(torch.device("cpu"))


def golden_records() -> dict[str, dict]:
    """Each golden run's record without its timing, trained now on synthetic data."""
    torch.set_num_threads(1)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in RUNS.items():
            extra = dict(extra)
            method = extra.pop("method", name)
            data = synthetic_data(**({"counts": extra.pop("counts")} if "counts" in extra else {}))
            config = make_config("cifar10", method, **tiny_overrides(**OVERRIDES, **extra))
            record = train(config, out=Path(tmp) / name, data=data, quiet=True)
            out[name] = json.loads(json.dumps(strip_timing(record)))
    return out


def saved_records(device: str) -> dict | None:
    """The golden set of ``device`` ({"commit", "dirty", "records"}), or None.  Config keys
    added after a set was written are filled with their defaults, the value those runs had."""
    saved = json.loads(GOLDEN.read_text())["by_device"].get(device)
    if saved is None:
        return None
    defaults = {f: getattr(RunConfig, f) for f in RunConfig.keys() if hasattr(RunConfig, f)}
    for record in saved["records"].values():
        record["config"] = {**{k: v for k, v in defaults.items() if k not in record["config"]}, **record["config"]}
    return saved


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/golden.py --write   (writes this CPU's set in tests/golden_records.json)")
    commit, dirty = git_state()
    everything = json.loads(GOLDEN.read_text())
    everything["by_device"][this_device()] = {"commit": commit, "dirty": dirty, "records": golden_records()}
    GOLDEN.write_text(json.dumps(everything, indent=1) + "\n")
    print(f"wrote the set of {this_device()} in {GOLDEN} at commit {commit} (dirty: {dirty})")
