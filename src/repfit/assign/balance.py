"""Balanced books at scale (issue 13, point 5): an assignment within every band, with a proven gap.

Bound. Give each rep a price on its account count (capacity and count bands, ``lo <= count <= hi``) and a
multiplier on each weighted band (``L <= total <= U``). For any such prices,

    D = sum_a max_r (V[a, r] + sum_b mu_b[r] w_b[a, r] - price[r])
        + sum_r (hi_r price+_r - lo_r price-_r + U_br mu-_br - L_br mu+_br)

is at least the value of every assignment meeting the constraints (weak LP duality: it is the Lagrangian dual of
the weighted bands, whose subproblem - assignment, capacity, count bands - is a flow with an integral LP). The
max runs over *every* allowed pair, in blocks, so the bound holds however the prices were found.

Prices. Minimise a smoothed D (log-sum-exp at temperature ``tau`` instead of the max) with L-BFGS-B: first on a
sample of accounts over all their pairs (bounds scaled to the sample), then on the whole problem restricted to
candidate pairs (each account's top ``k`` reps by reduced value, each rep's ``c`` accounts of least regret, and
the pairs of a balanced reference assignment), in trust-region steps: after each step a pass over every pair
gives D and new candidates; a step is kept only if D fell (box-step column generation), and ``tau`` falls as the
steps settle.

Assignment. Each account goes to its best rep by reduced value (the LP optimum up to ties); then *repair*:
moves and swaps that take the most band violation away per unit of value lost, until every rep is within every
band; then *polish*: moves and swaps that gain value and keep every band. The value lost against D is the gap.

Memory: the (A, R) values are read in blocks; beside ``Problem.int_values`` the solver holds O(A k) arrays.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.optimize import minimize

from repfit.assign.problem import Problem
from repfit.assign.solvers import Solution
from repfit.errors import InfeasibleAssignment, SolverError
from repfit.messages import listed

BLOCK = 4096  # accounts per block of the (A, R) passes: 4096 x 1,000 reps = 33 MB of float64
EPS = 1e-9  # band violation (in units of a typical account's weight) treated as none
SWAPS_PER_STEP = 30_000  # most swap candidates evaluated for one rep in one step
MILP_ACCOUNTS = 10_000  # most accounts HiGHS re-assigns when moves and swaps get stuck


@dataclass(frozen=True)
class _Rows:
    """The per-rep constraints of a problem: account counts within ``[lo, hi]`` (capacity and count bands,
    priced exactly) and the weighted bands (relaxed), each divided by its ``unit`` (its mean weight)."""

    lo: np.ndarray  # (R,) float
    hi: np.ndarray  # (R,) float
    weights: tuple[np.ndarray, ...]  # each (A,) or (A, R), in units
    lower: np.ndarray  # (B, R), -inf where unbounded
    upper: np.ndarray  # (B, R), inf where unbounded
    units: np.ndarray  # (B,)
    names: tuple[str, ...]  # the weighted bands' metrics
    count_names: tuple[str, ...]  # the count bands' metrics
    tolerances: tuple[float | None, ...]  # the weighted bands' tolerances


def _is_count(band) -> bool:
    w = band.weights
    return w.ndim == 1 and len(w) > 0 and w[0] > 0 and bool(np.all(w == w[0]))


def _rows(p: Problem) -> _Rows:
    """Split ``p``'s bands into count bounds (bands whose weights are one positive constant) and weighted bands."""
    A, R = p.shape
    lo, hi = np.zeros(R), p.capacity.astype(float)
    weights, lower, upper, units, names, count_names, tolerances = [], [], [], [], [], [], []
    for band in p.bands:
        if _is_count(band):
            count_names.append(band.metric)
            c = float(band.weights[0])
            lo = np.maximum(lo, np.ceil(band.lower / c - 1e-9))
            hi = np.minimum(hi, np.floor(band.upper / c + 1e-9))
            continue
        unit = float(np.abs(band.weights).mean()) or 1.0
        weights.append(band.weights / unit)
        lower.append(band.lower / unit)
        upper.append(band.upper / unit)
        units.append(unit)
        names.append(band.metric)
        tolerances.append(band.tolerance)
    B = len(weights)
    return _Rows(lo, hi, tuple(weights), np.array(lower).reshape(B, R), np.array(upper).reshape(B, R),
                 np.array(units), tuple(names), tuple(count_names), tuple(tolerances))


@dataclass
class _Model:
    """A problem as the solver sees it: integer values (plus the keep bonus) in units of ``vunit``."""

    p: Problem
    rows: _Rows
    keep_bonus: int
    vunit: float
    movable: np.ndarray  # (A,) bool: not locked

    @property
    def n_bands(self) -> int:
        return len(self.rows.weights)


def _model(p: Problem, keep_bonus: int) -> _Model:
    A, R = p.shape
    V = p.int_values
    sample = np.arange(0, A, max(1, A // 2000))
    vunit = float(np.abs(V[sample]).max(axis=1).mean()) if A and R else 1.0
    return _Model(p, _rows(p), int(keep_bonus), vunit or 1.0, ~np.asarray(p.locked, bool))


# --- lookups and blocks ----------------------------------------------------------------------------
def _value(m: _Model, acc: np.ndarray, rep: np.ndarray) -> np.ndarray:
    """Integer value (with the keep bonus) of the pairs (acc, rep), as float."""
    v = m.p.int_values[acc, rep].astype(float)
    if m.keep_bonus:
        v += m.keep_bonus * (m.p.current[acc] == rep)
    return v


def _weight(m: _Model, b: int, acc: np.ndarray, rep: np.ndarray) -> np.ndarray:
    w = m.rows.weights[b]
    return w[acc] if w.ndim == 1 else w[acc, rep]


def _mask_rows(p: Problem, rows: slice | np.ndarray) -> np.ndarray:
    """(n, R) bool: the allowed pairs of accounts ``rows`` (``Problem.mask`` for some rows)."""
    n, R = len(p.current[rows]), p.shape[1]
    mask = np.ones((n, R), bool) if p.allowed is None else p.allowed[rows].copy()
    lk = np.flatnonzero(p.locked[rows])
    if len(lk):
        cur = p.current[rows][lk]
        keep = mask[lk, cur]
        mask[lk] = False
        mask[lk, cur] = keep
    return mask


def _value_block(m: _Model, lo: int, hi: int) -> np.ndarray:
    """(hi - lo, R) float: values of accounts lo..hi in units of ``vunit`` (keep bonus included)."""
    V = m.p.int_values[lo:hi] * (1.0 / m.vunit)
    if m.keep_bonus:
        a = np.flatnonzero(m.p.current[lo:hi] >= 0)
        V[a, m.p.current[lo + a]] += m.keep_bonus / m.vunit
    return V


# --- the dual ---------------------------------------------------------------------------------------
def _split(m: _Model, z: np.ndarray):
    """Dual vector -> (price (R,), mu (B, R)) and its four nonnegative parts."""
    R, B = len(m.rows.hi), m.n_bands
    pp, pq = z[:R], z[R:2 * R]
    ma, mb = z[2 * R:2 * R + B * R].reshape(B, R), z[2 * R + B * R:].reshape(B, R)
    return pp - pq, ma - mb, (pp, pq, ma, mb)


def _constant(m: _Model, z: np.ndarray) -> float:
    """The rep terms of D: hi price+ - lo price- + U mu- - L mu+ (unbounded sides have zero multipliers)."""
    _, _, (pp, pq, ma, mb) = _split(m, z)
    r = m.rows
    U = np.where(np.isfinite(r.upper), r.upper, 0.0)
    L = np.where(np.isfinite(r.lower), r.lower, 0.0)
    return float(r.hi @ pp - r.lo @ pq + (U * mb).sum() - (L * ma).sum())


def _bounds(m: _Model, box: float) -> list[tuple[float, float]]:
    """L-BFGS-B bounds: every part in [0, box]; a side with no constraint keeps its multiplier at 0. The box
    keeps the smoothed dual bounded when the candidates cannot meet a rep's lower bound (as a penalty of ``box``
    per unit of violation would); D stays a valid bound anywhere."""
    r = m.rows
    free = lambda on: [(0.0, box) if x else (0.0, 0.0) for x in on]  # noqa: E731
    return free(np.ones(len(r.hi), bool)) + free(r.lo > 0) + free(np.isfinite(r.lower).ravel()) + \
        free(np.isfinite(r.upper).ravel())


def _reduced_block(m: _Model, z: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """(hi - lo, R): reduced values V + sum_b mu_b w_b - price of accounts lo..hi; -inf on forbidden pairs."""
    price, mu, _ = _split(m, z)
    red = _value_block(m, lo, hi)
    red -= price
    for b, w in enumerate(m.rows.weights):
        red += (w[lo:hi, None] if w.ndim == 1 else w[lo:hi]) * mu[b]
    red[~_mask_rows(m.p, slice(lo, hi))] = -np.inf
    return red


@dataclass
class _Pass:
    """One pass over every allowed pair at dual ``z``: the bound there, and the candidate pairs (each account's top
    ``k`` reps by reduced value, and each rep's ``c`` accounts of least regret, the reduced value it gives up
    against the account's best rep) as a list sorted by account."""

    acc: np.ndarray  # (n,) int64, sorted
    rep: np.ndarray  # (n,) int64
    start: np.ndarray  # (A + 1,): account a's pairs are acc[start[a]:start[a + 1]]
    best: np.ndarray  # (A,) int: each account's best rep
    dual: float  # D at z over all pairs, in units of vunit
    floor: float  # sum over accounts of its worst allowed value (units): every assignment is worth at least this
    vmax: float  # largest |value| of an allowed pair (units)


def _pairs(A: int, R: int, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted unique pair keys (acc R + rep) -> acc, rep, CSR start."""
    keys = np.sort(keys)  # (np.unique hashes: ~20x slower on millions of keys)
    keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])] if len(keys) else keys
    acc, rep = keys // R, keys % R
    return acc, rep, np.searchsorted(acc, np.arange(A + 1))


def _top_rows(red: np.ndarray, k: int) -> np.ndarray:
    """(n, k) column indices of each row's k largest entries."""
    n, R = red.shape
    return np.argpartition(-red, k - 1, axis=1)[:, :k] if k < R else np.broadcast_to(np.arange(R), (n, R))


def _merge_columns(top: tuple[np.ndarray, np.ndarray], red: np.ndarray, lo: int, c: int):
    """Each rep's c best accounts so far: (values (c', R), accounts (c', R)) merged with block ``red``."""
    vals = np.concatenate([top[0], red])
    accs = np.concatenate([top[1], np.broadcast_to(np.arange(lo, lo + len(red))[:, None], red.shape)])
    if len(vals) > c:
        idx = np.argpartition(-vals, c - 1, axis=0)[:c]
        vals, accs = np.take_along_axis(vals, idx, axis=0), np.take_along_axis(accs, idx, axis=0)
    return vals, accs


def _full_pass(m: _Model, z: np.ndarray, k: int, c: int, known: _Pass | None = None) -> _Pass:
    """The pass at ``z``; the floor and largest value are taken from ``known`` when given (they do not change)."""
    A, R = m.p.shape
    k, keys = min(k, R), []
    cols = (np.empty((0, R)), np.empty((0, R), np.int64))
    best = np.empty(A, np.int64)
    total, floor, vmax = 0.0, 0.0, 0.0
    for lo in range(0, A, BLOCK):
        hi = min(A, lo + BLOCK)
        red = _reduced_block(m, z, lo, hi)
        idx = _top_rows(red, k)
        ok = np.isfinite(np.take_along_axis(red, idx, axis=1))
        keys.append(((lo + np.arange(hi - lo))[:, None] * R + idx)[ok])
        best[lo:hi] = red.argmax(axis=1)
        rowmax = red[np.arange(hi - lo), best[lo:hi]]
        if not np.isfinite(rowmax).all():
            raise InfeasibleAssignment("some accounts have no allowed rep (required match and locks).")
        cols = _merge_columns(cols, red - rowmax[:, None], lo, c)  # by regret: reps near each account's best
        total += float(rowmax.sum())
        if known is None:
            vals = np.where(np.isfinite(red), _value_block(m, lo, hi), np.nan)
            floor += float(np.nanmin(vals, axis=1).sum())
            vmax = max(vmax, float(np.nanmax(np.abs(vals))))
    keys.append((cols[1] * R + np.arange(R))[np.isfinite(cols[0])])
    acc, rep, start = _pairs(A, R, np.concatenate(keys))
    if known is not None:
        floor, vmax = known.floor, known.vmax
    return _Pass(acc, rep, start, best, total + _constant(m, z), floor, vmax)


@dataclass
class _Cands:
    """The candidate pairs' values and weights (in units) for the smoothed dual."""

    acc: np.ndarray
    rep: np.ndarray
    start: np.ndarray  # (A,) first pair of each account
    value: np.ndarray  # (n,)
    weight: np.ndarray  # (B, n)


def _cands(m: _Model, ps: _Pass) -> _Cands:
    weight = np.array([_weight(m, b, ps.acc, ps.rep) for b in range(m.n_bands)]).reshape(m.n_bands, len(ps.acc))
    return _Cands(ps.acc, ps.rep, ps.start[:-1], _value(m, ps.acc, ps.rep) / m.vunit, weight)


def _smoothed(z: np.ndarray, tau: float, m: _Model, c: _Cands) -> tuple[float, np.ndarray]:
    """Smoothed D on the candidates (tau log-sum-exp for the max) and its gradient in z."""
    R, B = len(m.rows.hi), m.n_bands
    price, mu, _ = _split(m, z)
    red = c.value - price[c.rep]
    for b in range(B):
        red += mu[b][c.rep] * c.weight[b]
    top = np.maximum.reduceat(red, c.start)
    e = np.exp((red - top[c.acc]) / tau)
    s = np.add.reduceat(e, c.start)
    share = e / s[c.acc]
    f = float((top + tau * np.log(s)).sum()) + _constant(m, z)
    col = np.bincount(c.rep, share, R)
    wcol = np.array([np.bincount(c.rep, share * c.weight[b], R) for b in range(B)]).reshape(B, R)
    r = m.rows
    L = np.where(np.isfinite(r.lower), r.lower, 0.0)
    U = np.where(np.isfinite(r.upper), r.upper, 0.0)
    grad = np.concatenate([r.hi - col, col - r.lo, (wcol - L).ravel(), (U - wcol).ravel()])
    return f, grad


@dataclass
class _DualResult:
    z: np.ndarray
    ps: _Pass  # the pass at z: candidates, best reps, D
    stages: int
    log: list[str] = field(default_factory=list)


def _sample_dual(m: _Model, n: int, deadline: float, taus: tuple[float, ...] = (0.1, 0.033, 0.011)) -> np.ndarray:
    """Starting prices: the smoothed dual of ``n`` sampled accounts over all their allowed pairs, each rep's
    bounds scaled to the sample's share (of the count, and of each band's total weight)."""
    A, R = m.p.shape
    s = np.arange(A) if n >= A else np.sort(np.random.default_rng(0).choice(A, n, replace=False))
    local, rep = np.nonzero(_mask_rows(m.p, s))
    if len(np.unique(local)) < len(s):
        raise InfeasibleAssignment("some accounts have no allowed rep (required match and locks).")
    acc = s[local]
    weight = np.array([_weight(m, b, acc, rep) for b in range(m.n_bands)]).reshape(m.n_bands, len(acc))
    c = _Cands(local, rep, np.searchsorted(local, np.arange(len(s))), _value(m, acc, rep) / m.vunit, weight)
    r = m.rows
    share = [float(w[s].sum() / w.sum()) if w.ndim == 1 and (w >= 0).all() and w.sum() > 0 else len(s) / A
             for w in r.weights]
    share = np.array(share).reshape(-1, 1)
    sub = replace(m, rows=replace(r, lo=r.lo * len(s) / A, hi=r.hi * len(s) / A, lower=r.lower * share,
                                  upper=r.upper * share))
    z, bounds = np.zeros(2 * R + 2 * m.n_bands * R), _bounds(m, 20.0 * max(float(np.abs(c.value).max()), 1.0))
    for tau in taus:
        if time.perf_counter() > deadline:
            break
        z = minimize(_smoothed, z, args=(tau, sub, c), jac=True, method="L-BFGS-B", bounds=bounds,
                     callback=_deadline_callback(deadline), options={"maxiter": 200}).x
    return z


def _dual(m: _Model, z: np.ndarray, k: int, c: int, deadline: float, tau: float = 0.01, step: float = 0.05,
          tau_min: float = 1e-6, rel_tol: float = 2e-7, box: float = 20.0) -> _DualResult:
    """Prices minimising D from ``z``: smoothed steps within a trust region (box-step column generation).

    Each step minimises the smoothed D on the candidate pairs (those of the last pass, of the best pass, and of
    a balanced reference assignment) within ``step`` of the best prices so far; a pass over every pair then gives
    D there and new candidates. A step that lowers D is taken, and the region doubles if the step reached its
    edge, else ``tau`` falls; a step that does not lower D halves the region."""
    A, R = m.p.shape
    ref_keys = np.arange(A) * R + _reference(m)
    ps = _full_pass(m, z, k, c)
    out, last = _DualResult(z, ps, 0), ps
    outer = np.array(_bounds(m, box * max(ps.vmax, 1.0)), float)
    while time.perf_counter() < deadline and tau >= tau_min and step > 1e-9:
        lo, hi = np.maximum(outer[:, 0], out.z - step), np.minimum(outer[:, 1], out.z + step)
        cands = _with_keys(m, out.ps, np.concatenate([last.acc * R + last.rep, ref_keys]))
        res = minimize(_smoothed, out.z, args=(tau, m, _cands(m, cands)), jac=True, method="L-BFGS-B",
                       bounds=list(zip(lo, hi)), callback=_deadline_callback(deadline), options={"maxiter": 300})
        last = _full_pass(m, res.x, k, c, known=ps)
        if last.dual < last.floor - 1e-9 * abs(last.floor):
            _proven_infeasible(m, last)
        edge = bool(np.any(((res.x <= lo + 1e-12) & (lo > outer[:, 0])) | ((res.x >= hi - 1e-12) & (hi < outer[:, 1]))))
        out.log.append(f"tau {tau:.0e} step {step:.2g}: {res.nit} it, D {last.dual * m.vunit:,.10g}")
        if last.dual >= out.ps.dual:
            step /= 2
            continue
        gain = out.ps.dual - last.dual
        out = _DualResult(res.x, last, out.stages + 1, out.log)
        if edge:
            step *= 2
        elif gain < rel_tol * abs(last.dual):
            break
        else:
            tau /= 3
    return out


def _reference(m: _Model) -> np.ndarray:
    """(A,) a balanced assignment that ignores value: locked accounts stay, then accounts by decreasing weight each
    go to the allowed rep with room that lies furthest below its targets (a snake draft). Its pairs keep the
    candidates' problem within reach of every band."""
    p, r = m.p, m.rows
    A, R = p.shape
    B = m.n_bands
    mid = lambda lo, hi: np.where(np.isfinite(lo) & np.isfinite(hi), (lo + hi) / 2,  # noqa: E731
                                  np.where(np.isfinite(lo), lo, np.where(np.isfinite(hi), hi, 0.0)))
    target = mid(r.lower, r.upper)
    scale = np.maximum(np.abs(target), 1.0)
    ctarget = np.maximum((r.lo + r.hi) / 2, 1.0)
    size = sum((w if w.ndim == 1 else w.mean(axis=1)) for w in r.weights) if B else np.zeros(A)
    x = np.where(p.locked, p.current, -1)
    count = np.bincount(x[x >= 0], minlength=R).astype(float)
    total = np.zeros((B, R))
    for a in np.flatnonzero(x >= 0):
        total[:, x[a]] += [float(w[a] if w.ndim == 1 else w[a, x[a]]) for w in r.weights]
    for a in np.flatnonzero(x < 0)[np.argsort(-size[x < 0], kind="stable")]:
        need = (ctarget - count) / ctarget + ((target - total) / scale).sum(axis=0)
        ok = count < r.hi if p.allowed is None else (count < r.hi) & p.allowed[a]
        s = int(np.argmax(np.where(ok, need, -np.inf)))
        x[a] = s
        count[s] += 1
        total[:, s] += [float(w[a] if w.ndim == 1 else w[a, s]) for w in r.weights]
    return x


def _deadline_callback(deadline: float):
    def stop(*_):
        if time.perf_counter() > deadline:
            raise StopIteration
    return stop


def _with_keys(m: _Model, ps: _Pass, keys: np.ndarray) -> _Pass:
    """``ps`` with the pairs ``keys`` (acc R + rep) added to its candidates."""
    A, R = m.p.shape
    acc, rep, start = _pairs(A, R, np.concatenate([ps.acc * R + ps.rep, keys]))
    return _Pass(acc, rep, start, ps.best, ps.dual, ps.floor, ps.vmax)


def _proven_infeasible(m: _Model, ps: _Pass) -> None:
    raise InfeasibleAssignment(
        f"no assignment keeps every rep within {_band_list(m)}: the LP dual bound ({ps.dual * m.vunit:,.6g}) fell "
        f"below the worst possible total ({ps.floor * m.vunit:,.6g}), which proves it. Fix: widen the tolerances.",
        option="balance")


def _band_list(m: _Model) -> str:
    return ", ".join(m.rows.count_names + m.rows.names) + " bands and capacity"


# --- the assignment: best reps by reduced value, repaired, polished ----------------------------------
@dataclass
class _State:
    """An assignment with each rep's count, weighted totals (in units) and band violation."""

    x: np.ndarray  # (A,) rep per account
    count: np.ndarray  # (R,) float
    total: np.ndarray  # (B, R)
    wt: np.ndarray  # (1 + B, R): the weight of each rep's count and band violations (raised where repair sticks)
    viol: np.ndarray  # (R,): weighted accounts outside the count bounds + units outside each weighted band


def _parts(m: _Model, reps: np.ndarray, count: np.ndarray, total: np.ndarray) -> np.ndarray:
    """(1 + B, n) how far reps ``reps`` would lie outside their count bounds and each band with ``count`` (n,)
    and ``total`` (B, n)."""
    r = m.rows
    c = np.maximum(r.lo[reps] - count, 0) + np.maximum(count - r.hi[reps], 0)
    t = np.maximum(r.lower[:, reps] - total, 0) + np.maximum(total - r.upper[:, reps], 0)
    return np.concatenate([c[None, :], t.reshape(m.n_bands, len(c))])


def _rep_violation(m: _Model, wt: np.ndarray, reps: np.ndarray, count: np.ndarray, total: np.ndarray) -> np.ndarray:
    """(n,) the weighted violation of reps ``reps`` with ``count`` (n,) and ``total`` (B, n)."""
    return (wt[:, reps] * _parts(m, reps, count, total)).sum(axis=0)


def _state(m: _Model, x: np.ndarray, wt: np.ndarray | None = None) -> _State:
    A, R = m.p.shape
    count = np.bincount(x, minlength=R).astype(float)
    total = np.array([np.bincount(x, _weight(m, b, np.arange(A), x), R) for b in range(m.n_bands)])
    total = total.reshape(m.n_bands, R)
    wt = np.ones((1 + m.n_bands, R)) if wt is None else wt
    return _State(x, count, total, wt, _rep_violation(m, wt, np.arange(R), count, total))


def _reverse(ps: _Pass, R: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR (ptr (R + 1,), accounts): for each rep, the accounts that have it among their candidates."""
    order = np.argsort(ps.rep, kind="stable")
    return np.searchsorted(ps.rep[order], np.arange(R + 1)), ps.acc[order]


def _ranges(start: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the CSR rows ``idx`` (concatenated) and each row's length."""
    lens = start[idx + 1] - start[idx]
    return np.arange(int(lens.sum())) + np.repeat(start[idx] - np.cumsum(lens) + lens, lens), lens


@dataclass
class _Moves:
    """Candidate moves touching rep r: account ``a`` (or -1) leaves r for ``s``, account ``b`` (or -1) comes
    from ``s`` to r (both: a swap); with the change in r's count (s's is the opposite), in each weighted total
    of r and of s, and the value gained."""

    a: np.ndarray
    b: np.ndarray
    s: np.ndarray
    dc: np.ndarray
    dr: np.ndarray  # (B, n)
    ds: np.ndarray  # (B, n)
    gain: np.ndarray


@dataclass
class _Local:
    """What the moves touching rep r read, gathered once: r's movable accounts (``own``) with their whole rows,
    and the movable accounts elsewhere that have r among their candidates (``near``) with their two pairs."""

    own: np.ndarray
    near: np.ndarray
    value: np.ndarray  # (n_own, R): own accounts' values
    weight: list  # per band (n_own, R) or (n_own, 1): own accounts' weights
    bring: np.ndarray  # (n_near,): value gained by moving each near account to r
    w_in: np.ndarray  # (B, n_near): its weight at r
    w_out: np.ndarray  # (B, n_near): its weight at its rep


def _local(m: _Model, st: _State, rev: tuple[np.ndarray, np.ndarray], r: int) -> _Local:
    x = st.x
    own = np.flatnonzero((x == r) & m.movable)
    near = rev[1][rev[0][r]:rev[0][r + 1]]
    near = near[(x[near] != r) & m.movable[near]]
    value = m.p.int_values[own].astype(float)
    if m.keep_bonus:
        has = np.flatnonzero(m.p.current[own] >= 0)
        value[has, m.p.current[own[has]]] += m.keep_bonus
    weight = [w[own] if w.ndim == 2 else w[own][:, None] for w in m.rows.weights]
    rr = np.full(len(near), r)
    bring = _value(m, near, rr) - _value(m, near, x[near])
    w_in = np.array([_weight(m, q, near, rr) for q in range(m.n_bands)]).reshape(m.n_bands, len(near))
    w_out = np.array([_weight(m, q, near, x[near]) for q in range(m.n_bands)]).reshape(m.n_bands, len(near))
    return _Local(own, near, value, weight, bring, w_in, w_out)


def _moves(m: _Model, st: _State, ps: _Pass, rev: tuple[np.ndarray, np.ndarray], r: int) -> _Moves:
    """Every move of an own account to one of its candidate reps, of a near account to r, and swaps of the two
    (the near accounts cheapest to bring when there would be more than ``SWAPS_PER_STEP``)."""
    loc = _local(m, st, rev, r)
    n_own, n_near = len(loc.own), len(loc.near)
    pos, lens = _ranges(ps.start, loc.own)
    i1, s1 = np.repeat(np.arange(n_own), lens), ps.rep[pos]
    i1, s1 = i1[s1 != r], s1[s1 != r]
    j3 = np.arange(n_near)
    if n_own * n_near > SWAPS_PER_STEP:
        j3 = np.argsort(-loc.bring, kind="stable")[:max(1, SWAPS_PER_STEP // n_own)]
    i3, j3 = np.repeat(np.arange(n_own), len(j3)), np.tile(j3, n_own)
    s3 = st.x[loc.near[j3]]
    if m.p.allowed is not None:
        i3, j3, s3 = (v[m.p.allowed[loc.own[i3], s3]] for v in (i3, j3, s3))
    i = np.concatenate([i1, np.full(n_near, -1), i3])
    j = np.concatenate([np.full(len(i1), -1), np.arange(n_near), j3])
    return _effects(m, loc, r, i, j, np.concatenate([s1, st.x[loc.near], s3]))


def _effects(m: _Model, loc: _Local, r: int, i: np.ndarray, j: np.ndarray, s: np.ndarray) -> _Moves:
    """The moves (own account ``i`` to ``s``, near account ``j`` to r; -1: none) with their effects, read from
    the gathered ``loc`` (no access to the (A, R) arrays)."""
    n = len(i)
    out, inn = i >= 0, j >= 0
    io, so, jn = i[out], s[out], j[inn]
    a, b, gain = np.full(n, -1), np.full(n, -1), np.zeros(n)
    a[out], b[inn] = loc.own[io], loc.near[jn]
    gain[out] += loc.value[io, so] - loc.value[io, r]
    gain[inn] += loc.bring[jn]
    dr, ds = np.zeros((m.n_bands, n)), np.zeros((m.n_bands, n))
    for q, w in enumerate(loc.weight):
        at_s, at_r = (w[io, so], w[io, r]) if w.shape[1] > 1 else (w[io, 0], w[io, 0])
        dr[q, out] -= at_r
        ds[q, out] += at_s
        dr[q, inn] += loc.w_in[q, jn]
        ds[q, inn] -= loc.w_out[q, jn]
    return _Moves(a, b, s, inn.astype(float) - out, dr, ds, gain)


def _after(m: _Model, st: _State, mv: _Moves, r: int) -> tuple[np.ndarray, np.ndarray]:
    """(n,), (n,): the violation of r and of s after each move."""
    n = len(mv.a)
    vr = _rep_violation(m, st.wt, np.full(n, r), st.count[r] + mv.dc, st.total[:, [r]] + mv.dr)
    vs = _rep_violation(m, st.wt, mv.s, st.count[mv.s] - mv.dc, st.total[:, mv.s] + mv.ds)
    return vr, vs


def _apply(m: _Model, st: _State, mv: _Moves, i: int, r: int) -> None:
    s = int(mv.s[i])
    if mv.a[i] >= 0:
        st.x[mv.a[i]] = s
    if mv.b[i] >= 0:
        st.x[mv.b[i]] = r
    st.count[r] += mv.dc[i]
    st.count[s] -= mv.dc[i]
    st.total[:, r] += mv.dr[:, i]
    st.total[:, s] += mv.ds[:, i]
    both = np.array([r, s])
    st.viol[both] = _rep_violation(m, st.wt, both, st.count[both], st.total[:, both])


class _Stuck(Exception):
    """No move or swap among the candidates reduces the violation of these reps (after ``steps`` that did)."""

    def __init__(self, reps: np.ndarray, steps: int):
        super().__init__(f"{len(reps)} reps stuck")
        self.reps, self.steps = reps, steps


def _repair(m: _Model, st: _State, ps: _Pass, deadline: float, max_raises: int = 10) -> int:
    """Move accounts until every rep is within every band, each step the move or swap touching a violated rep
    that loses the least value per unit of (weighted) violation removed; returns the number of steps. When no
    move helps, the weights of the violations left are doubled (so that a move may trade one for another), up
    to ``max_raises`` times."""
    rev, steps, raises = _reverse(ps, m.p.shape[1]), 0, 0
    while True:
        bad = np.flatnonzero(st.viol > EPS)
        if not len(bad):
            fresh = _state(m, st.x, st.wt)  # the running totals drift in float: settle on exact ones
            st.count, st.total, st.viol = fresh.count, fresh.total, fresh.viol
            if not (st.viol > EPS).any():
                return steps
            continue
        progress = False
        for r in bad[np.argsort(-st.viol[bad], kind="stable")]:
            if st.viol[r] <= EPS:
                continue
            if time.perf_counter() > deadline:
                raise SolverError(f"the balance solver ran out of time repairing {int((st.viol > EPS).sum())} reps "
                                  f"outside their {_band_list(m)}. Fix: a longer time limit, or wider bands.",
                                  option="balance")
            mv = _moves(m, st, ps, rev, int(r))
            vr, vs = _after(m, st, mv, int(r))
            less = st.viol[r] + st.viol[mv.s] - vr - vs
            ok = less > EPS
            if ok.any():
                key = np.where(ok, -mv.gain / np.maximum(less, EPS), np.inf)
                _apply(m, st, mv, int(np.argmin(key)), int(r))
                steps, progress = steps + 1, True
        if not progress:
            if raises == max_raises:
                raise _Stuck(bad, steps)
            raises += 1
            st.wt[:, bad] *= np.where(_parts(m, bad, st.count[bad], st.total[:, bad]) > EPS, 2.0, 1.0)
            st.viol = _rep_violation(m, st.wt, np.arange(len(st.count)), st.count, st.total)


def _polish(m: _Model, st: _State, ps: _Pass, deadline: float, max_sweeps: int = 30) -> tuple[int, float]:
    """Moves and swaps that gain value and keep every band, the best per rep, in sweeps over the reps until
    none gains or time is up; returns (moves made, value gained)."""
    R = m.p.shape[1]
    rev = _reverse(ps, R)
    made, gained = 0, 0.0
    for _ in range(max_sweeps):
        before = made
        for r in range(R):
            if time.perf_counter() > deadline:
                return made, gained
            mv = _moves(m, st, ps, rev, r)
            if not len(mv.a):
                continue
            vr, vs = _after(m, st, mv, r)
            gain = np.where((vr <= EPS) & (vs <= EPS), mv.gain, 0.0)
            i = int(np.argmax(gain))
            if gain[i] >= 1.0:  # integer values: a real gain
                _apply(m, st, mv, i, r)
                made, gained = made + 1, gained + float(gain[i])
        if made == before:
            break
    return made, gained


def _repair_widening(m: _Model, st: _State, dual: _DualResult, k: int, c: int,
                     deadline: float) -> tuple[int, _Pass]:
    """``_repair`` on the dual's candidates; when stuck, HiGHS on the stuck reps' neighbourhood (``_repair_milp``),
    then the moves again on 4 and 16 times as many candidates; returns the steps and the candidates used."""
    ps, steps, widen = dual.ps, 0, 1
    for _ in range(6):
        try:
            return steps + _repair(m, st, ps, deadline), ps
        except _Stuck as stuck:
            reps, steps = stuck.reps, steps + stuck.steps
        if _repair_milp(m, st, ps, reps, deadline):
            continue
        if widen * k >= m.p.shape[1] or widen == 16:
            break
        widen *= 4
        ps = _full_pass(m, dual.z, min(m.p.shape[1], widen * k), min(m.p.shape[0], widen * c), ps)
    raise SolverError(
        f"the balance solver found no moves that bring {listed(m.p.name_rep(r) for r in reps)} within their "
        f"{_band_list(m)} (the bands may be infeasible). Fix: widen the tolerances.", option="balance")


def _repair_milp(m: _Model, st: _State, ps: _Pass, reps: np.ndarray, deadline: float) -> bool:
    """HiGHS on the accounts of the stuck ``reps`` and those that may go to them, the rest fixed: an assignment
    within every band keeping the most value (to 0.01%, in at most half the time left). Updates ``st``; returns
    whether it found one."""
    from scipy.optimize import Bounds, LinearConstraint
    from scipy.sparse import csr_matrix

    from repfit.assign import highs

    A, R = m.p.shape
    ptr, near = _reverse(ps, R)
    free = np.unique(np.concatenate([np.flatnonzero(np.isin(st.x, reps))] + [near[ptr[r]:ptr[r + 1]] for r in reps]))
    free = free[m.movable[free]][:MILP_ACCOUNTS]
    mask = _mask_rows(m.p, free)
    if len(free) * R > MILP_ACCOUNTS * 20:  # large: each account's candidates, its rep and the stuck reps only
        keep = np.zeros_like(mask)
        pos, lens = _ranges(ps.start, free)
        keep[np.repeat(np.arange(len(free)), lens), ps.rep[pos]] = True
        keep[np.arange(len(free)), st.x[free]] = True
        keep[:, reps] = True
        mask &= keep
    fa, fr = np.nonzero(mask)
    n, cols = len(fa), np.arange(len(fa))
    rest = _state(m, st.x.copy())
    rest.x[free] = -1
    fixed = rest.x >= 0
    count = np.bincount(rest.x[fixed], minlength=R)
    cons = [LinearConstraint(csr_matrix((np.ones(n), (fa, cols)), shape=(len(free), n)), 1, 1),
            LinearConstraint(csr_matrix((np.ones(n), (fr, cols)), shape=(R, n)), m.rows.lo - count, m.rows.hi - count)]
    for b in range(m.n_bands):
        total = np.bincount(rest.x[fixed], _weight(m, b, np.flatnonzero(fixed), rest.x[fixed]), R)
        w = _weight(m, b, free[fa], fr)
        margin = 1e-7 * (1.0 + np.abs(m.rows.upper[b]))  # HiGHS's feasibility tolerance must not break a band
        cons.append(LinearConstraint(csr_matrix((w, (fr, cols)), shape=(R, n)), m.rows.lower[b] - total + margin,
                                     m.rows.upper[b] - total - margin))
    try:  # in a child process, stopped if HiGHS overruns its limit (repfit.assign.highs)
        res = highs.milp(-_value(m, free[fa], fr) / m.vunit, cons, np.ones(n), Bounds(0, 1),
                         {"mip_rel_gap": 1e-4, "disp": False}, max(1.0, (deadline - time.perf_counter()) / 2))
    except SolverError:
        return False
    if res.x is None:
        return False
    on = res.x > 0.5
    st.x[free[fa[on]]] = fr[on]
    fresh = _state(m, st.x, st.wt)
    st.count, st.total, st.viol = fresh.count, fresh.total, fresh.viol
    return True


def _check_totals(m: _Model) -> None:
    """Raise ``InfeasibleAssignment`` when the band bounds cannot add up to what there is to share."""
    A = m.p.shape[0]
    r = m.rows
    if r.lo.sum() > A or r.hi.sum() < A or (r.lo > r.hi).any():
        bands = f" and {listed(r.count_names)} band" if r.count_names else ""
        raise InfeasibleAssignment(
            f"{A:,} accounts cannot give every rep a count within its capacity{bands} (the lower bounds add up to "
            f"{int(r.lo.sum()):,}, the upper bounds to {int(r.hi.sum()):,}). Fix: widen the accounts tolerance or "
            "change capacity.", option="balance")
    for b, w in enumerate(r.weights):
        if w.ndim != 1 or (w < 0).any():
            continue
        have = float(w.sum()) * r.units[b]
        need, room = r.lower[b].sum() * r.units[b], r.upper[b].sum() * r.units[b]
        if need > have * (1 + 1e-9) or room < have * (1 - 1e-9):
            raise InfeasibleAssignment(
                f"the accounts' {r.names[b]} totals {have:,.6g} but the reps' {r.names[b]} bands need between "
                f"{need:,.6g} and {room:,.6g}. Fix: widen the {r.names[b]} tolerance.", option="balance")


def _check_reach(m: _Model) -> None:
    """Raise ``InfeasibleAssignment`` when one account outweighs the upper bound of every rep it may go to."""
    p, r = m.p, m.rows
    for b, w in enumerate(r.weights):
        if w.ndim != 1 or not np.isfinite(r.upper[b]).any():
            continue
        big = np.flatnonzero(w > r.upper[b].min() + EPS)
        room = np.where(_mask_rows(p, big), r.upper[b], -np.inf).max(axis=1) if len(big) else np.zeros(0)
        over = w[big] > room + EPS
        if not over.any():
            continue
        i = int(np.flatnonzero(over)[np.argmax(w[big][over] - room[over])])
        a, unit, tol = int(big[i]), r.units[b], r.tolerances[b]
        name = str(p.account_names[a]) if p.account_names is not None else f"account #{a}"
        fix = f"widen the {r.names[b]} tolerance"
        if tol is not None and np.isfinite(room[i]):
            fix += f" to at least {w[a] / (room[i] / (1 + tol)) - 1:.0%}"
        raise InfeasibleAssignment(
            f"{name} alone has {r.names[b]} {w[a] * unit:,.6g}, above the upper {r.names[b]} band of every rep it "
            f"may go to (at most {room[i] * unit:,.6g}), and {int(over.sum())} account(s) are like it. Fix: {fix}.",
            option="balance")


def _verify(p: Problem, x: np.ndarray) -> None:
    """Check the assignment against the problem's own arrays (not the solver's): a bug must not pass as a plan."""
    A, R = p.shape
    faults = []
    if not _mask_ok(p, x):
        faults.append("a forbidden or unlocked pair")
    if (np.bincount(x, minlength=R) > p.capacity).any():
        faults.append("capacity")
    for band in p.bands:
        t, tol = band.totals(x), 1e-6 * max(float(np.abs(band.weights).mean()), 1e-12)
        if (t < band.lower - tol).any() or (t > band.upper + tol).any():
            faults.append(f"the {band.metric} band")
    if faults:
        raise SolverError(f"internal error: the balance solver's assignment breaks {', '.join(faults)}.")


def _mask_ok(p: Problem, x: np.ndarray) -> bool:
    A = len(x)
    ok = (x >= 0).all() and (p.allowed is None or p.allowed[np.arange(A), x].all())
    lk = np.flatnonzero(p.locked)
    return bool(ok and (x[lk] == p.current[lk]).all())


def _solution(m: _Model, x: np.ndarray, dual: _DualResult, notes: list[str]) -> Solution:
    """The Solution: value and bound in ``Problem.int_values`` units (keep bonus included), the relative gap."""
    value = float(_value(m, np.arange(len(x)), x).sum())
    raw = dual.ps.dual * m.vunit
    bound = float(np.floor(raw + 1e-9 * abs(raw) + 1e-6))  # float rounding cannot lift the optimum above it
    certified = bound <= value
    gap = 0.0 if certified else (bound - value) / abs(bound)
    notes = [f"LP dual bound over every allowed pair: {bound:,.0f}; value {value:,.0f}; gap {gap:.4%}", *notes]
    if m.keep_bonus:
        notes.append(f"value and bound include a keep bonus of {m.keep_bonus} per account kept")
    return Solution(x, "balance", m.p.int_objective(x), certified, tuple(notes), gap, max(bound, value))


def solve_balanced(p: Problem, time_limit: float = 300.0, keep_bonus: int = 0, k: int = 12) -> Solution:
    """An assignment of ``p`` within every band, capacity, lock and allowed pair, with a proven optimality gap.

    For large problems with bands (an ``accounts`` count band, a weighted ``potential`` band, ...): the LP dual
    of the weighted bands gives the bound, rounding by reduced value then repair and polish give the assignment
    (see the module docstring). Count bands (weights all one constant) and capacity are kept exactly by the
    prices; every other band is relaxed in the bound and enforced in the assignment.

    Parameters
    ----------
    p : the problem. Its tier balance is not modelled (give tiers as bands); its move budget is ignored (the
        keep bonus is how ``solve_max_moves`` trades moves against value).
    time_limit : seconds for the whole solve: up to 55% on the bound, the rest on repair (which may use all of
        it) and polish (each stage stops at its share; a pass over all pairs under way finishes first).
    keep_bonus : integer units added for each account kept (see ``solvers.keep_bonus_values``).
    k : candidate reps per account in the smoothed dual and in the repair moves.

    Returns
    -------
    Solution with ``solver="balance"``, ``bound`` (in ``Problem.int_values`` units) and ``gap`` =
    (bound - value) / |bound|; ``certified`` only when the value reaches the bound.

    Raises
    ------
    InfeasibleAssignment
        When the bands provably cannot hold (totals that cannot add up, or a dual bound below any assignment).
    SolverError
        When no assignment within every band is found in ``time_limit``.
    """
    t0 = time.perf_counter()
    if p.tiers is not None:  # tier balance is one 0/1 band per tier
        p = replace(p, tiers=None, tier_names=None, bands=p.tier_bands() + p.bands)
    A, R = p.shape
    if A == 0:
        return Solution(np.zeros(0, np.int64), "balance", 0, True, ("no accounts",), 0.0, 0.0)
    m = _model(p, keep_bonus)
    _check_totals(m)
    _check_reach(m)
    c = min(A, 4 * -(-A // max(R, 1)) + k)  # each rep's candidate accounts: about 4 books' worth
    n = min(A, max(2000, 5 * R))
    z = _sample_dual(m, n, t0 + 0.25 * time_limit)
    dual = _dual(m, z, k, c, t0 + 0.55 * time_limit)
    t1 = time.perf_counter()
    st = _state(m, dual.ps.best.copy())
    start = int((st.viol > EPS).sum())
    steps, ps = _repair_widening(m, st, dual, k, c, t0 + time_limit)  # within the bands first: polish gets what is left
    t2 = time.perf_counter()
    made, gained = _polish(m, st, ps, t0 + time_limit)
    _verify(p, st.x)
    t3 = time.perf_counter()
    notes = [f"bound: prices from a sample of {n:,} accounts, then {dual.stages} trust-region step(s) on "
             f"{len(dual.ps.acc):,} candidate pairs ({t1 - t0:.1f} s; last: {dual.log[-1] if dual.log else '-'})",
             f"repair: {steps:,} moves and swaps brought {start:,} reps within their bands ({t2 - t1:.1f} s)",
             f"polish: {made:,} moves and swaps gained {gained:,.0f} ({t3 - t2:.1f} s)"]
    return _solution(m, st.x, dual, notes)
