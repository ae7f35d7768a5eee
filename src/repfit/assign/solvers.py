"""Exact solvers for ``Problem``: the same optimum by different routes.

- ``hungarian``: ``scipy.optimize.linear_sum_assignment`` over rep capacity slots (dense; small problems).
- ``flow``: min-cost flow (OR-tools) source -> account -> [rep, tier] -> rep -> sink, no slot expansion.
  Supports tier balance (lower bounds via a large bonus on the mandatory part of each (rep, tier) arc).
- ``pruned``: min-cost flow on each account's top-k reps by value minus rep price, plus a certificate:
  rep prices (LP duals) are recomputed from the solution and every pair outside the graph is checked for
  positive reduced cost; violators are added and the flow re-solved until none remain, which proves the
  solution optimal over *all* pairs.
- ``max_moves``: Lagrangian search over an integer keep-bonus; exact when the move budget binds at the
  bonus found, otherwise settled by ``milp`` (HiGHS), the independent exact reference also used in tests.
  The same keep-bonus optima, swept, give ``budget_curve``: the best value for each number of moves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from repfit.assign.problem import Problem
from repfit.errors import InfeasibleAssignment, SolverError

HUNGARIAN_MAX_CELLS = 6_000_000  # accounts x slots
FLOW_MAX_ARCS = 25_000_000
MILP_MAX_ARCS = 400_000


@dataclass(frozen=True, eq=False)
class Solution:
    """An assignment and how it was found."""

    assignment: np.ndarray  # (A,) rep index per account
    solver: str
    int_objective: int  # sum of Problem.int_values over the assignment (comparable across solvers)
    certified: bool = True  # proven optimal
    notes: tuple[str, ...] = ()
    gap: float | None = None  # relative gap to a valid upper bound ((bound - value) / |bound|); 0 when optimal
    bound: float | None = None  # that upper bound on the objective, in Problem.int_values units


def keep_bonus_values(p: Problem, keep_bonus: int = 0) -> np.ndarray:
    """The integer value matrix a solver works on: ``p.int_values`` plus ``keep_bonus`` on each account's
    current-rep pair (the Lagrangian keep bonus of the move budget).

    Returns
    -------
    (A, R) int64; ``p.int_values`` itself (read-only) when ``keep_bonus`` is 0, else a new array.
    """
    V = p.int_values
    if not keep_bonus:
        return V
    V = V.copy()
    a = np.flatnonzero(p.current >= 0)
    V[a, p.current[a]] += keep_bonus
    return V


# --- Hungarian over slots -----------------------------------------------------------------------
def solve_hungarian(p: Problem, keep_bonus: int = 0) -> Solution:
    """Exact optimum of ``p`` (no tier balance) by ``linear_sum_assignment`` over capacity slots, with
    ``keep_bonus`` integer units added for each account kept (see ``keep_bonus_values``)."""
    if p.tiers is not None:
        raise SolverError("the hungarian solver does not model tier balance; use the flow solver.", option="solver")
    assignment = _hungarian(p, keep_bonus_values(p, keep_bonus))
    return Solution(assignment, "hungarian", p.int_objective(assignment))


def _hungarian(p: Problem, V: np.ndarray) -> np.ndarray:
    """The assignment maximising integer values ``V`` (A, R) over the allowed pairs of ``p``."""
    A, R = p.shape
    mask = p.mask()
    cap = np.minimum(p.capacity, A)
    slot_rep = np.repeat(np.arange(R), cap)
    big = float(np.abs(V).max() + 1) * (A + 1)
    M = np.where(mask[:, slot_rep], V[:, slot_rep].astype(float), -big)
    rows, cols = linear_sum_assignment(M, maximize=True)
    assignment = np.empty(A, np.int64)
    assignment[rows] = slot_rep[cols]
    if not mask[np.arange(A), assignment].all():
        raise InfeasibleAssignment("no assignment satisfies every constraint (required match, locks, capacity).")
    return assignment


# --- min-cost flow --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Network:
    """A min-cost flow network as arc arrays: node 0 sends ``supply`` units to node ``sink``."""

    tails: np.ndarray  # (n_arcs,) int32
    heads: np.ndarray  # (n_arcs,) int32
    caps: np.ndarray  # (n_arcs,) int64
    costs: np.ndarray  # (n_arcs,) int64
    n_nodes: int
    supply: int
    sink: int
    pairs: slice  # the arcs of the candidate (account, rep) pairs, in the order given
    floors: slice  # the mandatory (rep, tier) arcs, whose capacity is the tier's lower bound (empty without tiers)


def _flow_network(p: Problem, acc: np.ndarray, rep: np.ndarray, gain: np.ndarray) -> _Network:
    """source -> account (cap 1) -> rep, or its (rep, tier) node, at cost -gain -> sink (cap = capacity).

    Each account also has an arc straight to the sink whose penalty outweighs any total gain, so the flow is
    always feasible and leaves an account unassigned only when it cannot be placed. With tiers, each (rep, tier)
    node reaches its rep by a mandatory arc (capacity = lower bound, a bonus that outweighs any value
    difference) and an optional one (upper - lower).
    """
    A, R = p.shape
    src, sink = 0, A + R + 1
    acc_node = 1 + np.arange(A)
    rep_node = 1 + A + np.arange(R)
    big = (int(np.abs(gain).max()) + 1 if len(gain) else 1) * (A + 1)
    if p.tiers is None:
        n_nodes, pair_head, unassigned, tier_arcs = sink + 1, rep_node[rep], big, []
    else:
        lower, upper = p.tier_bounds()
        T = lower.shape[1]
        tier_node = sink + 1 + np.arange(R * T).reshape(R, T)
        n_nodes, pair_head, unassigned = sink + 1 + R * T, tier_node[rep, p.tiers[acc]], 3 * big
        tier_arcs = _tier_arcs(tier_node, rep_node, lower, upper, bonus=big)
    ones = np.ones(A, np.int64)
    blocks = [
        (np.full(A, src), acc_node, ones, np.zeros(A, np.int64)),
        (acc_node, np.full(A, sink), ones, np.full(A, unassigned, np.int64)),
        (acc_node[acc], pair_head, np.ones(len(acc), np.int64), -gain.astype(np.int64)),
        *tier_arcs,
        (rep_node, np.full(R, sink), p.capacity.astype(np.int64), np.zeros(R, np.int64)),
    ]
    tails, heads, caps, costs = (np.concatenate(column) for column in zip(*blocks))
    pairs = slice(2 * A, 2 * A + len(acc))
    floors = slice(pairs.stop, pairs.stop + (len(tier_arcs[0][0]) if tier_arcs else 0))
    return _Network(tails.astype(np.int32), heads.astype(np.int32), caps.astype(np.int64), costs.astype(np.int64),
                    n_nodes, A, sink, pairs, floors)


def _tier_arcs(tier_node: np.ndarray, rep_node: np.ndarray, lower: np.ndarray, upper: np.ndarray, bonus: int) -> list:
    """The mandatory (capacity ``lower``, cost -``bonus``) and optional (``upper - lower``) arcs of each
    (rep, tier) node (R, T) to its rep, as two arc blocks (tails, heads, caps, costs)."""
    R, T = lower.shape
    nodes, to = tier_node.ravel(), rep_node[np.repeat(np.arange(R), T)]
    lo, hi = lower.ravel().astype(np.int64), upper.ravel().astype(np.int64)
    return [(nodes, to, lo, np.full(R * T, -bonus, np.int64)),
            (nodes, to, np.maximum(hi - lo, 0), np.zeros(R * T, np.int64))]


def _min_cost_flows(net: _Network) -> np.ndarray:
    """(n_arcs,) int64: the flow on each arc of a min-cost flow of ``net`` (OR-tools)."""
    from ortools.graph.python import min_cost_flow

    g = min_cost_flow.SimpleMinCostFlow()
    g.add_arcs_with_capacity_and_unit_cost(net.tails, net.heads, net.caps, net.costs)
    supplies = np.zeros(net.n_nodes, np.int64)
    supplies[0], supplies[net.sink] = net.supply, -net.supply
    g.set_nodes_supplies(np.arange(net.n_nodes, dtype=np.int32), supplies)
    status = g.solve()
    if status != g.OPTIMAL:
        raise SolverError(f"min-cost flow failed with status {status} (this is not a proof of infeasibility).")
    return np.asarray(g.flows(np.arange(len(net.tails), dtype=np.int32)))


def _flow_on_arcs(p: Problem, acc: np.ndarray, rep: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """Max-gain assignment restricted to the arcs (acc, rep) with integer ``gain``; -1 = unassigned.

    Raises ``InfeasibleAssignment`` when some (rep, tier) pair cannot reach the lower bound of its tier share.
    """
    net = _flow_network(p, acc, rep, gain)
    flows = _min_cost_flows(net)
    assignment = np.full(p.shape[0], -1, np.int64)
    used = flows[net.pairs] > 0
    assignment[acc[used]] = rep[used]
    short = np.flatnonzero(flows[net.floors] < net.caps[net.floors])
    if len(short):
        raise InfeasibleAssignment(
            f"tiers cannot be balanced: {len(short)} (rep, tier) pairs cannot reach their fair share within one "
            "under the other constraints (required match, locks, capacity). Fix: stop balancing tiers, or relax those.",
            option="balance_tiers"
        )
    return assignment


def solve_flow(p: Problem, keep_bonus: int = 0) -> Solution:
    """Exact optimum of ``p`` by min-cost flow over every allowed pair (tier balance included), with
    ``keep_bonus`` integer units added for each account kept (see ``keep_bonus_values``)."""
    assignment = _flow(p, keep_bonus_values(p, keep_bonus))
    return Solution(assignment, "flow", p.int_objective(assignment))


def _flow(p: Problem, V: np.ndarray) -> np.ndarray:
    """The assignment maximising integer values ``V`` (A, R) over every allowed pair of ``p``."""
    acc, rep = np.nonzero(p.mask())
    assignment = _flow_on_arcs(p, acc, rep, V[acc, rep])
    _check_complete(p, assignment)
    return assignment


def _check_complete(p: Problem, assignment: np.ndarray) -> None:
    missing = np.flatnonzero(assignment < 0)
    if len(missing):
        raise InfeasibleAssignment(
            f"{len(missing)} account(s) cannot be assigned under the constraints (required match, locks, capacity, "
            "tier balance)."
        )


# --- pruned min-cost flow with a dual certificate ---------------------------------------------------
def rep_prices(p: Problem, V: np.ndarray, assignment: np.ndarray, acc: np.ndarray, rep: np.ndarray) -> np.ndarray:
    """LP dual prices of rep capacity for an assignment optimal on the arcs (acc, rep).

    Complementary slackness: reps with spare capacity have price 0; for an account a held by rep r and a
    candidate rep s, ``price_r <= price_s + V[a, r] - V[a, s]``. The largest prices meeting these difference
    constraints are shortest-path distances from the reps with spare capacity (Bellman-Ford, vectorised).

    A full rep that no such chain reaches (every rep, when capacity is exactly used up) has no largest price;
    its price is the shortest-path distance from a virtual source joined to it with weight ``2 R (max V - min V)
    + 1``: more than any path from a rep with spare capacity, so those keep their distances, and the difference
    constraints hold among the unreached reps too (equal high prices would break them, and the certificate
    would then pass a suboptimal assignment).
    """
    A, R = p.shape
    load = np.bincount(assignment[assignment >= 0], minlength=R)
    held = assignment[acc]
    ok = (held >= 0) & (held != rep)
    w = V[acc[ok], held[ok]] - V[acc[ok], rep[ok]]
    W = np.full((R, R), np.inf)  # W[s, r]: edge s -> r
    np.minimum.at(W, (rep[ok], held[ok]), w.astype(float))
    unreached = 2.0 * R * float(V.max() - V.min()) + 1.0 if V.size else 1.0
    d = np.where(load < p.capacity, 0.0, unreached)
    for _ in range(R + 1):
        new = np.minimum(d, (d[:, None] + W).min(axis=0))
        if np.array_equal(new, d):
            break
        d = new
    return np.maximum(d, 0.0)


def _top_k(V: np.ndarray, mask: np.ndarray, prices: np.ndarray, k: int, block: int = 4096) -> np.ndarray:
    """(A, R) bool: each account's k best allowed reps by value - price."""
    A, R = V.shape
    k = min(k, R)
    cand = np.zeros((A, R), bool)
    for lo in range(0, A, block):
        hi = min(A, lo + block)
        red = np.where(mask[lo:hi], V[lo:hi] - prices[None, :], -np.inf)
        idx = np.argpartition(-red, k - 1, axis=1)[:, :k]
        rows = np.repeat(np.arange(lo, hi), k)
        cols = idx.ravel()
        keep = np.isfinite(red[rows - lo, cols])
        cand[rows[keep], cols[keep]] = True
    return cand


def _sample_prices(p: Problem, V: np.ndarray, k: int, sample_share: float, seed: int) -> np.ndarray:
    """(R,) rep prices estimated by solving a sample of accounts (capacities scaled alike) on each sampled
    account's top ``3 k`` reps; zeros when there are too few accounts per rep for a sample to tell."""
    A, R = p.shape
    prices = np.zeros(R)
    if A <= 20 * R:
        return prices
    rng = np.random.default_rng(seed)
    n = max(R * 5, int(A * sample_share))
    s = np.sort(rng.choice(A, size=n, replace=False))
    sub = Problem(values=p.values[s], capacity=np.maximum(1, np.ceil(p.capacity * n / A)).astype(np.int64),
                  current=p.current[s], locked=np.zeros(n, bool), allowed=None if p.allowed is None else p.allowed[s])
    Vs = V[s]
    sa, sr = np.nonzero(_top_k(Vs, sub.mask(), prices, 3 * k))
    x = _flow_on_arcs(sub, sa, sr, Vs[sa, sr])
    return rep_prices(sub, Vs, x, sa, sr)


def _add_violators(V: np.ndarray, mask: np.ndarray, cand: np.ndarray, prices: np.ndarray,
                   assignment: np.ndarray, block: int = 4096) -> int:
    """Add to ``cand`` (in place) every allowed pair outside it with positive reduced cost; return how many."""
    A = len(assignment)
    u = V[np.arange(A), assignment] - prices[assignment]
    added = 0
    for lo in range(0, A, block):
        hi = min(A, lo + block)
        viol = mask[lo:hi] & ~cand[lo:hi] & ((V[lo:hi] - prices[None, :]) > u[lo:hi, None] + 1e-9)
        if viol.any():
            cand[lo:hi] |= viol
            added += int(viol.sum())
    return added


def solve_pruned(p: Problem, keep_bonus: int = 0, k: int = 15, sample_share: float = 0.1, max_rounds: int = 30,
                 seed: int = 0) -> Solution:
    """Exact optimum of ``p`` (no tier balance) by min-cost flow on each account's top ``k`` reps by value minus
    rep price, widened until the dual certificate proves the solution optimal over every allowed pair.

    ``keep_bonus`` integer units are added for each account kept (see ``keep_bonus_values``). The notes say how
    many rounds the certificate took; if it does not converge within ``max_rounds``, every pair is solved.
    """
    if p.tiers is not None:
        raise SolverError("the pruned solver does not model tier balance; use the flow solver.", option="solver")
    V = keep_bonus_values(p, keep_bonus)
    mask = p.mask()
    cand = _top_k(V, mask, _sample_prices(p, V, k, sample_share, seed), k)
    has = np.flatnonzero(p.current >= 0)
    cand[has, p.current[has]] = mask[has, p.current[has]]  # continuity needs the current rep in the graph
    notes = []
    for rnd in range(1, max_rounds + 1):
        acc, rep = np.nonzero(cand)
        assignment = _flow_on_arcs(p, acc, rep, V[acc, rep])
        prices = rep_prices(p, V, assignment, acc, rep)
        if (assignment < 0).any():  # unassigned on the pruned graph: widen those accounts to every allowed rep
            miss = np.flatnonzero(assignment < 0)
            if cand[miss].sum() == mask[miss].sum():
                _check_complete(p, assignment)
            cand[miss] = mask[miss]
            continue
        added = _add_violators(V, mask, cand, prices, assignment)
        if added == 0:
            notes.append(f"certified optimal over all {int(mask.sum()):,} allowed pairs after {rnd} round(s) "
                         f"on {int(cand.sum()):,} candidate pairs")
            return Solution(assignment, "pruned-flow", p.int_objective(assignment), True, tuple(notes))
        notes.append(f"round {rnd}: added {added:,} pairs with positive reduced cost")
    # could not certify within the rounds: solve on every allowed pair
    assignment = _flow(p, V)
    return Solution(assignment, "flow", p.int_objective(assignment), True,
                    (*notes, "certificate did not converge; solved on all pairs"))


# --- exact MILP (reference and max-moves fallback) --------------------------------------------------
def solve_milp(p: Problem, time_limit: float | None = None) -> Solution:
    """Exact 0/1 program with HiGHS (``scipy.optimize.milp``) over the allowed pairs, every constraint included."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import csr_matrix

    A, R = p.shape
    acc, rep = np.nonzero(p.mask())
    n = len(acc)
    c = -p.int_values[acc, rep].astype(float)
    cons = [
        LinearConstraint(csr_matrix((np.ones(n), (acc, np.arange(n))), shape=(A, n)), 1, 1),
        LinearConstraint(csr_matrix((np.ones(n), (rep, np.arange(n))), shape=(R, n)), 0, p.capacity.astype(float)),
    ]
    if p.tiers is not None:
        lower, upper = p.tier_bounds()
        T = lower.shape[1]
        row = rep * T + p.tiers[acc]
        cons.append(LinearConstraint(csr_matrix((np.ones(n), (row, np.arange(n))), shape=(R * T, n)),
                                     lower.ravel().astype(float), upper.ravel().astype(float)))
    if p.max_moves is not None:
        has = p.current[acc] >= 0
        keep = has & (p.current[acc] == rep)
        n_has = int((p.current >= 0).sum())
        # moves = n_has - kept <= K  <=>  kept >= n_has - K
        cons.append(LinearConstraint(csr_matrix((np.ones(int(keep.sum())), (np.zeros(int(keep.sum()), int), np.flatnonzero(keep))),
                                                shape=(1, n)), n_has - p.max_moves, np.inf))
    # HiGHS stops at a 1e-4 relative gap by default: "certified" must mean optimal for the integer values
    options = {"disp": False, "mip_rel_gap": 0.0}
    if time_limit:
        options["time_limit"] = time_limit
    res = milp(c, constraints=cons, integrality=np.ones(n), bounds=Bounds(0, 1), options=options)
    if res.x is None or res.status not in (0,):
        if res.status == 2 or res.x is None:
            raise InfeasibleAssignment(f"no assignment satisfies every constraint ({res.message}).")
    x = res.x > 0.5
    assignment = np.full(A, -1, np.int64)
    assignment[acc[x]] = rep[x]
    return Solution(assignment, "milp", p.int_objective(assignment), res.status == 0)


# --- the move budget: a keep bonus traded against moves ---------------------------------------------
# Lagrangian relaxation of "at most K moves": maximise value + lam x (accounts kept) for an integer keep bonus
# lam. The optimum x_lam is the best assignment with at most moves(x_lam) moves: for any y with
# moves(y) <= moves(x_lam), v(y) <= v(y) + lam (moves(x_lam) - moves(y)) <= v(x_lam). Moves fall as lam rises.
# solve_max_moves searches lam for a budget; budget_curve sweeps lam to draw the whole trade-off.

BaseSolver = Callable[[Problem, int], Solution]  # (problem, keep bonus) -> optimum, e.g. solve_flow


@dataclass(frozen=True)
class KeepBonusPoint:
    """The optimum of ``p`` under one keep bonus: the best assignment with at most ``moves`` moves."""

    keep_bonus: int  # integer units (``Problem.int_values``) per account kept
    solution: Solution
    moves: int


def solve_with_keep_bonus(p: Problem, base: BaseSolver, keep_bonus: int) -> KeepBonusPoint:
    """Solve ``p`` with ``base`` under ``keep_bonus`` and count the moves of its optimum."""
    sol = base(p, keep_bonus)
    return KeepBonusPoint(keep_bonus, sol, p.moves(sol.assignment))


def keep_bonus_ceiling(p: Problem) -> int:
    """A keep bonus (integer units) under which keeping every account that can stay always wins."""
    V = p.int_values
    return int(V.max() - V.min()) * 2 + 2


def _smallest_keep_bonus_within(p: Problem, base: BaseSolver, max_moves: int, top: KeepBonusPoint) -> KeepBonusPoint:
    """Bisection between 0 (too many moves) and ``top`` (within ``max_moves``): the point of the smallest keep
    bonus whose optimum moves at most ``max_moves`` accounts."""
    lo, best = 0, top
    while best.keep_bonus - lo > 1:
        point = solve_with_keep_bonus(p, base, (lo + best.keep_bonus) // 2)
        if point.moves <= max_moves:
            best = point
        else:
            lo = point.keep_bonus
    return best


def _noted(sol: Solution, note: str, **changes) -> Solution:
    return replace(sol, notes=(*sol.notes, note), **changes)


def solve_max_moves(p: Problem, base: BaseSolver) -> Solution:
    """Best assignment of ``p`` with at most ``p.max_moves`` moves, by the keep-bonus search above.

    The smallest keep bonus whose optimum x has moves(x) <= K is optimal for the budget if moves(x) == K or the
    bonus is 0. Otherwise the budget falls between two Lagrangian solutions and the exact MILP settles it
    (up to ``MILP_MAX_ARCS`` allowed pairs; beyond, the Lagrangian solution is returned, not certified, with
    its bound on the gap).

    Raises
    ------
    InfeasibleAssignment
        When even keeping every account that can stay needs more than ``p.max_moves`` moves (``option="max_moves"``).
    """
    K = p.max_moves
    free = solve_with_keep_bonus(p, base, 0)
    if free.moves <= K:
        return _noted(free.solution, f"move budget {K} not binding ({free.moves} moves)")
    top = solve_with_keep_bonus(p, base, keep_bonus_ceiling(p))
    if top.moves > K:
        raise InfeasibleAssignment(
            f"even keeping every account that can stay needs {top.moves} moves, more than the budget of {K} "
            "(capacity, locks or the required match force them). Fix: raise the move budget or relax the constraints.",
            option="max_moves",
        )
    best = _smallest_keep_bonus_within(p, base, K, top)
    hi, m, sol = best.keep_bonus, best.moves, best.solution
    if m == K:
        return _noted(sol, f"move budget {K} binds at keep bonus {hi}: optimal by Lagrangian duality",
                      solver=sol.solver + "+lagrangian")
    n_arcs = int(p.mask().sum())
    if n_arcs <= MILP_MAX_ARCS:
        return _noted(solve_milp(p), f"Lagrangian gap (bonus {hi} gives {m} < {K} moves): settled by exact MILP "
                                     f"on {n_arcs:,} pairs")
    gap = hi * (K - m) / p.scale
    return _noted(sol, f"not certified: Lagrangian solution with {m} moves (< {K}); at most {gap:,.4g} below the optimum",
                  solver=sol.solver + "+lagrangian", certified=False)


def budget_curve(p: Problem, points: int = 14, solver: str = "auto") -> pd.DataFrame:
    """Optimal (moves, value) pairs along the move-budget trade-off of ``p``.

    Each point is the optimum under one keep bonus, so it is the best assignment with at most its own number
    of moves (see ``solve_max_moves``); between points the straight line is an upper bound. Bonuses run
    geometrically from 0 to ``keep_bonus_ceiling``. The continuity bonus and move budget of ``p`` are
    ignored: the curve is the trade-off they choose a point on.

    Parameters
    ----------
    p : the problem.
    points : keep bonuses tried (fewer rows when two give the same number of moves).
    solver : as in ``solve``.

    Returns
    -------
    DataFrame, one row per distinct move count, by moves: keep_bonus (value units per account kept), moves,
    value (total of ``p.values``), uplift (value minus today's).
    """
    p = replace(p, continuity=0.0, max_moves=None)
    base = base_solver(p, solver)
    hi = keep_bonus_ceiling(p)
    bonuses = sorted({0, *(int(hi * 0.5 ** k) for k in range(points - 1))})
    has = p.current >= 0
    now = float(p.values[np.flatnonzero(has), p.current[has]].sum())
    rows = []
    for b in bonuses:
        point = solve_with_keep_bonus(p, base, b)
        x = point.solution.assignment
        value = float(p.values[np.arange(len(x)), x].sum())
        rows.append({"keep_bonus": b / p.scale, "moves": point.moves, "value": value, "uplift": value - now})
    df = pd.DataFrame(rows).sort_values(["moves", "value"]).drop_duplicates("moves", keep="last")
    return df.reset_index(drop=True)


# --- choosing a solver ----------------------------------------------------------------------------
SOLVERS: dict[str, BaseSolver] = {"hungarian": solve_hungarian, "flow": solve_flow, "pruned": solve_pruned}


def _solve_balance(p: Problem, keep_bonus: int = 0) -> Solution:
    """``balance``: bands at scale with a proven gap (``repfit.assign.balance``, which imports this module)."""
    from repfit.assign.balance import solve_balanced

    return solve_balanced(p, keep_bonus=keep_bonus)


SOLVERS["balance"] = _solve_balance


def choose_solver(p: Problem) -> str:
    """The solver ``auto`` picks: ``flow`` under tier balance, else by size (dense slots, all pairs, pruned)."""
    A, R = p.shape
    if p.tiers is not None:
        return "flow"
    slots = int(np.minimum(p.capacity, A).sum())
    if A * slots <= HUNGARIAN_MAX_CELLS:
        return "hungarian"
    if A * R <= FLOW_MAX_ARCS // 5:
        return "flow"
    return "pruned"


def base_solver(p: Problem, solver: str = "auto") -> BaseSolver:
    """The solver function for ``solver`` (a name in ``SOLVERS``, or ``auto``); ``flow`` under tier balance."""
    name = choose_solver(p) if solver == "auto" else solver
    if name not in SOLVERS:
        raise SolverError(f"unknown solver {name!r}; choose from auto, {', '.join(SOLVERS)}.", option="solver")
    if p.tiers is not None and name in ("hungarian", "pruned"):
        name = "flow"
    return SOLVERS[name]


def solve(p: Problem, solver: str = "auto") -> Solution:
    """Solve ``p`` exactly with ``solver`` (``auto`` picks by size and constraints), within its move budget."""
    base = base_solver(p, solver)
    if p.max_moves is not None:
        return solve_max_moves(p, base)
    return base(p, 0)
