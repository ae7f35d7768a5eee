"""Features of a grid of pairs (a block of accounts x all reps) for batch scoring, as one float64 matrix.

``pair_features`` computes every feature per pair: the same rep rate for each of a block's accounts, the same
strength of a rep on an industry for each account of that industry. Most features depend on the rep alone, the
account alone, or the rep and one level of a dimension, so ``PairGrid`` computes them once per rep, per account
or per (rep, level) with the very formulas of ``pipeline._strength_features`` and ``JointFit.logits``, and gathers
them into the grid. Only what truly depends on the pair is computed per pair: the match dimensions' level, the
sums over an account's product mix, the pairs with history together, and the running sums (combined logit, joint
logit) in their original order.

The result equals ``pair_features`` on the same pairs to the last bit or so (tested); the rows come in the order
``score_blocks`` lays pairs out: account-major, reps in the given order within each account.
"""

from __future__ import annotations

import numpy as np

from repfit.features.catalogue import DimensionKind
from repfit.features.pipeline import FeatureSpace, HistorySnapshot, _logit, _mix, _rate
from repfit.probability import laplace_rate

OPPORTUNITY, MATCH = DimensionKind.OPPORTUNITY, DimensionKind.MATCH


class PairGrid:
    """Per-rep, per-account and per-(rep, level) tables of one scoring run, and ``block`` to gather a grid.

    Parameters
    ----------
    space, snap : the scorer's feature space and history snapshot (``PairScorer.space`` / ``.history``).
    columns : the model's feature names, in the order of the matrix's columns (``feature_names_in_``).
    reps : (R,) rep positions in ``space`` of the grid's reps, in the grid's column order.
    """

    def __init__(self, space: FeatureSpace, snap: HistorySnapshot, columns, reps: np.ndarray):
        self.space, self.snap = space, snap
        self.columns = list(columns)
        self.col = {c: j for j, c in enumerate(self.columns)}
        missing = [c for c in space.catalogue.names if c not in self.col]
        if missing or len(self.col) != len(space.catalogue.names):
            raise ValueError(f"model columns {self.columns[:5]}... are not the feature space's {missing[:5]}")
        r = np.asarray(reps, np.int64)
        self.r, self.R = r, len(r)
        k = space.cfg.prior_deals
        self.k = k
        g = laplace_rate(np.full(1, snap.W), np.full(1, snap.N))  # the same elementwise formula as per pair
        self.g = g
        n_r, w_r, x_r = snap.n_r[r], snap.w_r[r], snap.x_r[r]
        p_r = _rate(w_r - x_r + k * g, n_r + k)
        self.p_r = p_r
        logit_pr = _logit(p_r)
        rep = {"rep_n": n_r.astype(float), "rep_rate": p_r, "pair_n": np.zeros(self.R),
               "pair_rate": _rate(0.0 - 0.0 + k * p_r, 0.0 + k)}  # no deal together: the pair rate is the rep's
        rep.update({c: space.rep_static[c].to_numpy()[r] for c in space.rep_static.columns})
        self.rep_cols = rep
        self.logit_pr = logit_pr
        # per dimension: (R, V + 1) tables of strength, lift, n and the combined-logit term; column 0: level unknown
        self.dim_tables: dict[str, dict[str, np.ndarray]] = {}
        for d in space.dims:
            t = snap.tables[d.name]
            gcol = g[:, None]
            if d.kind == OPPORTUNITY:
                g_v = _rate(t["w_v"][None, :] - t["x_v"][None, :] + k * gcol, t["n_v"][None, :] + k)
                prior = np.clip(p_r[:, None] + g_v - gcol, 0.01, 0.99)
                s = _rate(t["w_rv"][r] - t["x_rv"][r] + k * prior, t["n_rv"][r] + k)
                self.dim_tables[d.name] = {"s": s, "n_rv": t["n_rv"][r]}
                continue
            zero = np.zeros((1,))
            n_v, w_v, x_v = (np.concatenate([zero, t[key]]) for key in ("n_v", "w_v", "x_v"))
            n_rv, w_rv, x_rv = (np.concatenate([np.zeros((len(r), 1)), t[key][r]], axis=1) for key in ("n_rv", "w_rv", "x_rv"))
            g_v = _rate(w_v[None, :] - x_v[None, :] + k * gcol, n_v[None, :] + k)
            prior = np.clip(p_r[:, None] + g_v - gcol, 0.01, 0.99)
            s = _rate(w_rv - x_rv + k * prior, n_rv + k)
            self.dim_tables[d.name] = {"strength": s, "lift": s - p_r[:, None], "n": n_rv,
                                       "term": _logit(s) - logit_pr[:, None]}
        # pairs with history: their rows and values, computed once (``hits``)
        self._history = None
        joint = snap.joint
        if joint is not None:
            self.joint_rep = joint.rep[r]
            self.joint_rl = {d.name: np.concatenate([np.zeros((self.R, 1)), joint.rep_levels[d.name][r]], axis=1)
                             for d in space.dims if d.kind != OPPORTUNITY}
            self.joint_lv = {d.name: np.concatenate([np.zeros(1), joint.levels[d.name]]) for d in space.dims
                             if d.kind != OPPORTUNITY}

    def _pair_history(self, accounts: np.ndarray):
        """(account row, rep column, n, rate) of every pair with closed deals together, account rows in the order of
        ``accounts`` (the positions of all accounts scored, in score order), sorted by account row."""
        snap, A = self.snap, len(self.space.account_ids)
        rep_col = np.full(len(self.space.rep_ids), -1)
        rep_col[self.r] = np.arange(self.R)
        acc_row = np.full(A, -1)
        acc_row[accounts] = np.arange(len(accounts))
        pr, pa = snap.pair_codes // A, snap.pair_codes % A
        rows, cols = acc_row[pa], rep_col[pr]
        keep = (rows >= 0) & (cols >= 0)
        k = self.k
        n = snap.pair_n[keep]
        rate = _rate(snap.pair_w[keep] - snap.pair_x[keep] + k * self.p_r[cols[keep]], n + k)
        order = np.argsort(rows[keep], kind="stable")
        return rows[keep][order], cols[keep][order], n[order], rate[order]

    def block(self, accounts: np.ndarray, lo: int, hi: int) -> np.ndarray:
        """The (n x R, F) feature matrix of accounts ``accounts[lo:hi]`` x the grid's reps (account-major rows).

        ``accounts``: the positions in the space of every account of the run (so that the history of the pairs is
        located once per run, not per block)."""
        if self._history is None or self._history[0] is not accounts:
            self._history = (accounts, self._pair_history(accounts))
        rows, cols, hn, hrate = self._history[1]
        a = accounts[lo:hi]
        n, R, space, k = len(a), self.R, self.space, self.k
        F = np.empty((n, R, len(self.columns)))
        put = self._putter(F)
        for c, v in self.rep_cols.items():
            put(c, v[None, :])
        for c in space.account_static.columns:
            put(c, space.account_static[c].to_numpy()[a][:, None])
        snap, g = self.snap, self.g
        put("account_n", snap.n_a[a].astype(float)[:, None])
        put("account_rate", ((snap.w_a[a] + k * g) / (snap.n_a[a] + k))[:, None])
        i0, i1 = np.searchsorted(rows, [lo, hi])
        flat = F.reshape(n * R, -1)
        flat[(rows[i0:i1] - lo) * R + cols[i0:i1], self.col["pair_n"]] = hn[i0:i1]
        flat[(rows[i0:i1] - lo) * R + cols[i0:i1], self.col["pair_rate"]] = hrate[i0:i1]
        self._dimensions(put, a)
        return flat

    def _dimensions(self, put, a: np.ndarray) -> None:
        """The strength, lift, n and joint columns of every dimension, and the sums over them (combined logit, joint
        logit), for accounts ``a`` x the grid's reps, added up in ``pair_features``'s order."""
        n, R, space, snap = len(a), self.R, self.space, self.snap
        combined = np.broadcast_to(self.logit_pr[None, :], (n, R))
        joint = snap.joint
        if joint is not None:
            rest = np.broadcast_to((joint.intercept + joint.account[a])[:, None], (n, R))
            rep_part = np.broadcast_to(self.joint_rep[None, :], (n, R))
        ridx = np.arange(R)[None, :]
        for d in space.dims:
            tab = self.dim_tables[d.name]
            if d.kind == OPPORTUNITY:
                t = snap.tables[d.name]
                n_v = np.broadcast_to(t["n_v"], (n, len(t["n_v"])))
                mix = _mix(t["c_av"][a], n_v)  # (n, V): the account's product mix
                strength = (mix[:, None, :] * tab["s"][None, :, :]).sum(axis=2)
                put(f"{d.name}_strength", strength)
                put(f"{d.name}_lift", strength - self.p_r[None, :])
                put(f"{d.name}_n", (mix[:, None, :] * tab["n_rv"][None, :, :]).sum(axis=2))
                combined = combined + (_logit(strength) - self.logit_pr[None, :])
                if joint is not None:
                    dj = (mix[:, None, :] * joint.rep_levels[d.name][self.r][None, :, :]).sum(axis=2)
                    put(f"{d.name}_joint", dj)
                    rest = rest + (mix @ joint.levels[d.name])[:, None]
                    rep_part = rep_part + dj
                continue
            if d.kind == MATCH:
                rc, ac = space.match_codes[d.name]
                rcode, acode = rc[self.r][None, :], ac[a][:, None]
                v1 = np.where((rcode >= 0) & (acode >= 0), (rcode == acode).astype(np.int64), -1) + 1  # (n, R)
                pick = lambda table: table[ridx, v1]  # noqa: E731
            else:
                v1 = space.account_value[d.name][a] + 1  # (n,): the account's level, 0 when unknown
                pick = lambda table: table[:, v1].T  # noqa: E731
            put(f"{d.name}_strength", pick(tab["strength"]))
            put(f"{d.name}_lift", pick(tab["lift"]))
            put(f"{d.name}_n", pick(tab["n"]))
            combined = combined + pick(tab["term"])
            if joint is not None:
                dj = pick(self.joint_rl[d.name])
                put(f"{d.name}_joint", dj)
                lv = self.joint_lv[d.name][v1]
                rest = rest + (lv if lv.ndim == 2 else lv[:, None])
                rep_part = rep_part + dj
        put("combined_logit", combined)
        if joint is not None:
            put("joint_logit", rest + rep_part)
            put("joint_rep_logit", rep_part)

    def _putter(self, F: np.ndarray):
        col = self.col

        def put(name: str, values) -> None:
            F[:, :, col[name]] = values

        return put


class FrameGrid:
    """``PairGrid``'s interface over ``pair_features`` itself: the reference, and the fallback should the two ever
    disagree (``checked_grid``)."""

    def __init__(self, space: FeatureSpace, snap: HistorySnapshot, columns, reps: np.ndarray):
        self.space, self.snap, self.columns, self.r = space, snap, list(columns), np.asarray(reps, np.int64)

    def block(self, accounts: np.ndarray, lo: int, hi: int) -> np.ndarray:
        from repfit.features.pipeline import pair_features

        rr = np.tile(self.r, hi - lo)
        aa = np.repeat(accounts[lo:hi], len(self.r))
        return pair_features(self.space, self.snap, rr, aa)[self.columns].to_numpy(np.float64)


def checked_grid(space: FeatureSpace, snap: HistorySnapshot, columns, reps: np.ndarray, accounts: np.ndarray,
                 sample_pairs: int = 16_384) -> PairGrid | FrameGrid:
    """A ``PairGrid``, checked against ``pair_features`` on a few accounts spread over ``accounts`` (their pairs with
    every rep, history included; about ``sample_pairs`` pairs, at most 64 accounts) before it is used: should a change
    to the feature formulas reach one and not the other, scoring stays right (and slower) instead of silently wrong.
    The tests hold them equal."""
    fast = PairGrid(space, snap, columns, reps)
    ref = FrameGrid(space, snap, columns, reps)
    if len(accounts) == 0 or len(reps) == 0:
        return fast
    sample = max(1, min(64, sample_pairs // len(reps), len(accounts)))
    picks = np.unique(np.linspace(0, len(accounts) - 1, sample).astype(int))
    sub = accounts[picks]
    a, b = fast.block(sub, 0, len(sub)), ref.block(sub, 0, len(sub))
    same = (np.isnan(a) == np.isnan(b)).all() and np.allclose(np.nan_to_num(a), np.nan_to_num(b), rtol=1e-12, atol=1e-12)
    return fast if same else ref
