"""A plan on candidate pairs alone, with no (accounts, reps) array (issue 14, point 4).

A top-K scores file (``repfit score --top-k K``) holds each account's best K reps and its current rep; at
10,000 reps x 1,000,000 accounts that is 16 million rows where every pair would be 10 billion. Here the plan is a
min-cost flow on those pairs (capacity, accounts bands, locks, the required match, continuity), and what the
left-out pairs could add is bounded by a second flow, the *relaxed* problem: each account may also take a
virtual pair worth its left-out bound, through a hub.

Why the relaxed optimum bounds the optimum over all pairs: the file bounds each account's left-out pairs by
P(win) (``p_win_left_out``: worth at most ``U_a`` at any rep) and, ranked net of the scoring-time rep prices
``pi`` (``ev_net_left_out`` and, per tier j of prices, ``ev_net_left_out_tier<j>``), by ``N_aj``: pair (a, r), r in
tier j, is worth at most ``N_aj + pi_r``. Account a -> hub j at ``min(U_a - lo_j, N_aj)`` (``lo_j`` the tier's
lowest price) -> rep r of tier j at ``pi_r`` is a path worth at least that pair's bound, for every rep. Any
assignment over all pairs is then a flow of the relaxed network worth at least as much, so the relaxed optimum is
an upper bound. The plan is certified optimal over all pairs when it reaches it; the difference is otherwise a
valid gap. With exact prices ``pi`` (the optimum's duals) the bound is met: the closer the scoring prices, the
tighter it is (``repfit score --top-k K --plan``: the prices of a first plan), and the deeper K, the lower N.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from repfit import schema as S
from repfit.assign.problem import FLOAT_EXACT, INT_LIMIT, Problem, _check_locked_capacity, _check_total_capacity
from repfit.assign.solvers import Solution, _check_complete, _floor_arcs, _flow_on_arcs, _min_cost_flows, _Network
from repfit.errors import InfeasibleAssignment
from repfit.messages import listed
from repfit.scores_io import Candidates

SOLVER = "flow on candidates"


@dataclass(frozen=True)
class LeftOut:
    """Per account, bounds on the value of its pairs NOT among the candidates (value units; -inf: none left out).
    Pair (a, r) left out is worth at most ``any_rep[a]``, and at most ``net[a] + prices[r]`` where ``net[a]`` is
    finite."""

    any_rep: np.ndarray  # (A,)
    net: np.ndarray | None = None  # (A,)
    prices: np.ndarray | None = None  # (R,)
    deeper: dict[int, np.ndarray] | None = None  # K' -> (A,) ``net`` had the file kept K' reps (estimates of K)
    whole_at: dict[int, np.ndarray] | None = None  # K' -> (A,) bool: K' reps would leave nothing out of the account
    tiered: np.ndarray | None = None  # (A, J) ``net`` among the reps of each price tier (``price_tiers``)


@dataclass(frozen=True)
class Arcs:
    """The candidate pairs a plan may use, sorted by (account, rep)."""

    acc: np.ndarray  # (n,) int64
    rep: np.ndarray  # (n,) int64
    p_win: np.ndarray  # (n,) float64
    value: np.ndarray  # (n,) float64 objective value, continuity bonus included

    def find(self, a: np.ndarray, r: np.ndarray, R: int) -> np.ndarray:
        """Position of each pair (a, r) among the arcs, -1 where it is not one."""
        keys = self.acc * R + self.rep
        if not len(keys):
            return np.full(len(a), -1)
        want = a.astype(np.int64) * R + r
        pos = np.minimum(np.searchsorted(keys, want), len(keys) - 1)
        return np.where((r >= 0) & (keys[pos] == want), pos, -1)


def candidate_arcs(cand: Candidates, potential: np.ndarray | None, prob: Problem,
                   allowed_pair=None) -> Arcs:
    """The pairs of ``cand`` that ``prob`` allows: a locked account only its current pair; ``allowed_pair(acc,
    rep) -> bool array`` (the required match) filters the rest. Values: P(win) x ``potential`` (None: P(win)),
    with ``prob.continuity`` on current pairs."""
    acc, rep = cand.acc.astype(np.int64), cand.rep.astype(np.int64)
    order = np.lexsort((rep, acc))
    acc, rep, p = acc[order], rep[order], cand.p_win[order].astype(float)
    cur = prob.current[acc]
    keep = ~prob.locked[acc] | (rep == cur)
    if allowed_pair is not None:
        keep &= allowed_pair(acc, rep)
    acc, rep, p, cur = acc[keep], rep[keep], p[keep], cur[keep]
    value = p * (potential[acc] if potential is not None else 1.0)
    value = np.where(rep == cur, value * (1.0 + prob.continuity), value)
    return Arcs(acc, rep, p, value)


def left_out_bounds(cand: Candidates, arcs: Arcs, prob: Problem, potential: np.ndarray | None) -> LeftOut:
    """What the file says of each account's left-out pairs, in the arcs' value units. A current pair left out
    of the file would carry the continuity bonus: for its account only the P(win) bound holds, with the bonus."""
    A, R = prob.shape
    pot = potential if potential is not None else np.ones(A)
    u = cand.left_out.astype(float) * pot  # NaN: nothing left out
    listed_cur = (prob.current < 0) | (arcs.find(np.arange(A), prob.current, R) >= 0) | prob.locked
    any_rep = np.where(np.isnan(u), -np.inf, u * np.where(listed_cur, 1.0, 1.0 + prob.continuity))
    any_rep[prob.locked] = -np.inf  # a locked account keeps its pair: nothing else can be worth anything to it
    if cand.left_out_net is None or cand.prices is None or potential is None:
        return LeftOut(any_rep)
    # float32 P(win) on reading vs the float64 the file's ranking used: a relative 1e-6 of the P(win) bound
    slack = 1e-6 * np.where(np.isfinite(any_rep), np.abs(any_rep), 0.0)

    def net_of(n: np.ndarray) -> np.ndarray:
        return np.where(listed_cur & np.isfinite(any_rep) & np.isfinite(n), n + slack, -np.inf)

    deeper = {k: net_of(n) for k, n in (cand.deeper or {}).items()}
    whole_at = {k: ~np.isfinite(n) for k, n in (cand.deeper or {}).items()}  # the file's empty: nothing left out
    tiered = None if cand.tiered is None else np.where(
        np.isfinite(cand.tiered), cand.tiered + slack[:, None], -np.inf)
    return LeftOut(any_rep, net_of(cand.left_out_net), np.asarray(cand.prices, float), deeper, whole_at, tiered)


def value_scale(arcs: Arcs, left: LeftOut, A: int, R: int) -> float:
    """Integer units per value unit (as ``Problem.scale``), room kept for the relaxed network's hub paths."""
    vmax = float(np.abs(arcs.value).max()) if len(arcs.value) else 0.0
    finite = left.any_rep[np.isfinite(left.any_rep)]
    vmax = max(vmax, float(finite.max()) if len(finite) else 0.0)
    if left.prices is not None and len(finite):  # every hub arc carries a price (review 16: counted only when
        # some account had a finite net bound; without one, prices 1e6 x the values overflowed int64)
        pmax = float(np.abs(left.prices).max()) if len(left.prices) else 0.0
        n = left.net[np.isfinite(left.net)] if left.net is not None else np.zeros(0)
        # a hub path: min(U_a - lo_j, N_a) (lo_j a tier's lowest price, as low as -pmax) and then a price
        vmax = max(vmax, float(np.abs(finite).max()) + 2 * pmax, (float(np.abs(n).max()) if len(n) else 0.0) + pmax)
    nodes = A + R + 4
    return min(INT_LIMIT / (nodes + 1), FLOAT_EXACT) / (9.0 * (A + 1)) / vmax if vmax > 0 else 1.0


def int_gains(arcs: Arcs, prob: Problem, scale: float) -> np.ndarray:
    """Arc values in integer units, plus one unit on current pairs (the fewest-moves tie-break)."""
    return np.rint(arcs.value * scale).astype(np.int64) + (arcs.rep == prob.current[arcs.acc])


@dataclass(frozen=True)
class Bound:
    """The relaxed optimum against the plan (integer units)."""

    value: int  # the relaxed optimum: no assignment over all pairs is worth more
    open_accounts: int  # accounts the relaxed optimum places through a hub (on a left-out bound)


PRICE_TIERS = 8  # hubs of the relaxed network: reps in this many groups by scoring price (see relaxed_bound)


def price_tiers(prices: np.ndarray, of: np.ndarray, tiers: int = PRICE_TIERS) -> np.ndarray:
    """The price tier (0 .. tiers - 1) of each price in ``of``, cut at the quantiles of all reps' ``prices``: the
    same on the scoring side (``top_k``) and here, whatever the order of the reps."""
    edges = np.quantile(prices, np.arange(1, tiers) / tiers) if len(prices) else np.zeros(tiers - 1)
    return np.searchsorted(edges, of, side="right")


def relaxed_bound(prob: Problem, arcs: Arcs, gain: np.ndarray, net: np.ndarray | None, left: LeftOut,
                  scale: float, tiers: int = PRICE_TIERS) -> Bound:
    """The optimum of the relaxed network (see the module docstring); ``net``: the N_a to use (``left.net`` or a
    deeper one).

    Both bounds at once: pair (a, r) left out is worth at most ``min(U_a, N_a + pi_r)``. The reps are put in
    ``tiers`` groups by price, and account a reaches group j's hub at ``min(U_a - lo_j, N_a)``, ``lo_j`` the
    group's lowest price; the hub reaches rep r at ``pi_r``. The path is worth ``min(U_a - lo_j + pi_r, N_a +
    pi_r)``, at least the bound since ``pi_r >= lo_j``; without the groups an account whose best left-out pair is
    at a cheap rep would reach the dearest rep at ``N_a`` plus its whole price, far above ``U_a``."""
    A, R = prob.shape
    pi = left.prices if left.prices is not None else np.zeros(R)
    J = tiers if left.tiered is None else left.tiered.shape[1]
    tier = price_tiers(pi, pi, J)
    lo = np.full(J, np.inf)
    np.minimum.at(lo, tier, pi)
    has = np.flatnonzero(np.isfinite(left.any_rep))
    n_a = np.full((len(has), 1), np.inf) if net is None else np.where(np.isfinite(net[has]), net[has], np.inf)[:, None]
    if left.tiered is not None and net is left.net:  # the file's bound per tier: -inf where it left none out
        n_a = np.minimum(n_a, left.tiered[has])
    bound = np.minimum(left.any_rep[has, None] - np.where(np.isfinite(lo), lo, 0.0)[None, :], n_a)
    a_hub, j_hub = np.nonzero(np.isfinite(bound) & np.isfinite(lo)[None, :])  # no arc to a tier it left nothing in
    to_hub = np.ceil(bound[a_hub, j_hub] * scale).astype(np.int64) + 2
    a_hub = has[a_hub]
    price_int = np.ceil(pi * scale).astype(np.int64)
    src, sink, hub = 0, A + R + 1, A + R + 2 + np.arange(J)
    acc_node, rep_node = 1 + np.arange(A), 1 + A + np.arange(R)
    big = (max(int(np.abs(v).max()) for v in (gain, to_hub, price_int) if v.size) * 2 + 1) * (A + 1)
    fewest, most = prob.count_bounds()
    ones = np.ones(A, np.int64)
    blocks = [
        (acc_node[arcs.acc], rep_node[arcs.rep], np.ones(len(gain), np.int64), -gain),
        (acc_node[a_hub], hub[j_hub], np.ones(to_hub.size, np.int64), -to_hub),
        (hub[tier], rep_node, np.full(R, A, np.int64), -price_int),
        (np.full(A, src), acc_node, ones, np.zeros(A, np.int64)),
        (acc_node, np.full(A, sink), ones, np.full(A, 3 * big, np.int64)),
        *_floor_arcs(rep_node, np.full(R, sink), fewest, most, big if fewest.any() else 0),
    ]
    tails, heads, caps, costs = (np.concatenate(c) for c in zip(*blocks))
    valued = len(gain) + to_hub.size + R  # the arcs whose cost is minus a value
    network = _Network(tails.astype(np.int32), heads.astype(np.int32), caps.astype(np.int64), costs.astype(np.int64),
                       int(hub[-1]) + 1, A, sink, slice(0, 0), slice(0, 0), slice(0, 0))
    flows = _min_cost_flows(network)
    hubbed = int(flows[len(gain):len(gain) + to_hub.size].sum())
    return Bound(int(-(flows[:valued] * costs[:valued]).sum()), hubbed)


def solve_candidates(prob: Problem, arcs: Arcs, left: LeftOut, top_k: int | None = None) -> Solution:
    """The best assignment on ``arcs`` under ``prob``'s capacity, count bands and locks, certified optimal over
    all pairs or with its gap from the relaxed bound. ``prob`` is used for its shape, capacity, bands, current
    reps and locks only (its values are never read).

    Raises
    ------
    InfeasibleAssignment
        When the candidates cannot hold the constraints (naming the fix: a larger K).
    """
    A, R = prob.shape
    scale = value_scale(arcs, left, A, R)
    gain = int_gains(arcs, prob, scale)
    x = _flow(prob, arcs, gain, top_k)
    value = int(gain[arcs.find(np.arange(A), x, R)].sum())
    if not np.isfinite(left.any_rep).any():
        return Solution(x, SOLVER, value, True, (f"every pair of every account is a candidate ({len(arcs.acc):,})",),
                        0.0, float(value))
    b = relaxed_bound(prob, arcs, gain, left.net, left, scale)
    gap = max(b.value - value, 0)
    rel = gap / abs(b.value) if b.value else 0.0
    if not gap:
        note = (f"certified optimal over all {A * R:,} pairs from the candidates' left-out bounds "
                f"({len(arcs.acc):,} candidate pairs)")
    else:
        note = (f"not certified over all pairs: {b.open_accounts:,} accounts' left-out pairs could be worth more "
                f"than what they hold; at most {gap / scale:,.4g} ({rel:.3%}) below the optimum. "
                f"{_deeper_k(prob, arcs, gain, left, scale, value, top_k) if rel >= NEGLIGIBLE_GAP else NEGLIGIBLE}. "
                f"{RESCORE_WITH_PRICES if left.net is not None else ''}".rstrip())
    return Solution(x, SOLVER, value, not gap, (note,), rel, float(b.value))


def _flow(prob: Problem, arcs: Arcs, gain: np.ndarray, top_k: int | None = None) -> np.ndarray:
    """The max-gain assignment on ``arcs``; infeasible on the candidates says so, and that K is the fix."""
    try:
        x = _flow_on_arcs(prob, arcs.acc, arcs.rep, gain)
        _check_complete(prob, x)
    except InfeasibleAssignment as exc:
        raise InfeasibleAssignment(f"{exc} The scores hold only each account's top {top_k or 'K'} reps (and its "
                                   "current one): the popular reps fill up. Fix: score with a larger --top-k, or "
                                   "without it.", option=exc.option) from None
    return x


def flow_on_candidates(prob: Problem, arcs: Arcs) -> np.ndarray:
    """The best assignment on ``arcs`` under ``prob`` (no bound), e.g. without one of its bands for its price."""
    A, R = prob.shape
    return _flow(prob, arcs, int_gains(arcs, prob, value_scale(arcs, LeftOut(np.full(A, -np.inf)), A, R)))


def _deeper_k(prob: Problem, arcs: Arcs, gain: np.ndarray, left: LeftOut, scale: float, value: int,
              top_k: int | None) -> str:
    """The fix, with the smallest deeper K the file's ranks say would close the gap (an estimate: it assumes the
    pairs between would not change the plan). Each K' tried is another flow as large as the bound's (70 s at
    1,000 x 1,000,000): the deepest first, and none when the gap is below ``NEGLIGIBLE_GAP``."""
    closes = []
    for k in sorted(left.deeper or {}, reverse=True):
        at_k = left if left.whole_at is None else replace(  # an account K' lists whole has no hub (review 16)
            left, any_rep=np.where(left.whole_at[k], -np.inf, left.any_rep))
        if relaxed_bound(prob, arcs, gain, left.deeper[k], at_k, scale).value > value:
            break
        closes.append(k)
    if closes:
        return (f"Fix: score with --top-k {min(closes)} (estimated from the ranks the file keeps: every account's "
                f"left-out bound would then fall within what it holds in this plan)")
    deepest = max(left.deeper) if left.deeper else None
    if deepest:
        return f"Fix: score with --top-k above {deepest} (the deepest rank the file keeps still leaves a gap), or without it"
    return f"Fix: score with a larger --top-k{f' than {top_k}' if top_k else ''} (the bound tightens as K grows), or without it"


NEGLIGIBLE_GAP = 1e-4  # below, no deeper K is estimated: rescoring would buy at most 0.01% of the plan's value
NEGLIGIBLE = (f"The gap is below {NEGLIGIBLE_GAP:.2%}: a larger --top-k would rescore every pair for at most that, so "
              "none is estimated")


RESCORE_WITH_PRICES = ("Or score again with --top-k and --plan set to this plan (its rep prices are written beside "
                       "it as <out>_prices.csv): ranked by the prices of a plan this close to the optimum, the "
                       "candidates' bounds often prove it (less so under balance bands).")


def edge_prices(prob: Problem, arcs: Arcs, gain: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(R,) LP dual prices of rep capacity (integer units) for ``x``, optimal on ``arcs``: ``rep_prices`` from the
    arcs alone (difference constraints ``price_r <= price_s + gain(a, r) - gain(a, s)`` for an account a held by r
    with a candidate s; the largest prices meeting them, by Bellman-Ford on the reps from those with room)."""
    A, R = prob.shape
    fewest, most = prob.count_bounds()
    load = np.bincount(x[x >= 0], minlength=R)
    held = x[arcs.acc]
    ok = (held >= 0) & (held != arcs.rep)
    w = (gain[arcs.find(arcs.acc[ok], held[ok], R)] - gain[ok]).astype(float)
    s, r = arcs.rep[ok], held[ok]
    first = np.lexsort((w, s * R + r))  # the lightest edge of each (s, r)
    key = (s * R + r)[first]
    lead = np.r_[True, key[1:] != key[:-1]] if len(key) else np.zeros(0, bool)
    s, r, w = s[first][lead], r[first][lead], w[first][lead]
    unreached = 2.0 * R * float(gain.max() - gain.min()) + 1.0 if len(gain) else 1.0
    d = np.where(load < most, 0.0, unreached)
    for _ in range(R + 1):
        new = d.copy()
        np.minimum.at(new, r, d[s] + w)
        if np.array_equal(new, d):
            break
        d = new
    return np.where((fewest > 0) & (load <= fewest), d, np.maximum(d, 0.0))


def shape_only(prob_fields: dict, A: int, R: int) -> Problem:
    """A ``Problem`` whose values are a zero-memory stand-in (a broadcast 0): for its shape, capacity, bands,
    current reps and locks. Reading its values (``int_values``, ``mask``, ``scale``) is a bug."""
    return Problem(values=np.broadcast_to(np.float32(0), (A, R)), **prob_fields)


def check_counts(prob: Problem) -> None:
    """The feasibility checks that need no (accounts, reps) array: total capacity, locks, and the count bands'
    totals against the number of accounts."""
    _check_total_capacity(prob)
    _check_locked_capacity(prob)
    fewest, most = prob.count_bounds()
    A = prob.shape[0]
    if fewest.sum() > A or most.sum() < A:
        raise InfeasibleAssignment(f"the accounts band cannot hold: reps need {fewest.sum():,} to {most.sum():,} "
                                   f"accounts in total, and there are {A:,}. Fix: widen the band.", option="balance")


def best_per_account(arcs: Arcs, A: int) -> np.ndarray:
    """(A,) the largest arc value of each account (-inf without arcs)."""
    best = np.full(A, -np.inf)
    np.maximum.at(best, arcs.acc, arcs.value)
    return best


def p_win_at(arcs: Arcs, a: np.ndarray, r: np.ndarray, R: int) -> np.ndarray:
    """P(win) of pairs (a, r) among the arcs, NaN where a pair is not one."""
    pos = arcs.find(a, r, R)
    return np.where(pos >= 0, arcs.p_win[np.maximum(pos, 0)], np.nan)


def current_p_win(cand: Candidates, current: np.ndarray) -> np.ndarray:
    """(A,) P(win) of each account's current pair as the file lists it (NaN: no current rep, or not listed). From
    the file, not the arcs: a current pair the required match forbids is not an arc, yet it is what the account
    is worth today (review 16: its previous_p_win was NaN, the value today understated)."""
    A, R = cand.shape
    keys = cand.acc.astype(np.int64) * R + cand.rep
    order = np.arange(len(keys)) if (keys[1:] >= keys[:-1]).all() else np.argsort(keys, kind="stable")  # read: sorted
    listed = Arcs(cand.acc[order].astype(np.int64), cand.rep[order].astype(np.int64),
                  cand.p_win[order].astype(float), np.zeros(len(order)))
    return p_win_at(listed, np.arange(A), current, R)


def require_match_filter(ds: S.Dataset, attrs) -> "callable | None":
    """``allowed_pair(acc, rep)`` for ``require_match``: the account's and the rep's attribute values are equal."""
    if not attrs:
        return None
    pairs = [(ds.accounts[a].astype(str).to_numpy(), ds.reps[a].astype(str).to_numpy()) for a in attrs]

    def allowed(acc: np.ndarray, rep: np.ndarray) -> np.ndarray:
        ok = np.ones(len(acc), bool)
        for av, rv in pairs:
            ok &= av[acc] == rv[rep]
        return ok

    return allowed


def unmatched_accounts(arcs: Arcs, prob: Problem) -> None:
    """Every account needs at least one candidate pair it may use (locks and the required match applied)."""
    A = prob.shape[0]
    none = np.flatnonzero(np.bincount(arcs.acc, minlength=A) == 0)
    if len(none):
        names = prob.account_names[none[:5]] if prob.account_names is not None else none[:5]
        raise InfeasibleAssignment(f"{len(none):,} account(s) have no candidate pair they may take (locks and the "
                                   f"required match applied), e.g. {listed(names.tolist())}. Fix: score them with a "
                                   "larger --top-k, or relax the required match.", option="require_match")
