"""Joint rep strengths: one penalised logistic regression over all deals, with an effect per account.

Why: the per-dimension win rates (``pipeline._strength_features``) are estimated one dimension at a
time and combined by adding their lifts, so a rep's rate on an industry also carries the size, products
and ease of the accounts it happened to work (history is territory-biased). Fitting every effect at once,
with an effect per account that other reps' deals on the same account pin down, estimates each effect
net of the others:

    logit P(win) = b + rep[r] + account[a] + sum_d (level_d[v] + rep_level_d[r, v])

where ``v`` is the deal's value on dimension ``d`` (industry, size band, product, region match...;
opportunity dimensions such as product enter with the account's product mix when scoring).

Priors, learned from the data (empirical Bayes, MacKay's evidence updates with a diagonal Laplace
approximation): every effect of a block (``rep``, ``account``, ``rep_level:<d>``) is ``N(0, sd^2)``
with one ``sd`` per block, so a block whose effects the history does not bear out is shrunk to
nothing, and a rep with few deals on a value stays near zero there. Dimension main effects
(``level:<d>``) get a weak fixed prior.

``learn_band_edges`` chooses the cut points of numeric attributes (employees -> size band) by the
same evidence: the bands where reps' strengths differ most, instead of fixed quantiles.

The fit feeds pair features next to the per-dimension rates: ``joint_logit`` (the whole formula),
``joint_rep_logit`` (the rep-specific part ``rep + sum_d rep_level_d``) and ``<d>_joint`` (each
``rep_level_d`` term). By default the booster starts from ``joint_logit`` (``TrainConfig.boost_from``)
and learns corrections to it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

from repfit.probability import sigmoid

MAIN_SD = 3.0  # dimension main effects (how hard a value is for everyone): weak fixed prior
MIN_SD = 1e-3


@dataclass
class JointFit:
    """Coefficients of the joint model. ``levels[d]`` has shape (V,), ``rep_levels[d]`` (R, V).
    ``sd``: the prior sd of each block it was fitted with; ``evidence``: its Laplace log evidence."""

    intercept: float
    rep: np.ndarray
    account: np.ndarray
    levels: dict[str, np.ndarray]
    rep_levels: dict[str, np.ndarray]
    sd: dict[str, float] = field(default_factory=dict)
    evidence: float = float("nan")
    solution: np.ndarray | None = field(default=None, repr=False)  # the fit in its own (scaled) coordinates: a warm start

    @classmethod
    def empty(cls, n_reps: int, n_accounts: int, n_levels: dict[str, int]) -> JointFit:
        """No history: every effect zero, P(win) = 0.5 (the same neutral start as the shrunk rates)."""
        return cls(0.0, np.zeros(n_reps), np.zeros(n_accounts), {d: np.zeros(v) for d, v in n_levels.items()},
                   {d: np.zeros((n_reps, v)) for d, v in n_levels.items()})

    def logits(self, r: np.ndarray, a: np.ndarray, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Joint-model features of pairs (r, a): ``joint_logit`` (the whole formula), ``joint_rep_logit``
        (its rep-specific part) and ``<d>_joint`` (the rep's own effect on the pair's value of ``d``).
        ``weights[d]``: the pair's level code of ``d`` (m,), -1 if unknown; or, for a pair that spreads over
        levels (products by the account's mix), its (m, V) share of deals per level."""
        out = {}
        rep_part = self.rep[r].copy()
        rest = self.intercept + self.account[a]
        for d, w in weights.items():
            if w.ndim == 1:
                ok, v = w >= 0, np.maximum(w, 0)
                out[f"{d}_joint"] = np.where(ok, self.rep_levels[d][r, v], 0.0)
                rest = rest + np.where(ok, self.levels[d][v], 0.0)
            else:
                out[f"{d}_joint"] = (w * self.rep_levels[d][r]).sum(axis=1)
                rest = rest + w @ self.levels[d]
            rep_part += out[f"{d}_joint"]
        return {"joint_logit": rest + rep_part, "joint_rep_logit": rep_part, **out}


def blocks(names) -> list[str]:
    """Prior blocks, in column order of the design matrix."""
    return ["rep", "account"] + [f"{kind}:{d}" for d in names for kind in ("level", "rep_level")]


def _design(r, a, codes, n_reps, n_accounts, n_levels) -> tuple[sparse.csr_matrix, np.ndarray]:
    """One-hot design matrix of deals and the block index of each column."""
    m = len(r)
    rows, cols = [np.arange(m), np.arange(m)], [r, n_reps + a]
    sizes = [n_reps, n_accounts]
    offset = n_reps + n_accounts
    for d, V in n_levels.items():
        v = codes[d]
        ok = np.flatnonzero(v >= 0)
        rows += [ok, ok]
        cols += [offset + v[ok], offset + V + r[ok] * V + v[ok]]
        sizes += [V, n_reps * V]
        offset += V + n_reps * V
    row, col = np.concatenate(rows), np.concatenate(cols)
    X = sparse.csr_matrix((np.ones(len(row)), (row, col)), shape=(m, offset))
    return X, np.repeat(np.arange(len(sizes)), sizes)


def _map_fit(X, y, scale, u0):
    """MAP of the logistic model with prior ``w_j ~ N(0, scale_j^2)``, fitted as ``w = scale * u`` with
    ``u ~ N(0, 1)`` (well conditioned even when a block's prior is nearly zero). Returns ``u`` (intercept last)."""
    Xs = X @ sparse.diags(scale)
    Xst = Xs.T.tocsr()
    p = Xs.shape[1]

    def f(ub):
        z = Xs @ ub[:p] + ub[p]
        pr = sigmoid(z)
        g = np.empty(p + 1)
        g[:p] = Xst @ (pr - y) + ub[:p]
        g[p] = (pr - y).sum()
        return (np.logaddexp(0.0, z) - y * z).sum() + 0.5 * (ub[:p] ** 2).sum(), g

    return minimize(f, u0, jac=True, method="L-BFGS-B", options={"maxiter": 3000, "gtol": 1e-6}).x


def fit_joint(r: np.ndarray, a: np.ndarray, codes: dict[str, np.ndarray], won: np.ndarray,
              n_reps: int, n_accounts: int, n_levels: dict[str, int], sd: dict[str, float] | float,
              learn_sd: bool = False, max_updates: int = 12, warm: JointFit | None = None) -> JointFit:
    """Fit the joint model on deals (rep ``r``, account ``a``, level code per dimension, ``won``).

    Parameters
    ----------
    codes : dimension -> level code of each deal; -1 (missing) adds no term.
    sd : prior sd of every learnable block (a float), or per block name (see ``blocks``).
    learn_sd : re-estimate each block's sd from the data (evidence updates, starting from ``sd``).
    warm : a fit on the same deals to start from: with a design of the same shape (e.g. other band edges) from its
        solution as it is, else block by block (``_warm_blocks``).

    Deals are put in a canonical order first, so the same deals give the same coefficients whatever
    order they arrive in (training and scoring features must agree).
    """
    if len(won) == 0 or len(np.unique(won)) < 2:
        return JointFit.empty(n_reps, n_accounts, n_levels)
    # ~1e5 tiny sparse products and BLAS calls: a second BLAS thread costs more in hand-offs than it gains
    # (measured 6-10x slower on 2 cores), whatever the caller's thread settings
    with threadpool_limits(limits=1, user_api="blas"):
        return _fit(r, a, codes, won, n_reps, n_accounts, n_levels, sd, learn_sd, max_updates, warm)


def _fit(r, a, codes, won, n_reps, n_accounts, n_levels, sd, learn_sd, max_updates, warm) -> JointFit:
    names = list(n_levels)
    bnames = blocks(names)
    order = np.lexsort([won, a, r] + [codes[d] for d in names])
    r, a, won = r[order], a[order], np.asarray(won, float)[order]
    codes = {d: codes[d][order] for d in names}
    X, group = _design(r, a, codes, n_reps, n_accounts, n_levels)
    Xt = X.T.tocsr()  # X is 0/1, so X**2 = X: the Hessian diagonal is Xt @ (p (1 - p))
    fixed = np.array([b.startswith("level:") for b in bnames])
    s = np.array([MAIN_SD if fx else (sd if isinstance(sd, float | int) else sd.get(b, MAIN_SD)) for b, fx in zip(bnames, fixed)], float)
    s = np.maximum(s, MIN_SD)
    u = np.zeros(X.shape[1] + 1)
    if warm is not None and warm.solution is not None and len(warm.solution) == len(u):
        u = warm.solution.copy()
    elif warm is not None:
        u = _warm_blocks(warm, s[group], n_reps, n_accounts, n_levels)
    for _ in range(max_updates if learn_sd else 1):
        u = _map_fit(X, won, s[group], u)
        if not learn_sd:
            break
        new = _evidence_update(X, Xt, won, u, s, group, fixed)
        done = np.allclose(new, s, rtol=1e-3)
        u[:-1] = s[group] * u[:-1] / new[group]  # same coefficients, new scale: a warm start
        s = new
        if done:
            break
    return _unpack(X, Xt, won, u, s, group, bnames, n_reps, n_accounts, n_levels)


def _warm_blocks(warm: JointFit, scale: np.ndarray, n_reps: int, n_accounts: int, n_levels: dict[str, int]) -> np.ndarray:
    """A start for a design of another shape (e.g. fewer bands of one dimension): ``warm``'s coefficients in this fit's
    scaled coordinates, block by block; a block whose shape differs starts at zero. The problem is convex, so the
    start only changes how many iterations the fit takes (issue 14: a cold start cost 5-10x more)."""

    def block(x, shape):
        return np.ravel(x) if x is not None and np.shape(x) == shape else np.zeros(int(np.prod(shape)))

    parts = [block(warm.rep, (n_reps,)), block(warm.account, (n_accounts,))]
    for d, V in n_levels.items():
        parts += [block(warm.levels.get(d), (V,)), block(warm.rep_levels.get(d), (n_reps, V))]
    return np.append(np.concatenate(parts) / scale, warm.intercept)


def _evidence_update(X, Xt, won, u, s, group, fixed) -> np.ndarray:
    """MacKay's update of each learnable block's prior sd: sqrt(sum of squared effects / effective dof)."""
    scale = s[group]
    w = scale * u[:-1]
    pr = sigmoid(X @ w + u[-1])
    lam = 1.0 / scale**2
    gamma = 1.0 - lam / (Xt @ (pr * (1 - pr)) + lam)  # how well the data determine each effect
    wsq = np.bincount(group, weights=w**2, minlength=len(s))
    dof = np.bincount(group, weights=gamma, minlength=len(s))
    return np.where(fixed, s, np.sqrt(np.maximum(wsq / np.maximum(dof, 1e-12), MIN_SD**2)))


def _unpack(X, Xt, won, u, s, group, bnames, n_reps, n_accounts, n_levels) -> JointFit:
    """The fit's coefficients per block, with its Laplace log evidence."""
    scale = s[group]
    w = scale * u[:-1]
    lam = 1.0 / scale**2
    z = X @ w + u[-1]
    pr = sigmoid(z)
    H = Xt @ (pr * (1 - pr)) + lam
    ll = float((won * z - np.logaddexp(0.0, z)).sum())
    evidence = ll - 0.5 * float((lam * w**2).sum()) - 0.5 * float(np.log(H / lam).sum())
    out = JointFit(float(u[-1]), w[:n_reps], w[n_reps:n_reps + n_accounts], {}, {},
                   sd={b: float(v) for b, v in zip(bnames, s) if not b.startswith("level:")}, evidence=evidence, solution=u)
    offset = n_reps + n_accounts
    for d in n_levels:
        V = n_levels[d]
        out.levels[d] = w[offset:offset + V]
        out.rep_levels[d] = w[offset + V:offset + V + n_reps * V].reshape(n_reps, V)
        offset += V + n_reps * V
    return out


def learn_band_edges(values: np.ndarray, n_bands: int, evidence_of, n_candidates: int = 19) -> tuple[float, ...]:
    """Cut points for ``n_bands`` bands of a numeric attribute, chosen among its ``n_candidates`` quantiles
    (5%, 10%, ... 95% by default) to maximise ``evidence_of(edges)``: the joint model's evidence with
    those bands.

    Search: edges are added one at a time (each the best given those already chosen), then each edge is
    moved to its best position given the others until none moves. Every combination is tried instead
    when there are at most 40.
    """
    v = np.asarray(values, float)
    v = v[~np.isnan(v)]
    cand = list(np.unique(np.quantile(v, np.linspace(0, 1, n_candidates + 2)[1:-1])))
    k = n_bands - 1
    if k < 1 or len(cand) <= k:
        return tuple(cand[:k])
    seen: dict[tuple, float] = {}

    def ev(edges) -> float:
        key = tuple(sorted(edges))
        if key not in seen:
            value = evidence_of(key)
            seen[key] = value if np.isfinite(value) else -np.inf
        return seen[key]

    combos = list(itertools.combinations(cand, k))
    if len(combos) <= 40:
        return max(combos, key=ev)
    chosen: list[float] = []
    for _ in range(k):
        chosen.append(max((c for c in cand if c not in chosen), key=lambda c: ev(chosen + [c])))
    for _ in range(5):
        moved = False
        for i in range(k):
            others = chosen[:i] + chosen[i + 1:]
            best = max((c for c in cand if c not in others), key=lambda c: ev(others + [c]))
            moved |= best != chosen[i]
            chosen[i] = best
        if not moved:
            break
    return tuple(sorted(chosen))
