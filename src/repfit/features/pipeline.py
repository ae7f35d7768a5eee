"""Rep-strength, account and pair features, point-in-time correct for training, snapshot for scoring.

Both paths go through one formula (``_strength_features``): training rows get their history
counts with ``merge_asof`` (opportunities closed strictly before the row's ``created_at``),
scoring gathers them from count tables over all closed history. So a training row created after
the last close has exactly the scoring features of its pair (tested).

Features of a (rep, account) pair
---------------------------------
- account vector: categorical attributes (as codes), numeric attributes, log potential, and the
  account's own history (prior deals, shrunk win rate);
- rep vector: categorical and numeric rep attributes, prior deals, shrunk overall win rate;
- per strength dimension ``d`` (industry, size band, product, region match...):
  ``d_strength`` (rep's shrunk win rate on this account's value), ``d_lift`` (that minus the rep's
  overall rate) and ``d_n`` (the rep's deals on that value). Opportunity attributes such as
  product are weighted by the account's product mix;
- pair history: prior deals with this very account and their shrunk win rate.

Shrinkage (empirical Bayes, ``k = prior_deals``): ``g`` global rate; rep rate
``p_r = (w_r - x_r + k g) / (n_r + k)``; value rate ``g_v = (w_v - x_v + k g) / (n_v + k)``; strength
``s_rv = (w_rv - x_rv + k prior) / (n_rv + k)`` with ``prior = p_r + g_v - g`` (the rep's rate, adjusted
for how hard the value is for everyone); pair rate ``(w_ra - x_ra + k p_r) / (n_ra + k)``.

Deal-level controls (issue 12, item 5): the ``x`` terms are the wins the deals' own deal-level values
(opportunity attributes: deal type, lead source, product) predict above the org's rate, summed over the
deals behind each count (``_deal_excess``). So a rep fed renewals or inbound leads is not credited with
their ease: its rate is its wins over what its deal mix predicts, i.e. its rate on an org-average mix.
An opportunity dimension's own counts keep its own ease (only the other deal-level attributes' is
removed), so its strength still says how easy the account's mix of it is. The account's rate stays
gross: the account keeps its deal mix whoever owns it. Without opportunity attributes every ``x`` is 0.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from repfit import schema as S
from repfit.config import AUTO, FeatureConfig
from repfit.errors import ConfigError, SchemaError
from repfit.features.catalogue import Catalogue, DimensionKind, attribute_column
from repfit.probability import laplace_rate, logit
from repfit.features.joint import JointFit, fit_joint, learn_band_edges

ACCOUNT, BAND, OPPORTUNITY, MATCH = DimensionKind.ACCOUNT, DimensionKind.BAND, DimensionKind.OPPORTUNITY, DimensionKind.MATCH
T = "_t"
X = "_x"  # events: the wins a deal's deal-level values predict above the org's rate (``_deal_excess``)
RATE_EPS = 1e-4  # shrunk rates never come closer to 0 or 1 than this in log-odds features


@dataclass(frozen=True)
class Dimension:
    """One axis of rep strength. ``levels``: values (account/opportunity/match) or band edges (band)."""

    name: str
    kind: DimensionKind
    column: str
    levels: tuple


def _pick(cfg_value, eligible: list[str], what: str, available: list[str]) -> list[str]:
    if cfg_value == AUTO:
        return eligible
    chosen = list(cfg_value)
    bad = [c for c in chosen if c not in eligible]
    if bad:
        raise ConfigError(
            f"feature spec: {what} {', '.join(map(repr, bad))} not usable; eligible columns: "
            f"{', '.join(map(repr, eligible)) or 'none'} (all: {', '.join(map(repr, available))}). "
            "Fix: list eligible columns or use \"auto\"."
        )
    return chosen


def resolve_dimensions(ds: S.Dataset, cfg: FeatureConfig, band_edges: dict[str, tuple] | None = None) -> list[Dimension]:
    """The strength dimensions of ``cfg`` on this data set (``auto`` expanded, ids/names skipped).
    Numeric bands are cut at quantiles unless ``band_edges`` gives their edges (see ``learn_joint``)."""

    def low_card(df: pd.DataFrame, cols: list[str]) -> list[str]:
        return [c for c in cols if c not in cfg.exclude and usable_category(df[c], cfg)]

    dims: list[Dimension] = []
    acc_cat = low_card(ds.accounts, ds.categorical("accounts"))
    for c in _pick(cfg.account_attributes, acc_cat, "account_attributes", ds.attributes("accounts")):
        dims.append(Dimension(c, ACCOUNT, c, tuple(sorted(ds.accounts[c].dropna().unique()))))
    nums = [c for c in ds.numeric("accounts") if c not in cfg.exclude and ds.accounts[c].nunique() > cfg.n_bands]
    for c in _pick(cfg.numeric_bands, nums, "numeric_bands", ds.attributes("accounts")):
        qs = np.linspace(0, 1, cfg.n_bands + 1)[1:-1]
        edges = tuple(np.unique(np.quantile(ds.accounts[c].dropna(), qs)))
        dims.append(Dimension(f"{c}_band", BAND, c, tuple((band_edges or {}).get(f"{c}_band", edges))))
    opp_cat = low_card(ds.opportunities, ds.categorical("opportunities"))
    for c in _pick(cfg.opportunity_attributes, opp_cat, "opportunity_attributes", ds.attributes("opportunities")):
        dims.append(Dimension(c, OPPORTUNITY, c, tuple(sorted(ds.closed[c].dropna().unique()))))
    shared = [c for c in ds.shared_attributes() if c in low_card(ds.accounts, [c]) and c not in cfg.exclude]
    for c in _pick(cfg.shared_attributes, shared, "shared_attributes", ds.shared_attributes()):
        dims.append(Dimension(f"{c}_match", MATCH, c, (0.0, 1.0)))
    return dims


def usable_category(s: pd.Series, cfg: FeatureConfig) -> bool:
    """A categorical column is a feature if it has 2..max_levels values and is not an id (all distinct)."""
    k = s.nunique()
    return 1 < k <= cfg.max_levels and k < s.notna().sum()


def _codes(values: pd.Series, levels) -> np.ndarray:
    """Integer codes of ``values`` in ``levels``; -1 for missing or unseen."""
    return pd.Categorical(values, categories=list(levels)).codes.astype(np.int64)


@dataclass(frozen=True)
class StaticColumn:
    """A rep or account attribute used as is: numeric, or categorical coded by the levels seen at training."""

    name: str  # the model column
    table: str  # "reps" or "accounts"
    attribute: str
    levels: tuple | None = None  # categorical: the training levels (codes are positions); None: numeric


@dataclass
class FeatureSpace:
    """Everything needed to turn (rep, account[, time]) into features: ids, coded attributes, dimensions.

    Built once from a data set; picklable (numpy and plain Python only), carried by the model.
    """

    cfg: FeatureConfig
    dims: list[Dimension]
    rep_ids: np.ndarray
    account_ids: np.ndarray
    rep_static: pd.DataFrame  # one row per rep, model-ready columns
    account_static: pd.DataFrame  # one row per account, model-ready columns
    account_value: dict[str, np.ndarray]  # dim -> account's level code (account/band dims)
    match_codes: dict[str, tuple[np.ndarray, np.ndarray]]  # dim -> (rep codes, account codes)
    catalogue: Catalogue
    static_columns: tuple[StaticColumn, ...] = ()
    joint_sd: dict[str, float] | None = None  # the joint model's learned prior sd per block (None: cfg.joint_prior_sd)

    @property
    def categorical(self) -> list[str]:
        return self.catalogue.categorical()

    @classmethod
    def build(cls, ds: S.Dataset, cfg: FeatureConfig, band_edges: dict[str, tuple] | None = None,
              joint_sd: dict[str, float] | None = None) -> FeatureSpace:
        """The feature space of ``ds``; ``band_edges`` and ``joint_sd`` as learned by ``learn_joint``."""
        dims = resolve_dimensions(ds, cfg, band_edges)
        static = _static_columns(ds, "reps", "rep", cfg) + _static_columns(ds, "accounts", "account", cfg)
        catalogue = Catalogue.build(
            dimensions=[(d.name, d.kind) for d in dims],
            rep_attributes=[(c.attribute, c.levels is not None) for c in static if c.table == "reps"],
            account_attributes=[(c.attribute, c.levels is not None) for c in static if c.table == "accounts"],
            joint=cfg.joint_prior_sd > 0)
        blank = cls(cfg=cfg, dims=dims, rep_ids=np.array([], str), account_ids=np.array([], str),
                    rep_static=pd.DataFrame(), account_static=pd.DataFrame(), account_value={}, match_codes={},
                    catalogue=catalogue, static_columns=tuple(static), joint_sd=joint_sd)
        return blank.for_data(ds)

    def for_data(self, ds: S.Dataset) -> FeatureSpace:
        """This space (dimensions, levels, catalogue, priors: what training learned) on the reps, accounts and
        attribute values of ``ds``: a newer export, new reps and accounts included (cold start). Raises
        ``SchemaError`` when ``ds`` lacks an attribute the model uses."""
        reps, accs = ds.reps, ds.accounts
        needed = [(c.table, c.attribute) for c in self.static_columns]
        for d in self.dims:
            tables = {MATCH: ("reps", "accounts"), OPPORTUNITY: ("opportunities",)}.get(d.kind, ("accounts",))
            needed += [(t, d.column) for t in tables]
        for table, column in needed:
            if column not in getattr(ds, table).columns:
                raise SchemaError(f"{ds.paths[table]}: column '{column}' is missing, and the model uses it. "
                                  "Fix: include it, or train a model on data without it.")
        rep_static = {c.name: _encode(reps[c.attribute], c.levels) for c in self.static_columns if c.table == "reps"}
        acc_static = {c.name: _encode(accs[c.attribute], c.levels) for c in self.static_columns if c.table == "accounts"}
        acc_static["account_log_potential"] = np.log1p(accs[S.POTENTIAL].to_numpy(float))
        account_value, match_codes = {}, {}
        for d in self.dims:
            if d.kind == ACCOUNT:
                account_value[d.name] = _codes(accs[d.column], d.levels)
            elif d.kind == BAND:
                vals = pd.to_numeric(accs[d.column], errors="coerce").to_numpy(float)  # text in a newer export: missing
                account_value[d.name] = np.where(np.isnan(vals), -1, np.searchsorted(np.asarray(d.levels), vals, side="right"))
            elif d.kind == MATCH:
                # compared as text: a newer export may carry one side as numbers and the other as text
                rv, av = reps[d.column].astype("string"), accs[d.column].astype("string")
                levels = sorted(set(rv.dropna()) | set(av.dropna()))
                match_codes[d.name] = (_codes(rv, levels), _codes(av, levels))
        return replace(
            self, rep_ids=reps[S.REP_ID].to_numpy(str), account_ids=accs[S.ACCOUNT_ID].to_numpy(str),
            rep_static=pd.DataFrame(rep_static, index=pd.RangeIndex(len(reps))),
            account_static=pd.DataFrame(acc_static, index=pd.RangeIndex(len(accs))),
            account_value=account_value, match_codes=match_codes,
        )

    # --- ids -> positions
    def rep_index(self, ids) -> np.ndarray:
        return _positions(self.rep_ids, ids, "rep_id", "reps")

    def account_index(self, ids) -> np.ndarray:
        return _positions(self.account_ids, ids, "account_id", "accounts")

    def n_levels(self, d: Dimension) -> int:
        return len(d.levels) + 1 if d.kind == BAND else len(d.levels)

    def pair_value(self, d: Dimension, r: np.ndarray, a: np.ndarray) -> np.ndarray:
        """The level code of a single-valued dimension for pairs (rep r, account a); -1 if unknown."""
        if d.kind == MATCH:
            rc, ac = self.match_codes[d.name]
            ok = (rc[r] >= 0) & (ac[a] >= 0)
            return np.where(ok, (rc[r] == ac[a]).astype(np.int64), -1)
        return self.account_value[d.name][a]

    def static(self, r: np.ndarray, a: np.ndarray) -> dict[str, np.ndarray]:
        out = {c: self.rep_static[c].to_numpy()[r] for c in self.rep_static.columns}
        out.update({c: self.account_static[c].to_numpy()[a] for c in self.account_static.columns})
        return out


def _static_columns(ds: S.Dataset, table: str, subject: str, cfg: FeatureConfig) -> list[StaticColumn]:
    """The attributes of one table the model uses as is: usable categorical ones (with their levels), then numeric."""
    df = ds.reps if table == "reps" else ds.accounts
    cats = [StaticColumn(attribute_column(subject, c), table, c, tuple(sorted(df[c].dropna().unique())))
            for c in ds.categorical(table) if c not in cfg.exclude and usable_category(df[c], cfg)]
    return cats + [StaticColumn(attribute_column(subject, c), table, c) for c in ds.numeric(table) if c not in cfg.exclude]


def _encode(values: pd.Series, levels: tuple | None) -> np.ndarray:
    """A model-ready static column: numbers as they are; categories as their training code, missing or unseen ->
    NaN (LightGBM's missing)."""
    if levels is None:
        return pd.to_numeric(values, errors="coerce").to_numpy(float)
    codes = _codes(values, levels).astype(float)
    return np.where(codes < 0, np.nan, codes)


def _positions(known: np.ndarray, ids, column: str, table: str) -> np.ndarray:
    ids = np.asarray(ids, dtype=str)
    order = np.argsort(known)
    pos = np.searchsorted(known, ids, sorter=order)
    pos = np.clip(pos, 0, len(known) - 1)
    idx = order[pos]
    bad = known[idx] != ids
    if bad.any():
        shown = ", ".join(repr(str(x)) for x in pd.unique(ids[bad])[:5])
        raise SchemaError(
            f"unknown {column} {shown} ({int(bad.sum())} in all): not among the {table} of the data set the model "
            f"scores. Fix: score {table} of that data set (or score a data set that includes them)."
        )
    return idx


# --- counts -> features (one formula for both paths) -------------------------------------------
@dataclass
class Counts:
    """History counts for a batch of rows (n = deals, w = wins). 2-D arrays have one column per level."""

    N: np.ndarray
    W: np.ndarray
    n_r: np.ndarray
    w_r: np.ndarray
    n_a: np.ndarray
    w_a: np.ndarray
    n_ra: np.ndarray
    w_ra: np.ndarray
    dims: dict[str, dict[str, np.ndarray]]  # name -> n_rv, w_rv, x_rv, n_v, w_v, x_v, mix (rows x levels)
    x_r: np.ndarray | float = 0.0  # wins the deal-level values predict above the org's rate (``_deal_excess``)
    x_ra: np.ndarray | float = 0.0


def _rate(wins: np.ndarray, deals: np.ndarray) -> np.ndarray:
    """A shrunk rate; wins net of deal-level ease may leave [0, 1] (a rep losing every easy deal): clipped."""
    return np.clip(wins / deals, RATE_EPS, 1 - RATE_EPS)


def _strength_features(c: Counts, space: FeatureSpace) -> dict[str, np.ndarray]:
    k = space.cfg.prior_deals
    g = laplace_rate(c.W, c.N)
    p_r = _rate(c.w_r - c.x_r + k * g, c.n_r + k)  # net of the rep's deal mix (see the module docstring)
    out = {
        "rep_n": c.n_r.astype(float), "rep_rate": p_r,
        "account_n": c.n_a.astype(float), "account_rate": (c.w_a + k * g) / (c.n_a + k),
        "pair_n": c.n_ra.astype(float), "pair_rate": _rate(c.w_ra - c.x_ra + k * p_r, c.n_ra + k),
    }
    combined = _logit(p_r)
    for d in space.dims:
        x = c.dims[d.name]
        gcol, pcol = g[:, None], p_r[:, None]
        g_v = _rate(x["w_v"] - x["x_v"] + k * gcol, x["n_v"] + k)
        prior = np.clip(pcol + g_v - gcol, 0.01, 0.99)
        s = _rate(x["w_rv"] - x["x_rv"] + k * prior, x["n_rv"] + k)
        mix = x["mix"]
        strength = (mix * s).sum(axis=1)
        out[f"{d.name}_strength"] = strength
        out[f"{d.name}_lift"] = strength - p_r
        out[f"{d.name}_n"] = (mix * x["n_rv"]).sum(axis=1)
        combined = combined + (_logit(strength) - _logit(p_r))
    # naive-Bayes style sum of the per-dimension log-odds lifts: the truth of many orgs is additive
    # in log-odds, which trees approximate poorly from separate features
    out["combined_logit"] = combined
    return out


def _logit(p: np.ndarray) -> np.ndarray:
    return logit(p, RATE_EPS)


def _frame(space: FeatureSpace, r: np.ndarray, a: np.ndarray, counts: Counts,
           joint: dict[str, np.ndarray] | None) -> pd.DataFrame:
    cols = space.static(r, a)
    cols.update(_strength_features(counts, space))
    cols.update(joint or {})
    return pd.DataFrame({name: cols[name] for name in space.catalogue.names}).astype(np.float64)


# --- the joint model (features/joint.py): its inputs from either path ------------------------------
def _event_codes(space: FeatureSpace, deals: pd.DataFrame, r: np.ndarray, a: np.ndarray) -> dict[str, np.ndarray]:
    """Each deal's level code per dimension (its own product for opportunity dimensions); -1 if unknown."""
    return {d.name: _codes(deals[d.column], d.levels) if d.kind == OPPORTUNITY else space.pair_value(d, r, a)
            for d in space.dims}


def _fit_joint(space: FeatureSpace, codes: dict[str, np.ndarray], r: np.ndarray, a: np.ndarray, won: np.ndarray,
               sd: dict[str, float] | None = None, **kw) -> JointFit:
    """``fit_joint`` on the space's reps, accounts and dimensions; priors ``sd``, else the space's (``kw``: learn_sd...)."""
    return fit_joint(r, a, codes, won, len(space.rep_ids), len(space.account_ids),
                     {d.name: space.n_levels(d) for d in space.dims}, sd or space.joint_sd or space.cfg.joint_prior_sd, **kw)


def learn_joint(ds: S.Dataset, cfg: FeatureConfig, deals: pd.DataFrame) -> FeatureSpace:
    """The feature space of ``ds`` with what the joint model learns from ``deals`` (closed opportunities;
    training passes only its training period, so the test period stays unseen):

    - the edges of each numeric band (e.g. employees), by the joint model's evidence among its 5%, 10% ... 95%
      quantiles, unless ``cfg.band_edges`` is ``"quantile"``. The search fits the model once per candidate
      (some 50-70 fits), so beyond ``cfg.band_search_deals`` deals it runs on the deals of a random sample of
      reps (``_search_sample``);
    - the prior sd of each block of effects (empirical Bayes), on all of ``deals``.
    """
    space = FeatureSpace.build(ds, cfg)
    if cfg.joint_prior_sd <= 0 or deals[S.WON].nunique() < 2:
        return space  # nothing to learn from: quantile bands, the configured prior
    r = space.rep_index(deals[S.REP_ID])
    a = space.account_index(deals[S.ACCOUNT_ID])
    won = deals[S.WON].to_numpy(float)
    codes = _event_codes(space, deals, r, a)
    edges = {}
    if cfg.band_edges == "learned" and any(d.kind == BAND for d in space.dims):
        edges = _search_band_edges(ds, space, _search_sample(r, a, won, codes, len(space.rep_ids), len(space.account_ids),
                                                      cfg.band_search_deals))
        space = FeatureSpace.build(ds, cfg, band_edges=edges)
        codes = _event_codes(space, deals, r, a)
    fit = _fit_joint(space, codes, r, a, won, learn_sd=True)
    return FeatureSpace.build(ds, cfg, band_edges=edges, joint_sd=fit.sd)


@dataclass(frozen=True)
class _Deals:
    """Deals as the joint model takes them: rep and account positions among ``n_reps`` and ``n_accounts``."""

    r: np.ndarray
    a: np.ndarray  # account positions (``accounts``: the space's account position of each)
    won: np.ndarray
    codes: dict[str, np.ndarray]
    n_reps: int
    accounts: np.ndarray


def _search_sample(r: np.ndarray, a: np.ndarray, won: np.ndarray, codes: dict[str, np.ndarray], n_reps: int,
                   n_accounts: int, max_deals: int, seed: int = 0) -> _Deals:
    """All deals if at most ``max_deals``; else every deal of reps drawn at random until the next would pass
    ``max_deals``, with reps and accounts renumbered to those drawn and their deals' accounts (so a fit has no
    effect for anyone without a deal in the sample).

    Whole reps, not single deals: the band edges are chosen where reps' strengths differ most, and a rep's
    strength per band is estimated from its own deals, which a deal sample would thin out for every rep."""
    if len(r) <= max_deals:
        return _Deals(r, a, won, codes, n_reps, np.arange(n_accounts))
    order = np.random.default_rng(seed).permutation(n_reps)
    n_take = max(int(np.searchsorted(np.cumsum(np.bincount(r, minlength=n_reps)[order]), max_deals, side="right")), 1)
    drawn = np.sort(order[:n_take])
    keep = np.isin(r, drawn)
    accounts, a_new = np.unique(a[keep], return_inverse=True)
    return _Deals(np.searchsorted(drawn, r[keep]), a_new.ravel(), won[keep], {k: v[keep] for k, v in codes.items()},
                  len(drawn), accounts)


def _search_band_edges(ds: S.Dataset, space: FeatureSpace, deals: _Deals) -> dict[str, tuple]:
    """Each numeric band's edges by the joint model's evidence on ``deals`` (``learn_band_edges``)."""
    cfg = space.cfg
    n_levels = {d.name: space.n_levels(d) for d in space.dims}

    def fit(codes, sd, **kw) -> JointFit:
        return fit_joint(deals.r, deals.a, codes, deals.won, deals.n_reps, len(deals.accounts), n_levels, sd, **kw)

    start = fit(deals.codes, cfg.joint_prior_sd, learn_sd=True)  # priors and a warm start for the trials
    edges = {}
    for d in (d for d in space.dims if d.kind == BAND):
        values = ds.accounts[d.column].to_numpy(float)  # candidates: quantiles over every account, sample or not
        sample_values = values[deals.accounts][deals.a]

        # each trial re-learns the priors (3 evidence updates rank the trials as full convergence did on the
        # demo orgs), the rep x band block starting no lower than the configured prior: with the quantile
        # bands it may have shrunk to nothing
        key = f"rep_level:{d.name}"
        sd = {**start.sd, key: max(start.sd[key], cfg.joint_prior_sd)}

        def evidence(e, d=d, v=sample_values, sd=sd):
            code = np.where(np.isnan(v), -1, np.searchsorted(np.asarray(e), v, side="right"))
            return fit({**deals.codes, d.name: code}, sd, learn_sd=True, max_updates=3, warm=start).evidence

        edges[d.name] = learn_band_edges(values, len(d.levels) + 1, evidence)
    return edges


# --- the scoring path: count tables over all closed history --------------------------------------
@dataclass
class HistorySnapshot:
    """Counts over every closed opportunity: the state a deployed model scores with."""

    N: float
    W: float
    n_r: np.ndarray
    w_r: np.ndarray
    n_a: np.ndarray
    w_a: np.ndarray
    pair_codes: np.ndarray  # sorted r * n_accounts + a
    pair_n: np.ndarray
    pair_w: np.ndarray
    tables: dict[str, dict[str, np.ndarray]]  # dim -> n_rv [R, V], w_rv, x_rv, n_v [V], w_v, x_v, (opportunity) c_av [A, V]
    joint: JointFit | None = None  # the joint model over all of it (None: joint features off)
    x_r: np.ndarray | None = None  # wins the deals' deal-level values predict above the org's rate (``_deal_excess``)
    pair_x: np.ndarray | None = None


def _bincount2(i: np.ndarray, j: np.ndarray, weights, shape) -> np.ndarray:
    ok = (i >= 0) & (j >= 0)
    flat = np.bincount(i[ok] * shape[1] + j[ok], weights=None if weights is None else weights[ok], minlength=shape[0] * shape[1])
    return flat.reshape(shape).astype(float)


def snapshot(space: FeatureSpace, closed: pd.DataFrame) -> HistorySnapshot:
    """Count tables over ``closed`` (validated closed opportunities). Wins are counted as they are; the ``x``
    tables hold the wins the deals' deal-level values predict (``_deal_excess``), which the rates subtract."""
    r = space.rep_index(closed[S.REP_ID])
    a = space.account_index(closed[S.ACCOUNT_ID])
    won = closed[S.WON].to_numpy(float)
    R, A = len(space.rep_ids), len(space.account_ids)
    codes = r.astype(np.int64) * A + a
    uniq, inv = np.unique(codes, return_inverse=True)
    joint = _fit_joint(space, _event_codes(space, closed, r, a), r, a, won) if space.cfg.joint_prior_sd > 0 else None
    excess = _deal_excess(space, closed)
    tables = {}
    for d in space.dims:
        V = space.n_levels(d)
        if d.kind == OPPORTUNITY:
            v = _codes(closed[d.column], d.levels)
            c_av = _bincount2(a, v, None, (A, V))
        else:
            v = space.pair_value(d, r, a)
            c_av = None
        n_rv, w_rv = _bincount2(r, v, None, (R, V)), _bincount2(r, v, won, (R, V))
        x_rv = _bincount2(r, v, excess.behind(d), (R, V))
        t = {"n_rv": n_rv, "w_rv": w_rv, "x_rv": x_rv, "n_v": n_rv.sum(axis=0), "w_v": w_rv.sum(axis=0),
             "x_v": x_rv.sum(axis=0)}
        if c_av is not None:
            t["c_av"] = c_av
        tables[d.name] = t
    return HistorySnapshot(
        N=float(len(won)), W=float(won.sum()),
        n_r=np.bincount(r, minlength=R).astype(float), w_r=np.bincount(r, weights=won, minlength=R),
        n_a=np.bincount(a, minlength=A).astype(float), w_a=np.bincount(a, weights=won, minlength=A),
        pair_codes=uniq, pair_n=np.bincount(inv).astype(float), pair_w=np.bincount(inv, weights=won),
        tables=tables, joint=joint, x_r=np.bincount(r, weights=excess.total, minlength=R),
        pair_x=np.bincount(inv, weights=excess.total, minlength=len(uniq)),
    )


def _mix(c_av: np.ndarray, n_v: np.ndarray) -> np.ndarray:
    """An account's share of deals per level, shrunk with one pseudo-deal toward the global shares."""
    global_share = (n_v + 1e-9) / (n_v + 1e-9).sum(axis=1, keepdims=True)
    return (c_av + global_share) / (c_av.sum(axis=1, keepdims=True) + 1.0)


def pair_features(space: FeatureSpace, snap: HistorySnapshot, r: np.ndarray, a: np.ndarray) -> pd.DataFrame:
    """Features of pairs (rep positions ``r``, account positions ``a``) from the snapshot. Vectorised."""
    m = len(r)
    A = len(space.account_ids)
    codes = r.astype(np.int64) * A + a
    pos = np.clip(np.searchsorted(snap.pair_codes, codes), 0, max(len(snap.pair_codes) - 1, 0))
    hit = (snap.pair_codes[pos] == codes) if len(snap.pair_codes) else np.zeros(m, bool)
    dims, weights = {}, {}
    for d in space.dims:
        t = snap.tables[d.name]
        if d.kind == OPPORTUNITY:
            n_v = np.broadcast_to(t["n_v"], (m, len(t["n_v"])))
            dims[d.name] = {
                "n_rv": t["n_rv"][r], "w_rv": t["w_rv"][r], "x_rv": t["x_rv"][r], "n_v": n_v,
                "w_v": np.broadcast_to(t["w_v"], n_v.shape), "x_v": np.broadcast_to(t["x_v"], n_v.shape),
                "mix": _mix(t["c_av"][a], n_v),
            }
            weights[d.name] = dims[d.name]["mix"]
        else:
            v = space.pair_value(d, r, a)
            weights[d.name] = v
            ok = v >= 0
            vv = np.where(ok, v, 0)
            dims[d.name] = {k: np.where(ok, t[k][r, vv], 0.0)[:, None] for k in ("n_rv", "w_rv", "x_rv")}
            dims[d.name].update({k: np.where(ok, t[k][vv], 0.0)[:, None] for k in ("n_v", "w_v", "x_v")})
            dims[d.name]["mix"] = np.ones((m, 1))
    counts = Counts(
        N=np.full(m, snap.N), W=np.full(m, snap.W),
        n_r=snap.n_r[r], w_r=snap.w_r[r], n_a=snap.n_a[a], w_a=snap.w_a[a],
        n_ra=np.where(hit, snap.pair_n[pos], 0.0), w_ra=np.where(hit, snap.pair_w[pos], 0.0), dims=dims,
        x_r=snap.x_r[r], x_ra=np.where(hit, snap.pair_x[pos], 0.0),
    )
    joint = snap.joint  # None when the joint features are off
    return _frame(space, r, a, counts, None if joint is None else joint.logits(r, a, weights))


# --- the training path: point-in-time counts ------------------------------------------------------
def _asof(events: pd.DataFrame, queries: pd.DataFrame, by: list[str], sums: tuple[str, ...] = (S.WON,)) -> tuple[np.ndarray, ...]:
    """For each query row: deals among ``events`` with equal ``by`` keys and time < query time, and the sum of
    each column of ``sums`` (wins by default) over them."""
    cols = [f"_sum{i}" for i in range(len(sums))]
    ev = events.sort_values([T])
    if by:
        g = ev.groupby(by, sort=False)
        ev = ev.assign(_n=g.cumcount() + 1.0, **{c: g[x].cumsum() for c, x in zip(cols, sums)})
    else:
        ev = ev.assign(_n=np.arange(1, len(ev) + 1, dtype=float), **{c: ev[x].cumsum() for c, x in zip(cols, sums)})
    q = queries[[T] + by].assign(_row=np.arange(len(queries))).sort_values(T)
    merged = pd.merge_asof(q, ev[[T] + by + ["_n"] + cols], on=T, by=by or None, direction="backward",
                           allow_exact_matches=False)
    merged = merged.sort_values("_row")
    return tuple(merged[c].fillna(0).to_numpy(float) for c in ["_n"] + cols)


@dataclass(frozen=True)
class DealExcess:
    """Per closed deal: the wins its deal-level values predict above the org's rate (``total``), and, per
    opportunity dimension, above the rate of its own value of that dimension (``beyond[d]``: the ease of its other
    deal-level values, given that one). All zero without opportunity dimensions."""

    total: np.ndarray
    beyond: dict[str, np.ndarray]

    def behind(self, d: Dimension) -> np.ndarray:
        """What dimension ``d``'s counts subtract: an opportunity dimension keeps its own ease, others keep none."""
        return self.beyond.get(d.name, self.total)


def _deal_excess(space: FeatureSpace, closed: pd.DataFrame) -> DealExcess:
    """``DealExcess`` of ``closed``, each deal's from the deals closed strictly before it was created.

    The deal's expected rate is the shrunk rate of its *combination* of deal-level values (deal type x lead source x
    product ...), shrunk (``k = prior_deals``) toward the sum of the values' separate lifts, ``g + sum_d (g_v - g)``
    (each ``g_v`` shrunk toward the org's rate ``g``): correlated attributes (a lead source that is "renewal" for
    every renewal) are not counted twice where the history shows their combinations, and a rare combination falls
    back on its parts. Point-in-time per deal, so the training and scoring paths sum the very same numbers, and a
    deal's excess never changes as later deals arrive."""
    dims = [d for d in space.dims if d.kind == OPPORTUNITY]
    if not dims:
        return DealExcess(np.zeros(len(closed)), {})
    k = space.cfg.prior_deals
    ev = pd.DataFrame({T: closed[S.CLOSED_AT].to_numpy(), S.WON: closed[S.WON].to_numpy(float)})
    q = pd.DataFrame({T: closed[S.CREATED_AT].to_numpy()})
    n, w = _asof(ev, q, [])
    g = laplace_rate(w, n)
    codes = np.column_stack([_codes(closed[d.column], d.levels) for d in dims])
    own = {}
    for d, v in zip(dims, codes.T):
        n_v, w_v = _asof(ev.assign(v=v), q.assign(v=v), ["v"])
        own[d.name] = np.where(v >= 0, (w_v + k * g) / (n_v + k), g)  # a missing value: no ease either way
    parts = np.clip(g + sum(own[d.name] - g for d in dims), RATE_EPS, 1 - RATE_EPS)
    expected = parts  # one attribute: its combinations are its values, already counted
    if len(dims) > 1 and len(closed):
        combo = np.unique(codes, axis=0, return_inverse=True)[1].ravel()
        n_c, w_c = _asof(ev.assign(c=combo), q.assign(c=combo), ["c"])
        expected = (w_c + k * parts) / (n_c + k)
    return DealExcess(expected - g, {d.name: expected - own[d.name] for d in dims})


def point_in_time_features(space: FeatureSpace, closed: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Features of ``rows`` (rep_id, account_id, created_at) from the ``closed`` deals closed strictly
    before each row's ``created_at``. Vectorised: one ``merge_asof`` per count, none per row."""
    r_e = space.rep_index(closed[S.REP_ID])
    a_e = space.account_index(closed[S.ACCOUNT_ID])
    r_q = space.rep_index(rows[S.REP_ID])
    a_q = space.account_index(rows[S.ACCOUNT_ID])
    excess = _deal_excess(space, closed)
    ev = pd.DataFrame({T: closed[S.CLOSED_AT].to_numpy(), S.WON: closed[S.WON].to_numpy(float), X: excess.total,
                       "r": r_e, "a": a_e})
    q = pd.DataFrame({T: rows[S.CREATED_AT].to_numpy(), "r": r_q, "a": a_q})
    N, W = _asof(ev, q, [])
    n_r, w_r, x_r = _asof(ev, q, ["r"], (S.WON, X))
    n_a, w_a = _asof(ev, q, ["a"])
    n_ra, w_ra, x_ra = _asof(ev, q, ["r", "a"], (S.WON, X))
    dims = {d.name: _dimension_counts_asof(space, d, closed, ev.assign(**{X: excess.behind(d)}), q, rows)
            for d in space.dims}
    counts = Counts(N=N, W=W, n_r=n_r, w_r=w_r, n_a=n_a, w_a=w_a, n_ra=n_ra, w_ra=w_ra, dims=dims, x_r=x_r, x_ra=x_ra)
    joint = None
    if space.cfg.joint_prior_sd > 0:
        weights = {d.name: dims[d.name]["mix"] if d.kind == OPPORTUNITY else space.pair_value(d, r_q, a_q) for d in space.dims}
        joint = _joint_point_in_time(space, closed, r_e, a_e, q[T].to_numpy(), r_q, a_q, weights)
    return _frame(space, r_q, a_q, counts, joint)


def _dimension_counts_asof(space: FeatureSpace, d: Dimension, closed: pd.DataFrame, ev: pd.DataFrame, q: pd.DataFrame,
                           rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """One dimension's counts for the query rows ``q`` (rows x levels), from the events ``ev`` (time, won, excess
    ``X``, rep ``r``, account ``a``) closed before each row's time; the layout ``pair_features`` builds."""
    m = len(q)
    if d.kind == OPPORTUNITY:
        v_e = _codes(closed[d.column], d.levels)
        V = len(d.levels)
        cols = {k: np.zeros((m, V)) for k in ("n_rv", "w_rv", "x_rv", "n_v", "w_v", "x_v", "c_av")}
        for j in range(V):
            sub = ev[v_e == j]
            cols["n_rv"][:, j], cols["w_rv"][:, j], cols["x_rv"][:, j] = _asof(sub, q, ["r"], (S.WON, X))
            cols["n_v"][:, j], cols["w_v"][:, j], cols["x_v"][:, j] = _asof(sub, q, [], (S.WON, X))
            cols["c_av"][:, j], _ = _asof(sub, q, ["a"])
        c_av = cols.pop("c_av")
        own = _codes(rows[d.column], d.levels) if d.column in rows.columns else np.full(m, -1)
        # a deal's own product is known when it is created: use it; rows without one use the account's mix
        cols["mix"] = np.where((own >= 0)[:, None], np.eye(V)[np.maximum(own, 0)], _mix(c_av, cols["n_v"]))
        return cols
    r_e, a_e = ev["r"].to_numpy(), ev["a"].to_numpy()
    ev_d = ev.assign(v=space.pair_value(d, r_e, a_e))
    q_d = q.assign(v=space.pair_value(d, q["r"].to_numpy(), q["a"].to_numpy()))
    ok = (q_d["v"] >= 0).to_numpy()
    n_rv, w_rv, x_rv = _asof(ev_d, q_d, ["r", "v"], (S.WON, X))
    n_v, w_v, x_v = _asof(ev_d, q_d, ["v"], (S.WON, X))
    out = {k: np.where(ok, x, 0.0)[:, None] for k, x in
           (("n_rv", n_rv), ("w_rv", w_rv), ("x_rv", x_rv), ("n_v", n_v), ("w_v", w_v), ("x_v", x_v))}
    out["mix"] = np.ones((m, 1))
    return out


def _joint_point_in_time(space: FeatureSpace, closed: pd.DataFrame, r_e, a_e, t_q: np.ndarray, r_q, a_q,
                         weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Joint-model features of query rows, from the model refitted at the start of every calendar period of
    ``cfg.joint_refit_months`` months (a quarter by default).

    A row created in a period uses the fit on the deals closed strictly before that period began: it never
    sees a deal closed on or after its creation, and may miss deals closed earlier in its own period (the
    price of not refitting per row). The periods are fixed by the calendar, not by the batch of rows or by
    the history, so a row gets the same features whichever rows it is scored with and whatever deals come
    later; a row created in a period that starts after every close gets the scoring features.
    """
    if len(t_q) == 0:
        n_levels = {d.name: space.n_levels(d) for d in space.dims}
        return JointFit.empty(len(space.rep_ids), len(space.account_ids), n_levels).logits(r_q, a_q, weights)
    t_e = closed[S.CLOSED_AT].to_numpy()
    won = closed[S.WON].to_numpy(float)
    codes = _event_codes(space, closed, r_e, a_e)
    start = _period_start(t_q, space.cfg.joint_refit_months)
    out: dict[str, np.ndarray] = {}
    for b in np.unique(start):
        rows = np.flatnonzero(start == b)
        seen = t_e < b
        fit = _fit_joint(space, {k: v[seen] for k, v in codes.items()}, r_e[seen], a_e[seen], won[seen])
        for k, v in fit.logits(r_q[rows], a_q[rows], {k: w[rows] for k, w in weights.items()}).items():
            out.setdefault(k, np.empty(len(t_q)))[rows] = v
    return out


def _period_start(t: np.ndarray, months: int) -> np.ndarray:
    """The first instant of the calendar period of ``months`` months (counted from January) holding each time."""
    ts = pd.DatetimeIndex(t)
    m = ts.year.to_numpy() * 12 + ts.month.to_numpy() - 1
    m0 = m - m % months
    return pd.to_datetime(pd.DataFrame({"year": m0 // 12, "month": m0 % 12 + 1, "day": 1})).to_numpy()
