"""Batch scoring of every rep x account pair, streamed in blocks with bounded memory."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from repfit import schema as S
from repfit.config import BLOCK_PAIRS
from repfit.errors import SchemaError
from repfit.features import pair_features, snapshot
from repfit.progress import NO_BAR, Bar
from repfit.scores_io import read_scores  # noqa: F401 - reading scores lives in repfit.scores_io (issue 14)
from repfit.winprob import PairScorer

SCORE_COLUMNS = (S.REP_ID, S.ACCOUNT_ID, "p_win", "expected_value", "cold")  # cold: the rep has no closed deal


def refresh_history(scorer: PairScorer, ds: S.Dataset) -> PairScorer:
    """The scorer on ``ds``: its feature space on ``ds``'s reps, accounts and attribute values (issue 11, item 3:
    not the values frozen at training), and its history snapshot rebuilt from ``ds``'s closed deals, so that a
    newer export scores with the deals closed since training. Reps and accounts new since training are scored
    from their attributes and whatever history ``ds`` holds (cold start; see ``cold_reps``)."""
    space = scorer.space.for_data(ds)
    return replace(scorer, space=space, history=snapshot(space, ds.closed))


def cold_reps(scorer: PairScorer) -> np.ndarray:
    """(R,) bool in the scorer's rep order: reps with no closed deal in its history, whose strengths are all prior."""
    return scorer.history.n_r == 0


CHUNK_PAIRS = 32_768  # pairs whose features are built and scored at once inside a block: ~9 MB of features
# (36 columns) stays in cache; larger chunks ran ~1.6x slower per pair on 2 cores (benchmarks/score_speed.py)


@dataclass(frozen=True)
class ScoreGrid:
    """What ``score_blocks`` scores: the reps and accounts of a data set in its row order, their positions in the
    scorer's feature space, the accounts' potential and which reps are cold. Small next to the data set (no
    opportunities): what the Dask path ships to its workers."""

    reps: np.ndarray  # (R,) rep_id
    accounts: np.ndarray  # (A,) account_id
    potential: np.ndarray  # (A,)
    r_idx: np.ndarray
    a_idx: np.ndarray
    cold: np.ndarray  # (R,) bool

    @classmethod
    def of(cls, scorer: PairScorer, ds: S.Dataset) -> ScoreGrid:
        reps = ds.reps[S.REP_ID].to_numpy(str)
        accounts = ds.accounts[S.ACCOUNT_ID].to_numpy(str)
        r_idx = scorer.space.rep_index(reps)
        return cls(reps, accounts, ds.accounts[S.POTENTIAL].to_numpy(float), r_idx, scorer.space.account_index(accounts),
                   cold_reps(scorer)[r_idx])

    @property
    def pairs(self) -> int:
        return len(self.reps) * len(self.accounts)


def score_blocks(scorer: PairScorer, ds: S.Dataset | ScoreGrid, block_pairs: int = BLOCK_PAIRS, *, trees=None,
                 accounts: tuple[int, int] | None = None) -> Iterator[pd.DataFrame]:
    """Yield frames of ``SCORE_COLUMNS`` for all reps x accounts of ``ds``, one block of accounts at a time.

    Memory is bounded by ``block_pairs`` (features of one block), whatever the size of the pair space. Within a
    block, each account's rows hold every rep in ``ds.reps`` order; blocks follow ``ds.accounts`` order. The id
    columns are categorical (codes into the block's accounts and all reps): cheap to build and written to Parquet
    dictionary-encoded.

    Parameters
    ----------
    trees : what evaluates the booster's trees (``scorer.model.trees(...)``: compiled or LightGBM's predict).
        Default: LightGBM's predict.
    accounts : (lo, hi) to score only accounts ``lo:hi`` of ``ds`` (one part of a distributed run). Default: all.
    """
    from repfit.features.grid import checked_grid

    grid = ds if isinstance(ds, ScoreGrid) else ScoreGrid.of(scorer, ds)
    R = len(grid.reps)
    lo0, hi0 = accounts or (0, len(grid.accounts))
    features = checked_grid(scorer.space, scorer.history, scorer.model.feature_names_in_, grid.r_idx, grid.a_idx[lo0:hi0])
    rep_dtype = pd.CategoricalDtype(pd.Index(grid.reps, dtype=object))
    rep_codes = np.arange(R, dtype=np.int32)
    per_block = max(1, block_pairs // max(R, 1))
    per_chunk = max(1, CHUNK_PAIRS // max(R, 1))
    # with trees on n threads, n chunks at a time each on one thread, features included (numpy, the compiled trees and
    # LightGBM release the GIL): the features are then no longer the serial part
    threads = max(1, getattr(trees, "n_jobs", 1))
    one = replace(trees, n_jobs=1) if threads > 1 else trees
    pool = ThreadPoolExecutor(threads, thread_name_prefix="repfit-score") if threads > 1 else None
    if hi0 > lo0:
        features.block(grid.a_idx, lo0, lo0 + 1)  # locates the pairs with history once, before the threads start

    def chunk(p: np.ndarray, lo: int, c: int, hi: int) -> None:
        X = features.block(grid.a_idx, c, min(hi, c + per_chunk))
        p[(c - lo) * R:(c - lo) * R + len(X)] = scorer.model.predict_win_matrix(X, one)

    try:
        for lo in range(lo0, hi0, per_block):
            hi = min(hi0, lo + per_block)
            n = hi - lo
            p = np.empty(n * R)
            starts = range(lo, hi, per_chunk)
            if pool is None:
                for c in starts:
                    chunk(p, lo, c, hi)
            else:
                list(pool.map(lambda c: chunk(p, lo, c, hi), starts))  # noqa: B023 - consumed in this iteration
            yield pd.DataFrame({
                S.REP_ID: pd.Categorical.from_codes(np.tile(rep_codes, n), dtype=rep_dtype),
                S.ACCOUNT_ID: pd.Categorical.from_codes(np.repeat(np.arange(n, dtype=np.int32), R),
                                                        categories=pd.Index(grid.accounts[lo:hi], dtype=object)),
                "p_win": p, "expected_value": p * np.repeat(grid.potential[lo:hi], R), "cold": np.tile(grid.cold, n),
            })
    finally:
        if pool is not None:
            pool.shutdown(wait=True)


def _arrow(b: pd.DataFrame):
    """A block as an Arrow table of a fixed schema: id columns dictionary-encoded with int32 indices whatever their
    pandas dtype (so every block of a file has the same schema), other columns as they are."""
    import pyarrow as pa

    cols = {}
    for c in b.columns:
        s = b[c]
        if isinstance(s.dtype, pd.CategoricalDtype):
            cols[c] = pa.DictionaryArray.from_arrays(pa.array(s.cat.codes.to_numpy(np.int32)),
                                                     pa.array(s.cat.categories.to_numpy(object), pa.string()))
        elif c in (S.REP_ID, S.ACCOUNT_ID):
            cols[c] = pa.array(s.astype(str).to_numpy(object), pa.string()).dictionary_encode()
        else:
            cols[c] = pa.array(s.to_numpy())
    return pa.table(cols)


def write_parquet(blocks: Iterator[pd.DataFrame], tmp: Path, bar: Bar = NO_BAR) -> int:
    """Write blocks to one Parquet file at ``tmp`` (one row group per block); returns the rows written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = 0
    writer = None
    try:
        for b in blocks:
            table = _arrow(b)
            if writer is None:  # dictionary pages for the ids only: trying them on 4M distinct floats cost 4x the CPU
                ids = [f.name for f in table.schema if pa.types.is_dictionary(f.type)]
                writer = pq.ParquetWriter(tmp, table.schema, use_dictionary=ids)
            writer.write_table(table)
            rows += len(b)
            bar.update(len(b))
    finally:
        if writer is not None:
            writer.close()
    return rows


def write_scores(blocks: Iterator[pd.DataFrame], path: Path, bar: Bar = NO_BAR) -> int:
    """Stream blocks to Parquet (or CSV by suffix) through a temporary file; returns the rows written."""
    from repfit.io import atomic_write, escape_formulas

    rows = 0

    def write(tmp: Path) -> None:
        nonlocal rows
        if path.suffix.lower() == ".csv":  # "x.CSV" is a CSV too
            with open(tmp, "w", encoding="utf-8", newline="") as fh:
                for i, b in enumerate(blocks):
                    b = b.assign(**{c: b[c].astype(str) for c in b.columns if isinstance(b[c].dtype, pd.CategoricalDtype)})
                    escape_formulas(b).to_csv(fh, index=False, header=i == 0)
                    rows += len(b)
                    bar.update(len(b))
            return
        rows = write_parquet(blocks, tmp, bar)

    atomic_write(path, write)
    return rows


def score_matrix(scorer: PairScorer, ds: S.Dataset, block_pairs: int = BLOCK_PAIRS, bar: Bar = NO_BAR,
                 trees=None) -> np.ndarray:
    """(accounts, reps) matrix of P(win) in ``ds`` order."""
    out = np.empty((len(ds.accounts), len(ds.reps)))
    row = 0
    for b in score_blocks(scorer, ds, block_pairs, trees=trees):
        n = len(b) // len(ds.reps)
        out[row:row + n] = b["p_win"].to_numpy().reshape(n, len(ds.reps))
        row += n
        bar.update(len(b))
    return out


SCORED_BY = {  # what P(win) depends on, per table: ids, the attributes the features read, and the history
    "reps": lambda df: df.drop(columns=[S.CAPACITY]).sort_values(S.REP_ID),
    "accounts": lambda df: df.drop(columns=[c for c in (S.CURRENT_REP_ID, S.LOCKED, S.TIER) if c in df.columns])
    .sort_values(S.ACCOUNT_ID),
    "opportunities": lambda df: df[df[S.OUTCOME] != S.OUTCOME_OPEN].sort_values(S.OPPORTUNITY_ID),
}  # rows in id order: the same data exported in another row order has the same fingerprint


def data_fingerprint(ds: S.Dataset) -> dict[str, dict[str, str]]:
    """What scores depend on, as hashes per table and column (plus row counts): recorded beside a scores file, so
    that a scores file of other data is refused (``check_fingerprint``)."""
    import hashlib

    out = {}
    for table, view in SCORED_BY.items():
        df = view(getattr(ds, table))
        cols = {c: hashlib.sha256(pd.util.hash_pandas_object(df[c].astype(str), index=False).to_numpy().tobytes())
                .hexdigest()[:16] for c in df.columns}
        out[table] = {"rows": str(len(df)), **cols}
    return out


def check_fingerprint(path: Path, recorded: dict, ds: S.Dataset) -> None:
    """Raise ``SchemaError`` naming what changed when ``recorded`` (the scores sidecar's) is not ``ds``'s."""
    now = data_fingerprint(ds)
    if not isinstance(recorded, dict) or not all(isinstance(recorded.get(t, {}), dict) for t in now):
        raise SchemaError(f"{path}.json: its fingerprint is not one repfit wrote. Fix: score the data set again "
                          "(repfit score).", option="scores")
    changes = []
    for table, cols in now.items():
        then = recorded.get(table, {})
        if then.get("rows") != cols["rows"]:
            changes.append(f"{table}: {then.get('rows', '?')} rows scored, {cols['rows']} now")
        diff = [c for c in cols if c != "rows" and then.get(c) != cols[c]]
        if diff and then.get("rows") == cols["rows"]:
            changes.append(f"{table}: column(s) {', '.join(map(repr, diff[:5]))} changed")
    if changes:
        raise SchemaError(f"{path}: these scores are of other data than {ds.paths['accounts']} and its tables "
                          f"({'; '.join(changes)}). Fix: score this data set again (repfit score), or give the data "
                          "directory that was scored.", option="scores")
