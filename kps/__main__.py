"""Command line: ``python -m kps train|train-grid|list|download|reproduce``.

Errors in the input (unknown method/dataset/key, bad values, missing data,
unwritable folders, an existing record, a diverged run) end with a one-line
message on stderr and exit status 2 (1 for a diverged run); nothing is left
half-written.  ``reproduce`` is provided by the module ``kps.reproduce``
(``main(argv) -> int``), loaded only when asked for.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

# Subcommands implemented in their own module, imported on use: name -> (module, help).
EXTERNAL_COMMANDS: dict[str, tuple[str, str]] = {
    "reproduce": ("kps.reproduce", "regenerate the paper's tables and figures from results/ (see kps.reproduce)"),
}

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 1
EXIT_INTERRUPTED = 130  # as a shell reports SIGINT


def _parse_value(text: str) -> Any:
    """A --set value: JSON if it parses (numbers, true/false, null, lists such as
    [160,180]); a comma-separated list (160,180) as a list of such values; else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        if "," in text:
            return [_parse_value(part.strip()) for part in text.split(",")]
        return text


def _overrides(args: argparse.Namespace, dataset: str | None = None, method: str | None = None) -> dict[str, Any]:
    """Config overrides from --config FILE, --authors-code, --set KEY=VALUE and the
    dedicated options (later ones win).  --authors-code is applied for ``dataset`` x
    ``method`` only (its keys depend on both: kps.configs.authors_code_overrides)."""
    from kps.configs import SPEED_KEYS, authors_code_overrides, fast_path

    values: dict[str, Any] = {}
    if args.config:
        path = Path(args.config)
        try:
            loaded = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read config file {path}: {err}") from err
        if not isinstance(loaded, dict):
            raise ValueError(f"config file {path} must hold a JSON object")
        values.update(loaded)
    if args.authors_code and dataset is not None and method is not None:
        values.update(authors_code_overrides(dataset, method))
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        values[key.strip()] = _parse_value(value)
    if args.fast:
        values.update(fast_path("cuda" if _device(args.device).startswith("cuda") else "cpu"))
    for key in ("preset", "imbalance", "epochs", *SPEED_KEYS):
        value = getattr(args, key, None)
        if value is not None:
            values[key] = value
    return values


def _device(name: str) -> str:
    """The torch device of ``--device name``; ValueError naming the valid choices."""
    import torch

    from kps.env import check_device_name

    check_device_name(name)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: no CUDA GPU is visible on this machine; use --device cpu "
                         "(or --device auto, which picks a GPU when there is one)")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise ValueError(f"--device {name}: this machine has {count} GPU{'s' if count > 1 else ''} "
                         f"(cuda:0{f'..cuda:{count - 1}' if count > 1 else ''})")
    return name


def _configs(args: argparse.Namespace, methods: Sequence[str] | None, seeds: Sequence[int] | None) -> list:
    """RunConfigs for every (method, seed); dataset, method and seed may also come
    from --config (the command-line options win)."""
    from kps.configs import make_config

    values = _overrides(args)
    dataset = args.dataset or values.get("dataset")
    methods = methods or ([values["method"]] if "method" in values else None)
    seeds = seeds if seeds is not None else [values.get("seed", 0)]
    for key in ("dataset", "method", "seed"):
        values.pop(key, None)
    if dataset is None:
        raise ValueError("give --dataset (or a config file with a dataset)")
    if not methods:
        raise ValueError("give --method (or a config file with a method)")
    configs = []
    for m in methods:
        values = {k: v for k, v in _overrides(args, dataset, m).items() if k not in ("dataset", "method", "seed")}
        configs += [make_config(dataset, m, seed=s, **values) for s in seeds]
    return configs


def _add_run_options(p: argparse.ArgumentParser, required: Any = None) -> None:
    """The options of train and train-grid; --dataset goes to the group ``required`` where given."""
    (required or p).add_argument("--dataset", metavar="NAME",
                                 help="cifar10, cifar100, cifar10-jpeg, imagenet_lt, inat2018")
    p.add_argument("--preset", help="a preset of 'python -m kps list' (default: the dataset's Table 2 preset; "
                                    "cifar10_lt_small: the CPU-scale protocol)")
    p.add_argument("--imbalance", type=float, help="max/min class size (CIFAR: 100 or 50; default 100)")
    p.add_argument("--epochs", type=int, help="train at most the preset's epochs: fewer makes a short run (the "
                                              "schedule is kept, the record is named .epochs-N); a longer schedule "
                                              "is another preset")
    p.add_argument("--data-root", default="data", help="folder holding the datasets (default: data)")
    p.add_argument("--out", default="results", help="records go to OUT/<dataset>/<method>/imb<r>/seed<k>.json")
    p.add_argument("--checkpoints", help="checkpoint folder (default: OUT/.checkpoints, beside the records)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (the GPU of index N), auto (cuda where a GPU "
                                                    "is visible, else cpu); default auto")
    p.add_argument("--restart", dest="resume", action="store_false",
                   help="start again at epoch 1, replacing the run's unfinished checkpoint (default: continue "
                        "from it, as the notebooks do; with --force a finished run trains again from epoch 1)")
    p.add_argument("--resume", dest="resume", action="store_true", help=argparse.SUPPRESS)  # the default
    p.set_defaults(resume=True)
    p.add_argument("--force", action="store_true", help="overwrite an existing record")
    p.add_argument("--quiet", action="store_true", help="no progress (bar, or a line per epoch where stderr is not "
                                                        "a terminal); the result is still printed")
    p.add_argument("--workers", type=int, default=8, help="DataLoader workers for the large-image datasets")
    p.add_argument("--config", help="JSON file with RunConfig keys (kps.configs.RunConfig)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override any config key, e.g. --set m_max=0.2 --set decay_epochs=[160,180]")
    p.add_argument("--authors-code", action="store_true",
                   help="the authors' code's setting (kps.configs.authors_code_overrides): for every method their "
                        "lr schedule, and on CIFAR their subset seed 666; for the KPS methods also their GA row "
                        "scale and margins, and on CIFAR m_max 0.2 (the KPS loss's settings, which other methods "
                        "do not have)")
    fast = p.add_argument_group("fast path")
    fast.add_argument("--fast", action="store_true",
                      help="the switches measured fastest on the device (kps.configs.fast_path): on CPU "
                           "channels_last, and bf16 autocast where the CPU has bf16 units; on CUDA channels_last, "
                           "fused SGD, bf16 autocast, torch.compile reduce-overhead")
    fast.add_argument("--channels-last", dest="channels_last", action="store_true", default=None)
    fast.add_argument("--bf16", action="store_true", default=None, help="bf16 autocast of the backbone (CUDA, or a CPU with AMX or AVX512-BF16)")
    fast.add_argument("--fused-sgd", dest="fused_sgd", action="store_true", default=None)
    fast.add_argument("--compile", help="torch.compile mode of the training step and the evaluation forward: "
                                        "none (eager), default, reduce-overhead, max-autotune, "
                                        "max-autotune-no-cudagraphs")


def _check_at_least(minimum: int, args: argparse.Namespace, *names: str) -> None:
    """Each integer option of ``names`` (None: not given) is >= ``minimum``; else a
    ValueError naming that option alone."""
    for name in names:
        value = getattr(args, name, None)
        if value is not None and value < minimum:
            raise ValueError(f"--{name} must be an integer >= {minimum}, got {value}")


def _use_threads(requested: int | None, device: str, processes: int = 1) -> int:
    """Set torch's threads for a run on ``device``: ``requested``, else
    :func:`kps.env.default_threads` (1 on CPU); one line on stderr where ``processes``
    such runs would oversubscribe the machine (:func:`kps.env.oversubscription`)."""
    import torch

    from kps.env import default_threads, oversubscription

    threads = requested or default_threads(device.split(":")[0])
    torch.set_num_threads(threads)
    warning = oversubscription(threads * processes)
    if warning and os.environ.get("RANK", "0") == "0":
        print(warning, file=sys.stderr, flush=True)
    return threads


def cmd_train(args: argparse.Namespace) -> int:
    from kps.results import config_record_path
    from kps.train import train

    _check_at_least(1, args, "threads")
    _check_at_least(0, args, "workers")
    (config,) = _configs(args, [args.method] if args.method else None, None if args.seed is None else [args.seed])
    device = _device(args.device)
    _use_threads(args.threads, device, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    record = train(config, data_root=args.data_root, out=args.out, device=device,
                   resume=args.resume, quiet=args.quiet, force=args.force, checkpoint_dir=args.checkpoints,
                   num_workers=args.workers)
    if os.environ.get("RANK", "0") == "0":  # the result, even with --quiet (which silences progress only)
        print(f"{config_record_path(args.out, config)}: top-1 error {record['top1_error']:.2f} (final), "
              f"{record['best_top1_error']:.2f} (best, epoch {record['best_epoch']}), "
              f"{record['wall_time_s']:.1f} s on {record['device']}")
    return 0


def cmd_train_grid(args: argparse.Namespace) -> int:
    _check_at_least(1, args, "jobs", "threads")
    _check_at_least(0, args, "workers")
    configs = _grid_configs(args)
    if args.jobs > 1 and args.force:
        raise ValueError("train-grid --force retrains runs that have a record; with --jobs N every worker would "
                         "retrain every run: use --force without --jobs")
    device = _device(args.device)
    if args.jobs > 1:
        from kps.env import default_threads, oversubscription
        from kps.runner import spawn_workers

        threads = args.threads or default_threads(device.split(":")[0])
        warning = oversubscription(threads * args.jobs)
        if warning:
            print(warning, file=sys.stderr, flush=True)
        child = _strip_option(_strip_option(list(args.argv), "--jobs"), "--threads")
        return spawn_workers(child, args.jobs, threads)
    # a worker of --jobs N runs with the threads its parent gave it (OMP_NUM_THREADS) and says nothing
    if not args.worker:
        _use_threads(args.threads, device)
    from kps.runner import run_worker

    quiet = args.quiet or args.worker
    failed = run_worker(configs, data_root=args.data_root, out=args.out, checkpoint_dir=args.checkpoints,
                        device=device, force=args.force, resume=args.resume, quiet=quiet,
                        log=lambda line: print(line, flush=True))
    return 1 if failed else 0


def _grid_configs(args: argparse.Namespace) -> list:
    """--config-list FILE (a JSON list of configs, as bench/grid.py writes), --grid NAME
    (kps.grids.GRIDS) or --methods x --seeds."""
    from kps.configs import RunConfig, read_config_list
    from kps.grids import GRIDS

    if args.config_list is not None:
        if args.grid or args.methods or args.dataset:
            raise ValueError("--config-list names its own runs; give it, or --grid, or --dataset/--methods")
        return read_config_list(args.config_list)
    if args.grid is None:
        if not args.methods:
            raise ValueError("train-grid needs --methods (or --grid NAME: " + ", ".join(GRIDS) + ")")
        return _configs(args, args.methods, args.seeds)
    if args.grid not in GRIDS:
        raise ValueError(f"unknown grid {args.grid!r}; valid: {', '.join(GRIDS)}")
    if args.methods or args.dataset:
        raise ValueError("--grid names its own dataset, methods and seeds; give --grid or --dataset/--methods")
    # e.g. --epochs 1 for a smoke test (short runs have records of their own); built anew, so that
    # an unknown key or a bad value is named as for --methods
    return [RunConfig.from_dict({**c.to_dict(), **_overrides(args, c.dataset, c.method)}) for c in GRIDS[args.grid]()]


def _strip_option(argv: list[str], name: str) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == name:
            skip = True
        elif not a.startswith(name + "="):
            out.append(a)
    return out


def cmd_list(args: argparse.Namespace) -> int:
    from kps.configs import METHODS, PRESETS
    from kps.datasets import DATASETS

    print("presets (Table 2, then reduced protocols; --preset NAME, default the dataset's own):")
    for p in PRESETS.values():
        default = ", ".join(d for d in p.datasets if DATASETS[d].preset == p.name)
        where = f"datasets: {', '.join(p.datasets)}" + (f"; default for {default}" if default else "")
        width = f" width {p.width}," if p.arch == "resnet32" else ""
        print(f"  {p.name:<16} {p.protocol} protocol: {p.arch},{width} {p.image_size} px, batch {p.batch_size}, "
              f"lr {p.lr}, wd {p.weight_decay:g}, warm-up {p.warmup_epochs}, {p.epochs} epochs, decay "
              f"x{p.decay_ratio:g} at {list(p.decay_epochs)}, m_max {p.m_max}  [{where}]")
        for key, why in p.not_in_paper.items():
            print(f"  {'':<16}   {key} = {getattr(p, key)}: {why}")
    print("methods:")
    for name, m in METHODS.items():
        extras = [w for w, on in (("DRW", m.drw), ("GA", m.ga), ("mixup", m.mixup)) if on]
        print(f"  {name:<13} loss {m.loss}, {m.head} head" + (f", {', '.join(extras)}" if extras else ""))
    print("datasets: " + ", ".join(DATASETS))
    from kps.grids import GRIDS

    for name, make in GRIDS.items():
        runs = make()
        presets = ", ".join(dict.fromkeys(c.preset for c in runs))
        print(f"grid {name}: {len(runs)} runs of preset {presets} (python -m kps train-grid --grid {name} --jobs N)")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from kps.data import download

    download(args.name, args.data_root)
    print(f"{args.name} is in {args.data_root}")
    return 0


def _external(name: str) -> Callable[[list[str]], int]:
    module_name = EXTERNAL_COMMANDS[name][0]
    if importlib.util.find_spec(module_name) is None:
        raise ValueError(f"'{name}' is not available: module {module_name} is not installed")
    return importlib.import_module(module_name).main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kps",
        description="KPS loss (Li, Cheung, Hu, TPAMI 2022) reproduction: train configurations of the paper "
                    "and write one JSON record per run.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train one configuration and write its record",
                       usage="python -m kps train --dataset NAME --method NAME [--seed K] [options]",
                       description="Train one configuration (Algorithm 1 with the Table 2 preset of the dataset).")
    required = p.add_argument_group("required (unless --config FILE gives them)")
    required.add_argument("--method", metavar="NAME", help="ce, focal, cb_focal, cosface, arcface, ldam_drw, la, eql, "
                                                           "kps, kps_drw, kps_ga, kps_ga_mixup")
    p.add_argument("--seed", type=int, help="training seed (default 0)")
    p.add_argument("--threads", type=int,
                   help="torch threads (default on CPU: 1, so that a busy neighbour cannot make the run crawl: "
                        "with one thread per core, every operation waits for its slowest thread; see "
                        "kps.env.default_threads.  On a machine of your own, --threads N, or train-grid --jobs N "
                        "for one single-threaded run per core.  Default on CUDA: one per core)")
    _add_run_options(p, required)
    p.set_defaults(func=cmd_train)

    g = sub.add_parser("train-grid", help="train several methods x seeds (data loaded once), or a named grid",
                       description="Train the configurations in order (kps.runner), loading the data once: "
                                   "those with a record are done (--force retrains them), checkpoints are "
                                   "resumed (--restart replaces them).  --jobs N: N worker processes take the "
                                   "configurations in order, each passing over those claimed by another worker, "
                                   "on CPU cores or on one GPU alike.  A later call continues where one stopped (Ctrl-C keeps every checkpoint).")
    g.add_argument("--methods", nargs="+")
    g.add_argument("--seeds", nargs="+", type=int, default=[0])
    g.add_argument("--grid", help="a named grid instead of --methods/--seeds: paper (the paper protocol at rho 100: "
                                  "seeds 0-2 of ce, ldam_drw and both KPS-GA readings, then seed 0 of ten more "
                                  "rows; kps.grids.paper_grid), cpu (the CPU-scale protocol's 14 rows x seeds 0-2 "
                                  "at rho 100, kps.grids.CPU_GRID_ORDER) or gpu (a GPU job: paper, then every "
                                  "row's seeds 0-2 at rho 50)")
    g.add_argument("--config-list", metavar="FILE", help="a JSON list of configs (RunConfig keys) to train in "
                                                        "order, instead of --grid or --methods")
    g.add_argument("--jobs", type=int, default=1,
                   help="worker processes (default 1); on CPU one per core, e.g. --jobs 2 on two cores")
    g.add_argument("--threads", type=int, help="threads per process (default on CPU: 1, as for train; on CUDA: one "
                                              "per core)")
    g.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    _add_run_options(g)
    g.set_defaults(func=cmd_train_grid)

    ls = sub.add_parser("list", help="show presets, methods and datasets")
    ls.set_defaults(func=cmd_list)

    d = sub.add_parser("download", help="fetch a dataset into the data root")
    d.add_argument("name", help="cifar10, cifar100 (torchvision, needs a network) or cifar10-jpeg (local pack)")
    d.add_argument("--data-root", default="data")
    d.set_defaults(func=cmd_download)

    for name, (_, text) in EXTERNAL_COMMANDS.items():
        e = sub.add_parser(name, help=text, add_help=False)
        e.set_defaults(external=name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    args.argv = argv
    try:
        if getattr(args, "external", None):
            return int(_external(args.external)(rest) or 0)
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as stop:
        where = getattr(stop, "where", None)  # kps.train.TrainingInterrupted says where the run stands
        again = "python -m kps " + " ".join(a for a in argv if a != "--restart")
        print(f"interrupted{': ' + where if where else ''}; the same command continues it: {again}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except RuntimeError as err:
        if type(err).__name__ != "TrainingDiverged":  # kps.train.TrainingDiverged, without importing torch here
            raise
        print(f"error: {err}", file=sys.stderr)
        return EXIT_DIVERGED


if __name__ == "__main__":
    import signal

    # A process started in the background by a shell inherits SIGINT ignored, and Python then
    # never raises KeyboardInterrupt: restore it, so that Ctrl-C and a grid's deadline (SIGINT)
    # stop a run at its checkpoint wherever the command was started from.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
