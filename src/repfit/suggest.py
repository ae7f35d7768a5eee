"""Ranked reassignment suggestions with reasons in plain words and a confidence mark.

Reasons come from the model's own per-feature contributions (LightGBM ``pred_contrib``): the features
that push the suggested rep's log-odds above the current rep's the most, each turned into a sentence
from the rep's history (e.g. "wins 48% of healthcare deals vs 31% overall (23 deals)").

A suggestion is *confident* only if the model's rep strengths were borne out on its test period (the
signal check at training) and the gain in P(win) exceeds twice its standard error, estimated from how
much history stands behind each of the two pairs.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from repfit import schema as S
from repfit.assign.plan import AssignConfig, PlanSummary, current_rep_index, plan_assignment
from repfit.errors import RepfitError
from repfit.features import Dimension
from repfit.features.catalogue import DimensionKind, Topic, TopicKind
from repfit.probability import laplace_rate
from repfit.scoring import cold_reps
from repfit.winprob import PairScorer

N_REASONS = 2


@dataclass(frozen=True)
class Context:
    """Everything suggestions are computed from."""

    ds: S.Dataset
    scorer: PairScorer
    p_win: np.ndarray  # (A, R) in ds order
    signal: bool  # rep strengths borne out at training

    @cached_property
    def potential(self) -> np.ndarray:
        return self.ds.accounts[S.POTENTIAL].to_numpy(float)

    @cached_property
    def current(self) -> np.ndarray:
        return current_rep_index(self.ds)

    @cached_property
    def _ev(self) -> np.ndarray:
        return self.p_win * self.potential[:, None]

    def ev(self) -> np.ndarray:
        """(A, R) expected value; computed once (suggestions read it per row)."""
        return self._ev


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _beats(x: float, y: float) -> bool:
    """x > y as the reader sees them (whole percents): "30% vs 30%" is no reason."""
    return bool(np.isfinite(x) and np.isfinite(y) and round(100 * x) > round(100 * y))


def reasons(ctx: Context, acc_idx: np.ndarray, new_rep: np.ndarray, old_rep: np.ndarray) -> list[str]:
    """Plain-word reasons why ``new_rep`` beats ``old_rep`` on each account (one string per suggestion).

    The model's per-column contributions (suggested rep minus current rep) are summed per topic of the feature
    catalogue (a dimension, the rep's record, the pair's record ...), and the largest positive topics are put
    in words, the first ``N_REASONS`` that a plain fact supports."""
    sp, cat = ctx.scorer.space, ctx.scorer.catalogue
    r_ids, a_ids = ctx.ds.reps[S.REP_ID].to_numpy(str), ctx.ds.accounts[S.ACCOUNT_ID].to_numpy(str)
    rn = sp.rep_index(r_ids[new_rep])
    ro = np.where(old_rep >= 0, sp.rep_index(r_ids[np.maximum(old_rep, 0)]), -1)
    a = sp.account_index(a_ids[acc_idx])
    c_new = ctx.scorer.model.contributions(ctx.scorer.features(r_ids[new_rep], a_ids[acc_idx]))
    has_old = old_rep >= 0
    c_old = pd.DataFrame(0.0, index=c_new.index, columns=c_new.columns)
    if has_old.any():
        c_old.loc[has_old] = ctx.scorer.model.contributions(
            ctx.scorer.features(r_ids[old_rep[has_old]], a_ids[acc_idx[has_old]])).to_numpy()
    diff = (c_new - c_old).drop(columns=["bias"])
    topics: dict[Topic, list[str]] = {}
    for col in diff.columns:
        topics.setdefault(cat.topic(col), []).append(col)
    keys = list(topics)
    G = np.column_stack([diff[topics[k]].to_numpy().sum(axis=1) for k in keys])
    ranked = np.argsort(-G, axis=1, kind="stable")
    out = []
    for i in range(len(acc_idx)):
        words = []
        for j in ranked[i]:
            if G[i, j] <= 0 or len(words) >= N_REASONS:
                break
            text = _sentence(ctx, keys[j], int(rn[i]), int(a[i]), int(ro[i]))
            if text and text not in words:  # two topics may rest on one fact: say it once
                words.append(text)
        out.append("; ".join(words) if words else "small differences across many features")
    return out


def _dimension_label(dim: Dimension, v: int) -> str:
    """The deals a rep's rate on value ``v`` of ``dim`` counts, in words."""
    if dim.kind is DimensionKind.BAND:
        edges = dim.levels
        lo = f"{edges[v - 1]:,.0f}" if v > 0 else None
        hi = f"{edges[v]:,.0f}" if v < len(edges) else None
        rng = f"{lo}-{hi}" if lo and hi else (f"under {hi}" if hi else f"over {lo}")
        return f"deals with accounts of {rng} {dim.column}"
    if dim.kind is DimensionKind.MATCH:
        return f"deals in its own {dim.column}" if v == 1 else f"deals outside its own {dim.column}"
    return f"{dim.column} {dim.levels[v]} deals"


def _dimension_value(ctx: Context, dim: Dimension, r: int, a: int) -> int:
    """The level of ``dim`` a rep's rate is read at for account ``a`` (an opportunity dimension: the account's
    most frequent value); -1 when unknown."""
    sp, t = ctx.scorer.space, ctx.scorer.history.tables[dim.name]
    if dim.kind is DimensionKind.OPPORTUNITY:
        mix = t["c_av"][a]
        return int(np.argmax(mix)) if mix.sum() > 0 else -1
    return int(sp.pair_value(dim, np.array([r]), np.array([a]))[0])


def _dimension_sentence(ctx: Context, dim: Dimension, r: int, a: int, old: int) -> str | None:
    """Rep ``r``'s rate on the account's value of ``dim`` against its own overall rate or, when it is not above
    its own average there, against the current rep ``old``'s rate on the same value."""
    snap = ctx.scorer.history
    v = _dimension_value(ctx, dim, r, a)
    if v < 0:
        return None
    if dim.kind is DimensionKind.MATCH and v == 1 and (old < 0 or _dimension_value(ctx, dim, old, a) == 0):
        same = _same_value_sentence(ctx, dim)
        if same:
            return same
    t, label = snap.tables[dim.name], _dimension_label(dim, v)
    rep_rate = snap.w_r[r] / snap.n_r[r] if snap.n_r[r] else float("nan")
    n, w = t["n_rv"][r, v], t["w_rv"][r, v]
    if n == 0:
        return f"no {label} on record yet (estimate falls back to its overall rate)"
    if _beats(w / n, rep_rate):
        return f"wins {_pct(w / n)} of {label} vs {_pct(rep_rate)} overall ({int(n)} deals)"
    v_old = _dimension_value(ctx, dim, old, a) if old >= 0 else -1
    n_o = t["n_rv"][old, v_old] if old >= 0 and v_old == v else 0
    if n_o == 0 or not _beats(w / n, t["w_rv"][old, v_old] / n_o):
        return None  # the model's contribution rests on relative rates that do not read as a plain fact
    return (f"wins {_pct(w / n)} of {label} vs {_pct(t['w_rv'][old, v_old] / n_o)} for the current rep "
            f"({int(n)} vs {int(n_o)} deals)")


def _same_value_sentence(ctx: Context, dim: Dimension) -> str | None:
    """The suggested rep shares the account's value of a match dimension (its region) and the current rep does
    not: say so with the team's record in and outside their own value, when that record favours it."""
    t = ctx.scorer.history.tables[dim.name]
    n_out, n_in = t["n_v"]
    w_out, w_in = t["w_v"]
    if not (n_in and n_out) or not _beats(w_in / n_in, w_out / n_out):
        return None
    return (f"same {dim.column} as the account, unlike the current rep: reps win {_pct(w_in / n_in)} of deals in their "
            f"own {dim.column} vs {_pct(w_out / n_out)} outside it ({int(n_in + n_out)} deals)")


def _rep_sentence(ctx: Context, r: int, old: int) -> str | None:
    snap = ctx.scorer.history
    rep_rate = snap.w_r[r] / snap.n_r[r] if snap.n_r[r] else float("nan")
    team = float(laplace_rate(snap.W, snap.N))
    if _beats(rep_rate, team):
        return f"wins {_pct(rep_rate)} of all its deals vs {_pct(team)} for the team ({int(snap.n_r[r])} deals)"
    old_rate = snap.w_r[old] / snap.n_r[old] if old >= 0 and snap.n_r[old] else float("nan")
    if _beats(rep_rate, old_rate):
        return (f"wins {_pct(rep_rate)} of all its deals vs {_pct(old_rate)} for the current rep "
                f"({int(snap.n_r[r])} vs {int(snap.n_r[old])} deals)")
    return None


def _pair_sentence(ctx: Context, r: int, a: int) -> str | None:
    snap = ctx.scorer.history
    code = r * len(ctx.scorer.space.account_ids) + a
    pos = np.searchsorted(snap.pair_codes, code)
    if pos < len(snap.pair_codes) and snap.pair_codes[pos] == code:
        return f"has won {int(snap.pair_w[pos])} of {int(snap.pair_n[pos])} deals with this account"
    return None


def _sentence(ctx: Context, topic: Topic, r: int, a: int, old: int = -1) -> str | None:
    """One sentence on why rep ``r`` (model index) suits account ``a`` on ``topic``, or None when no plain fact
    supports the model's contribution there (the caller moves on to the next topic)."""
    if topic.kind is TopicKind.DIMENSION:
        dim = next(d for d in ctx.scorer.space.dims if d.name == topic.name)
        return _dimension_sentence(ctx, dim, r, a, old)
    if topic.kind is TopicKind.REP_HISTORY:
        return _rep_sentence(ctx, r, old)
    if topic.kind is TopicKind.PAIR_HISTORY:
        return _pair_sentence(ctx, r, a)
    if topic.kind is TopicKind.COMBINED:
        names = [d.column for d in ctx.scorer.space.dims]
        return f"strong across the account's {', '.join(dict.fromkeys(names))} combined" if names else None
    if topic.kind is TopicKind.REP_ATTRIBUTE:
        return f"its {topic.name.replace('_', ' ')} suits the account"
    return None


def pair_uncertainty(ctx: Context, acc_idx: np.ndarray, rep_idx: np.ndarray) -> np.ndarray:
    """Standard error of P(win) for pairs: binomial, with the history behind the rep's strengths on this
    account's values (the mean deal count over the strength dimensions, plus the shrinkage pseudo-deals)."""
    sp = ctx.scorer.space
    r_ids, a_ids = ctx.ds.reps[S.REP_ID].to_numpy(str), ctx.ds.accounts[S.ACCOUNT_ID].to_numpy(str)
    X = ctx.scorer.features(r_ids[rep_idx], a_ids[acc_idx])
    n_eff = X[ctx.scorer.catalogue.volume_columns()].to_numpy().mean(axis=1) + sp.cfg.prior_deals
    p = ctx.p_win[acc_idx, rep_idx]
    return np.sqrt(p * (1 - p) / n_eff)


def confidence(ctx: Context, acc_idx, new_rep, old_rep) -> tuple[np.ndarray, np.ndarray]:
    """Is each suggestion (account, new rep, old rep or -1) confident, and the standard error of its gain in P(win):
    confident when the model's rep strengths were borne out at training, the gain exceeds twice that error, and the
    suggested rep is not cold (has closed deals behind its strengths)."""
    se_new = pair_uncertainty(ctx, acc_idx, new_rep)
    has = old_rep >= 0
    se_old = np.zeros(len(acc_idx))
    if has.any():
        se_old[has] = pair_uncertainty(ctx, acc_idx[has], old_rep[has])
    # an account without a rep: the gain that needs support is over an average rep, not over nobody
    baseline = np.where(has, ctx.p_win[acc_idx, np.maximum(old_rep, 0)], ctx.p_win[acc_idx].mean(axis=1))
    dp = ctx.p_win[acc_idx, new_rep] - baseline
    se = np.sqrt(se_new**2 + se_old**2)
    r_ids = ctx.ds.reps[S.REP_ID].to_numpy(str)
    cold = cold_reps(ctx.scorer)[ctx.scorer.space.rep_index(r_ids[new_rep])]
    confident = ctx.signal & (dp > 2 * se) & ~cold
    return confident, se


def _label(confident: np.ndarray) -> list[str]:
    return ["confident" if c else "within the model's uncertainty" for c in confident]


def id_position(ds: S.Dataset, table: str, value: str, option: str | None = None) -> int:
    """Row of id ``value`` in ``table`` ("reps" or "accounts"), or a clear error naming the file (and the setting
    ``option`` that gave the id)."""
    column = S.REP_ID if table == "reps" else S.ACCOUNT_ID
    pos = pd.Index(getattr(ds, table)[column].astype(str)).get_indexer([value])[0]
    if pos < 0:
        raise RepfitError(f"{column} {value!r} is not in {ds.paths[table]}. Fix: use one of the {column} values in that file.",
                          option=option)
    return int(pos)


def _rep_room(ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """Today's load and capacity per rep (dataset order)."""
    cur = ctx.current
    return np.bincount(cur[cur >= 0], minlength=len(ctx.ds.reps)), ctx.ds.reps[S.CAPACITY].to_numpy()


def for_account(ctx: Context, account_id: str, top: int = 5) -> pd.DataFrame:
    """Top reps for one account by expected value, with gain over the current rep, room, and the cheapest
    hand-offs that make room when the rep is full."""
    a = id_position(ctx.ds, "accounts", account_id, "account")
    ev, cur = ctx.ev(), ctx.current
    rep_ids, acc_ids = ctx.ds.reps[S.REP_ID].to_numpy(str), ctx.ds.accounts[S.ACCOUNT_ID].to_numpy(str)
    if ctx.ds.accounts[S.LOCKED].to_numpy(bool)[a]:
        raise RepfitError(f"account {account_id!r} is locked to {rep_ids[cur[a]]} in {ctx.ds.paths['accounts']} "
                          "(column 'locked'), so repfit never moves it. Fix: set locked to false there to see suggestions.",
                          option="account")
    order = np.array([r for r in np.argsort(-ev[a], kind="stable") if r != cur[a]][:top], dtype=int)
    load, cap = _rep_room(ctx)
    old = np.full(len(order), cur[a])
    aa = np.full(len(order), a)
    confident, _ = confidence(ctx, aa, order, old)
    base = ev[a, cur[a]] if cur[a] >= 0 else 0.0
    rows = []
    why = reasons(ctx, aa, order, old)
    for i, r in enumerate(order):
        room = load[r] < cap[r]
        exchange, net = "", ev[a, r] - base
        if not room:
            exchange, cost = _make_room(ctx, r, a, load, cap)
            net -= cost
        rows.append({
            "rank": i + 1, S.ACCOUNT_ID: acc_ids[a], S.REP_ID: rep_ids[r],
            "current_rep_id": rep_ids[cur[a]] if cur[a] >= 0 else "", "p_win": ctx.p_win[a, r],
            "current_p_win": ctx.p_win[a, cur[a]] if cur[a] >= 0 else np.nan, "expected_value": ev[a, r],
            "gain": ev[a, r] - base, "has_room": bool(room), "exchange": exchange, "net_gain": net,
            "confidence": _label(confident[i:i + 1])[0], "reasons": why[i],
        })
    return pd.DataFrame(rows)


def _make_room(ctx: Context, r: int, incoming: int, load, cap) -> tuple[str, float]:
    """Cheapest hand-offs that let full rep ``r`` take ``incoming``: as many of its unlocked accounts as it
    is over capacity plus one, each to a rep with room (the incoming account's current rep gains a slot when
    it leaves). Returns a description and the cost charged to the suggestion: the expected value lost by the
    hand-offs, where a hand-off that gains on its own is charged nothing (it is not to the credit of this move)."""
    ev, cur = ctx.ev(), ctx.current
    rep_ids, acc_ids = ctx.ds.reps[S.REP_ID].to_numpy(str), ctx.ds.accounts[S.ACCOUNT_ID].to_numpy(str)
    need = int(load[r] - cap[r]) + 1
    held = np.flatnonzero(cur == r)
    held = list(held[~ctx.ds.accounts[S.LOCKED].to_numpy(bool)[held]])
    free = np.maximum(cap - load, 0)
    if cur[incoming] >= 0:
        free[cur[incoming]] += 1
    free[r] = 0
    steps, cost = [], 0.0
    for _ in range(need):
        if not held or not free.any():
            why = "all its other accounts are locked" if not held else "no other rep has room"
            return f"no exchange: {why}", float("inf")
        cand = np.where(free[None, :] > 0, ev[held], -np.inf)
        to = cand.argmax(axis=1)
        loss = ev[held, r] - cand[np.arange(len(held)), to]
        j = int(np.argmin(loss))
        b, t = held.pop(j), int(to[j])
        free[t] -= 1
        cost += max(float(loss[j]), 0.0)
        effect = f"costs {loss[j]:,.0f}" if loss[j] >= 0 else f"gains {-loss[j]:,.0f} on its own"
        steps.append(f"{acc_ids[b]} goes from {rep_ids[r]} to {rep_ids[t]} ({effect})")
    over = f"over capacity today ({load[r]} of {cap[r]}): " if need > 1 else ""
    return over + "; ".join(steps), cost


def for_rep(ctx: Context, rep_id: str, top: int = 5) -> pd.DataFrame:
    """Accounts one rep should take on (largest gain over their current rep) and hand over (largest gain for
    another rep with room), with whether the rep has room to take on more."""
    r = id_position(ctx.ds, "reps", rep_id, "rep")
    ev, cur = ctx.ev(), ctx.current
    A = ev.shape[0]
    load, cap = _rep_room(ctx)
    locked = ctx.ds.accounts[S.LOCKED].to_numpy(bool)
    base = np.where(cur >= 0, ev[np.arange(A), np.maximum(cur, 0)], 0.0)
    take_gain = np.where((cur != r) & ~locked, ev[:, r] - base, -np.inf)
    take = np.argsort(-take_gain, kind="stable")[:top]
    take = take[np.isfinite(take_gain[take]) & (take_gain[take] > 0)]
    mine = np.flatnonzero((cur == r) & ~locked)
    others = np.where((load < cap)[None, :], ev[mine], -np.inf)  # hand over only to reps with room
    others[:, r] = -np.inf
    best = others.argmax(axis=1) if len(mine) else np.array([], int)
    give_gain = others[np.arange(len(mine)), best] - ev[mine, r] if len(mine) else np.array([])
    order = np.argsort(-give_gain, kind="stable")[:top]
    give, give_to = mine[order], best[order]
    keep = give_gain[order] > 0
    give, give_to = give[keep], give_to[keep]
    spare = int(cap[r] - load[r])
    rep_ids, acc_ids = ctx.ds.reps[S.REP_ID].to_numpy(str), ctx.ds.accounts[S.ACCOUNT_ID].to_numpy(str)
    rows = []
    for kind, acc, new, old in (("take on", take, np.full(len(take), r), cur[take]),
                                ("hand over", give, give_to, np.full(len(give), r))):
        if not len(acc):
            continue
        conf, _ = confidence(ctx, acc, new, old)
        why = reasons(ctx, acc, new, old)
        for i in range(len(acc)):
            o = old[i]
            if kind == "hand over":
                room = "receiver has room"
            elif i < spare:
                room = "has room"
            else:
                room = f"no room: {rep_ids[r]} holds {load[r]} of {cap[r]}; hand one over first"
            rows.append({"action": kind, S.ACCOUNT_ID: acc_ids[acc[i]], "from_rep_id": rep_ids[o] if o >= 0 else "",
                         "to_rep_id": rep_ids[new[i]], "p_win_from": ctx.p_win[acc[i], o] if o >= 0 else np.nan,
                         "p_win_to": ctx.p_win[acc[i], new[i]],
                         "gain": ev[acc[i], new[i]] - (ev[acc[i], o] if o >= 0 else 0.0), "room": room,
                         "confidence": _label(conf[i:i + 1])[0], "reasons": why[i]})
    return pd.DataFrame(rows)


def move_chain(a: int, cur, new, gain, load, cap, out_of: dict[int, set]) -> tuple[list[int] | None, set[int]]:
    """The moves that must go with move ``a`` so that every rep stays within capacity: while the rep receiving
    the last move is over capacity, add a pending move out of it, preferring one that lands where there is room
    (which ends the chain; landing back at the start closes an exchange), then the largest gain.

    Returns the moves (None if no pending move can make room) and every rep whose load or pending moves the
    answer depends on (so the caller knows when to recompute it)."""
    start = int(cur[a])
    seq, in_seq = [a], {a}
    delta = {int(new[a]): 1}
    if start >= 0:
        delta[start] = delta.get(start, 0) - 1
    deps = set(delta)
    target = int(new[a])
    while load[target] + delta[target] > cap[target]:
        options = [b for b in out_of.get(target, ()) if b not in in_seq]
        if not options:
            return None, deps
        deps.update(int(new[b]) for b in options)
        b = max(options, key=lambda i: (load[new[i]] + delta.get(int(new[i]), 0) < cap[new[i]], gain[i], -i))
        seq.append(b)
        in_seq.add(b)
        delta[target] -= 1
        target = int(new[b])
        delta[target] = delta.get(target, 0) + 1
    deps.update(delta)
    return seq, deps


class _MoveQueue:
    """The pending moves of ``group_moves``, each with the chain it needs, in a max-heap by the chain's gain."""

    def __init__(self, cur: np.ndarray, new: np.ndarray, gain: np.ndarray, cap: np.ndarray, bands=()):
        self.cur, self.new, self.gain = cur, new, gain
        self.bands = [_BandState(b, cur) for b in bands]
        self.blocked: set[int] = set()  # moves whose group would take a rep further outside a band than today
        self.load = np.bincount(cur[cur >= 0], minlength=len(cap)).astype(int)
        self.cap = np.maximum(cap, self.load)
        self.pending = {int(a) for a in np.flatnonzero(new != cur)}
        self.out_of: dict[int, set] = {}
        self.watchers: dict[int, set[int]] = {}  # rep -> pending moves into it
        for a in self.pending:
            if cur[a] >= 0:
                self.out_of.setdefault(int(cur[a]), set()).add(a)
            self.watchers.setdefault(int(new[a]), set()).add(a)
        self.version = dict.fromkeys(self.pending, 0)
        self.heap: list = []
        for a in sorted(self.pending):
            self.refresh(a)

    def value(self, seq) -> float:
        return float(sum(self.gain[i] for i in seq))

    def chain(self, a: int) -> list[int] | None:
        return move_chain(a, self.cur, self.new, self.gain, self.load, self.cap, self.out_of)[0]

    def refresh(self, a: int) -> None:
        """Recompute move ``a``'s chain and queue it under a new version (older entries become stale)."""
        seq = self.chain(a)
        self.version[a] += 1
        if seq is not None:
            heapq.heappush(self.heap, (-self.value(seq), a, self.version[a]))

    def pop(self) -> list[int] | None:
        """The best group that fits now, or None when no pending move can be made to fit."""
        while self.heap:
            neg, a, ver = heapq.heappop(self.heap)
            if a not in self.pending or ver != self.version[a]:
                continue
            seq = self.chain(a)  # deeper reps may have changed since it was queued
            if seq is None:
                continue
            if self.value(seq) < -neg - 1e-9 * max(1.0, abs(neg)):  # worth less now: back in the queue
                self.version[a] += 1
                heapq.heappush(self.heap, (-self.value(seq), a, self.version[a]))
                continue
            if not all(b.fits(seq, self.cur, self.new) for b in self.bands):
                self.blocked.add(a)  # retried after the next group is applied
                continue
            return seq
        return None

    def apply(self, seq: list[int]) -> None:
        """Make the moves of ``seq``; the moves into a rep that gained room are recomputed at once (their chains
        shorten, so their gains may rise; gains that fall are caught when they reach the top)."""
        net: dict[int, int] = {}
        for b in seq:
            self.pending.discard(b)
            self.watchers[int(self.new[b])].discard(b)
            if self.cur[b] >= 0:
                self.load[self.cur[b]] -= 1
                self.out_of[int(self.cur[b])].discard(b)
                net[int(self.cur[b])] = net.get(int(self.cur[b]), 0) - 1
            self.load[self.new[b]] += 1
            net[int(self.new[b])] = net.get(int(self.new[b]), 0) + 1
        for band in self.bands:
            band.apply(seq, self.cur, self.new)
        for rep in sorted(r for r, d in net.items() if d < 0):
            for b in sorted(self.watchers.get(rep, ())):
                self.refresh(b)
        retry, self.blocked = sorted(self.blocked & self.pending), set()
        for b in retry:
            self.refresh(b)


class _BandState:
    """One balance band while groups are applied: each rep's running total, and the interval it must stay in so
    that no prefix takes a rep further outside the band than today ([min(lower, today), max(upper, today)])."""

    def __init__(self, band, cur: np.ndarray):
        self.band = band
        has = cur >= 0
        today = np.bincount(cur[has], weights=self._w(np.flatnonzero(has), cur[has]), minlength=len(band.lower))
        self.total = today.astype(float)
        slack = 1e-9 * np.maximum(1.0, np.abs(today))
        self.lo = np.minimum(band.lower, today) - slack
        self.hi = np.maximum(band.upper, today) + slack

    def _w(self, a, r) -> np.ndarray:
        w = self.band.weights
        return w[a] if w.ndim == 1 else w[a, r]

    def _delta(self, seq, cur, new) -> dict[int, float]:
        d: dict[int, float] = {}
        for a in seq:
            if cur[a] >= 0:
                d[int(cur[a])] = d.get(int(cur[a]), 0.0) - float(self._w(a, cur[a]))
            d[int(new[a])] = d.get(int(new[a]), 0.0) + float(self._w(a, new[a]))
        return d

    def fits(self, seq, cur, new) -> bool:
        return all(self.lo[r] <= self.total[r] + v <= self.hi[r] for r, v in self._delta(seq, cur, new).items())

    def apply(self, seq, cur, new) -> None:
        for r, v in self._delta(seq, cur, new).items():
            self.total[r] += v


def group_moves(cur: np.ndarray, new: np.ndarray, gain: np.ndarray, cap: np.ndarray, bands=()) -> list[list[int]]:
    """Order the moves from ``cur`` to ``new`` (``new`` within capacity) into groups that ops can accept
    top-down: applying any prefix of the groups to the current assignment keeps every rep within capacity (a
    rep already over capacity today counts as full at its current load). A group is a single move into a rep
    with room, or a chain / exchange of moves that only make sense together. Under balance ``bands`` (``new``
    within them), a group is also taken only if it leaves no rep further outside a band than today; moves that
    cannot be separated that way come last, as one group (accepting it completes the plan, which is within
    every band).

    Greedy: each step takes the group with the largest total gain among those that fit after the groups before
    it. A group is recomputed when it reaches the top of the queue (and re-queued if it is now worth less), and
    the moves into a rep that gained room are recomputed at once, since that room shortens their chains. A
    change deeper along a chain is only seen when the chain reaches the top, so the order is greedy up to such
    changes; gains can also rise as earlier groups make room, so the list is not strictly decreasing.
    """
    queue = _MoveQueue(cur, new, gain, cap, bands)
    groups = []
    while queue.pending:
        seq = queue.pop()
        if seq is None:  # the rest only fit together (bands), or cannot be chained: one last group
            groups.append(sorted(queue.pending))
            break
        queue.apply(seq)
        groups.append(seq)
    return groups


def for_all(ctx: Context, cfg: AssignConfig, plan=None) -> tuple[pd.DataFrame, PlanSummary]:
    """The moves of the optimal assignment (same constraints as ``repfit assign``; ``plan`` if already solved),
    grouped and ranked."""
    plan = plan or plan_assignment(ctx.ds, ctx.p_win, cfg)
    x = plan.solution.assignment
    cur = ctx.current
    ev = ctx.ev()
    A = len(x)
    gain = ev[np.arange(A), x] - np.where(cur >= 0, ev[np.arange(A), np.maximum(cur, 0)], 0.0)
    groups = group_moves(cur, x, gain, plan.problem.capacity, plan.problem.bands)
    rows = []
    if groups:
        flat = np.array([a for g in groups for a in g])
        conf, se = confidence(ctx, flat, x[flat], cur[flat])
        why = reasons(ctx, flat, x[flat], cur[flat])
        info = {int(a): (c, w) for a, c, w in zip(flat, conf, why)}
        rep_ids, acc_ids = ctx.ds.reps[S.REP_ID].to_numpy(str), ctx.ds.accounts[S.ACCOUNT_ID].to_numpy(str)
        for rank, g in enumerate(groups, 1):
            g_gain = float(sum(gain[i] for i in g))
            if len(g) == 1:
                kind = "move" if cur[g[0]] >= 0 else "first owner"
            else:
                kind = "exchange" if int(x[g[-1]]) == int(cur[g[0]]) else "chain"
            for a in g:
                c, w = info[int(a)]
                rows.append({"rank": rank, "group": kind, "group_gain": g_gain, S.ACCOUNT_ID: acc_ids[a],
                             "from_rep_id": rep_ids[cur[a]] if cur[a] >= 0 else "", "to_rep_id": rep_ids[x[a]],
                             "p_win_from": ctx.p_win[a, cur[a]] if cur[a] >= 0 else np.nan, "p_win_to": ctx.p_win[a, x[a]],
                             "gain": float(gain[a]), "confidence": _label(np.array([c]))[0], "reasons": w})
    return pd.DataFrame(rows), plan.summary
