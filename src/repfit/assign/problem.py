"""The assignment problem: values, capacities and side constraints; feasibility stated before solving.

Every solver works on the same integer values (``Problem.int_values``), so their optimal totals can be
compared exactly; the float objective is reported from the original values.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from repfit.errors import InfeasibleAssignment
from repfit.messages import listed  # the one renderer of "a, b, c (and N more)" in messages

# every integer a solver forms from the values, times the node count, stays below this: OR-tools' min-cost flow
# refuses (BAD_COST_RANGE) once max |cost| x nodes passes about 2**63 / 2.4 (measured), so 16x margin
INT_LIMIT = 2**59
FLOAT_EXACT = 2**52  # ... and below this where a solver adds them up in float64 (Hungarian, MILP): exact there


def _read_only(a: np.ndarray | None) -> np.ndarray | None:
    """A read-only view of ``a`` (the caller's array stays writeable): a problem's arrays cannot change under it."""
    if a is None:
        return None
    view = np.asarray(a).view()
    view.flags.writeable = False
    return view


@dataclass(frozen=True, eq=False)
class Band:
    """Each rep's total of one metric over the accounts it gets stays within ``[lower[r], upper[r]]``.

    ``--balance potential=10%`` is a band with ``weights`` = each account's potential and bounds 0.9 / 1.1 x the
    rep's target (its share of the total, by quota or capacity); a workload capacity is a band with ``lower`` 0;
    tier balance is one band per tier with 0/1 weights.

    Parameters
    ----------
    metric : what is summed, for messages and summaries ("accounts", "potential", "expected_value",
        "workload", an account column, "tier A").
    weights : (A,) float >= 0, the metric of each account; or (A, R) when it depends on the rep (expected value).
    lower, upper : (R,) float bounds on each rep's total (-inf / inf: no bound on that side).
    tolerance : the +-share that set the bounds (0.1 for 10%), or None for a hard limit (workload capacity).
    target : (R,) each rep's target total the bounds surround (None for a hard limit).
    """

    metric: str
    weights: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    tolerance: float | None = None
    target: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in ("weights", "lower", "upper", "target"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _read_only(np.asarray(getattr(self, name), dtype=float)))

    def totals(self, assignment: np.ndarray) -> np.ndarray:
        """(R,) each rep's total of the metric under ``assignment`` ((A,) rep index per account)."""
        R = len(self.lower)
        w = self.weights if self.weights.ndim == 1 else self.weights[np.arange(len(assignment)), assignment]
        return np.bincount(assignment, weights=w, minlength=R)

    def violation(self, assignment: np.ndarray) -> np.ndarray:
        """(R,) how far each rep's total lies outside the band (0 inside)."""
        t = self.totals(assignment)
        return np.maximum(self.lower - t, 0) + np.maximum(t - self.upper, 0)

    @property
    def active(self) -> bool:
        """Some rep has a finite bound (a band of infinite bounds constrains nothing)."""
        return bool(np.isfinite(self.lower).any() or np.isfinite(self.upper).any())

    @property
    def is_count(self) -> bool:
        """Every weight is 1: a bound on each rep's number of accounts, which the flow solvers model exactly."""
        return self.weights.ndim == 1 and bool(np.all(self.weights == 1))

    def aim(self) -> np.ndarray | None:
        """(R,) the total each rep aims at, from which ``tolerance`` set the bounds: ``target`` when given, else
        their midpoint, or the one finite bound over (1 -/+ tolerance); None for a hard limit (no tolerance)."""
        if self.tolerance is None:
            return None
        if self.target is not None:
            return self.target
        t, lo, hi = self.tolerance, self.lower, self.upper
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(np.isfinite(lo) & np.isfinite(hi), (lo + hi) / 2,
                            np.where(np.isfinite(hi), hi / (1 + t), lo / max(1 - t, 1e-12)))

    def describe(self) -> str:
        """The band as messages name it: "potential +-10%", "workload (hard limit)"."""
        return f"{self.metric} {_pct(self.tolerance)}" if self.tolerance is not None else f"{self.metric} (hard limit)"


@dataclass(frozen=True, eq=False)
class Problem:
    """Assign each of A accounts to one of R reps.

    Immutable: derive a changed problem with ``dataclasses.replace(p, ...)``; the derived integer values
    (``int_values``, ``scale``) are computed from the fields on first use, so a replaced problem gets its own.
    The array fields are read-only views of the arrays passed in (no copy: do not change those afterwards).

    Parameters
    ----------
    values : (A, R) float, the objective weight of each pair (expected value or P(win)), before continuity.
    capacity : (R,) int, most accounts per rep.
    current : (A,) int, index of the current rep or -1.
    locked : (A,) bool, must keep the current rep.
    allowed : (A, R) bool or None, pairs permitted by the required attribute match (``require_match``; None: all).
    tiers : (A,) int tier codes, or None when tiers are not balanced.
    continuity : W, bonus of W x value for keeping the current rep.
    max_moves : at most this many accounts with a current rep change rep (None: no limit).
    rep_names, account_names, tier_names : (R,), (A,), (T,) labels for messages, or None.
    bands : each rep's total of a metric within bounds (``Band``); () for none.
    kept : (A, R) int or None: how many accounts keep their current rep if account (unit) a goes to rep r, for
        ``max_moves``; set by ``families.collapse`` when a unit stands for several accounts with a current rep.
        None: one on each account's current pair.
    """

    values: np.ndarray
    capacity: np.ndarray
    current: np.ndarray
    locked: np.ndarray
    allowed: np.ndarray | None = None
    tiers: np.ndarray | None = None
    continuity: float = 0.0
    max_moves: int | None = None
    rep_names: np.ndarray | None = None
    account_names: np.ndarray | None = None
    tier_names: np.ndarray | None = None
    bands: tuple[Band, ...] = ()
    kept: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in ("values", "capacity", "current", "locked", "allowed", "tiers", "kept"):
            object.__setattr__(self, name, _read_only(getattr(self, name)))

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape

    def objective_values(self) -> np.ndarray:
        """Values with the continuity bonus applied (float)."""
        v = np.asarray(self.values, dtype=float)
        if self.continuity:
            v = v.copy()
            a = np.flatnonzero(self.current >= 0)
            v[a, self.current[a]] *= 1.0 + self.continuity
        return v

    @cached_property
    def scale(self) -> float:
        """Integer units per value unit: as fine as int64 allows for this problem's size (issue 11, item 1).

        The largest integer a solver forms is a penalty of 3 x (A + 1) x the largest gain, a gain being a value
        plus a keep bonus of at most twice the value range; OR-tools' cost scaling multiplies costs by the node
        count; the Hungarian method and HiGHS add them up in float64, exact below ``FLOAT_EXACT``. So the
        largest |value| maps to ``min(INT_LIMIT / (nodes + 1), FLOAT_EXACT) / (9 (A + 1))`` units: 1.5e10 units
        on a 40 x 2,000 org with tier balance, 1.5e12 on 200 x 8, 6e6 on 1,000 x 100,000 (a single fixed scale of
        1e7 rounded a small org's small accounts to nothing beside one of potential 1e13). Each pair's value is then off by at most half a unit, so a
        solution optimal for ``int_values`` is within ``value_tolerance`` of the real-valued optimum."""
        ov = self.objective_values()
        vmax = max(float(ov.max()), -float(ov.min())) if ov.size else 0.0  # |values|' largest, without an |ov| copy
        A, R = self.shape
        tiers = 0 if self.tiers is None or not len(self.tiers) else int(self.tiers.max()) + 1
        nodes = A + R + 2 + R * tiers
        return min(INT_LIMIT / (nodes + 1), FLOAT_EXACT) / (9.0 * (A + 1)) / vmax if vmax > 0 else 1.0

    @property
    def value_tolerance(self) -> float:
        """How far (in value units) an optimum of the rounded values can be from the real-valued optimum:
        each of the A pairs of either assignment is off by at most half a unit, plus the unit of the tie-break."""
        return 2 * self.shape[0] / self.scale

    @cached_property
    def int_values(self) -> np.ndarray:
        """(A, R) int64, read-only: objective values scaled and rounded, plus one unit on each account's current
        pair, so that among assignments of equal value the one that moves fewest accounts wins (issue 11, item 6:
        a flat objective must not move accounts for nothing). Forbidden pairs are not marked here (see ``mask``)."""
        ov, scale = self.objective_values(), self.scale
        V = np.empty(ov.shape, np.int64)
        for lo in range(0, len(ov), 8192):  # in blocks: no float temporaries of the whole matrix (issue 14, point 2)
            V[lo:lo + 8192] = np.rint(ov[lo:lo + 8192] * scale)
        a = np.flatnonzero(self.current >= 0)
        V[a, self.current[a]] += 1
        return _read_only(V)

    @property
    def flat(self) -> bool:
        """Every pair has the same objective value: any assignment is as good as any other."""
        v = self.objective_values()
        return bool(v.size == 0 or np.ptp(v) == 0)

    def mask(self) -> np.ndarray:
        """(A, R) bool: pairs a solution may use (the required match and locks applied).

        A locked account may use only its current rep, and only if the required match allows that pair (else
        it has no pair: ``check_feasible`` names it).
        """
        A, R = self.shape
        m = np.ones((A, R), bool) if self.allowed is None else self.allowed.copy()
        lk = np.flatnonzero(self.locked)
        if len(lk):
            keep = m[lk, self.current[lk]]
            m[lk] = False
            m[lk, self.current[lk]] = keep
        return m

    def moves(self, assignment: np.ndarray) -> int:
        """Accounts with a current rep that change rep under ``assignment``."""
        if self.kept is not None:
            return int(self.kept.sum() - self.kept[np.arange(len(assignment)), assignment].sum())
        has = self.current >= 0
        return int((assignment[has] != self.current[has]).sum())

    def int_objective(self, assignment: np.ndarray) -> int:
        return int(self.int_values[np.arange(len(assignment)), assignment].sum())

    def tier_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(R, T) lower and upper counts per rep and tier: within one of the fair share.

        Each account's unit is shared among the reps allowed to own it (required match), in proportion to
        capacity; a rep's fair share of tier t is the sum over tier-t accounts. With no restriction this is
        ``n_t * capacity_r / sum(capacity)``.
        """
        A, R = self.shape
        T = int(self.tiers.max()) + 1
        share = np.zeros((R, T))
        cap = self.capacity.astype(float)
        for lo in range(0, A, 8192):
            hi = min(A, lo + 8192)
            w = np.broadcast_to(cap, (hi - lo, R)) if self.allowed is None else self.allowed[lo:hi] * cap[None, :]
            w = w / np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
            onehot = np.eye(T)[self.tiers[lo:hi]]
            share += w.T @ onehot
        lower = np.maximum(0, np.ceil(share - 1 - 1e-9)).astype(np.int64)
        upper = np.floor(share + 1 + 1e-9).astype(np.int64)
        return lower, upper

    def tier_bands(self) -> tuple[Band, ...]:
        """Tier balance as bands: one per tier, weights 1 on its accounts, bounds ``tier_bounds()`` (hard)."""
        if self.tiers is None:
            return ()
        lower, upper = self.tier_bounds()
        return tuple(Band(f"tier {self.name_tier(t)}", (self.tiers == t).astype(float), lower[:, t], upper[:, t])
                     for t in range(lower.shape[1]))

    def count_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(R,) int64 fewest and most accounts each rep may get: capacity and every count band (``Band.is_count``).

        A count bound is an integer: 9.000000001 from float arithmetic means 9 (1e-9 slack each side)."""
        A, R = self.shape
        lo, hi = np.zeros(R, np.int64), self.capacity.astype(np.int64)
        for b in self.bands:
            if b.is_count and b.active:
                lo = np.maximum(lo, np.ceil(np.clip(b.lower - 1e-9, 0, A)).astype(np.int64))
                hi = np.minimum(hi, np.floor(np.clip(b.upper + 1e-9, -1, A)).astype(np.int64))
        return lo, hi

    def weighted_bands(self) -> tuple[Band, ...]:
        """The active bands that are not counts: their weights vary by account (or rep), so they need a MILP."""
        return tuple(b for b in self.bands if b.active and not b.is_count)

    def name_rep(self, r: int) -> str:
        return str(self.rep_names[r]) if self.rep_names is not None else f"rep #{r}"

    def name_tier(self, t: int) -> str:
        return str(self.tier_names[t]) if self.tier_names is not None else str(t)


def check_feasible(p: Problem, match_column: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> None:
    """Raise ``InfeasibleAssignment`` with the shortfall and the fix if the constraints cannot all hold.

    Checks, in order: total capacity, locked accounts against capacity, the required attribute match, tier
    balance, each band (``_check_bands``), the move budget. Each is a necessary condition: passing them all does
    not prove feasibility (the solvers say so when it fails), but failing one proves infeasibility.

    Parameters
    ----------
    p : the problem.
    match_column : attribute -> (rep values (R,), account values (A,)), for the required-match messages.

    Raises
    ------
    InfeasibleAssignment
        With ``option`` naming the setting at fault (``require_match``, ``balance_tiers``, ``balance``,
        ``max_moves``), if any.
    """
    _check_total_capacity(p)
    _check_locked_capacity(p)
    if p.allowed is not None:
        _check_require_match(p, match_column or {})
    if p.tiers is not None:
        _check_tier_balance(p)
    if p.bands:
        _check_bands(p)
    if p.max_moves is not None and p.max_moves < 0:
        raise InfeasibleAssignment(f"the move budget must be 0 or more (got {p.max_moves}).", option="max_moves")


def _check_total_capacity(p: Problem) -> None:
    A, _ = p.shape
    cap = p.capacity.astype(np.int64)
    total = int(cap.sum())
    if total < A:
        short = A - total
        typical = max(1, int(np.median(cap)))
        add = math.ceil(short / typical)
        raise InfeasibleAssignment(
            f"capacity {total:,} < {A:,} accounts: raise capacity by {short:,} or add {add} rep"
            f"{'s' if add > 1 else ''} of capacity {typical}."
        )


def _check_locked_capacity(p: Problem) -> None:
    lk = np.flatnonzero(p.locked)
    if not len(lk):
        return
    cap = p.capacity.astype(np.int64)
    n_locked = np.bincount(p.current[lk], minlength=p.shape[1])
    over = np.flatnonzero(n_locked > cap)
    if len(over):
        parts = [f"{p.name_rep(r)} has {n_locked[r]} locked accounts but capacity {cap[r]}" for r in over]
        raise InfeasibleAssignment(
            f"locked accounts exceed capacity: {listed(parts)}. Fix: raise those reps' capacity to their "
            f"locked count, or unlock {int((n_locked - cap)[over].sum())} account(s)."
        )


def _check_require_match(p: Problem, match_column: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    check_match_values(p, match_column)
    lk = np.flatnonzero(p.locked)
    bad = lk[~p.allowed[lk, p.current[lk]]]
    if len(bad):
        _locked_across(p, bad)
    empty = np.flatnonzero(~p.allowed.any(axis=1))
    if len(empty):
        raise InfeasibleAssignment(f"{len(empty)} account(s) have no allowed rep under the required match.",
                                   option="require_match")


def _locked_across(p: Problem, bad: np.ndarray) -> None:
    names = [str(p.account_names[a]) if p.account_names is not None else str(a) for a in bad]
    raise InfeasibleAssignment(
        f"locked accounts {listed(names)} are owned by reps that the required match forbids. Fix: unlock them "
        "or correct the attribute.", option="require_match"
    )


def check_match_values(p: Problem, match_column: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """The required match's checks from the attribute values alone (no (accounts, reps) array, so a plan on
    candidates runs them too): a value no rep has, a value whose reps lack the capacity, a locked account owned
    across the match."""
    cap = p.capacity.astype(np.int64)
    for attr, (rep_vals, acc_vals) in match_column.items():
        have = set(rep_vals[~_isna(rep_vals)])
        orphan = [v for v in dict.fromkeys(acc_vals) if not _isna_scalar(v) and v not in have]
        if orphan:
            counts = [int((acc_vals == v).sum()) for v in orphan]
            raise InfeasibleAssignment(
                f"no rep has {attr} {listed(str(v) for v in orphan)} ({listed(counts)} accounts). "
                f"Fix: add a rep with that {attr}, or stop matching on {attr}.", option="require_match"
            )
        for v in dict.fromkeys(acc_vals):
            need = int((acc_vals == v).sum())
            can = int(cap[rep_vals == v].sum())
            if can < need:
                raise InfeasibleAssignment(
                    f"{attr} {v!r} has {need:,} accounts but its reps' capacity is {can:,}: "
                    f"raise their capacity by {need - can:,} or add reps with {attr} {v!r}.", option="require_match"
                )
    lk = np.flatnonzero(p.locked & (p.current >= 0))
    across = np.zeros(len(lk), bool)
    for rep_vals, acc_vals in match_column.values():
        across |= acc_vals[lk] != rep_vals[p.current[lk]]
    if across.any():
        _locked_across(p, lk[across])


def _check_tier_balance(p: Problem) -> None:
    lower, upper = p.tier_bounds()
    lk = np.flatnonzero(p.locked)
    if len(lk):
        locked_rt = np.zeros(lower.shape, np.int64)
        np.add.at(locked_rt, (p.current[lk], p.tiers[lk]), 1)
        over = np.argwhere(locked_rt > upper)
        if len(over):
            parts = [f"{p.name_rep(r)} has {locked_rt[r, t]} locked tier-{p.name_tier(t)} accounts, fair share allows "
                     f"at most {upper[r, t]}" for r, t in over]
            raise InfeasibleAssignment(
                f"tiers cannot be balanced: {listed(parts)}. Fix: unlock some of them, or stop balancing tiers.",
                option="balance_tiers"
            )
    over_r = np.flatnonzero(lower.sum(axis=1) > p.capacity)
    if len(over_r):
        raise InfeasibleAssignment(
            f"tiers cannot be balanced: reps {listed(p.name_rep(r) for r in over_r)} need more accounts for their "
            "tier shares than their capacity. Fix: even out capacities, or stop balancing tiers.", option="balance_tiers"
        )


# --- bands: what the counts prove before solving ------------------------------------------------------
# Weights are >= 0 (Band), so a rep's total lies between 0 and the sum of what it can hold. Each check below is a
# necessary condition; each message names the rep (or all reps), the band's metric and tolerance, and the
# tolerance (for a hard limit: the limit) that would pass that check.

def _pct(t: float | None) -> str:
    return "(hard limit)" if t is None else f"+-{t * 100:.4g}%"


def _num(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.4g}"


def _whole(b: Band, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A count band's bounds in whole accounts (as the solvers read them); other bands' as they are."""
    return (np.ceil(lower - 1e-9), np.floor(upper + 1e-9)) if b.is_count else (lower, upper)


def _band_at(b: Band, t: float) -> tuple[np.ndarray, np.ndarray]:
    """``b``'s (lower, upper) had it been set at tolerance ``t`` around its target (its one-sided bounds stay)."""
    target = b.aim()
    lower = np.where(np.isfinite(b.lower), max(1 - t, 0.0) * target, -np.inf)
    return _whole(b, lower, np.where(np.isfinite(b.upper), (1 + t) * target, np.inf))


MAX_TOLERANCE_STEPS = 1_000_000  # tolerances tried, in 0.1% steps: up to +-100,000%


def _fitting(b: Band, fits: Callable[[np.ndarray, np.ndarray], bool]) -> str:
    """The sentence naming the smallest tolerance, in 0.1% steps, whose bounds pass ``fits(lower, upper)``
    (every check is monotone in the tolerance: bisection). Count bands are judged in whole accounts."""
    if not fits(*_band_at(b, MAX_TOLERANCE_STEPS / 1000)):
        return "No tolerance fits: the target is (near) 0; give the rep(s) a target (quota or capacity) first"
    lo, hi = -1, MAX_TOLERANCE_STEPS  # fits(hi), not fits(lo) (-1: below every tolerance)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(*_band_at(b, mid / 1000)) else (mid, hi)
    return f"A tolerance of +-{hi / 10:g}% would fit"


def _check_bands(p: Problem) -> None:
    """Each active band: its totals over all reps (a, d), locked accounts against each upper bound (c), and
    each rep's reachable total against its lower bound (b)."""
    mask = p.mask()
    _, most_accounts = p.count_bounds()
    for b in p.bands:
        if not b.active or (b.weights.size and b.weights.min() < 0):
            continue
        _check_band_totals(p, b, mask)
        _check_band_locked(p, b)
        _check_band_reach(p, b, mask, most_accounts)


def _band_range(b: Band, mask: np.ndarray, block: int = 8192) -> tuple[float, float]:
    """The least and most the accounts can total on ``b`` over all reps together: each account counts once,
    its weight on the rep it goes to (any allowed rep, for (A, R) weights)."""
    if b.weights.ndim == 1:
        total = float(b.weights.sum())
        return total, total
    least = most = 0.0
    for lo in range(0, len(mask), block):
        w, m = b.weights[lo:lo + block], mask[lo:lo + block]
        ok = m.any(axis=1)
        least += float(np.where(m, w, np.inf).min(axis=1)[ok].sum())
        most += float(np.where(m, w, -np.inf).max(axis=1)[ok].sum())
    return least, most


def _check_band_totals(p: Problem, b: Band, mask: np.ndarray) -> None:
    """(a) The reps' lower bounds add up to more than the accounts can total, or their upper bounds to less;
    (d) for a hard limit such as workload capacity: the accounts' total above the reps' total capacity."""
    least, most = _band_range(b, mask)
    lower, upper = _whole(b, b.lower, b.upper)
    eps = 1e-9 * max(1.0, abs(most))
    need, room = float(np.maximum(lower, 0).sum()), float(upper.sum())
    hard = b.tolerance is None

    def both(lo: np.ndarray, hi: np.ndarray) -> bool:  # a tolerance that fits the lower bounds must fit the upper too
        return bool(np.maximum(lo, 0).sum() <= most + eps and hi.sum() >= least - eps)
    if need > most + eps:
        what = "the accounts total" if b.weights.ndim == 1 else "the accounts total at most (each with its best rep)"
        fix = (f"Fix: lower them by {_num(need - most)} in all." if hard
               else _fitting(b, both) + ".")
        raise InfeasibleAssignment(f"the {b.metric} band {_pct(b.tolerance)} cannot hold for all reps: their lower "
                                   f"bounds add up to {_num(need)} but {what} {_num(most)}. {fix}", option="balance")
    if room >= least - eps:
        return
    if hard:  # (d)
        raise InfeasibleAssignment(
            f"total {b.metric} {_num(least)} is above the reps' total {b.metric} capacity {_num(room)} (all reps; a "
            f"hard limit). Fix: raise their {b.metric} capacity by {_num(least - room)} in all (to at least "
            f"{_num(least)}), or add reps.", option="balance")
    raise InfeasibleAssignment(
        f"the {b.metric} band {_pct(b.tolerance)} cannot hold for all reps: their upper bounds add up to "
        f"{_num(room)} but the accounts total {'' if b.weights.ndim == 1 else 'at least '}{_num(least)}. "
        f"{_fitting(b, both)}.", option="balance")


def _named(p: Problem, reps: np.ndarray, how_far: np.ndarray) -> tuple[int, str]:
    """The rep (of ``reps``) furthest out, and " (also: ...)" naming the others, furthest first."""
    order = reps[np.argsort(-how_far[reps], kind="stable")]
    others = f" (also: {listed(p.name_rep(r) for r in order[1:])})" if len(order) > 1 else ""
    return int(order[0]), others


def _check_band_locked(p: Problem, b: Band) -> None:
    """(c) Accounts locked to a rep already take it above its upper bound."""
    lk = np.flatnonzero(p.locked)
    if not len(lk):
        return
    w = b.weights[lk] if b.weights.ndim == 1 else b.weights[lk, p.current[lk]]
    held = np.bincount(p.current[lk], weights=w, minlength=p.shape[1])
    upper = _whole(b, b.lower, b.upper)[1]
    eps = 1e-9 * np.maximum(1.0, np.abs(held))
    over = np.flatnonzero(held > upper + eps)
    if not len(over):
        return
    r, others = _named(p, over, held - upper)
    target = b.aim()
    fix = (f"Fix: raise its limit to {_num(held[r])}" if target is None
           else _fitting(b, lambda lo, hi: bool((held[over] <= hi[over] + eps[over]).all())))
    raise InfeasibleAssignment(
        f"{p.name_rep(r)}'s locked accounts alone total {_num(held[r])} {b.metric}, above its upper bound "
        f"{_num(upper[r])} ({b.describe()}{'' if target is None else f', target {_num(target[r])}'}){others}. "
        f"{fix}, or unlock some of them.", option="balance")


def _eligible_totals(b: Band, mask: np.ndarray, block: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """(R,) each rep's total of ``b`` over every account it may own, and how many those are."""
    total, count = np.zeros(mask.shape[1]), np.zeros(mask.shape[1], np.int64)
    for lo in range(0, len(mask), block):
        m, w = mask[lo:lo + block], b.weights[lo:lo + block]
        total += (m * (w[:, None] if w.ndim == 1 else w)).sum(axis=0)
        count += m.sum(axis=0)
    return total, count


def _reach(b: Band, mask: np.ndarray, most_accounts: np.ndarray, r: int) -> float:
    """The most rep ``r`` can total on ``b``: its ``most_accounts[r]`` heaviest eligible accounts."""
    eligible = np.flatnonzero(mask[:, r])
    w = b.weights[eligible] if b.weights.ndim == 1 else b.weights[eligible, r]
    k = int(max(min(most_accounts[r], len(w)), 0))
    top = w if k >= len(w) else np.partition(w, len(w) - k)[len(w) - k:] if k else w[:0]
    return float(top.sum())


def _check_band_reach(p: Problem, b: Band, mask: np.ndarray, most_accounts: np.ndarray) -> None:
    """(b) A rep that cannot reach its lower bound even with every account it may own (required match, locks),
    or with the heaviest of them when its capacity (or count band) holds fewer.

    The k heaviest of n eligible accounts total at least k / n of all n: a rep whose lower bound is below that
    passes without sorting (at 1,000 x 100,000 every rep, typically); the others are summed exactly."""
    lower = _whole(b, b.lower, b.upper)[0]
    total, eligible = _eligible_totals(b, mask)
    can = np.clip(most_accounts, 0, eligible)
    eps = 1e-9 * np.maximum(1.0, np.abs(lower))
    reach = np.where(can >= eligible, total, np.inf)
    with np.errstate(invalid="ignore", divide="ignore"):
        surely = np.where(eligible > 0, total * can / np.maximum(eligible, 1), 0.0)
    for r in np.flatnonzero((lower > 0) & (can < eligible) & (surely < lower - eps)):
        reach[r] = _reach(b, mask, most_accounts, r)
    short = np.flatnonzero(reach < lower - eps)
    if not len(short):
        return
    r, others = _named(p, short, lower - reach)
    target = b.aim()
    cap = f", at most {can[r]} by its capacity" if can[r] < eligible[r] else ""
    fix = (f"Fix: lower its bound to {_num(reach[r])}." if target is None
           else _fitting(b, lambda lo, hi: bool((reach[short] >= lo[short] - eps[short]).all())) + ".")
    raise InfeasibleAssignment(
        f"{p.name_rep(r)} cannot reach its {b.metric} band {_pct(b.tolerance)}: even with every account it may own "
        f"({eligible[r]} under the required match and locks{cap}) it totals at most {_num(reach[r])}, below its "
        f"lower bound {_num(lower[r])}{'' if target is None else f' (target {_num(target[r])})'}{others}. {fix}",
        option="balance")


def _isna(a: np.ndarray) -> np.ndarray:
    return np.array([_isna_scalar(x) for x in a], dtype=bool)


def _isna_scalar(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x)) or str(x) in ("<NA>", "nan")
