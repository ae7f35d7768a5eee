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
from repfit.scores_io import LEFT_OUT, Candidates

P_WIN = "p_win"


def top_k(block: pd.DataFrame, k: int, current: pd.Series | None = None) -> pd.DataFrame:
    """The rows of ``block`` worth keeping: each account's ``k`` best reps by P(win), plus its current rep.

    Parameters
    ----------
    block : scored pairs (``repfit.scoring.SCORE_COLUMNS``), holding *every* rep of each of its accounts (as
        ``score_blocks`` yields them), in any row order.
    k : reps kept per account by P(win) (ties: the earlier row).
    current : account_id -> its current rep_id (missing or NA: none), e.g. the accounts table's
        ``current_rep_id`` indexed by ``account_id``.

    Returns
    -------
    DataFrame : the kept rows, by account then P(win) descending, with column ``p_win_left_out``: the largest
    P(win) among the account's rows NOT kept (NaN when every rep was kept).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1 (got {k})")
    codes, _ = pd.factorize(block[S.ACCOUNT_ID], sort=False)
    p = block[P_WIN].to_numpy(float)
    order = np.lexsort((np.arange(len(p)), -p, codes))  # by account, best first, ties in row order
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
    out = block.iloc[order[keep]]
    return out.assign(**{LEFT_OUT: np.where(np.isfinite(left), left, np.nan)[c[keep]]})


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
    excess = np.where(np.isfinite(ymin) & ~prob.locked, U - ymin - u, -np.inf)  # a locked account has no other pair
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
