"""Scoring on a Dask cluster, for pair spaces that outgrow one machine.

The accounts are cut into parts; each part is scored on a worker by the very loop of the single process
(``scoring.score_blocks``: the same blocks, the same features, the same trees), optionally passed block by block
through a transform (e.g. keeping each account's top candidates), and written by the worker as one Parquet file
``part-NNNNN.parquet`` of a directory. So the result equals the single process's, row for row.

The workers write the parts themselves: the output directory must be on storage that every worker and the client
see (a shared or network filesystem) when the cluster spans machines. Nothing else is shared: the client ships the
model with its history and the ids to score (``ScoreGrid``: no opportunities) once to every worker.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from repfit.config import BLOCK_PAIRS
from repfit.errors import RepfitError
from repfit.progress import NO_BAR, Bar

LOCAL = "local:"
PART_PAIRS = 10_000_000  # pairs per part (one task, one file): ~150 MB of Parquet; 10,000 x 1,000,000 -> 1,000 parts
Transform = Callable[[pd.DataFrame], pd.DataFrame]


@contextmanager
def dask_client(spec: str) -> Iterator:
    """A ``distributed.Client`` for ``spec``: ``local:N`` starts a LocalCluster of N single-threaded worker
    processes on this machine (closed on exit); anything else is a scheduler address (``tcp://host:8786``) of a
    running cluster, which is left running."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:  # pragma: no cover - a dependency; an install without it gets the fix
        raise RepfitError("scoring on Dask needs dask.distributed, which is not installed. Fix: pip install "
                          "'dask[distributed]'.", option="dask") from None
    if spec.startswith(LOCAL):
        text = spec[len(LOCAL):]
        if not text.isdigit() or int(text) < 1:
            raise RepfitError(f"'{spec}' is not a local cluster: after 'local:' comes the number of worker processes "
                              "(e.g. local:2). Fix: --dask local:2, or the address of a running scheduler "
                              "(tcp://host:8786).", option="dask")
        with LocalCluster(n_workers=int(text), threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
                Client(cluster) as client:
            yield client
        return
    try:
        client = Client(spec, timeout="20s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise RepfitError(f"cannot reach a Dask scheduler at '{spec}' ({type(exc).__name__}: {str(exc)[:120]}). Fix: "
                          "give the address the scheduler prints (tcp://host:8786) and check that it is running and "
                          "reachable, or use local:N for a cluster on this machine.", option="dask") from None
    with client:
        yield client


@dataclass(frozen=True)
class PartsOutcome:
    pairs: int  # pairs scored
    rows: int  # rows written (fewer than pairs with a transform that keeps some)
    parts: int
    workers: int
    engine: str  # how the workers evaluated the trees: compiled or lightgbm
    note: str = ""
    task_seconds: float = 0.0  # the parts' own wall times, summed (scoring and writing, on the workers)
    task_cpu_seconds: float = 0.0  # their CPU times (the task's thread), summed
    span_seconds: float = 0.0  # from the first part's start to the last part's end (no cluster start-up)

    def timings(self) -> dict:
        """For the scores sidecar: what the run took on the workers (the measured scaling behind projections)."""
        return {"parts": self.parts, "workers": self.workers, "engine": self.engine, "pairs": self.pairs,
                "task_seconds": round(self.task_seconds, 3), "task_cpu_seconds": round(self.task_cpu_seconds, 3),
                "span_seconds": round(self.span_seconds, 3)}


_WORKER_TREES: dict[tuple[str, str], object] = {}  # per worker process: the trees of each model, built once


def _worker_trees(scorer, token: str, engine: str, cache_dir):
    """The trees a worker scores with, compiled (or loaded from its disk cache) once per worker process."""
    key = (token, engine)
    if key not in _WORKER_TREES:
        _WORKER_TREES[key] = scorer.model.trees(engine, cache_dir=cache_dir, n_jobs=1)
    return _WORKER_TREES[key]


def score_part(scorer, grid, lo: int, hi: int, path: str, *, token: str, engine: str, cache_dir, block_pairs: int,
               transform: Transform | None) -> tuple[int, int, float, float, float, float]:
    """Score accounts ``lo:hi`` of ``grid`` into the Parquet file ``path`` (a task on a worker; also runs in-process).
    Returns (pairs scored, rows written, wall s, CPU s of this thread, start and end as epoch seconds)."""
    import time

    from repfit.scoring import score_blocks, write_parquet

    start, t0, c0 = time.time(), time.perf_counter(), time.thread_time()
    trees = _worker_trees(scorer, token, engine, cache_dir)
    pairs = 0

    def blocks():
        nonlocal pairs
        for b in score_blocks(scorer, grid, block_pairs, trees=trees, accounts=(lo, hi)):
            pairs += len(b)
            yield b if transform is None else transform(b)

    target = Path(path)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        rows = write_parquet(blocks(), tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return pairs, rows, time.perf_counter() - t0, time.thread_time() - c0, start, time.time()


def part_bounds(n_accounts: int, n_reps: int, workers: int, part_pairs: int = PART_PAIRS) -> list[tuple[int, int]]:
    """Account ranges of the parts: about ``part_pairs`` pairs each, and at least two parts per worker (so that a
    slow worker does not hold up the end), never an empty part."""
    if n_accounts == 0:
        return []
    n = max(math.ceil(n_accounts * max(n_reps, 1) / part_pairs), 2 * max(workers, 1))
    n = min(n, n_accounts)
    edges = [round(i * n_accounts / n) for i in range(n + 1)]
    return [(lo, hi) for lo, hi in zip(edges, edges[1:]) if hi > lo]


def score_on_cluster(client, scorer, grid, out: Path, *, block_pairs: int = BLOCK_PAIRS, engine: str = "auto",
                     cache_dir: Path | None = None, transform: Transform | None = None, part_pairs: int = PART_PAIRS,
                     bar: Bar = NO_BAR) -> PartsOutcome:
    """Score every pair of ``grid`` (``scoring.ScoreGrid``) on the cluster of ``client`` into the directory ``out``
    of Parquet parts, each part the rows of a range of accounts in data order.

    ``transform`` (a picklable function of a block frame, e.g. a top-k filter) runs on the workers on every block
    before it is written. The parts are written into a hidden directory beside ``out`` that replaces ``out`` only
    when every part is done: a failed run leaves the previous output (or none).
    """
    from distributed import as_completed

    out = Path(out)
    text = scorer.model.booster_.model_to_string(num_iteration=scorer.model.best_iteration_)
    token = hashlib.sha256(text.encode()).hexdigest()[:16]
    # compile here first: on a machine the workers share (local:N), they then load the cached object code
    trees = scorer.model.trees(engine, pairs=grid.pairs, cache_dir=cache_dir)
    worker_engine = "compiled" if trees.name == "compiled" else "lightgbm"
    workers = max(1, len(client.scheduler_info(n_workers=-1)["workers"]))
    bounds = part_bounds(len(grid.accounts), len(grid.reps), workers, part_pairs)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        stage = out.with_name(f".{out.name}.parts-{uuid.uuid4().hex[:8]}")
        stage.mkdir()
    except OSError as exc:
        raise RepfitError(f"{out}: cannot write there ({exc.strerror or type(exc).__name__}). Fix: choose an output "
                          "path in a writable directory that every Dask worker sees.", option="out") from None
    try:
        [s_scorer] = client.scatter([scorer], broadcast=True)
        [s_grid] = client.scatter([grid], broadcast=True)
        futures = [client.submit(score_part, s_scorer, s_grid, lo, hi, str(stage / f"part-{i:05d}.parquet"),
                                 token=token, engine=worker_engine, cache_dir=cache_dir, block_pairs=block_pairs,
                                 transform=transform, pure=False)
                   for i, (lo, hi) in enumerate(bounds)]
        pairs = rows = 0
        wall = cpu = 0.0
        starts, ends = [], []
        for fut in as_completed(futures):
            p, r, w, c, t_start, t_end = fut.result()
            pairs, rows, wall, cpu = pairs + p, rows + r, wall + w, cpu + c
            starts.append(t_start)
            ends.append(t_end)
            bar.update(p)
        _replace_dir(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    span = max(ends) - min(starts) if starts else 0.0
    return PartsOutcome(pairs, rows, len(bounds), workers, worker_engine, trees.note, wall, cpu, span)


def _replace_dir(new: Path, target: Path) -> None:
    """Move ``new`` onto ``target`` (a previous output directory or file is removed once the new one is in place)."""
    old = None
    if target.exists() or target.is_symlink():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
