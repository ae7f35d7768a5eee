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

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from repfit.assign.problem import Band, Problem
from repfit.errors import InfeasibleAssignment, SolverError
from repfit.messages import listed

HUNGARIAN_MAX_CELLS = 6_000_000  # accounts x slots
FLOW_MAX_ARCS = 25_000_000
MILP_MAX_ARCS = 400_000  # the move budget's MILP fallback (no weighted band): HiGHS settles it quickly
# weighted bands make the MILP hard: with potential and accounts +-10% and MILP_TIME_LIMIT, HiGHS's first assignment
# came at 30-50 s on 2,000 x 40 (80,000 pairs) and none within 60 s on 4,000 x 50 (measured, 2 cores)
MILP_BANDS_MAX_PAIRS = 20_000  # HiGHS proves small banded problems in seconds; beyond, the balance solver (2 s, gap 0.06% on 40 x 2,000 vs the MILP 60 s, gap 0.07%)


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
    if p.kept is not None:  # a unit of several accounts: the bonus for each of them kept
        return V + keep_bonus * p.kept.astype(np.int64)
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
    assignment = _hungarian(_count_capped(p, "hungarian"), keep_bonus_values(p, keep_bonus))
    return Solution(assignment, "hungarian", p.int_objective(assignment))


def _refuse_weighted(p: Problem, name: str) -> None:
    weighted = p.weighted_bands()
    if weighted:
        raise SolverError(f"the {name} solver does not model bands whose weights vary by account "
                          f"({listed(b.describe() for b in weighted)}); use the milp solver.", option="solver")


def _count_capped(p: Problem, name: str, lower_ok: bool = False) -> Problem:
    """``p`` with its count bands folded into capacity, for the solvers that model no lower bound on a rep's
    accounts (``SolverError`` if a count band has one, unless ``lower_ok``: then ``p`` as it is; or if a band
    is weighted). Same values, so same ``int_values``: solve on the result, score on ``p``."""
    _refuse_weighted(p, name)
    if not p.bands:
        return p
    fewest, most = p.count_bounds()
    if fewest.any() and lower_ok:
        return p
    if fewest.any():
        raise SolverError(f"the {name} solver does not model a lower bound on each rep's accounts; use the flow "
                          "solver.", option="solver")
    return replace(p, capacity=most, bands=())


def _hungarian(p: Problem, V: np.ndarray) -> np.ndarray:
    """The assignment maximising integer values ``V`` (A, R) over the allowed pairs of ``p``."""
    A, R = p.shape
    mask = p.mask()
    cap = np.minimum(p.capacity, A)
    slot_rep = np.repeat(np.arange(R), cap)
    big = float(np.abs(V).max() + 1) * (A + 1)
    M = np.where(mask[:, slot_rep], V[:, slot_rep].astype(float), -big)
    rows, cols = linear_sum_assignment(M, maximize=True)
    assignment = np.full(A, -1, np.int64)
    assignment[rows] = slot_rep[cols]
    if (assignment < 0).any() or not mask[np.arange(A), assignment].all():
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
    rep_floors: slice  # the mandatory rep -> sink arcs, capacity = the rep's fewest accounts (empty if none)


def _flow_network(p: Problem, acc: np.ndarray, rep: np.ndarray, gain: np.ndarray) -> _Network:
    """source -> account (cap 1) -> rep, or its (rep, tier) node, at cost -gain -> sink (cap = capacity).

    Each account also has an arc straight to the sink whose penalty outweighs any total gain, so the flow is
    always feasible and leaves an account unassigned only when it cannot be placed. Lower bounds (a tier's
    fair share, a rep's fewest accounts from a count band) are mandatory arcs: capacity = the lower bound, a
    bonus that outweighs any value difference; beside each, an optional arc (upper - lower). So the flow meets
    every lower bound it can, and the optimum among assignments that meet them all is the min-cost flow.
    """
    A, R = p.shape
    src, sink = 0, A + R + 1
    acc_node = 1 + np.arange(A)
    rep_node = 1 + A + np.arange(R)
    big = (int(np.abs(gain).max()) + 1 if len(gain) else 1) * (A + 1)
    fewest, most = p.count_bounds()
    floored = p.tiers is not None or bool(fewest.any())
    unassigned = 3 * big if floored else big
    if p.tiers is None:
        n_nodes, pair_head, tier_arcs = sink + 1, rep_node[rep], []
    else:
        lower, upper = p.tier_bounds()
        T = lower.shape[1]
        tier_node = sink + 1 + np.arange(R * T).reshape(R, T)
        n_nodes, pair_head = sink + 1 + R * T, tier_node[rep, p.tiers[acc]]
        tier_arcs = _tier_arcs(tier_node, rep_node, lower, upper, bonus=big)
    sink_arcs = _floor_arcs(rep_node, np.full(R, sink), fewest, most, big if fewest.any() else 0)
    ones = np.ones(A, np.int64)
    blocks = [
        (np.full(A, src), acc_node, ones, np.zeros(A, np.int64)),
        (acc_node, np.full(A, sink), ones, np.full(A, unassigned, np.int64)),
        (acc_node[acc], pair_head, np.ones(len(acc), np.int64), -gain.astype(np.int64)),
        *tier_arcs,
        *sink_arcs,
    ]
    tails, heads, caps, costs = (np.concatenate(column) for column in zip(*blocks))
    pairs = slice(2 * A, 2 * A + len(acc))
    floors = slice(pairs.stop, pairs.stop + (len(tier_arcs[0][0]) if tier_arcs else 0))
    rep_start = pairs.stop + 2 * (len(tier_arcs[0][0]) if tier_arcs else 0)
    return _Network(tails.astype(np.int32), heads.astype(np.int32), caps.astype(np.int64), costs.astype(np.int64),
                    n_nodes, A, sink, pairs, floors, slice(rep_start, rep_start + R))


def _floor_arcs(tails: np.ndarray, heads: np.ndarray, lower: np.ndarray, upper: np.ndarray, bonus: int) -> list:
    """Two arc blocks (tails, heads, caps, costs) from each tail to its head: mandatory (capacity ``lower``, cost
    -``bonus``) and optional (``upper - lower``, cost 0)."""
    n = len(tails)
    lo, hi = lower.astype(np.int64), upper.astype(np.int64)
    return [(tails, heads, lo, np.full(n, -bonus, np.int64)),
            (tails, heads, np.maximum(hi - lo, 0), np.zeros(n, np.int64))]


def _tier_arcs(tier_node: np.ndarray, rep_node: np.ndarray, lower: np.ndarray, upper: np.ndarray, bonus: int) -> list:
    """The mandatory (capacity ``lower``, cost -``bonus``) and optional (``upper - lower``) arcs of each
    (rep, tier) node (R, T) to its rep, as two arc blocks (tails, heads, caps, costs)."""
    R, T = lower.shape
    return _floor_arcs(tier_node.ravel(), rep_node[np.repeat(np.arange(R), T)], lower.ravel(), upper.ravel(), bonus)


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


def _flow_on_arcs(p: Problem, acc: np.ndarray, rep: np.ndarray, gain: np.ndarray, floors: bool = True) -> np.ndarray:
    """Max-gain assignment restricted to the arcs (acc, rep) with integer ``gain``; -1 = unassigned.

    Raises ``InfeasibleAssignment`` when some (rep, tier) pair cannot reach the lower bound of its tier share,
    or (``floors``) some rep its fewest accounts (count bands); with ``floors`` False the caller, which solves
    on part of the pairs, sees the short reps in the loads instead.
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
    short = np.flatnonzero(flows[net.rep_floors] < net.caps[net.rep_floors])
    if len(short) and floors:
        fewest = net.caps[net.rep_floors]
        raise InfeasibleAssignment(
            f"the accounts band cannot hold: reps {listed(p.name_rep(r) for r in short)} cannot all get their fewest "
            f"accounts ({listed(fewest[short])}) under the other constraints (required match, locks, capacity, "
            "tiers). Fix: widen the accounts band, or relax those.", option="balance"
        )
    return assignment


def solve_flow(p: Problem, keep_bonus: int = 0) -> Solution:
    """Exact optimum of ``p`` by min-cost flow over every allowed pair (tier balance and count bands included),
    with ``keep_bonus`` integer units added for each account kept (see ``keep_bonus_values``)."""
    _refuse_weighted(p, "flow")
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

    Capacity is ``p.count_bounds()``'s most accounts. A rep held at its fewest accounts (a count band's lower
    bound) may have a negative price (the dual of that bound): the largest prices are the same distances, not
    floored at 0 for it.
    """
    A, R = p.shape
    fewest, most = p.count_bounds()
    load = np.bincount(assignment[assignment >= 0], minlength=R)
    held = assignment[acc]
    ok = (held >= 0) & (held != rep)
    w = V[acc[ok], held[ok]] - V[acc[ok], rep[ok]]
    W = np.full((R, R), np.inf)  # W[s, r]: edge s -> r
    np.minimum.at(W, (rep[ok], held[ok]), w.astype(float))
    unreached = 2.0 * R * float(V.max() - V.min()) + 1.0 if V.size else 1.0
    d = np.where(load < most, 0.0, unreached)
    for _ in range(R + 1):
        new = np.minimum(d, (d[:, None] + W).min(axis=0))
        if np.array_equal(new, d):
            break
        d = new
    return np.where((fewest > 0) & (load <= fewest), d, np.maximum(d, 0.0))


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


WARM_STARTS = ("sample", "sample-top", "none")  # how solve_pruned sets its first rep prices (issue 14, point 2)


def _sample_prices(p: Problem, V: np.ndarray, k: int, sample_share: float, seed: int, warm: str = "sample",
                   per_account: int | None = 2) -> np.ndarray:
    """(R,) rep prices estimated from a sample of accounts with capacities scaled alike (rounded at random, so the
    sample is as tight as the whole); zeros when there are too few accounts per rep for a sample to tell.

    ``warm``: "sample" solves the sample exactly (pruned, with its own certificate) and takes its LP duals;
    "sample-top" solves it on each sampled account's top ``3 k`` reps only and takes that graph's duals (what
    repfit did before issue 14: at 1,000 x 100,000 on heavy-tailed values its prices left the first certificate
    round to add 46M pairs); "none": zeros.
    """
    A, R = p.shape
    prices = np.zeros(R)
    if A <= 20 * R or warm == "none":
        return prices
    rng = np.random.default_rng(seed)
    n = max(R * 5, int(A * sample_share))
    s = np.sort(rng.choice(A, size=n, replace=False))
    fewest, most = p.count_bounds()
    if warm == "sample-top":
        cap = np.maximum(1, np.ceil(most * n / A)).astype(np.int64)
    else:
        share = most * n / A
        cap = np.maximum(1, np.floor(share) + (rng.random(R) < share - np.floor(share))).astype(np.int64)
    floor = Band("accounts", np.ones(n), np.floor(fewest * n / A), np.full(R, np.inf))  # lower bounds, scaled alike
    sub = Problem(values=p.values[s], capacity=np.minimum(cap, most), current=p.current[s], locked=np.zeros(n, bool),
                  allowed=None if p.allowed is None else p.allowed[s], bands=(floor,) if fewest.any() else ())
    Vs = V[s]
    if warm == "sample":
        mask = sub.mask()
        got = _certified_flow(sub, Vs, _top_k(Vs, mask, _sample_prices(sub, Vs, k, sample_share, seed + 1, warm,
                                                                       per_account), k),
                              mask, sub.count_bounds()[0], 30, per_account)
        if got is not None:
            return got[1]
    sa, sr = np.nonzero(_top_k(Vs, sub.mask(), prices, 3 * k))
    x = _flow_on_arcs(sub, sa, sr, Vs[sa, sr], floors=False)
    return rep_prices(sub, Vs, x, sa, sr)


def _add_violators(V: np.ndarray, mask: np.ndarray, cand: np.ndarray, prices: np.ndarray,
                   assignment: np.ndarray, block: int = 4096, per_account: int | None = None) -> int:
    """Add to ``cand`` (in place) the allowed pairs outside it with positive reduced cost: all of them, or each
    account's ``per_account`` largest (partial pricing); return how many were added (0: none has any)."""
    A = len(assignment)
    u = V[np.arange(A), assignment] - prices[assignment]
    added = 0
    for lo in range(0, A, block):
        hi = min(A, lo + block)
        red = np.where(mask[lo:hi] & ~cand[lo:hi], (V[lo:hi] - prices[None, :]) - u[lo:hi, None], 0.0)
        viol = red > 1e-9
        if per_account is not None and per_account < V.shape[1]:
            rows = np.flatnonzero(viol.sum(axis=1) > per_account)
            if len(rows):  # keep each such account's per_account largest
                sub = red[rows]
                cut = -np.partition(-sub, per_account - 1, axis=1)[:, per_account - 1]
                viol[rows] &= sub >= cut[:, None]
        if viol.any():
            cand[lo:hi] |= viol
            added += int(viol.sum())
    return added


def solve_pruned(p: Problem, keep_bonus: int = 0, k: int = 15, sample_share: float = 0.1, max_rounds: int = 60,
                 seed: int = 0, per_account: int | None = 2, warm: str = "sample") -> Solution:
    """Exact optimum of ``p`` (no tier balance; count bands included) by min-cost flow on each account's top ``k``
    reps by value minus rep price, widened until the dual certificate proves the solution optimal over every
    allowed pair.

    ``keep_bonus`` integer units are added for each account kept (see ``keep_bonus_values``). The first prices
    come from a sample of accounts (``warm``, see ``_sample_prices``); each certificate round adds each account's
    ``per_account`` pairs of largest positive reduced cost (None: all of them), so that rounds stay small when the
    prices are off. The notes say how many rounds the certificate took; if it does not converge within
    ``max_rounds``, every pair is solved. Accounts the pruned graph cannot place get every allowed rep; reps it
    cannot give their fewest accounts (a count band's lower bound) get the accounts that lose least by moving to
    them, more at each widening (``_widen``).
    """
    if p.tiers is not None:
        raise SolverError("the pruned solver does not model tier balance; use the flow solver.", option="solver")
    if warm not in WARM_STARTS:
        raise SolverError(f"unknown warm start {warm!r}; choose from {', '.join(WARM_STARTS)}.", option="solver")
    V = keep_bonus_values(p, keep_bonus)
    scored, p = p, _count_capped(p, "pruned", lower_ok=True)
    mask = p.mask()
    cand = _top_k(V, mask, _sample_prices(p, V, k, sample_share, seed, warm, per_account), k)
    got = _certified_flow(p, V, cand, mask, p.count_bounds()[0], max_rounds, per_account)
    if got is not None:
        assignment, _, notes = got
        return Solution(assignment, "pruned-flow", scored.int_objective(assignment), True, tuple(notes))
    # could not certify within the rounds: solve on every allowed pair
    assignment = _flow(p, V)
    return Solution(assignment, "flow", scored.int_objective(assignment), True,
                    ("certificate did not converge; solved on all pairs",))


def _certified_flow(p: Problem, V: np.ndarray, cand: np.ndarray, mask: np.ndarray, fewest: np.ndarray,
                    max_rounds: int, per_account: int | None) -> tuple[np.ndarray, np.ndarray, list[str]] | None:
    """Min-cost flow on the pairs ``cand`` (changed in place), widened round by round until no allowed pair has
    positive reduced cost: (assignment, its rep prices, notes), optimal over every allowed pair of ``mask``; None
    when that does not happen within ``max_rounds`` (or the graph is short with nothing left to add)."""
    has = np.flatnonzero(p.current >= 0)
    cand[has, p.current[has]] = mask[has, p.current[has]]  # continuity needs the current rep in the graph
    notes, widenings = [], 0
    for rnd in range(1, max_rounds + 1):
        acc, rep = np.nonzero(cand)
        assignment = _flow_on_arcs(p, acc, rep, V[acc, rep], floors=False)
        widened = _widen(cand, mask, assignment, fewest, V, widenings)
        if widened is False:
            return None  # short on a graph already holding every pair that could help: settle it on all pairs
        if widened:
            widenings += 1
            notes.append(f"round {rnd}: widened the graph to place every account and meet every lower bound")
            continue
        prices = rep_prices(p, V, assignment, acc, rep)
        added = _add_violators(V, mask, cand, prices, assignment, per_account=per_account)
        if added == 0:
            notes.append(f"certified optimal over all {int(mask.sum()):,} allowed pairs after {rnd} round(s) "
                         f"on {int(cand.sum()):,} candidate pairs")
            return assignment, prices, notes
        notes.append(f"round {rnd}: added {added:,} pairs with positive reduced cost")
    return None


WIDEN_PER_FLOOR = 4  # a short rep's first widening adds this many times its fewest accounts (doubling after)


def _widen(cand: np.ndarray, mask: np.ndarray, assignment: np.ndarray, fewest: np.ndarray, V: np.ndarray,
           times: int = 0, block: int = 64) -> bool | None:
    """Where the flow on ``cand`` left an account unplaced or a rep below its fewest accounts, add pairs to ``cand``
    (in place): every allowed pair of an unplaced account; for a rep short of its fewest accounts, the allowed
    accounts outside ``cand`` that lose least by moving to it (largest ``V[a, r] - V[a, held]``), ``WIDEN_PER_FLOOR``
    x its fewest accounts, doubled for each earlier widening (``times``). None: nothing short; True: widened;
    False: short, but there was nothing to add.

    Why not every account of a short rep: under the default band (accounts=20%) a tenth of the reps fell short in
    the first graph of the price sample at 1,000 x 100,000, and their whole columns made the sample's graph 9x
    larger and each of its ~18 flows 5x slower (17 s of a 28.6 s solve, issue 14). The pairs added here only
    make the graph feasible; the certificate still checks every allowed pair, so the optimum is the same.
    """
    miss = np.flatnonzero(assignment < 0)
    short = np.flatnonzero(np.bincount(assignment[assignment >= 0], minlength=len(fewest)) < fewest)
    if not len(miss) and not len(short):
        return None
    before = int(cand.sum())
    cand[miss] = mask[miss]  # an unplaced account's row is now whole: it is never picked below
    want = (WIDEN_PER_FLOOR << min(times, 40)) * np.maximum(fewest[short], 1)
    u = V[np.arange(len(assignment)), np.maximum(assignment, 0)].astype(float)
    for lo in range(0, len(short), block):  # (A, block) at a time
        cols = short[lo:lo + block]
        loss = np.where(mask[:, cols] & ~cand[:, cols], V[:, cols] - u[:, None], -np.inf)
        for j, r in enumerate(cols):
            free = np.flatnonzero(np.isfinite(loss[:, j]))
            m = int(min(want[lo + j], len(free)))
            if m:
                best = free[np.argpartition(-loss[free, j], m - 1)[:m]]
                cand[best, r] = True
    return int(cand.sum()) > before


# --- exact MILP (bands, reference, max-moves fallback) -----------------------------------------------
def solve_milp(p: Problem, keep_bonus: int = 0, time_limit: float | None = None) -> Solution:
    """Exact 0/1 program with HiGHS (``scipy.optimize.milp``) over the allowed pairs, every constraint included:
    capacity, tiers (as bands), every band (a row per rep; (A,) or (A, R) weights; one-sided bounds), the move
    budget.

    Parameters
    ----------
    p : the problem; the objective is ``p.int_values`` (plus ``keep_bonus`` on each account kept, see
        ``keep_bonus_values``).
    keep_bonus : integer units per account kept.
    time_limit : seconds; None: run to proven optimality (in this process). With a limit HiGHS runs in a child
        process, stopped if it has not answered ``highs.grace_seconds(time_limit)`` after the limit.

    Returns
    -------
    Solution : ``certified`` with ``gap`` 0 when HiGHS proves it optimal; when it stops at the time limit with
    an assignment, that one, not certified, with ``bound`` (HiGHS's dual bound on the objective solved, in
    integer units) and ``gap`` = (bound - objective) / |bound|.

    Raises
    ------
    InfeasibleAssignment
        HiGHS proves that no assignment meets every constraint (the message lists the bands in force).
    SolverError
        The time limit passed before HiGHS found any assignment, or HiGHS overran it and was stopped
        (``time_limit`` + ``highs.grace_seconds``; not a proof of infeasibility).
    """
    from scipy.optimize import Bounds

    from repfit.assign import highs

    acc, rep = np.nonzero(p.mask())
    V = keep_bonus_values(p, keep_bonus)
    options = {"disp": False, "mip_rel_gap": 0.0}  # HiGHS's default 1e-4 gap would not be "certified optimal"
    # HiGHS warns that costs of ~1e10 units are large; scaled down, the one-unit tie-break (and "certified optimal"
    # for the integer values) would fall below its tolerances (a property test caught it), so they stay.
    # With a time limit HiGHS runs in a child process that is stopped if it overruns the limit (repfit.assign.highs)
    res = highs.milp(-V[acc, rep].astype(float), _milp_constraints(p, acc, rep), np.ones(len(acc)), Bounds(0, 1),
                     options, time_limit)
    return _milp_solution(p, res, acc, rep, V, time_limit)


def _milp_constraints(p: Problem, acc: np.ndarray, rep: np.ndarray) -> list:
    """The rows of the 0/1 program over the pairs (acc, rep): each account once, capacity, a row per rep for
    each tier and band, and the move budget (accounts kept >= accounts with a current rep - budget)."""
    from scipy.optimize import LinearConstraint
    from scipy.sparse import csr_matrix

    A, R = p.shape
    n, cols = len(acc), np.arange(len(acc))

    def rows(row: np.ndarray, coef: np.ndarray, m: int, lo, hi) -> LinearConstraint:
        return LinearConstraint(csr_matrix((coef, (row, cols)), shape=(m, n)), lo, hi)

    ones = np.ones(n)
    cons = [rows(acc, ones, A, 1, 1), rows(rep, ones, R, 0, p.capacity.astype(float))]
    for b in (*p.tier_bands(), *p.bands):
        if b.active:
            w = b.weights[acc] if b.weights.ndim == 1 else b.weights[acc, rep]
            # (rows are not rescaled: with costs of ~1e10 units, rows of weight ~1 stalled HiGHS's root LP, measured)
            cons.append(rows(rep, w, R, b.lower, b.upper))
    if p.max_moves is not None:
        if p.kept is None:
            kept, n_has = (p.current[acc] == rep).astype(float), int((p.current >= 0).sum())
        else:
            kept, n_has = p.kept[acc, rep].astype(float), int(p.kept.sum())
        cons.append(rows(np.zeros(n, np.int64), kept, 1, n_has - p.max_moves, np.inf))
    return cons


class _NoIncumbent(SolverError):
    """HiGHS stopped at its time limit before finding any assignment."""


def _milp_solution(p: Problem, res, acc: np.ndarray, rep: np.ndarray, V: np.ndarray,
                   time_limit: float | None) -> Solution:
    """The ``Solution`` of HiGHS's result ``res``: optimal (gap 0), stopped at the limit with an assignment
    (not certified, with HiGHS's bound and the gap to it), or the error that says why there is none."""
    A, _ = p.shape
    if res.x is None:
        if res.status == 2:
            raise InfeasibleAssignment(_milp_infeasible(p), option="balance" if p.bands else None)
        if res.status == 1:
            raise _NoIncumbent(f"HiGHS found no assignment within the time limit of {time_limit:g} s (this is not a "
                               "proof of infeasibility). Fix: allow more time, or widen the bands.")
        raise SolverError(f"HiGHS failed: {res.message} (this is not a proof of infeasibility).")
    x = res.x > 0.5
    assignment = np.full(A, -1, np.int64)
    assignment[acc[x]] = rep[x]
    _check_complete(p, assignment)
    solved = int(V[np.arange(A), assignment].sum())
    if res.status == 0:
        return Solution(assignment, "milp", p.int_objective(assignment), True, gap=0.0, bound=float(solved))
    dual = getattr(res, "mip_dual_bound", None)
    bound = -float(dual) if dual is not None else np.nan
    gap = max(bound - solved, 0.0) / abs(bound) if np.isfinite(bound) and bound else None
    limit = f"the time limit of {time_limit:g} s" if time_limit else "a limit"
    note = f"not certified: HiGHS stopped at {limit}; " + (
        f"at most {gap:.3%} below the optimum (its dual bound)" if gap is not None else "no bound on the gap")
    return Solution(assignment, "milp", p.int_objective(assignment), False, (note,),
                    gap=gap, bound=bound if np.isfinite(bound) else None)


def _milp_infeasible(p: Problem) -> str:
    """HiGHS proved the program infeasible: name the bands in force and the tightest, to widen first."""
    bands = [b for b in p.bands if b.active]
    if not bands:
        return ("no assignment satisfies every constraint (required match, locks, capacity, tiers, move budget): "
                "HiGHS proves the program infeasible.")
    tolerant = [b for b in bands if b.tolerance is not None]
    tight = min(tolerant, key=lambda b: b.tolerance) if tolerant else bands[0]
    wider = f", e.g. to +-{min(2 * tight.tolerance, 1.0) * 100:.4g}%" if tight.tolerance else ""
    return (f"no assignment satisfies every band at once with the other constraints: HiGHS proves it infeasible "
            f"under {listed(b.describe() for b in bands)} (each passed the counts checked before solving). Fix: widen "
            f"the tightest band, {tight.describe()}{wider}, or relax the required match, locks or move budget.")


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


def solve_max_moves(p: Problem, base: BaseSolver, time_limit: float | None = None) -> Solution:
    """Best assignment of ``p`` with at most ``p.max_moves`` moves, by the keep-bonus search above.

    The smallest keep bonus whose optimum x has moves(x) <= K is optimal for the budget if moves(x) == K or the
    bonus is 0. Otherwise the budget falls between two Lagrangian solutions and the exact MILP settles it
    (up to ``MILP_MAX_ARCS`` allowed pairs; beyond, the Lagrangian solution is returned, not certified, with
    its bound on the gap). ``time_limit`` bounds that MILP (None: none).

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
        return _noted(solve_milp(p, time_limit=time_limit),
                      f"Lagrangian gap (bonus {hi} gives {m} < {K} moves): settled by exact MILP on {n_arcs:,} pairs")
    gap = hi * (K - m) / p.scale
    bound = float(sol.int_objective + hi * (K - m))  # v(y) <= v(x) + bonus (moves(y) - moves(x)) for moves(y) <= K
    return _noted(sol, f"not certified: Lagrangian solution with {m} moves (< {K}); at most {gap:,.4g} below the optimum",
                  solver=sol.solver + "+lagrangian", certified=False, bound=bound,
                  gap=(bound - sol.int_objective) / abs(bound) if bound else 0.0)


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
MILP_TIME_LIMIT = 60.0  # seconds ``solve`` gives HiGHS by default; past it, the best assignment found and its gap


def _milp_limited(p: Problem, keep_bonus: int = 0) -> Solution:
    """``solve_milp`` within ``MILP_TIME_LIMIT``: the base solver ``milp`` (e.g. for ``budget_curve``)."""
    return solve_milp(p, keep_bonus, time_limit=MILP_TIME_LIMIT)


# the large-scale banded solver registers itself here as "balance" (repfit.assign.balance)
SOLVERS: dict[str, BaseSolver] = {"hungarian": solve_hungarian, "flow": solve_flow, "pruned": solve_pruned,
                                  "milp": _milp_limited}


def _balance_registered() -> bool:
    """Whether the large-scale banded solver is in ``SOLVERS``: ``repfit.assign.balance`` registers itself on
    import; imported here on first need, if it exists."""
    if "balance" not in SOLVERS and importlib.util.find_spec("repfit.assign.balance") is not None:
        importlib.import_module("repfit.assign.balance")
    return "balance" in SOLVERS


BALANCE_TIME_LIMIT = 300.0  # seconds ``solve`` gives the balance solver by default
FALLBACK_MIN_SECONDS = 10.0  # the balance solver's least time when it steps in for HiGHS (which used up the limit)


def _solve_balance(p: Problem, keep_bonus: int = 0, time_limit: float | None = None) -> Solution:
    """``balance``: bands at scale with a proven gap (``repfit.assign.balance``, which imports this module), within
    ``time_limit`` seconds (None: ``BALANCE_TIME_LIMIT``)."""
    from repfit.assign.balance import solve_balanced

    return solve_balanced(p, keep_bonus=keep_bonus, time_limit=BALANCE_TIME_LIMIT if time_limit is None else time_limit)


SOLVERS["balance"] = _solve_balance


def choose_solver(p: Problem) -> str:
    """The solver ``auto`` picks.

    - bands whose weights vary by account (potential, workload, expected value, a family's size): ``milp`` up to
      ``MILP_BANDS_MAX_PAIRS`` account-rep pairs, beyond that ``balance`` if registered (else ``SolverError``);
    - tier balance: ``flow``;
    - otherwise by size, count bands included (``accounts``): dense slots (``hungarian``, only when no count band
      has a lower bound), all pairs (``flow``), pruned with its certificate (``pruned``).
    """
    A, R = p.shape
    weighted = p.weighted_bands()
    if weighted:
        if A * R <= MILP_BANDS_MAX_PAIRS:
            return "milp"
        if _balance_registered():
            return "balance"
        raise SolverError(
            f"the bands {listed(b.describe() for b in weighted)} need the MILP solver, which repfit runs up to "
            f"{MILP_BANDS_MAX_PAIRS:,} account-rep pairs; this problem has {A * R:,} and no large-scale balance solver "
            "is installed. Fix: drop or split those bands, or plan fewer accounts at once.", option="solver")
    if p.tiers is not None:
        return "flow"
    fewest, most = p.count_bounds()
    slots = int(np.minimum(most, A).sum())
    if not fewest.any() and A * slots <= HUNGARIAN_MAX_CELLS:
        return "hungarian"
    if A * R <= FLOW_MAX_ARCS // 5:
        return "flow"
    return "pruned"


def resolve_solver(p: Problem, solver: str = "auto") -> str:
    """The name of the solver ``solve`` runs for ``solver`` (a name in ``SOLVERS``, or ``auto``).

    A solver that does not model the problem's constraints is replaced by one that does, as the ``solver``
    field of the ``Solution`` shows: ``hungarian`` under tiers or a count band's lower bound, and ``pruned``
    under tiers, by ``flow``; any but ``milp`` and ``balance`` under a weighted band by ``choose_solver``'s pick."""
    name = choose_solver(p) if solver == "auto" else solver
    if name not in SOLVERS:
        raise SolverError(f"unknown solver {solver!r}; choose from auto, {', '.join(SOLVERS)}.", option="solver")
    if p.weighted_bands() and name not in ("milp", "balance"):
        return choose_solver(p)
    floors = p.tiers is not None or (name == "hungarian" and p.count_bounds()[0].any())
    if name in ("hungarian", "pruned") and floors:
        return "flow"
    return name


def base_solver(p: Problem, solver: str = "auto") -> BaseSolver:
    """The solver function for ``solver`` (a name in ``SOLVERS``, or ``auto``), as ``resolve_solver`` picks it."""
    return SOLVERS[resolve_solver(p, solver)]


def solve(p: Problem, solver: str = "auto", time_limit: float | None = None) -> Solution:
    """Solve ``p`` with ``solver`` (``auto`` picks by size and constraints), within its move budget.

    ``milp`` models the move budget itself and stops at ``time_limit`` seconds with its best assignment and
    gap (HiGHS runs in a child process, stopped if it overruns: ``repfit.assign.highs``); ``balance`` is given the
    whole problem (move budget included) and ``time_limit``; the others go through the keep-bonus search
    (``solve_max_moves``), whose MILP fallback gets ``time_limit``. ``time_limit`` None: each solver's default
    (``MILP_TIME_LIMIT``, ``BALANCE_TIME_LIMIT``). When HiGHS finds no assignment at all within ``time_limit``, or
    overruns it, the ``balance`` solver's (if registered) is returned, found in ``time_limit`` again (at least
    ``FALLBACK_MIN_SECONDS``). A certified solution has ``gap`` 0 and
    ``bound`` its own objective (``Problem.int_values`` units).
    """
    from repfit.assign.highs import HighsOverran

    name = resolve_solver(p, solver)
    milp_limit = MILP_TIME_LIMIT if time_limit is None else time_limit
    if name == "milp":
        try:
            return solve_milp(p, time_limit=milp_limit)
        except (_NoIncumbent, HighsOverran) as exc:  # no assignment at all: the large-scale solver's, with its gap
            if not _balance_registered():
                raise
            again = None if time_limit is None else max(time_limit, FALLBACK_MIN_SECONDS)
            return _noted(SOLVERS["balance"](p, 0, time_limit=again), f"{exc} The balance solver's assignment instead.")
    base = SOLVERS[name]
    if p.max_moves is not None and name == "balance":
        raise SolverError(
            f"a move budget together with weighted balance bands ({listed(b.describe() for b in p.weighted_bands())}) "
            f"is solved exactly only up to {MILP_BANDS_MAX_PAIRS:,} account-rep pairs (MILP); this problem has "
            f"{p.shape[0] * p.shape[1]:,}, and the large-scale balance solver does not model the budget yet. Fix: drop "
            "the move budget, or balance by accounts only (count bands work with it).", option="max_moves")
    if p.max_moves is not None:
        sol = solve_max_moves(p, base, time_limit=milp_limit)
    elif name == "balance":
        sol = base(p, 0, time_limit=time_limit)
    else:
        sol = base(p, 0)
    if sol.certified and sol.gap is None:  # proven optimal: its own bound, gap 0 (every output names a gap)
        sol = replace(sol, gap=0.0, bound=float(sol.int_objective))
    return sol
