"""Batch scoring of every rep x account pair, streamed in blocks with bounded memory."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
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


def score_blocks(scorer: PairScorer, ds: S.Dataset, block_pairs: int = BLOCK_PAIRS) -> Iterator[pd.DataFrame]:
    """Yield frames of ``SCORE_COLUMNS`` for all reps x accounts of ``ds``, one block of accounts at a time.

    Memory is bounded by ``block_pairs`` (features of one block), whatever the size of the pair space.
    """
    reps = ds.reps[S.REP_ID].to_numpy(str)
    accounts = ds.accounts[S.ACCOUNT_ID].to_numpy(str)
    potential = ds.accounts[S.POTENTIAL].to_numpy(float)
    r_idx = scorer.space.rep_index(reps)
    a_idx = scorer.space.account_index(accounts)
    per_block = max(1, block_pairs // len(reps))
    cold = cold_reps(scorer)[r_idx]
    for lo in range(0, len(accounts), per_block):
        hi = min(len(accounts), lo + per_block)
        n = hi - lo
        rr = np.tile(r_idx, n)
        aa = np.repeat(a_idx[lo:hi], len(reps))
        p = scorer.model.predict_win(pair_features(scorer.space, scorer.history, rr, aa))
        yield pd.DataFrame({
            S.REP_ID: np.tile(reps, n), S.ACCOUNT_ID: np.repeat(accounts[lo:hi], len(reps)),
            "p_win": p, "expected_value": p * np.repeat(potential[lo:hi], len(reps)), "cold": np.tile(cold, n),
        })


def write_scores(blocks: Iterator[pd.DataFrame], path: Path, bar: Bar = NO_BAR) -> int:
    """Stream blocks to Parquet (or CSV by suffix) through a temporary file; returns the rows written."""
    from repfit.io import atomic_write, escape_formulas

    rows = 0

    def write(tmp: Path) -> None:
        nonlocal rows
        if path.suffix.lower() == ".csv":  # "x.CSV" is a CSV too
            with open(tmp, "w", encoding="utf-8", newline="") as fh:
                for i, b in enumerate(blocks):
                    escape_formulas(b).to_csv(fh, index=False, header=i == 0)
                    rows += len(b)
                    bar.update(len(b))
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        writer = None
        try:
            for b in blocks:
                table = pa.Table.from_pandas(b, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
                rows += len(b)
                bar.update(len(b))
        finally:
            if writer is not None:
                writer.close()

    atomic_write(path, write)
    return rows


def score_matrix(scorer: PairScorer, ds: S.Dataset, block_pairs: int = BLOCK_PAIRS, bar: Bar = NO_BAR) -> np.ndarray:
    """(accounts, reps) matrix of P(win) in ``ds`` order."""
    out = np.empty((len(ds.accounts), len(ds.reps)))
    row = 0
    for b in score_blocks(scorer, ds, block_pairs):
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
