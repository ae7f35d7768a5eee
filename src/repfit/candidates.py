"""Candidates instead of all pairs (issue 14, point 4).

``repfit score --top-k K`` keeps, of each account's scored pairs, its K best reps by P(win) and its current rep,
and records on each kept row the largest P(win) of the account's pairs it left out (``p_win_left_out``).
``repfit assign`` solves on those pairs only and proves the plan optimal over *all* pairs from that bound
(``certify``), or reports the gap to a proven bound and how many accounts' bounds are open.

Why the bound is enough: rep prices ``y_r`` >= 0 (LP duals of capacity) from the plan on the candidates give,
for any assignment z over all pairs, ``value(z) <= sum_a max_r (V[a, r] - y_r) + sum_r y_r cap_r``. For a
left-out pair, ``V[a, r] <= U_a`` (the account's left-out bound), so ``V[a, r] - y_r <= U_a - min_r y_r`` over
the reps left out of its list. The plan meets the bound when no account's ``U_a - min y`` exceeds its own
``V[a, x_a] - y_(x_a)``; the sum of the excesses is a valid gap otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

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


@dataclass(frozen=True)
class Bound:
    """What the left-out pairs can add to a plan solved on candidates (``Problem.int_values`` units)."""

    certified: bool  # no left-out pair can improve the plan: optimal over all pairs
    gap: int  # the most the left-out pairs can add (0 when certified)
    open_accounts: int  # accounts whose left-out bound exceeds what they hold in the plan
    note: str


def left_out_values(prob, cand: Candidates, potential: np.ndarray | None) -> np.ndarray:
    """(A,) int64: an upper bound on ``prob.int_values`` of any pair of the account left out of ``cand`` (a very
    negative number when none is left out). ``potential``: each account's potential when the objective is expected
    value (values = P(win) x potential), None when it is P(win) itself. A left-out current pair gets the continuity
    bonus and the one-unit tie-break too."""
    u = np.nan_to_num(cand.left_out.astype(float), nan=-1.0)
    v = u * (potential if potential is not None else 1.0)
    listed = np.zeros(len(u), bool)
    has = prob.current >= 0
    a = np.flatnonzero(has)
    if len(a):  # is the current pair among the candidates? (it is whenever the scores saw today's owners)
        R = prob.shape[1]
        listed[a] = np.isin(a * R + prob.current[a], cand.acc.astype(np.int64) * R + cand.rep)
    bonus = np.where(has & ~listed, 1.0 + prob.continuity, 1.0)
    out = np.ceil(np.maximum(v, 0.0) * bonus * prob.scale).astype(np.int64) + 1 + (has & ~listed)
    return np.where(u < 0, np.iinfo(np.int64).min // 4, out)


def certify(prob, assignment: np.ndarray, cand: Candidates, potential: np.ndarray | None, V=None) -> Bound:
    """Whether ``assignment``, optimal over the candidate pairs of ``prob`` (its ``allowed`` = the candidates),
    is optimal over all pairs, from the candidates' left-out bounds; else the gap (see the module docstring).

    Only for problems whose constraints are capacity and count bands (the flow solvers' problems): their rep
    prices are LP duals. ``V``: the integer values solved (default ``prob.int_values``)."""
    from repfit.assign.solvers import rep_prices

    V = prob.int_values if V is None else V
    acc, rep = np.nonzero(prob.mask())
    y = rep_prices(prob, V, assignment, acc, rep)
    A, R = prob.shape
    u = V[np.arange(A), assignment] - y[assignment]
    U = left_out_values(prob, cand, potential)
    cmask = cand.mask()
    ymin = np.empty(A)
    for lo in range(0, A, 8192):  # the cheapest rep each account left out
        ymin[lo:lo + 8192] = np.where(cmask[lo:lo + 8192], np.inf, y[None, :]).min(axis=1)
    reach = U - ymin  # the most a left-out pair can be worth at prices y: its bound on P(win) at the cheapest rep ...
    if cand.left_out_net is not None and cand.prices is not None and potential is not None:
        # ... or its value net of the scoring prices pi, plus the most pi - y of a rep it left out (current pairs
        # left out carry a continuity bonus this does not bound: the first bound only for them)
        pi = cand.prices * prob.scale
        drift = np.empty(A)
        for lo in range(0, A, 8192):
            drift[lo:lo + 8192] = np.where(cmask[lo:lo + 8192], -np.inf, (pi - y)[None, :]).max(axis=1)
        net = np.ceil(cand.left_out_net * prob.scale + drift + 1e-6 * np.abs(U)) + 2  # float32 P(win) on reading
        plain = (prob.current < 0) | np.isin(np.arange(A) * R + np.maximum(prob.current, 0),
                                             cand.acc.astype(np.int64) * R + cand.rep)
        reach = np.where(plain & np.isfinite(net), np.minimum(reach, net), reach)
    excess = np.where(np.isfinite(ymin) & ~prob.locked, reach - u, -np.inf)  # a locked account has no other pair
    open_ = np.flatnonzero(excess > 0)
    gap = int(np.ceil(excess[open_].sum())) if len(open_) else 0
    if not len(open_):
        return Bound(True, 0, 0, f"certified optimal over all {A * R:,} pairs from the candidates' left-out bounds "
                     f"({len(cand.acc):,} candidate pairs)")
    return Bound(False, gap, len(open_),
                 f"not certified over all pairs: {len(open_):,} accounts' left-out pairs could be worth more than what "
                 f"they hold; at most {gap / prob.scale:,.4g} below the optimum. Fix: score with a larger --top-k "
                 f"(the left-out bound tightens as K grows) or without --top-k")


def with_bound(sol, b: Bound):
    """``sol`` (a ``Solution`` on the candidates) with what the left-out bound proves."""
    bound = float(sol.int_objective + b.gap)
    gap = b.gap / abs(bound) if bound else 0.0
    return replace(sol, certified=sol.certified and b.certified, notes=(*sol.notes, b.note),
                   bound=bound, gap=gap if sol.certified else sol.gap)


def bound_plan(prob, sol, cand: Candidates, potential: np.ndarray | None, collapsed: bool = False):
    """``sol``, solved on the candidates of ``prob``, with what their left-out bound proves over all pairs.

    Proven for capacity and accounts (count) bands, the flow solvers' problems; under tiers, weighted bands, a
    move budget or account families kept together (``collapsed``) the plan is the best found on the candidates
    and says it is not proven over all pairs."""
    others = [what for what, on in (("tier balance", prob.tiers is not None), ("weighted balance bands",
              bool(prob.weighted_bands())), ("a move budget", prob.max_moves is not None),
              ("account families", collapsed)) if on]
    if others:
        return replace(sol, certified=False, notes=(*sol.notes, f"not proven over all pairs: solved on the candidates "
                       f"only; the left-out bound is proven without {', '.join(others)}"))
    return with_bound(sol, certify(prob, sol.assignment, cand, potential))
