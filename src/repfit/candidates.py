"""Candidates instead of all pairs (issue 14, point 4).

``repfit score --top-k K`` keeps, of each account's scored pairs, its K best reps by P(win) and its current rep,
and records on each kept row the largest P(win) of the account's pairs it left out (``p_win_left_out``).
``repfit assign`` solves on those pairs only and proves the plan optimal over *all* pairs from that bound, or
states the gap (``repfit.assign.sparse``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pathlib import Path

from repfit import schema as S
from repfit.errors import SchemaError
from repfit.messages import listed
from repfit.scores_io import LEFT_OUT, NET_LEFT_OUT, Candidates

P_WIN = "p_win"


DEEPER_TIMES = (2, 4)  # with prices, also what the bound would be at K' = 2K and 4K (for the K that closes a gap)


def top_k(block: pd.DataFrame, k: int, current: pd.Series | None = None, prices: pd.Series | None = None,
          planned: pd.Series | None = None) -> pd.DataFrame:
    """The rows of ``block`` worth keeping: each account's ``k`` best reps, plus its current rep (and its rep in
    ``planned``).

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
    planned : account_id -> its rep in an earlier plan (``read_plan``), kept too: that plan stays feasible.

    Returns
    -------
    DataFrame : the kept rows, by account then rank, with column ``p_win_left_out``: the largest P(win) among the
    account's rows NOT kept (NaN when every rep was kept), however they were ranked; with ``prices`` also
    ``ev_net_left_out``: the largest expected value minus price among them (a tighter bound when the plan's
    prices come out near these), and ``ev_net_left_out_<K'>`` for K' in ``DEEPER_TIMES`` x k: what it would be
    had each account kept its K' best (NaN: nothing left out), from which ``repfit assign`` tells the K that would
    close a gap; and ``ev_net_left_out_tier<j>``, on each account's first row only: the largest among the reps of
    price tier j (``repfit.assign.sparse.price_tiers``), so that a rep priced far below the others (a band's
    floor) does not loosen the bound on the dear ones.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1 (got {k})")
    codes, accs = pd.factorize(block[S.ACCOUNT_ID], sort=False)
    rep_codes, reps = pd.factorize(block[S.REP_ID], sort=False)
    p = block[P_WIN].to_numpy(float)
    key = p if prices is None else block["expected_value"].to_numpy(float) - block[S.REP_ID].map(prices).astype(float).fillna(0.0).to_numpy()
    owner = np.stack([np.full(len(accs), -1) if m is None else pd.Index(reps).get_indexer(
        pd.Series(m).reindex(accs).to_numpy(object)) for m in (current, planned)], axis=1)  # rep codes, -1: none
    n, R = len(accs), len(reps)
    grid = len(p) == n * R and np.array_equal(codes, np.repeat(np.arange(n), R)) \
        and np.array_equal(rep_codes, np.tile(np.arange(R), n))
    tier = None
    if prices is not None:
        from repfit.assign.sparse import PRICE_TIERS, price_tiers

        tier = (price_tiers(prices.to_numpy(float), block[S.REP_ID].map(prices).astype(float).fillna(0.0).to_numpy()),
                PRICE_TIERS)
    rows, kept_acc, bounds = (_top_k_grid if grid else _top_k_rows)(codes, rep_codes, p, key, owner, k,
                                                                 () if prices is None else DEEPER_TIMES, tier)
    out = block.iloc[rows].assign(**{LEFT_OUT: bounds[0][kept_acc]})
    if prices is None:
        return out
    deep, tiered = bounds[2:2 + len(DEEPER_TIMES)], bounds[2 + len(DEEPER_TIMES):]
    first = np.r_[True, kept_acc[1:] != kept_acc[:-1]] if len(kept_acc) else np.zeros(0, bool)
    return out.assign(**{NET_LEFT_OUT: bounds[1][kept_acc]},
                      **{f"{NET_LEFT_OUT}_{m * k}": b[kept_acc] for m, b in zip(DEEPER_TIMES, deep)},
                      **{f"{NET_LEFT_OUT}_tier{j}": np.where(first, b[kept_acc], np.nan) for j, b in enumerate(tiered)})


def _largest(values: np.ndarray, where: np.ndarray, n: int, codes: np.ndarray | None = None) -> np.ndarray:
    """(n,) the largest of ``values`` where ``where`` per account (NaN: none); a grid (n, R) or rows by ``codes``."""
    if codes is None:
        out = np.where(where, values, -np.inf).max(axis=1) if values.shape[1] else np.full(n, -np.inf)
    else:
        out = np.full(n, -np.inf)
        np.maximum.at(out, codes[where], values[where])
    return np.where(np.isfinite(out), out, np.nan)


def _top_k_grid(codes, rep_codes, p, key, owner, k, deeper_times, tier=None):
    """``top_k`` on a block holding every rep of each account in the same order (as ``score_blocks`` yields them):
    (accounts, reps) arrays and a partition per account, no sort of the whole block."""
    n = int(codes.max()) + 1 if len(codes) else 0
    R = len(p) // max(n, 1)
    K, P = key.reshape(n, R), p.reshape(n, R)
    def kept(m: int) -> np.ndarray:
        top = _best_of_each_row(K, m)
        for o in owner.T:
            top[np.flatnonzero(o >= 0), o[o >= 0]] = True
        return top

    keep = kept(k)
    ai, ci = np.nonzero(keep)
    order = np.lexsort((ci, -K[ai, ci], ai))  # by account, best first, ties in rep order (= row order)
    ai, ci = ai[order], ci[order]
    bounds = [_largest(P, ~keep, n)]
    if deeper_times:
        bounds += [_largest(K, ~keep, n)] + [_largest(K, ~kept(m * k), n) for m in deeper_times]
    if tier is not None:  # (the tier of each row, how many tiers)
        bounds += [_largest(K, ~keep & (tier[0][:R] == j)[None, :], n) for j in range(tier[1])]
    return ai * R + ci, ai, bounds


def _best_of_each_row(K: np.ndarray, m: int) -> np.ndarray:
    """(n, R) bool: each row's ``m`` largest, ties to the earlier column."""
    n, R = K.shape
    if m >= R:
        return np.ones((n, R), bool)
    kth = np.partition(K, R - m, axis=1)[:, R - m][:, None]
    above, tied = K > kth, K == kth
    need = m - above.sum(axis=1, keepdims=True)
    return above | (tied & (np.cumsum(tied, axis=1) <= need))


def _top_k_rows(codes, rep_codes, p, key, owner, k, deeper_times, tier=None):
    """``top_k`` on a block of rows in any order: one sort by account, then value."""
    n = int(codes.max()) + 1 if len(codes) else 0
    order = np.lexsort((np.arange(len(p)), -key, codes))  # by account, best first, ties in row order
    c = codes[order]
    start = np.r_[0, np.flatnonzero(c[1:] != c[:-1]) + 1]
    rank = np.arange(len(c)) - np.repeat(start, np.diff(np.r_[start, len(c)]))
    is_owner = (rep_codes[order][:, None] == owner[c]).any(axis=1)
    keep = (rank < k) | is_owner
    bounds = [_largest(p[order], ~keep, n, c)]
    if deeper_times:
        ranked = key[order]
        bounds += [_largest(ranked, ~keep, n, c)] + [_largest(ranked, ~((rank < m * k) | is_owner), n, c)
                                                      for m in deeper_times]
    if tier is not None:
        t = tier[0][order]
        bounds += [_largest(key[order], ~keep & (t == j), n, c) for j in range(tier[1])]
    return order[keep], c[keep], bounds


def read_plan(path: Path, ds: S.Dataset) -> tuple[pd.Series, pd.Series]:
    """(rep_id -> price, account_id -> planned rep_id) from a plan ``repfit assign`` wrote from candidates: the plan
    CSV at ``path`` and its ``<stem>_prices.csv``, for ``repfit score --top-k K --plan``.

    Raises
    ------
    SchemaError
        Naming the file, the column or the ids at fault, and the fix.
    """
    from repfit.io import unescape_ids

    reps, accs = pd.Index(ds.reps[S.REP_ID].astype(str)), pd.Index(ds.accounts[S.ACCOUNT_ID].astype(str))
    fix = "Fix: pass the plan CSV `repfit assign` wrote from a top-K scores file of this data set."
    if not path.is_file():  # before its prices: the file the user named is the one to report (review 16)
        raise SchemaError(f"{path}: plan file not found. {fix}", option="plan")
    prices = read_prices(path.with_name(path.stem + "_prices.csv"), reps)
    try:
        df = pd.read_csv(path, usecols=[S.ACCOUNT_ID, S.REP_ID], dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise SchemaError(f"{path}: plan file not found. {fix}", option="plan") from None
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise SchemaError(f"{path}: not a plan with columns {S.ACCOUNT_ID}, {S.REP_ID} ({exc}). {fix}",
                          option="plan") from None
    a, r = unescape_ids(df[S.ACCOUNT_ID], accs), unescape_ids(df[S.REP_ID], reps)
    for name, ids, known in ((S.ACCOUNT_ID, a, accs), (S.REP_ID, r, reps)):
        unknown = pd.Index(ids).difference(known)
        if len(unknown):
            raise SchemaError(f"{path}: column '{name}' names {len(unknown):,} ids the data does not hold, e.g. "
                              f"{listed(unknown[:5].tolist())}. {fix}", option="plan")
    twice = pd.Index(a)[pd.Index(a).duplicated()].unique()
    if len(twice):  # top_k looks each account's planned rep up by id (review 16: a pandas traceback mid-scoring)
        raise SchemaError(f"{path}: column '{S.ACCOUNT_ID}' repeats {len(twice):,} id{'s' if len(twice) > 1 else ''}, "
                          f"e.g. {listed(twice[:5].tolist())}: a plan gives each account one rep. {fix}", option="plan")
    return prices, pd.Series(np.asarray(r, object), index=np.asarray(a, object))


def read_prices(path: Path, reps: pd.Index) -> pd.Series:
    """rep_id -> price from a CSV with columns rep_id, price (``repfit assign``'s ``<out>_prices.csv``), for
    ``repfit score --top-k K --plan``; every rep of ``reps`` must have a finite price.

    Raises
    ------
    SchemaError
        Naming the file, the column or the reps at fault, and the fix.
    """
    fix = "Fix: pass the <out>_prices.csv that `repfit assign` wrote from a top-K plan of this data set."
    try:
        df = pd.read_csv(path, dtype={S.REP_ID: str}, keep_default_na=False, na_values={"price": [""]})
    except FileNotFoundError:
        raise SchemaError(f"{path}: prices file not found. {fix}", option="prices") from None
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise SchemaError(f"{path}: not a readable CSV ({type(exc).__name__}). {fix}", option="prices") from None
    missing = [c for c in (S.REP_ID, "price") if c not in df.columns]
    if missing:
        raise SchemaError(f"{path}: column(s) {listed(missing)} missing (found: {listed(df.columns.tolist())}). {fix}",
                          option="prices")
    price = pd.to_numeric(df["price"], errors="coerce")
    bad = df.loc[~np.isfinite(price.to_numpy(float)), "price"]
    if len(bad):
        raise SchemaError(f"{path}: column 'price' must be finite numbers; found {listed(bad.astype(str).tolist()[:5])} "
                          f"({len(bad):,} row{'s' if len(bad) > 1 else ''}). {fix}", option="prices")
    from repfit.io import unescape_ids

    # ids quoted as formulas on the way out (write_table), as read_plan undoes for the plan (review 16)
    prices = pd.Series(price.to_numpy(float), index=unescape_ids(df[S.REP_ID], reps).to_numpy(object))
    absent = reps.difference(prices.index)
    if len(absent):
        raise SchemaError(f"{path}: {len(absent):,} reps of the data have no price, e.g. {listed(absent[:5].tolist())}. "
                          f"{fix}", option="prices")
    return prices[~prices.index.duplicated()].reindex(reps)


SAMPLE_K = 40  # each sampled account's best reps by value the sample plan may use: no (sample, reps) array ...
SAMPLE_RANDOM = 20  # ... and about this many others at random, which chain every rep to the reps with room
SAMPLE_DENSE_MAX_PAIRS = 50_000_000  # sampled pairs up to which the sample's duals are exact (~2 GiB of arrays)


def sample_size(A: int, R: int) -> int:
    """Accounts scored in full to price the reps for ``top_k``: 5 per rep or 5% of the accounts, whichever is more."""
    return min(A, max(5 * R, A // 20))


def sample_prices(blocks, capacity: pd.Series, n_accounts: int, seed: int = 0,
                  dense_max: int = SAMPLE_DENSE_MAX_PAIRS) -> pd.Series:
    """rep_id -> price (expected-value units): the LP duals of capacity of the best assignment of a sample of
    accounts, scored in full (``blocks``: frames of every rep for each sampled account), each rep's capacity
    scaled to the sample's share of all ``n_accounts`` (rounded at random, so the sample is as tight as the whole).
    A rep everyone ranks first is priced at what it adds beyond its capacity's worth; reps with room are free.

    Up to ``dense_max`` sampled pairs, the duals are exact (a certified flow over all of them). Beyond (10,000
    reps x 50,000 sampled accounts is 500M pairs), each account keeps its ``SAMPLE_K`` best pairs by value and
    ``SAMPLE_RANDOM`` others, block by block, and the duals are those of the flow on them: noisier (at 1,000 x
    100,000 the bound they give was ~20x looser), which the second pass (``score --plan``) makes up for. A full
    rep that no chain of kept pairs links to a rep with room gets the highest price told."""
    reps = pd.Index(capacity.index.astype(str))
    by_value, pick = pd.Series(0.0, index=reps), np.random.default_rng(seed + 1)

    def thin(b: pd.DataFrame) -> pd.DataFrame:
        return b[b.index.isin(top_k(b, SAMPLE_K, prices=by_value).index)
                 | (pick.random(len(b)) < SAMPLE_RANDOM / len(reps))]

    frames, rows, dense = [], 0, True
    for b in blocks:
        rows += len(b)
        if dense and rows > dense_max:
            dense, frames = False, [thin(f) for f in frames]
        frames.append(b if dense else thin(b))
    df = pd.concat(frames, ignore_index=True)
    a, _ = pd.factorize(df[S.ACCOUNT_ID], sort=False)
    r = reps.get_indexer(df[S.REP_ID].astype(str))
    n, R = int(a.max()) + 1, len(reps)
    rng = np.random.default_rng(seed)
    share = capacity.to_numpy(float) * n / max(n_accounts, 1)
    cap = np.maximum(1, np.floor(share) + (rng.random(R) < share - np.floor(share))).astype(np.int64)
    if cap.sum() < n:  # less room than the whole has: no price can be told, rank by value
        return pd.Series(0.0, index=reps)
    ev = df["expected_value"].to_numpy(float)
    y = _exact_duals(a, r, ev, n, R, cap) if dense else _kept_duals(a, r, df[P_WIN].to_numpy(float), ev, n, R, cap)
    return pd.Series(y, index=reps)


def _exact_duals(a: np.ndarray, r: np.ndarray, ev: np.ndarray, n: int, R: int, cap: np.ndarray) -> np.ndarray:
    """(R,) capacity duals (value units) of the sample over all its pairs: a certified pruned flow."""
    from repfit.assign.problem import Problem
    from repfit.assign.solvers import _certified_flow, _top_k

    values = np.zeros((n, R))
    values[a, r] = ev
    p = Problem(values=values, capacity=cap, current=np.full(n, -1), locked=np.zeros(n, bool))
    V, mask = p.int_values, p.mask()
    got = _certified_flow(p, V, _top_k(V, mask, np.zeros(R), 15), mask, np.zeros(R, np.int64), 30, 2)
    return np.zeros(R) if got is None else got[1] / p.scale


def _kept_duals(a: np.ndarray, r: np.ndarray, p_win: np.ndarray, ev: np.ndarray, n: int, R: int,
                cap: np.ndarray) -> np.ndarray:
    """(R,) capacity duals (value units) of the flow on the kept pairs of the sample (no (sample, reps) array)."""
    from repfit.assign import sparse as sp
    from repfit.assign.solvers import _flow_on_arcs

    order = np.lexsort((r, a))
    arcs = sp.Arcs(a[order].astype(np.int64), r[order].astype(np.int64), p_win[order], ev[order])
    prob = sp.shape_only(dict(capacity=cap, current=np.full(n, -1), locked=np.zeros(n, bool)), n, R)
    scale = sp.value_scale(arcs, sp.LeftOut(np.full(n, -np.inf)), n, R)
    gain = sp.int_gains(arcs, prob, scale)
    x = _flow_on_arcs(prob, arcs.acc, arcs.rep, gain, floors=False)  # an account its pairs cannot hold: left out
    y = sp.edge_prices(prob, arcs, gain, x)
    unreached = y > R * float(gain.max() - gain.min())  # no chain of kept pairs to a rep with room: not told
    y[unreached] = y[~unreached].max() if (~unreached).any() else 0.0
    return y / scale
