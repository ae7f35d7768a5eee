"""Candidates instead of all pairs (issue 14, point 4).

``repfit score --top-k K`` keeps, of each account's scored pairs, its K best reps by P(win) and its current rep,
and records on each kept row the largest P(win) of the account's pairs it left out (``p_win_left_out``).
``repfit assign`` solves on those pairs only and proves the plan optimal over *all* pairs from that bound, or
states the gap (``repfit.assign.sparse``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from repfit import schema as S
from repfit.scores_io import LEFT_OUT, NET_LEFT_OUT, Candidates

P_WIN = "p_win"


def top_k(block: pd.DataFrame, k: int, current: pd.Series | None = None, prices: pd.Series | None = None) -> pd.DataFrame:
    """The rows of ``block`` worth keeping: each account's ``k`` best reps, plus its current rep.

    Best by P(win); with ``prices``, by expected value minus the rep's price (``sample_prices``), so that the
    candidates of a popular rep do not crowd every account's list: what the solver needs are the pairs it could
    use, and a rep everyone ranks first can take only its capacity.

    Parameters
    ----------
    block : scored pairs (``repfit.scoring.SCORE_COLUMNS``), holding *every* rep of each of its accounts (as
        ``score_blocks`` yields them), in any row order.
    k : reps kept per account by P(win) (ties: the earlier row).
    current : account_id -> its current rep_id (missing or NA: none), e.g. the accounts table's
        ``current_rep_id`` indexed by ``account_id``.
    prices : rep_id -> price in expected-value units (missing: 0), or None to rank by P(win).

    Returns
    -------
    DataFrame : the kept rows, by account then rank, with column ``p_win_left_out``: the largest P(win) among the
    account's rows NOT kept (NaN when every rep was kept), however they were ranked; with ``prices`` also
    ``ev_net_left_out``: the largest expected value minus price among them (a tighter bound when the plan's
    prices come out near these).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1 (got {k})")
    codes, _ = pd.factorize(block[S.ACCOUNT_ID], sort=False)
    p = block[P_WIN].to_numpy(float)
    key = p if prices is None else block["expected_value"].to_numpy(float) - block[S.REP_ID].map(prices).fillna(0.0).to_numpy(float)
    order = np.lexsort((np.arange(len(p)), -key, codes))  # by account, best first, ties in row order
    c = codes[order]
    start = np.r_[0, np.flatnonzero(c[1:] != c[:-1]) + 1]
    rank = np.arange(len(c)) - np.repeat(start, np.diff(np.r_[start, len(c)]))
    keep = rank < k
    if current is not None:
        owner = block[S.ACCOUNT_ID].map(current).to_numpy(object)[order]
        keep |= block[S.REP_ID].to_numpy(object)[order] == owner
    n_acc = int(codes.max()) + 1 if len(codes) else 0
    left = np.full(n_acc, -np.inf)
    np.maximum.at(left, c[~keep], p[order][~keep])
    out = block.iloc[order[keep]].assign(**{LEFT_OUT: np.where(np.isfinite(left), left, np.nan)[c[keep]]})
    if prices is None:
        return out
    net = np.full(n_acc, -np.inf)
    np.maximum.at(net, c[~keep], key[order][~keep])
    return out.assign(**{NET_LEFT_OUT: np.where(np.isfinite(net), net, np.nan)[c[keep]]})


def sample_size(A: int, R: int) -> int:
    """Accounts scored in full to price the reps for ``top_k``: 5 per rep or 5% of the accounts, whichever is more."""
    return min(A, max(5 * R, A // 20))


def sample_prices(blocks, capacity: pd.Series, n_accounts: int, seed: int = 0) -> pd.Series:
    """rep_id -> price (expected-value units): the LP duals of capacity of the best assignment of a sample of
    accounts, scored in full (``blocks``: frames of every rep for each sampled account), each rep's capacity
    scaled to the sample's share of all ``n_accounts`` (rounded at random, so the sample is as tight as the whole).
    A rep everyone ranks first is priced at what it adds beyond its capacity's worth; reps with room are free."""
    from repfit.assign.problem import Problem
    from repfit.assign.solvers import _certified_flow, _top_k

    df = pd.concat(list(blocks), ignore_index=True)
    reps = pd.Index(capacity.index.astype(str))
    a, _ = pd.factorize(df[S.ACCOUNT_ID], sort=False)
    r = reps.get_indexer(df[S.REP_ID].astype(str))
    n, R = int(a.max()) + 1, len(reps)
    values = np.zeros((n, R))
    values[a, r] = df["expected_value"].to_numpy(float)
    rng = np.random.default_rng(seed)
    share = capacity.to_numpy(float) * n / max(n_accounts, 1)
    cap = np.maximum(1, np.floor(share) + (rng.random(R) < share - np.floor(share))).astype(np.int64)
    if cap.sum() < n:  # less room than the whole has: no price can be told, rank by value
        return pd.Series(0.0, index=reps)
    p = Problem(values=values, capacity=cap, current=np.full(n, -1), locked=np.zeros(n, bool))
    V, mask = p.int_values, p.mask()
    got = _certified_flow(p, V, _top_k(V, mask, np.zeros(R), 15), mask, np.zeros(R, np.int64), 30, 2)
    return pd.Series(0.0 if got is None else got[1] / p.scale, index=reps)
