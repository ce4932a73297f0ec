"""Golden runs: short CPU runs whose whole records (timing aside) were written once
by the trainer at a fixed commit (``golden_records.json``, with that commit), so
that any later change of the training code that alters a number fails
``test_golden.py``.

Rewrite the file (only on purpose, when a change of the numbers is intended and
said in its commit):  ``python tests/golden.py --write``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch
from synthetic import strip_timing, synthetic_data, tiny_overrides

from kps.configs import make_config
from kps.train import git_state, train

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


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/golden.py --write   (rewrites tests/golden_records.json)")
    commit, dirty = git_state()
    GOLDEN.write_text(json.dumps({"commit": commit, "dirty": dirty, "records": golden_records()}, indent=1) + "\n")
    print(f"wrote {GOLDEN} at commit {commit} (dirty: {dirty})")
