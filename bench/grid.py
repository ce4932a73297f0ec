"""The GPU job's stages in Python (bench/gpu_job.sh): many runs on one card are K worker
processes of the one runner (``python -m kps train-grid --jobs K``, :mod:`kps.runner`).

* ``env``, ``data``: versions and the CUDA check; the JPEG pack verified, unpacked by the
  system tar and decoded once into its uint8 cache.
* ``workers``: how many worker processes the card takes.  For each K of
  :data:`WORKER_COUNTS` (K = 1 first: it fills the compile cache the others read),
  ``train-grid --jobs K`` trains K runs of the grid's first configuration (seeds
  0..K-1) in a scratch folder; once every run is past its first two epochs (the
  compilation), each run's own epoch clock (its progress file: epochs done, seconds
  spent in them) is read twice, :data:`WINDOW_S` apart, and the K runs are stopped
  (SIGINT).  The aggregate rate is the sum of the K runs' epochs per second in that
  window.  ``workers.json`` holds every K's rates, written after each.
* ``run``: :func:`choose_jobs` takes the K of the largest measured aggregate rate (one
  worker without a measurement; ``--jobs`` forces it), then ``train-grid --jobs K``
  trains the grid (its list written to ``configs.json``, read by ``--config-list``)
  with records and checkpoints in a work folder; at the deadline the command gets
  SIGINT, so each worker keeps its run's last finished epoch in its checkpoint (exit
  130), and a later job resumes it.  Then: ``results.tar`` (the new records, laid out
  as ``results/``), ``checkpoints.tar`` (``-2``, ``-3``: the unfinished runs'
  checkpoints, furthest-trained first, at most 15 MiB a part: the device tool returns
  files of at most 16 MiB) and ``runs.json`` (each configuration's status).

The stages are tested on CPU (tests/test_bench.py) and by the job's smoke mode.
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
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: the kps of this tree
    sys.path.insert(0, str(REPO))

from kps.checkpoints import checkpoint_path, progress_path, read_progress  # noqa: E402
from kps.configs import RunConfig, fast_path, write_config_list  # noqa: E402
from kps.io import atomic_write_bytes, atomic_write_text  # noqa: E402
from kps.results import config_record_path, load_record  # noqa: E402

__all__ = ["WORKER_COUNTS", "job_configs", "bench_workers", "choose_jobs", "status", "pack_parts",
           "checkpoint_tar_name", "run_grid", "main"]

WORKER_COUNTS = (1, 2, 4, 8)        # the K of the workers bench: one run alone, then K at once
WINDOW_S = 20.0                     # seconds over which the K runs' epoch rates are read
STEADY_EPOCHS = 2                   # epochs a run has behind it before its rate is read (compilation)
CHECKPOINT_TAR_LIMIT = 15 * 2**20   # the device tool returns files of at most 16 MiB,
CHECKPOINT_TAR_PARTS = 3            # at most 8 of them: 4 are workers.json, results, runs.json, job log
DATASET = "cifar10-jpeg"


# --------------------------------------------------------------------------- the lists


def job_configs(grid: str, device_type: str, overrides: Mapping[str, Any] | None = None) -> list[RunConfig]:
    """The named grid (:data:`kps.grids.GRIDS`) with the fast path of ``device_type``
    and ``overrides`` (the smoke's shrunk network, say) in every configuration."""
    from kps.grids import GRIDS

    if grid not in GRIDS:
        raise ValueError(f"unknown grid {grid!r}; valid: {', '.join(GRIDS)}")
    return [replace(c, **fast_path(device_type), **dict(overrides or {})) for c in GRIDS[grid]()]


def train_grid(configs: Sequence[RunConfig], *, work: Path, jobs: int, device: str, data_root: str | Path,
               threads: int | None = None) -> subprocess.Popen:
    """Start ``python -m kps train-grid`` on ``configs`` (written to ``work/configs.json``)
    with ``jobs`` workers, records under ``work/results`` and checkpoints under
    ``work/checkpoints``, in a process group of its own (a signal to this process is not
    passed twice)."""
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_text(work / "configs.json", write_config_list(configs))
    cmd = [sys.executable, "-m", "kps", "train-grid", "--config-list", str(work / "configs.json"),
           "--jobs", str(jobs), "--device", device, "--data-root", str(data_root), "--out", str(work / "results"),
           "--checkpoints", str(work / "checkpoints"), "--quiet", *(["--threads", str(threads)] if threads else [])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen(cmd, start_new_session=True, env=env)


# --------------------------------------------------------------------------- the workers bench


def _clocks(configs: Sequence[RunConfig], checkpoints: Path) -> list[tuple[int, float] | None]:
    """Each run's (epochs done, seconds spent in them) from its progress file, None before its first."""
    clocks = []
    for c in configs:
        p = read_progress(checkpoint_path(checkpoints, c))
        clocks.append(None if p is None else (int(p["next_epoch"]), float(p["elapsed_s"])))
    return clocks


def time_workers(first: RunConfig, jobs: int, *, work: Path, device: str, data_root: str | Path,
                 threads: int | None = None, window_s: float = WINDOW_S, warm_limit_s: float = 300.0,
                 poll_s: float = 0.2, log: Callable[[str], None] = print) -> dict[str, Any]:
    """``jobs`` runs like ``first`` (seeds 0..jobs-1) trained by ``jobs`` workers at once
    (module docstring): each run's epochs per second over ``window_s`` seconds once all
    are past :data:`STEADY_EPOCHS`, and their sum.  RuntimeError when they are not all
    steady within ``warm_limit_s`` or one ends inside the window."""
    configs = [replace(first, seed=k) for k in range(jobs)]
    started = time.time()
    proc = train_grid(configs, work=work, jobs=jobs, device=device, data_root=data_root, threads=threads)
    try:
        while True:
            clocks = _clocks(configs, work / "checkpoints")
            if all(c is not None and c[0] >= STEADY_EPOCHS for c in clocks):
                break
            if proc.poll() is not None or time.time() - started > warm_limit_s:
                raise RuntimeError(f"{jobs} workers: not every run got past epoch {STEADY_EPOCHS} within "
                                   f"{warm_limit_s:.0f} s (train-grid exit status {proc.poll()})")
            time.sleep(poll_s)
        warm_s = time.time() - started
        time.sleep(window_s)
        after = _clocks(configs, work / "checkpoints")
    finally:
        interrupt(proc, grace_s=20.0, log=log)
    if any(b is None or b[0] >= c.epochs for b, c in zip(after, configs)):
        raise RuntimeError(f"{jobs} workers: a run ended inside the window; give it more epochs")
    if any(b[0] == a[0] for a, b in zip(clocks, after)):
        raise RuntimeError(f"{jobs} workers: a run finished no epoch in the {window_s:g} s window; widen it")
    # each run's own clock: the seconds its epochs took, whatever the others did meanwhile
    rates = [(b[0] - a[0]) / (b[1] - a[1]) for a, b in zip(clocks, after)]
    return {"jobs": jobs, "warm_s": round(warm_s, 1), "window_s": window_s,
            "epochs": [b[0] - a[0] for a, b in zip(clocks, after)], "epochs_per_s_each": rates,
            "epochs_per_s": sum(rates)}


def bench_workers(first: RunConfig, counts: Sequence[int] = WORKER_COUNTS, *, work: Path, out_file: Path,
                  device: str, data_root: str | Path, threads: int | None = None, window_s: float = WINDOW_S,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    """:func:`time_workers` for each K of ``counts`` in order, each in a scratch folder
    under ``work`` (removed after), the document written to ``out_file`` after each K
    (a job cut off keeps what was measured); a K that fails is recorded with its error."""
    from kps.env import device_name, git_state

    import torch

    commit, dirty = git_state()
    doc: dict[str, Any] = {"schema": "kps-workers/1", "device": device_name(torch.device(device)),
                           "torch_version": torch.__version__, "git_commit": commit, "git_dirty": dirty,
                           "config": first.to_dict(), "window_s": window_s, "steady_epochs": STEADY_EPOCHS,
                           "workers": {}, "failed": {}}
    for k in counts:
        scratch = work / f"workers-{k}"
        shutil.rmtree(scratch, ignore_errors=True)
        try:
            doc["workers"][str(k)] = m = time_workers(first, k, work=scratch, device=device, data_root=data_root,
                                                      threads=threads, window_s=window_s, log=log)
            log(f"workers: {k} at once: {m['epochs_per_s']:.3g} epochs/s together")
        except RuntimeError as err:
            doc["failed"][str(k)] = str(err)
            log(f"workers: {k} at once: FAILED: {err}")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        atomic_write_text(out_file, json.dumps(doc, indent=1) + "\n")
    return doc


def choose_jobs(bench: Mapping[str, Any] | None) -> tuple[int, str]:
    """The worker processes for the grid: the K of the largest aggregate epoch rate the
    workers bench measured (one without a measurement), and why, in words."""
    measured = {int(k): m["epochs_per_s"] for k, m in ((bench or {}).get("workers") or {}).items()}
    if not measured:
        return 1, "no workers bench: one worker"
    best = max(measured, key=lambda k: measured[k])
    rates = ", ".join(f"{k}: {r:.3g}" for k, r in sorted(measured.items()))
    return best, f"{best} workers: the largest aggregate rate measured (epochs/s by workers: {rates})"


# --------------------------------------------------------------------------- after the grid


def status(configs: Sequence[RunConfig], records: Path, checkpoints: Path) -> list[dict[str, Any]]:
    """One row per configuration: ``done`` (its record, with its numbers), ``unfinished``
    (a checkpoint: epochs trained, epochs it holds) or ``not started``."""
    rows = []
    for k, c in enumerate(configs):
        record, ckpt = config_record_path(records, c), checkpoint_path(checkpoints, c)
        row: dict[str, Any] = {"run": str(config_record_path("", c).with_suffix("")), "method": c.method,
                               "seed": c.seed, "ga_variant": c.ga_variant, "priority": k, "epochs_done": 0,
                               "checkpoint_epochs": 0, "wall_s": None}
        if record.exists():
            r = load_record(record)
            row.update(status="done", epochs_done=r["epochs"], checkpoint_epochs=r["epochs"],
                       wall_s=r["wall_time_s"], top1_error=r["top1_error"], best_top1_error=r["best_top1_error"],
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
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in files:
            tar.add(path, arcname=str(path.relative_to(root)))
    atomic_write_bytes(target, buffer.getvalue())


def _pack(rows: list[dict[str, Any]], configs: Sequence[RunConfig], *, records: Path, checkpoints: Path,
          out: Path, known: set[Path]) -> tuple[list[str], list[str]]:
    """results.tar (the records not in ``known``) and the checkpoint parts into ``out``;
    (checkpoints packed, checkpoints left out)."""
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
    return packed, [name for name, _, _ in files if name not in packed]


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


def _copy_existing(configs: Sequence[RunConfig], existing: Path, records: Path) -> set[Path]:
    """The grid's records under ``existing`` copied into ``records`` (train-grid skips them)."""
    known = set()
    for c in configs:
        source, target = config_record_path(existing, c), config_record_path(records, c)
        if source.exists():
            known.add(target)
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
    return known


def run_grid(configs: Sequence[RunConfig], *, work: Path, out: Path, deadline: float, jobs: int = 1,
             why: str = "", device: str = "cuda", data_root: str | Path = "data", threads: int | None = None,
             existing: Path | None = None, grace_s: float = 20.0, poll_s: float = 1.0,
             stop: Callable[[], bool] | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train ``configs`` with ``jobs`` workers, records under ``work/results`` and
    checkpoints under ``work/checkpoints``, until they are done or the ``deadline`` (unix
    time; or ``stop()`` turns true) and then interrupt them, and pack what came of it
    into ``out``; returns the runs.json document.  Records of ``configs`` under
    ``existing`` are copied in first (train-grid skips them) and are not returned again."""
    records, checkpoints = work / "results", work / "checkpoints"
    for folder in (records, checkpoints, out):
        folder.mkdir(parents=True, exist_ok=True)
    known = _copy_existing(configs, existing, records) if existing is not None else set()
    left = sum(not config_record_path(records, c).exists() for c in configs)
    log(f"grid: {len(configs)} runs, {left} without a record; {jobs} worker(s): {why}")
    started, interrupted, code = time.time(), False, 0
    if left:
        proc = train_grid(configs, work=work, jobs=jobs, device=device, data_root=data_root, threads=threads)
        log("grid: " + " ".join(map(str, proc.args[1:])))
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
    packed, left_out = _pack(rows, configs, records=records, checkpoints=checkpoints, out=out, known=known)
    doc = {
        "exit_status": code, "interrupted": interrupted, "started_unix": started, "deadline_unix": deadline,
        "finished_unix": time.time(), "epochs": configs[0].epochs if configs else None, "jobs": jobs,
        "concurrency": jobs, "plan": why, "compile": configs[0].compile if configs else None,
        "checkpoints_packed": packed, "checkpoints_left_out": left_out, "runs": rows,
    }
    atomic_write_text(out / "runs.json", json.dumps(doc, indent=1) + "\n")
    done = sum(r["status"] == "done" for r in rows)
    unfinished = sum(r["status"] == "unfinished" for r in rows)
    log(f"grid: {done} of {len(rows)} runs have a record, {unfinished} unfinished "
        f"({len(packed)} checkpoints packed), {len(rows) - done - unfinished} not started")
    return doc


# --------------------------------------------------------------------------- the job's stages


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
    print(f"{d.label}: {len(d.train)} train / {len(d.test)} test images, {time.time() - t0:.1f} s", flush=True)
    return 0


def _log(stage: str) -> Callable[[str], None]:
    return lambda message: print(f"[{stage} {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _configs_of(args: argparse.Namespace) -> list[RunConfig]:
    overrides = json.loads(args.overrides) if args.overrides else {}
    if not isinstance(overrides, dict):
        raise ValueError("--overrides must be a JSON object of RunConfig keys")
    return job_configs(args.grid, "cuda" if args.device.startswith("cuda") else "cpu", overrides)


def cmd_workers(args: argparse.Namespace) -> int:
    counts = [int(k) for k in args.counts.split(",")]
    doc = bench_workers(_configs_of(args)[0], counts, work=Path(args.work), out_file=Path(args.out),
                        device=args.device, data_root=args.data_root, threads=args.threads,
                        window_s=args.window_s, log=_log("workers"))
    return 0 if doc["workers"] else 3


def cmd_run(args: argparse.Namespace) -> int:
    bench = None
    if args.bench and Path(args.bench).is_file():
        try:
            bench = json.loads(Path(args.bench).read_text())
        except (OSError, ValueError) as err:
            print(f"grid: workers bench {args.bench} unreadable ({err}); one worker", flush=True)
    jobs, why = choose_jobs(bench)
    if args.jobs is not None:
        jobs, why = args.jobs, f"forced ({args.jobs}); the bench's choice: {why}"
    doc = run_grid(_configs_of(args), work=Path(args.work), out=Path(args.out), deadline=args.deadline, jobs=jobs,
                   why=why, device=args.device, data_root=args.data_root, threads=args.threads,
                   existing=Path(args.existing) if args.existing else None, grace_s=args.grace_s, log=_log("grid"))
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
    for name, func, what in (("workers", cmd_workers, "time K workers at once for each K, write workers.json"),
                             ("run", cmd_run, "train the grid with the K chosen until the deadline, pack")):
        s = sub.add_parser(name, help=what)
        s.add_argument("--grid", default="gpu", help="a grid of kps.grids.GRIDS (default gpu)")
        s.add_argument("--overrides", help="a JSON object of RunConfig keys set in every configuration")
        s.add_argument("--device", default="cuda")
        s.add_argument("--data-root", default="data")
        s.add_argument("--threads", type=int, help="threads per worker (default: train-grid's)")
        s.add_argument("--work", required=True, help="scratch folder (workers) / records and checkpoints (run)")
        s.set_defaults(func=func)
        if name == "workers":
            s.add_argument("--out", required=True, help="the workers.json to write")
            s.add_argument("--counts", default=",".join(map(str, WORKER_COUNTS)), help="the K to time, in order")
            s.add_argument("--window-s", type=float, default=WINDOW_S, help="seconds the rates are read over")
        else:
            s.add_argument("--out", required=True, help="folder for results.tar, runs.json, checkpoints*.tar")
            s.add_argument("--deadline", type=float, required=True, help="unix time at which the grid is interrupted")
            s.add_argument("--bench", help="the workers.json to choose K from")
            s.add_argument("--jobs", type=int, help="force the worker processes")
            s.add_argument("--existing", help="a results folder whose records of the grid count as done")
            s.add_argument("--grace-s", type=float, default=20.0, help="seconds between the signals at the deadline")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
