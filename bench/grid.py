"""The grid stage of the GPU job (bench/gpu_job.sh): a fixed plan, one command, SIGINT at the deadline.

* :func:`plan`: from the bench JSON the job's bench stage just wrote (bench/bench.py),
  how many worker processes (``--jobs``) and how many runs stacked per process
  (``--stack``): the measured aggregate epoch rate of one run alone, of S copies of
  one run stacked as one network (``stacked``) and of P runs in P separate processes
  (``processes``), all in the fast path's compile mode (``kps.configs.fast_path``).
  The fastest of the three is taken; stacked or separate processes only where they
  reached at least :data:`MARGIN` times the rate of one run alone and their training
  losses stayed within 10% of it (the same computation: they should agree to float
  noise).  Stacking and processes together are not measured, so never planned.
* ``run``: ``python -m kps train-grid --grid G --jobs J [--stack K] --fast --device D``
  (kps.runner: the workers take the grid's configurations in order, skip those with a
  record, resume checkpoints; the trainer checkpoints after every epoch) with records
  and checkpoints in a work folder; at the deadline the command gets SIGINT, so each
  worker stops its runs with their last finished epoch in their checkpoints (exit
  130), and a later job resumes them.  Then: ``results.tar`` (the new records, laid
  out as ``results/``), ``checkpoints.tar`` (``-2``, ``-3``: the unfinished runs'
  checkpoints, furthest-trained first, at most 15 MiB a part: the device tool returns
  files of at most 16 MiB) and ``runs.json`` (each configuration's status).
* ``env``, ``data``: the job's first stages (versions and the CUDA check; the JPEG
  pack verified, unpacked by the system tar, decoded once into its uint8 cache).

The plan and the interruption are tested on CPU (tests/test_bench.py); on a GPU the
plan's inputs (stacked, processes) are unmeasured so far.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

REPO = Path(__file__).resolve().parent.parent

__all__ = ["MARGIN", "Plan", "plan", "grid_configs", "pack_parts", "checkpoint_tar_name", "run_grid", "main"]

MARGIN = 1.2                        # a plan other than one run alone must beat it by this much
AGREE = 0.1                         # largest relative training-loss difference to the run alone
CHECKPOINT_TAR_LIMIT = 15 * 2**20   # the device tool returns files of at most 16 MiB,
CHECKPOINT_TAR_PARTS = 3            # at most 8 of them: 4 are the bench JSON, records, runs.json, job log
DATASET = "cifar10-jpeg"


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Plan:
    jobs: int   # worker processes (train-grid --jobs)
    stack: int  # runs stacked per process (train-grid --stack; 1: not stacked)
    why: str


def _agrees(measured: dict[str, Any]) -> bool:
    rel = (measured.get("train_loss_vs_alone") or {}).get("max_rel_diff")
    return rel is not None and rel <= AGREE


def plan(bench: dict[str, Any] | None) -> Plan:
    """The grid's plan from a bench result (module docstring); one worker, not stacked,
    where the bench lacks one run alone in the fast path's mode."""
    if not bench:
        return Plan(1, 1, "no bench result: one worker, not stacked")
    mode = _fast_path(bench.get("device_type", "cuda"))["compile"]
    alone = (bench.get("trainers") or {}).get(f"fast_{mode}")
    if not alone or not alone.get("epoch_s"):
        return Plan(1, 1, f"the bench has no fast_{mode} run alone: one worker, not stacked")
    rate = 1.0 / alone["epoch_s"]
    options = [(rate, 1, 1, f"one run alone ({rate:.3g} epochs/s in {mode})")]
    rejected = []
    for key, what in (("stacked", "stacked as one network"), ("processes", "in separate processes")):
        m = bench.get(key)
        if not m or m.get("compile") != mode:
            continue
        k, r = int(m["runs"]), float(m["epochs_per_s"])
        note = f"{k} runs {what}: {r:.3g} epochs/s, x{r / rate:.2f} one run alone"
        if not _agrees(m):
            rejected.append(f"{note}, but their losses differ from the run alone by more than {AGREE:.0%} "
                            "(or were not compared)")
        elif r < MARGIN * rate:
            rejected.append(f"{note}, below x{MARGIN:g}")
        else:
            options.append((r, k if key == "processes" else 1, k if key == "stacked" else 1, note))
    best = max(options, key=lambda o: o[0])
    rejected += [f"{o[3]}, slower" for o in options[1:] if o is not best]
    return Plan(best[1], best[2], best[3] + "".join(f"; not {n}" for n in rejected))


def _fast_path(device_type: str) -> dict[str, Any]:
    from kps.configs import fast_path

    return fast_path(device_type)


# --------------------------------------------------------------------------- the grid's configurations


def grid_configs(kps_args: Sequence[str]) -> list:
    """The configurations ``python -m kps train-grid <kps_args>`` trains, in its order
    (its own parser and grid builder, so the status below names exactly its runs)."""
    from kps.__main__ import train_grid_configs

    return train_grid_configs(kps_args)


def run_name(config) -> str:
    from kps.results import config_record_path

    return str(config_record_path("", config).with_suffix(""))


def status(configs: Sequence, records: Path, checkpoints: Path) -> list[dict[str, Any]]:
    """One row per configuration: ``done`` (its record, with its numbers), ``unfinished``
    (a checkpoint: epochs trained, epochs it holds) or ``not started``."""
    from kps.results import config_record_path, load_record
    from kps.checkpoints import checkpoint_path, read_progress

    rows = []
    for k, c in enumerate(configs):
        row: dict[str, Any] = {"run": run_name(c), "method": c.method, "seed": c.seed, "ga_variant": c.ga_variant,
                               "priority": k, "epochs_done": 0, "checkpoint_epochs": 0, "wall_s": None}
        record, ckpt = config_record_path(records, c), checkpoint_path(checkpoints, c)
        if record.exists():
            r = load_record(record)
            row.update(status="done", epochs_done=r["epochs"], checkpoint_epochs=r["epochs"],
                       wall_s=r["wall_time_s"], top1_error=r["top1_error"], best_top1_error=r["best_top1_error"],
                       stacked_runs=r["segments"][-1].get("stacked_runs", 1) if r.get("segments") else None,
                       record=str(record.relative_to(records)))
        elif ckpt.exists():
            p = read_progress(ckpt) or {}
            row.update(status="unfinished", epochs_done=p.get("next_epoch", 0),
                       checkpoint_epochs=p.get("checkpoint_next_epoch") or 0, wall_s=p.get("elapsed_s"),
                       checkpoint=str(ckpt.relative_to(checkpoints)))
        else:
            row["status"] = "not started"
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- packing


def checkpoint_tar_name(k: int) -> str:
    """Part k (0-based) of the unfinished runs' checkpoints: checkpoints.tar, checkpoints-2.tar, ..."""
    return "checkpoints.tar" if k == 0 else f"checkpoints-{k + 1}.tar"


def pack_parts(files: Sequence[tuple[Any, int]], limit: int, parts: int) -> list[list[Any]]:
    """(item, size) in order into at most ``parts`` groups of at most ``limit`` bytes
    each (an item goes into the first group with room; one that fits none is left out)."""
    groups: list[list[Any]] = []
    sizes: list[int] = []
    for item, size in files:
        k = next((k for k, used in enumerate(sizes) if used + size <= limit), None)
        if k is None and len(groups) < parts and size <= limit:
            groups.append([])
            sizes.append(0)
            k = len(groups) - 1
        if k is not None:
            groups[k].append(item)
            sizes[k] += size
    return groups


def _write_tar(target: Path, root: Path, files: Sequence[Path]) -> None:
    """An uncompressed tar of ``files`` (paths relative to ``root``), written atomically."""
    from kps.io import atomic_write_bytes

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in files:
            tar.add(path, arcname=str(path.relative_to(root)))
    atomic_write_bytes(target, buffer.getvalue())


# --------------------------------------------------------------------------- the run


def interrupt(proc: subprocess.Popen, grace_s: float, log: Callable[[str], None]) -> None:
    """SIGINT to ``proc`` (train-grid passes it on to its workers); after ``grace_s`` to its
    whole process group; after as long again SIGKILL, for as long as any process of the
    group lives (the checkpoints are written atomically after every epoch, so even that
    loses only the epochs in flight)."""
    def group_alive() -> bool:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    for sig, target in ((signal.SIGINT, "command"), (signal.SIGINT, "group"), (signal.SIGKILL, "group")):
        if proc.poll() is not None and not group_alive():
            return
        log(f"sending {sig.name} to the {target}")
        try:
            if target == "command" and proc.poll() is None:
                proc.send_signal(sig)
            else:
                os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        end = time.time() + grace_s
        while time.time() < end and (proc.poll() is None or group_alive()):
            time.sleep(0.2)
    proc.wait()


def run_grid(kps_args: Sequence[str], *, work: Path, out: Path, deadline: float, bench: dict | None = None,
             jobs: int | None = None, stack: int | None = None, existing: Path | None = None,
             grace_s: float = 20.0, poll_s: float = 1.0, stop: Callable[[], bool] | None = None,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Plan (:func:`plan`, or ``jobs`` / ``stack`` forced), train ``kps_args``' grid with
    records under ``work/results`` and checkpoints under ``work/checkpoints`` until it
    ends or the ``deadline`` (unix time; or ``stop()`` turns true) and then interrupt
    it, and pack what came of it into ``out``; returns the runs.json document.  Records
    of the grid under ``existing`` are copied in first (train-grid skips them) and are
    not returned again."""
    from kps.io import atomic_write_text
    from kps.results import config_record_path
    from kps.checkpoints import progress_path

    configs = grid_configs(kps_args)
    records, checkpoints = work / "results", work / "checkpoints"
    for folder in (records, checkpoints, out):
        folder.mkdir(parents=True, exist_ok=True)
    known = set()
    if existing is not None:
        for c in configs:
            source, target = config_record_path(existing, c), config_record_path(records, c)
            if source.exists():
                known.add(target)
                if not target.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(source, target)
    chosen = plan(bench)
    if jobs is not None or stack is not None:
        chosen = Plan(jobs or chosen.jobs, stack or chosen.stack,
                      f"forced (jobs {jobs or 'planned'}, stack {stack or 'planned'}); the bench's plan: {chosen.why}")
    cmd = [sys.executable, "-m", "kps", "train-grid", *kps_args, "--jobs", str(chosen.jobs),
           *(["--stack", str(chosen.stack)] if chosen.stack > 1 else []),
           "--out", str(records), "--checkpoints", str(checkpoints), "--quiet"]
    left = sum(not config_record_path(records, c).exists() for c in configs)
    log(f"grid: {len(configs)} runs, {left} without a record; plan: {chosen.jobs} worker(s), "
        f"{chosen.stack} run(s) stacked per process: {chosen.why}")
    started, interrupted, code = time.time(), False, 0
    if left:
        log("grid: " + " ".join(cmd[1:]))
        proc = subprocess.Popen(cmd, start_new_session=True)  # its own group: a signal to us is not passed twice
        try:
            while proc.poll() is None and time.time() < deadline and not (stop and stop()):
                time.sleep(poll_s)
        except KeyboardInterrupt:  # Ctrl-C here: stop the grid as at the deadline, and pack
            pass
        if proc.poll() is None:
            interrupted = True
            log("grid: deadline reached" if time.time() >= deadline else "grid: asked to stop")
            interrupt(proc, grace_s, log)
        code = proc.wait()
        log(f"grid: train-grid exited with status {code} after {time.time() - started:.0f} s")
    rows = status(configs, records, checkpoints)
    new = [config_record_path(records, c) for c, r in zip(configs, rows) if r["status"] == "done"]
    _write_tar(out / "results.tar", records, [p for p in new if p not in known])
    unfinished = sorted((r for r in rows if r["status"] == "unfinished"),
                        key=lambda r: (-r["checkpoint_epochs"], r["priority"]))
    files = []
    for r in unfinished:
        pt = checkpoints / r["checkpoint"]
        group = [p for p in (pt, progress_path(pt)) if p.exists()]
        files.append((r["checkpoint"], group, sum(p.stat().st_size for p in group)))
    parts = pack_parts([((name, group), size) for name, group, size in files], CHECKPOINT_TAR_LIMIT,
                       CHECKPOINT_TAR_PARTS)
    for k, part in enumerate(parts):
        _write_tar(out / checkpoint_tar_name(k), checkpoints, [p for _, group in part for p in group])
    packed = [name for part in parts for name, _ in part]
    doc = {
        "grid_args": list(kps_args), "command": cmd[1:], "exit_status": code, "interrupted": interrupted,
        "started_unix": started, "deadline_unix": deadline, "finished_unix": time.time(),
        "epochs": configs[0].epochs if configs else None, "jobs": chosen.jobs, "stack": chosen.stack,
        "per_process": chosen.stack, "concurrency": chosen.jobs * chosen.stack, "plan": chosen.why,
        "compile": configs[0].compile if configs else None,
        "checkpoints_packed": packed,
        "checkpoints_left_out": [name for name, _, _ in files if name not in packed],
        "runs": rows,
    }
    atomic_write_text(out / "runs.json", json.dumps(doc, indent=1) + "\n")
    done = sum(r["status"] == "done" for r in rows)
    log(f"grid: {done} of {len(rows)} runs have a record, {len(unfinished)} unfinished "
        f"({len(packed)} checkpoints packed), {len(rows) - done - len(unfinished)} not started")
    return doc


# --------------------------------------------------------------------------- the job's other stages


def cmd_env(args: argparse.Namespace) -> int:
    import torch
    import torchvision

    print(sys.version.split()[0], "torch", torch.__version__, "torchvision", torchvision.__version__,
          "cuda", torch.version.cuda, "available", torch.cuda.is_available(), "cores", os.cpu_count())
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device", file=sys.stderr)
        return 1
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    """Unpack the JPEG pack (verified; the system tar: 2 s where Python's took 35 s) unless
    it is there, then decode it once into the uint8 cache every run reads."""
    from kps.data import build_dataset, verify_archive

    root = Path(args.data_root)
    if not (root / DATASET / "train").is_dir():
        print(f"unpacking {args.archive} into {root}", flush=True)
        verify_archive(args.archive, DATASET)
        scratch = Path(tempfile.mkdtemp(prefix=f".{DATASET}.", dir=root))
        subprocess.run(["tar", "-xzf", args.archive, "-C", str(scratch)], check=True)
        (scratch / DATASET).rename(root / DATASET)
        scratch.rmdir()
    t0 = time.time()
    d = build_dataset(DATASET, str(root), 100)
    print(f"{d.label}: {len(d.train)} train / {len(d.test)} test images, {time.time() - t0:.1f} s")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    bench, path = None, Path(args.bench) if args.bench else None
    if path is not None and path.is_dir():  # the newest bench JSON there
        found = sorted((p for p in path.glob("*.json") if p.name != "runs.json"), key=lambda p: p.stat().st_mtime)
        path = found[-1] if found else None
    if path is not None:
        try:
            bench = json.loads(path.read_text())
            print(f"grid: planning from {path}", flush=True)
        except (OSError, ValueError) as err:
            print(f"grid: bench result {path} unreadable ({err}); planning without it", flush=True)

    def log(message: str) -> None:
        print(f"[grid {time.strftime('%H:%M:%S')}] {message}", flush=True)

    doc = run_grid(args.kps_args, work=Path(args.work), out=Path(args.out), deadline=args.deadline, bench=bench,
                   jobs=args.jobs, stack=args.stack, existing=Path(args.existing) if args.existing else None,
                   grace_s=args.grace_s, log=log)
    return 0 if all(r["status"] == "done" for r in doc["runs"]) else 3


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench/grid.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    env = sub.add_parser("env", help="versions; fails on --device cuda without a CUDA device")
    env.add_argument("--device", default="cuda")
    env.set_defaults(func=cmd_env)
    data = sub.add_parser("data", help="unpack and decode the CIFAR-10 JPEG pack")
    data.add_argument("--archive", default="data/cifar10-jpeg.tar.gz")
    data.add_argument("--data-root", default="data")
    data.set_defaults(func=cmd_data)
    run = sub.add_parser("run", help="plan, train until the deadline, pack",
                         epilog="everything after -- goes to python -m kps train-grid (its grid and options)")
    run.add_argument("--work", required=True, help="folder for records and checkpoints (kept for a follow-up)")
    run.add_argument("--out", required=True, help="folder for results.tar, runs.json, checkpoints*.tar")
    run.add_argument("--deadline", type=float, required=True, help="unix time at which the grid is interrupted")
    run.add_argument("--bench", help="the bench JSON to plan from, or a folder: its newest")
    run.add_argument("--jobs", type=int, help="force the worker processes")
    run.add_argument("--stack", type=int, help="force the runs stacked per process (1: not)")
    run.add_argument("--existing", help="a results folder whose records of the grid count as done")
    run.add_argument("--grace-s", type=float, default=20.0, help="seconds between the signals at the deadline")
    run.add_argument("kps_args", nargs=argparse.REMAINDER)
    run.set_defaults(func=cmd_run)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "kps_args", None) and args.kps_args[0] == "--":
        args.kps_args = args.kps_args[1:]
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
