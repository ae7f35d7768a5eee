"""Headcount check for planners: can the reps cover the accounts, what each rep is worth, and what more
reps would add (with diminishing returns). Every figure is an exact optimum of the assignment problem
(free re-assignment: no continuity bonus, no move budget; locks and the required match hold)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd

from repfit import schema as S
from repfit.assign.bands import reshared
from repfit.assign.plan import AssignConfig, build_problem
from repfit.assign.problem import Problem, check_feasible
from repfit.assign.solvers import solve
from repfit.errors import InfeasibleAssignment
from repfit.progress import NO_BAR, Bar
from repfit.suggest import id_position


def _optimum(prob: Problem, time_limit: float | None = None) -> float:
    """Best total expected value (float units) of ``prob``, or NaN if infeasible; ``time_limit``: seconds for the
    solve (None: the solver's default), past which a banded solve gives its best assignment found."""
    try:
        check_feasible(prob)
        x = solve(prob, "flow" if not prob.bands else "auto", time_limit=time_limit).assignment
    except InfeasibleAssignment:
        return float("nan")
    return float(prob.values[np.arange(len(x)), x].sum())


def _without(prob: Problem, r: int) -> Problem:
    """The problem with rep ``r`` gone: its accounts become unassigned (and unlocked)."""
    keep = np.arange(prob.shape[1]) != r
    cur = np.where(prob.current == r, -1, np.where(prob.current > r, prob.current - 1, prob.current))
    return replace(prob, values=prob.values[:, keep], capacity=prob.capacity[keep], current=cur,
                   locked=prob.locked & (prob.current != r),
                   allowed=None if prob.allowed is None else prob.allowed[:, keep],
                   rep_names=None if prob.rep_names is None else prob.rep_names[keep],
                   bands=reshared(prob.bands, np.flatnonzero(keep)))


def _with_copies(prob: Problem, like: int, n: int) -> Problem:
    """The problem with ``n`` more reps, each a copy of rep ``like`` (its P(win) column, capacity, attributes)."""
    if n == 0:
        return prob
    extra = np.repeat(prob.values[:, [like]], n, axis=1)
    allowed = None if prob.allowed is None else np.hstack([prob.allowed, np.repeat(prob.allowed[:, [like]], n, axis=1)])
    names = None if prob.rep_names is None else np.concatenate([prob.rep_names, [f"new{i + 1}" for i in range(n)]])
    columns = np.concatenate([np.arange(prob.shape[1]), np.full(n, like)])
    return replace(prob, values=np.hstack([prob.values, extra]),
                   capacity=np.concatenate([prob.capacity, np.full(n, prob.capacity[like])]),
                   allowed=allowed, rep_names=names, bands=reshared(prob.bands, columns))


def median_rep(p_win: np.ndarray) -> int:
    """The rep whose mean P(win) over all accounts is the median one."""
    return int(np.argsort(p_win.mean(axis=0), kind="stable")[p_win.shape[1] // 2])


@dataclass(frozen=True)
class Coverage:
    """Can the reps cover the accounts, and how many reps like ``like`` it takes if not."""

    accounts: int
    reps: int
    capacity: int  # total
    shortfall: int  # accounts beyond the total capacity (0 when covered)
    reps_needed: int  # reps like ``like`` that cover the shortfall
    like: str  # rep_id of the profile added reps copy
    like_capacity: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class Headcount:
    """The headcount check: coverage, the value of each rep, and the value of more reps.

    ``rep_value`` has one row per rep, ranked by value lost (empty under a shortfall): rep_id,
    value_lost_if_gone (inf if the others cannot cover its accounts), share_of_total, covered_without.
    ``added`` has one row per headcount tried: reps_added, total_value, marginal_gain, gain_vs_today.
    """

    coverage: Coverage
    base_value: float  # best total expected value with today's reps (NaN under a shortfall)
    rep_value: pd.DataFrame
    added: pd.DataFrame
    bands: tuple[str, ...] = ()  # the balance bands every solve held, as messages name them


def headcount(ds: S.Dataset, p_win: np.ndarray, cfg: AssignConfig | None = None, add: int = 3,
              like: str | None = None, bar: Bar = NO_BAR) -> Headcount:
    """Coverage, the value of each rep (expected value lost if it left), and the value of adding 1..``add`` reps
    with the profile of rep ``like`` (default: the median rep), beyond the number needed to cover a shortfall.

    Parameters
    ----------
    ds, p_win : the data set and its (A, R) P(win) matrix.
    cfg : the constraints (``require_match``; continuity and the move budget do not apply); its ``time_limit``
        bounds each solve.
    add : how many reps beyond those that cover a shortfall to evaluate.
    like : rep_id whose profile (P(win) column, capacity, attributes) added reps copy.
    bar : advanced by one after each solve.

    Returns
    -------
    Headcount

    Raises
    ------
    InfeasibleAssignment
        When a constraint other than total capacity cannot hold, even with the reps that cover a shortfall.
    """
    prob, match = build_problem(ds, p_win, replace(cfg or AssignConfig(), max_moves=None, continuity=0.0))
    rep_ids = ds.reps[S.REP_ID].astype(str).to_numpy()
    lk = median_rep(p_win) if like is None else id_position(ds, "reps", like, "like")
    cap = prob.capacity
    shortfall = max(0, prob.shape[0] - int(cap.sum()))
    needed = math.ceil(shortfall / max(1, int(cap[lk])))
    coverage = Coverage(accounts=prob.shape[0], reps=prob.shape[1], capacity=int(cap.sum()), shortfall=shortfall,
                        reps_needed=needed, like=str(rep_ids[lk]), like_capacity=int(cap[lk]))
    # beyond the total: locks above a rep's capacity, or a required-match value short of capacity, must stop
    # here with their own message rather than show as "covered" with no value
    with_needed = _with_copies(prob, lk, needed)
    try:
        check_feasible(with_needed, {k: (np.concatenate([rv, np.repeat(rv[lk], needed)]), av) for k, (rv, av) in match.items()})
    except InfeasibleAssignment as exc:
        prefix = f"even with the {needed} rep(s) like {rep_ids[lk]} that cover the shortfall: " if needed else ""
        raise InfeasibleAssignment(prefix + str(exc), option=exc.option) from None
    limit = (cfg or AssignConfig()).time_limit
    base = _optimum(prob, limit)
    rep_value = _rep_values(prob, base, rep_ids, bar, limit)
    added = _added_values(prob, base, lk, needed, add, bar, limit)
    bands = tuple(b.describe() for b in prob.bands if b.tolerance is not None)
    return Headcount(coverage, base, rep_value, added, bands)


def _rep_values(prob: Problem, base: float, rep_ids: np.ndarray, bar: Bar, limit: float | None = None) -> pd.DataFrame:
    """The expected value lost if each rep left, ranked (empty when today's reps cannot cover the accounts)."""
    rows = []
    if np.isfinite(base):
        for r in range(prob.shape[1]):
            v = _optimum(_without(prob, r), limit)
            rows.append({S.REP_ID: rep_ids[r], "value_lost_if_gone": base - v if np.isfinite(v) else np.inf,
                         "share_of_total": (base - v) / base if np.isfinite(v) and base else np.nan,
                         "covered_without": bool(np.isfinite(v))})
            bar.update(1)
    rep_value = pd.DataFrame(rows, columns=[S.REP_ID, "value_lost_if_gone", "share_of_total", "covered_without"])
    return rep_value.sort_values("value_lost_if_gone", ascending=False, ignore_index=True)


def _added_values(prob: Problem, base: float, like: int, needed: int, add: int, bar: Bar,
                  limit: float | None = None) -> pd.DataFrame:
    """The best total with ``needed`` .. ``needed + add`` more reps like ``like`` (0 excluded)."""
    added, prev = [], base
    for n in range(needed, needed + add + 1):
        v = base if n == 0 else _optimum(_with_copies(prob, like, n), limit)
        if n > 0:
            added.append({"reps_added": n, "total_value": v, "marginal_gain": v - prev if np.isfinite(prev) else np.nan,
                          "gain_vs_today": v - base if np.isfinite(base) else np.nan})
        prev = v
        if n > 0:
            bar.update(1)
    return pd.DataFrame(added, columns=["reps_added", "total_value", "marginal_gain", "gain_vs_today"])


def format_headcount(h: Headcount, top: int = 10) -> str:
    """The headcount check as the lines ``repfit capacity`` prints."""
    c = h.coverage
    head = f"coverage: {c.accounts:,} accounts, {c.reps} reps, total capacity {c.capacity:,} -> "
    if c.shortfall:
        lines = [head + f"SHORTFALL of {c.shortfall:,} accounts: {c.reps_needed} more rep"
                 f"{'s' if c.reps_needed > 1 else ''} like {c.like} (capacity {c.like_capacity}) needed to cover them"]
    else:
        lines = [head + f"covered ({c.capacity - c.accounts:,} spare slots)",
                 f"best total expected value with today's reps: {h.base_value:,.0f}",
                 f"expected value lost if a rep left (top {top} of {len(h.rep_value)}):"]
        for r in h.rep_value.head(top).itertuples():
            v = ("the others cannot cover its accounts" if not r.covered_without
                 else f"{r.value_lost_if_gone:>14,.0f}  ({100 * r.share_of_total:.1f}%)")
            lines.append(f"  {r.rep_id:<12} {v}")
    lines.append(f"adding reps like {c.like} (capacity {c.like_capacity}):")
    for r in h.added.itertuples():
        marg = "" if not np.isfinite(r.marginal_gain) else f"  marginal {r.marginal_gain:+,.0f}"
        lines.append(f"  +{r.reps_added}: total {r.total_value:,.0f}{marg}")
    if h.bands and (h.added.marginal_gain < 0).any():
        lines.append(f"  a negative marginal is the bands' doing ({', '.join(h.bands)}): each added rep must hold its "
                     "share, taken from reps who win those accounts more often; --balance none shows capacity alone")
    return "\n".join(lines)
