"""From a data set and a P(win) matrix to a proposed assignment with its summary. Pure functions."""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd

from repfit import schema as S
from repfit.assign.bands import build_bands, metric_weights, parse_balance
from repfit.assign.families import collapse
from repfit.assign.problem import Band, Problem, check_feasible, check_match_values
from repfit.assign.solvers import Solution, solve
from repfit.config import OBJECTIVES, AssignConfig
from repfit.errors import ConfigError, InfeasibleAssignment, SolverError
from repfit.messages import listed



@dataclass(frozen=True)
class Spread:
    """How a per-rep figure spreads across reps."""

    min: float
    max: float
    cv: float  # coefficient of variation (std / mean; 0 when the mean is 0)


@dataclass(frozen=True)
class BandSummary:
    """How the plan sits in one balance band: reps outside it (0 for a solved plan), and each rep's total as a
    share of its target, today and in the plan; ``price``: the uplift the plan gives up for this band (the best
    uplift without it minus the plan's; NaN when not measured)."""

    metric: str
    tolerance: float | None
    reps_outside_after: int
    reps_outside_before: int
    ratio_min_after: float
    ratio_max_after: float
    ratio_min_before: float
    ratio_max_before: float
    price: float = float("nan")


@dataclass(frozen=True)
class PlanConstraints:
    """The constraints a plan was solved under."""

    require_match: tuple[str, ...]
    balance_tiers: bool
    continuity: float
    max_moves: int | None
    locked: int  # accounts locked to their current rep
    balance: tuple[str, ...] = ()  # the bands in force ("accounts=20%"...)
    capacity_unit: str = "accounts"
    families: int = 0  # account families kept together (0: none, or split)
    time_limit: float | None = None  # seconds given to the solves (None: each solver's default)


@dataclass(frozen=True)
class PlanSummary:
    """The figures of a plan: how it was solved, its value against today's, and how evenly it spreads.

    ``spread_before`` / ``spread_after`` map a measure (``load``, ``expected_value``, ``tier_<T>``) to its
    spread across reps today / in the plan. ``to_dict()`` gives the JSON form (``*_summary.json``).
    """

    objective: str
    solver: str
    certified_optimal: bool
    solver_notes: tuple[str, ...]
    solve_seconds: float
    accounts: int
    reps: int
    accounts_with_current_rep: int
    expected_value_current: float
    expected_value_proposed: float
    uplift: float
    uplift_pct: float  # NaN when today's expected value is 0
    expected_wins_current: float
    expected_wins_proposed: float
    moves: int
    constraints: PlanConstraints
    spread_after: dict[str, Spread]
    spread_before: dict[str, Spread]
    bands: tuple[BandSummary, ...] = ()
    gap: float | None = None  # relative optimality gap of the solution (0: optimal), when the solver states one

    def to_dict(self) -> dict:
        """Plain JSON-ready values (lists for tuples), with the keys and order of the summary file."""
        d = asdict(self)
        d["solver_notes"] = list(self.solver_notes)
        d["constraints"]["require_match"] = list(self.constraints.require_match)
        d["constraints"]["balance"] = list(self.constraints.balance)
        d["bands"] = [asdict(b) for b in self.bands]
        return d


@dataclass(frozen=True, eq=False)
class Plan:
    """A solved assignment: its tables, its summary, and the problem and solution it came from."""

    assignment: pd.DataFrame  # account_id, rep_id, previous_rep_id, p_win, expected_value, moved, tier
    reps: pd.DataFrame  # per rep: capacity, load / expected value before and after, tier mix before and after
    summary: PlanSummary
    solution: Solution = field(repr=False)
    problem: Problem = field(repr=False)  # as built from the data and options (for further solves on it)
    # a plan on candidates by expected value: each rep's price (LP dual of its capacity), for `score --plan`
    prices: pd.Series | None = field(default=None, repr=False)


def current_rep_index(ds: S.Dataset) -> np.ndarray:
    """(A,) int: the position in ``ds.reps`` of each account's current rep, -1 for an account without one."""
    return pd.Index(ds.reps[S.REP_ID]).get_indexer(ds.accounts[S.CURRENT_REP_ID].fillna("\0"))


def check_options(ds: S.Dataset, cfg: AssignConfig) -> None:
    """The options' own checks, before any problem is built (on every pair or on candidates alone).

    Raises
    ------
    ConfigError
        A bad objective, time limit or continuity bonus, or a ``require_match`` attribute a table lacks.
    """
    if cfg.objective not in OBJECTIVES:
        raise ConfigError(f"objective {cfg.objective!r} is not one of {', '.join(OBJECTIVES)}.", option="objective")
    if cfg.time_limit is not None and not (math.isfinite(cfg.time_limit) and cfg.time_limit > 0):
        raise ConfigError(f"the time limit must be a number of seconds above 0 (got {cfg.time_limit}). Fix: e.g. 240, "
                          "or leave it out for each solver's default.", option="time_limit")
    if not (math.isfinite(cfg.continuity) and cfg.continuity >= 0):  # nan passes a plain "< 0" test
        raise ConfigError(f"the continuity bonus must be a finite number, 0 or more (got {cfg.continuity}). "
                          "Fix: e.g. 0.05 for a 5% bonus on keeping the current rep.", option="continuity")
    for attr in cfg.require_match:
        for table, df in (("reps", ds.reps), ("accounts", ds.accounts)):
            if attr not in df.columns:
                raise ConfigError(
                    f"{ds.paths[table]} has no column '{attr}' (found: {', '.join(c for c in df.columns)}). "
                    "Fix: name an attribute both tables carry.", option="require_match"
                )


def build_problem(ds: S.Dataset, p_win: np.ndarray, cfg: AssignConfig, candidates=None) -> tuple[Problem, dict]:
    """The assignment problem of ``ds`` under ``cfg``, before any feasibility check.

    Parameters
    ----------
    ds : the data set (reps, accounts).
    p_win : (A, R) P(win) of each pair, in ``ds`` order.
    cfg : the objective and constraints (``cfg.solver`` is not used here).
    candidates : ``repfit.scores_io.Candidates`` when ``p_win`` holds only those pairs: the others are not allowed.

    Returns
    -------
    (Problem, match) : the problem, and for each ``require_match`` attribute its (rep values (R,), account
    values (A,)) as strings, for ``check_feasible``'s messages.

    Raises
    ------
    ConfigError
        A bad objective or continuity bonus, or a ``require_match`` attribute a table lacks.
    """
    check_options(ds, cfg)
    reps, accs = ds.reps, ds.accounts
    potential = accs[S.POTENTIAL].to_numpy(float)
    values = p_win * (potential[:, None] if cfg.objective == "expected_value" else 1.0)
    current = current_rep_index(ds)
    allowed, match = None, {}
    for attr in cfg.require_match:
        rv, av = reps[attr].astype(str).to_numpy(), accs[attr].astype(str).to_numpy()
        ok = av[:, None] == rv[None, :]
        allowed = ok if allowed is None else allowed & ok
        match[attr] = (rv, av)
    if candidates is not None:  # pairs left out of a top-K scores file are not allowed (their bound is checked after)
        allowed = candidates.mask() if allowed is None else allowed & candidates.mask()
    tiers = tier_names = None
    if cfg.balance_tiers:
        tier_names, tiers = np.unique(accs[S.TIER].astype(str).to_numpy(), return_inverse=True)
    capacity, bands = _capacity(ds, cfg)
    prob = Problem(
        values=values, capacity=capacity, current=current,
        locked=accs[S.LOCKED].to_numpy(bool), allowed=allowed, tiers=tiers, continuity=cfg.continuity,
        max_moves=cfg.max_moves, rep_names=reps[S.REP_ID].to_numpy(str), account_names=accs[S.ACCOUNT_ID].to_numpy(str),
        tier_names=tier_names, bands=bands + _balance_bands(ds, p_win, cfg, [s for s in parse_balance(cfg.balance)
                                                                            if s.metric != "expected_value"]),
    )
    return prob, match


def _capacity(ds: S.Dataset, cfg: AssignConfig) -> tuple[np.ndarray, tuple[Band, ...]]:
    """Each rep's capacity: a count of accounts, or (``capacity_unit = "workload"``) a workload limit, which is a
    band on the accounts' workload with no lower bound (a generalised assignment problem)."""
    cap = ds.reps[S.CAPACITY].to_numpy(np.int64)
    if cfg.capacity_unit == "accounts":
        return cap, ()
    if cfg.capacity_unit != "workload":
        raise ConfigError(f"capacity unit {cfg.capacity_unit!r} is not accounts or workload.", option="capacity_unit")
    work = metric_weights(ds, "workload", np.empty((0, 0)))
    A = len(ds.accounts)
    return np.full(len(cap), A, np.int64), (Band("workload capacity", work, np.zeros(len(cap)), cap.astype(float)),)


def _balance_bands(ds: S.Dataset, p_win: np.ndarray, cfg: AssignConfig, specs, expected_total=None) -> tuple[Band, ...]:
    return build_bands(ds, p_win, tuple(specs), expected_total)


def _spread(x: np.ndarray) -> Spread:
    mean = float(np.mean(x)) if len(x) else 0.0
    return Spread(min=float(np.min(x)), max=float(np.max(x)), cv=float(np.std(x) / mean) if mean else 0.0)


def _spreads(per_rep: pd.DataFrame, tiers: list[str], when: str) -> dict[str, Spread]:
    """Spread across reps of load, expected value and each tier's count, ``when`` = "before" or "after"."""
    cols = {"load": f"load_{when}", "expected_value": f"ev_{when}", **{f"tier_{t}": f"tier_{t}_{when}" for t in tiers}}
    return {name: _spread(per_rep[col].to_numpy()) for name, col in cols.items()}


def plan_assignment(ds: S.Dataset, p_win: np.ndarray, cfg: AssignConfig, candidates=None) -> Plan:
    """Solve the assignment for ``ds`` given P(win) per (account, rep) and summarise it.

    Parameters
    ----------
    ds : the data set (reps, accounts).
    p_win : (A, R) P(win) of each pair, in ``ds`` order.
    cfg : the objective, constraints, solver and time limit (``cfg.time_limit`` seconds for the solves, band
        prices included: the solve gets ``MAIN_SHARE`` of it when bands are priced; None: each solver's default).
    candidates : ``repfit.scores_io.Candidates`` when ``p_win`` holds only those pairs (a top-K scores file): the
        plan is solved on them and proven optimal over all pairs from their left-out bound, or its gap reported.

    Returns
    -------
    Plan : the assignment table (one row per account), the per-rep table, the summary, and the problem and
    solution they came from.

    Raises
    ------
    ConfigError
        A bad objective or continuity bonus, or a ``require_match`` attribute a table lacks.
    InfeasibleAssignment
        Before solving, when the constraints cannot all hold (the shortfall and the fix).
    """
    if candidates is not None and not (blockers := candidate_blockers(ds, cfg)):
        return _plan_on_candidates(ds, candidates, cfg)
    if candidates is not None:  # constraints the flow on candidates cannot hold: every pair in memory
        p_win = _dense_candidates(ds, candidates, blockers)
    prob, match = build_problem(ds, p_win, cfg, candidates)
    t0 = time.perf_counter()
    ev = [s for s in parse_balance(cfg.balance) if s.metric == "expected_value"]
    priced = sum(b.tolerance is not None for b in prob.bands) + len(ev) if _priceable(prob) else 0
    budget = _Budget(cfg.time_limit, priced=priced, start=t0)
    if ev:  # its target: each rep's share of the plan's total expected value without that band
        check_feasible(prob, match)
        first = solve(prob, cfg.solver, time_limit=budget.main(share=0.5)).assignment
        total = float((p_win * ds.accounts[S.POTENTIAL].to_numpy(float)[:, None])[np.arange(len(first)), first].sum())
        prob = replace(prob, bands=prob.bands + _balance_bands(ds, p_win, cfg, ev, total))
    check_feasible(prob, match)
    solving, expand = _families(ds, prob, cfg)
    unit_sol = _solve_on(solving, cfg.solver, candidates, time_limit=budget.main())
    x = expand(unit_sol.assignment)
    sol = replace(unit_sol, assignment=x, int_objective=prob.int_objective(x))
    if candidates is not None:
        sol = replace(sol, certified=False, notes=(*sol.notes, f"not proven over all pairs: solved on the candidates "
                      f"only; the left-out bound is proven without {listed(blockers)}"))
    if prob.max_moves is not None and prob.moves(x) > prob.max_moves:  # a solver must never hand this back
        raise SolverError(f"the {sol.solver} solver returned {prob.moves(x):,} moves, over the budget of "
                          f"{prob.max_moves:,}. Fix: report this; solve with --solver milp meanwhile.", option="solver")
    seconds = time.perf_counter() - t0
    rows, cur = np.arange(len(x)), prob.current
    assignment, per_rep, tiers = _tables(ds, x, cur, p_win[rows, x],
                                         np.where(cur >= 0, p_win[rows, np.maximum(cur, 0)], np.nan), prob.bands)
    summary = _summary(cfg, prob, sol, seconds, assignment, per_rep, tiers)
    families = 0 if solving is prob else int(len(set(family_codes(ds).tolist()) - {-1}))
    summary = replace(summary, constraints=replace(summary.constraints, families=families))
    prices, unpriced = _prices(solving, unit_sol, cfg.solver, budget)
    bands = tuple(band_summary(b, sol.assignment, prob.current, price) for b, price in zip(prob.bands, prices))
    summary = replace(summary, solver_notes=summary.solver_notes + _price_notes(prob, cfg, unpriced))
    return Plan(assignment, per_rep, replace(summary, bands=bands, gap=sol.gap), sol, prob)


def candidate_blockers(ds: S.Dataset, cfg: AssignConfig) -> list[str]:
    """What a plan on candidate pairs alone (``repfit.assign.sparse``) cannot hold: the constraints whose solvers
    work on every pair. Empty: the plan is a flow on the candidates, with the relaxed bound over all pairs."""
    specs = parse_balance(cfg.balance)
    weighted = any(s.metric == "expected_value" for s in specs) or not all(
        b.is_count for b in _balance_bands(ds, None, cfg, [s for s in specs if s.metric != "expected_value"]))
    return [what for what, on in (
        ("tier balance", cfg.balance_tiers), ("weighted balance bands", weighted),
        ("a move budget", cfg.max_moves is not None), ("workload capacity", cfg.capacity_unit == "workload"),
        ("account families kept together", not cfg.split_families and bool((family_codes(ds) >= 0).any())),
        (f"the {cfg.solver} solver", cfg.solver not in ("auto", "flow", "pruned")),
    ) if on]


DENSE_CANDIDATES_MAX_PAIRS = 250_000_000  # (accounts, reps) arrays for candidates under other constraints: ~6 GiB


def _dense_candidates(ds: S.Dataset, candidates, blockers: list[str]) -> np.ndarray:
    """(A, R) P(win) of the candidates (0 elsewhere), for constraints that need every pair; refused when too big."""
    A, R = candidates.shape
    if A * R > DENSE_CANDIDATES_MAX_PAIRS:
        raise ConfigError(f"{listed(blockers)} need(s) every account-rep pair in memory, and this plan has {A * R:,} "
                          f"(above {DENSE_CANDIDATES_MAX_PAIRS:,}); on candidates alone repfit holds capacity, accounts "
                          "bands, locks, the required match and continuity. Fix: drop those options, or plan each "
                          "region separately.", option="balance")
    return candidates.dense()


def _plan_on_candidates(ds: S.Dataset, cand, cfg: AssignConfig) -> Plan:
    """``plan_assignment`` from a top-K scores file, on its pairs alone (``repfit.assign.sparse``): no (accounts,
    reps) array, so 10,000 reps x 1,000,000 accounts fit in memory."""
    from repfit.assign import sparse as sp

    check_options(ds, cfg)  # as build_problem does (review 16: a missing --require-match column was a KeyError)
    t0 = time.perf_counter()
    A, R = cand.shape
    capacity, _ = _capacity(ds, cfg)
    bands = _balance_bands(ds, None, cfg, parse_balance(cfg.balance))
    accs = ds.accounts
    prob = sp.shape_only(dict(capacity=capacity, current=current_rep_index(ds), locked=accs[S.LOCKED].to_numpy(bool),
                              continuity=cfg.continuity, rep_names=ds.reps[S.REP_ID].to_numpy(str),
                              account_names=accs[S.ACCOUNT_ID].to_numpy(str), bands=bands), A, R)
    sp.check_counts(prob)
    check_match_values(prob, {a: (ds.reps[a].astype(str).to_numpy(), accs[a].astype(str).to_numpy())
                              for a in cfg.require_match})  # a match no K satisfies is not the candidates' fault
    potential = accs[S.POTENTIAL].to_numpy(float) if cfg.objective == "expected_value" else None
    arcs = sp.candidate_arcs(cand, potential, prob, sp.require_match_filter(ds, cfg.require_match))
    sp.unmatched_accounts(arcs, prob)
    left = sp.left_out_bounds(cand, arcs, prob, potential)
    sol = sp.solve_candidates(prob, arcs, left, cand.top_k)
    x, cur, rows = sol.assignment, prob.current, np.arange(A)
    assignment, per_rep, tiers = _tables(ds, x, cur, sp.p_win_at(arcs, rows, x, R), sp.current_p_win(cand, cur),
                                         bands)
    scale = sp.value_scale(arcs, left, A, R)
    prices = None if potential is None else pd.Series(
        sp.edge_prices(prob, arcs, sp.int_gains(arcs, prob, scale), x) / scale, index=ds.reps[S.REP_ID].to_numpy(str),
        name="price").rename_axis(S.REP_ID)
    certificate = _rounding_certificate(sp.best_per_account(arcs, A), 2 * A / scale, scale) if sol.certified \
        else (False, ())
    flat = bool(len(arcs.value) == 0 or np.ptp(arcs.value) == 0)
    band_prices, notes = _prices_on_candidates(prob, arcs, sol, potential)
    summary = _summary(cfg, prob, sol, time.perf_counter() - t0, assignment, per_rep, tiers, certificate, flat)
    summary = replace(summary, solver_notes=summary.solver_notes + notes, gap=sol.gap,
                      bands=tuple(band_summary(b, x, cur, pr) for b, pr in zip(bands, band_prices)))
    return Plan(assignment, per_rep, summary, sol, prob, prices)


CANDIDATE_PRICE_MAX_ARCS = 5_000_000  # above, the accounts band is not priced (another flow as large as the plan's)


def _prices_on_candidates(prob: Problem, arcs, sol: Solution, potential) -> tuple[list[float], tuple[str, ...]]:
    """Each band's price on the candidates: the flow's value without it minus the plan's (objective units)."""
    from repfit.assign import sparse as sp

    if not any(b.tolerance is not None for b in prob.bands):
        return [float("nan")] * len(prob.bands), ()
    if len(arcs.acc) > CANDIDATE_PRICE_MAX_ARCS:
        return [float("nan")] * len(prob.bands), (f"band prices not measured above {CANDIDATE_PRICE_MAX_ARCS:,} "
                                                  f"candidate pairs (this plan has {len(arcs.acc):,}): each is another "
                                                  "flow as large as the plan's",)
    A, R = prob.shape
    raw = arcs.p_win * (potential[arcs.acc] if potential is not None else 1.0)
    value = float(raw[arcs.find(np.arange(A), sol.assignment, R)].sum())
    out = []
    for i, band in enumerate(prob.bands):
        if band.tolerance is None:
            out.append(float("nan"))
            continue
        without = replace(prob, bands=prob.bands[:i] + prob.bands[i + 1:])
        x = sp.flow_on_candidates(without, arcs)
        out.append(max(float(raw[arcs.find(np.arange(A), x, R)].sum()) - value, 0.0))
    return out, ("band prices measured on the candidate pairs",)


def _price_notes(prob: Problem, cfg: AssignConfig, unpriced: list[str]) -> tuple[str, ...]:
    """Why band prices are missing from the summary, if they are: the plan is too large, or no time was left."""
    if not _priceable(prob) and any(b.tolerance is not None for b in prob.bands):
        return (f"band prices not measured above {PRICE_MAX_PAIRS:,} account-rep pairs (this plan has "
                f"{prob.shape[0] * prob.shape[1]:,}): each is another solve of the whole plan, which would double its "
                "time and memory; plan once without the band to measure one",)
    if unpriced:
        return (f"price of the {listed(unpriced)} band(s) not measured: no time left within the time limit of "
                f"{cfg.time_limit:g} s",)
    return ()


PRICE_MAX_PAIRS = 20_000_000  # above, band prices are not measured: at 1,000 x 100,000 they took 550 s and 9.6 GB
MAIN_SHARE = 0.8  # of a time limit, for the plan's solve when bands are priced; the prices share the rest
MIN_PRICE_SECONDS = 1.0  # a band price given less time than this is not measured


@dataclass(frozen=True)
class _Budget:
    """How a plan's time limit (seconds from ``start``; None: each solver's default) is shared: the plan's solve
    gets ``MAIN_SHARE`` of it when bands are priced (all of it otherwise), the band prices what is left."""

    limit: float | None
    priced: int
    start: float

    def main(self, share: float = 1.0) -> float | None:
        """Seconds for the plan's solve (``share`` of what is left of its part, for a first of two solves)."""
        if self.limit is None:
            return None
        end = self.start + self.limit * (MAIN_SHARE if self.priced else 1.0)
        return round(max(MIN_PRICE_SECONDS, share * (end - time.perf_counter())), 1)

    def price(self, left: int) -> float | None:
        """Seconds for one band price with ``left`` prices to go (this one included); 0: no time left."""
        if self.limit is None:
            return PRICE_TIME_LIMIT
        share = (self.start + self.limit - time.perf_counter()) / max(left, 1)
        return round(share, 1) if share >= MIN_PRICE_SECONDS else 0.0


def _solve_on(prob: Problem, solver: str, candidates, time_limit: float | None = None) -> Solution:
    """``solve``; on candidates, an account that cannot be placed among them says so (not the constraints)."""
    try:
        return solve(prob, solver, time_limit=time_limit)
    except InfeasibleAssignment as exc:
        if candidates is None:
            raise
        raise InfeasibleAssignment(f"{exc} The scores hold only each account's top {candidates.top_k or 'K'} reps "
                                   "(and its current one): the popular reps fill up. Fix: score with a larger --top-k, "
                                   "or without it.", option=exc.option) from None


def family_codes(ds: S.Dataset) -> np.ndarray:
    """(A,) family code of each account, -1 for none: accounts sharing a ``parent_account_id``, with the parent
    account itself when it is in the table."""
    accs = ds.accounts
    if S.PARENT_ACCOUNT_ID not in accs.columns:
        return np.full(len(accs), -1, np.int64)
    parent = accs[S.PARENT_ACCOUNT_ID].astype("string")
    ids = accs[S.ACCOUNT_ID].astype("string")
    key = parent.where(parent.notna(), ids.where(ids.isin(set(parent.dropna())), pd.NA))
    return pd.factorize(key, use_na_sentinel=True)[0].astype(np.int64)


def _families(ds: S.Dataset, prob: Problem, cfg: AssignConfig):
    """The problem to solve (one unit per account family unless ``split_families``) and the map back to accounts."""
    family = family_codes(ds)
    if cfg.split_families or (family < 0).all():
        return prob, lambda x: x
    solving, expand = collapse(prob, family)
    check_feasible(solving)
    return solving, expand


PRICE_TIME_LIMIT = 15.0  # seconds for each "without this band" MILP: a price is a measure, not the plan


def _priceable(prob: Problem) -> bool:
    """Whether the bands of ``prob`` are priced (at most ``PRICE_MAX_PAIRS`` account-rep pairs)."""
    return prob.shape[0] * prob.shape[1] <= PRICE_MAX_PAIRS


def _prices(prob: Problem, sol: Solution, solver: str, budget: _Budget) -> tuple[list[float], list[str]]:
    """The price of each band: the best value without it (the other constraints kept) minus the plan's value, in
    objective units (expected value or wins); NaN where that solve fails. Each solve without a band gets
    ``PRICE_TIME_LIMIT`` seconds, or under a time limit its share of what is left of it; where it is a MILP or the
    balance solver stopped at that limit, its value may fall short of the best, so the price is a lower bound
    within that solve's gap. Hard limits (workload capacity) are constraints, not choices: not priced.

    Returns the prices (one per band) and the metrics of the bands left unpriced for lack of time; all NaN above
    ``PRICE_MAX_PAIRS`` account-rep pairs."""
    if not _priceable(prob):
        return [float("nan")] * len(prob.bands), []
    value = float(prob.values[np.arange(len(sol.assignment)), sol.assignment].sum())
    out, unpriced = [], []
    left = sum(b.tolerance is not None for b in prob.bands)
    for i, band in enumerate(prob.bands):
        if band.tolerance is None:
            out.append(float("nan"))
            continue
        limit, left = budget.price(left), left - 1
        if limit == 0.0:
            out.append(float("nan"))
            unpriced.append(band.metric)
            continue
        without = replace(prob, bands=prob.bands[:i] + prob.bands[i + 1:])
        try:
            alt = solve(without, solver, time_limit=limit)
            x = alt.assignment
            price = float(prob.values[np.arange(len(x)), x].sum()) - value
            # dropping a band cannot lower the optimum: a negative difference is the two solves' gaps showing
            slack = ((sol.gap or 0.0) + (alt.gap or 0.0)) * abs(value) + 1e-9 * max(1.0, abs(value))
            out.append(0.0 if -slack <= price < 0 else price)
        except (InfeasibleAssignment, SolverError):
            out.append(float("nan"))
    return out, unpriced


def band_key(band: Band) -> str:
    """The per-rep table's column stem for a band: ``potential``, ``workload_capacity``, ``tier_A``..."""
    return re.sub(r"[^0-9A-Za-z]+", "_", band.metric).strip("_")


def band_columns(band: Band, x: np.ndarray, cur: np.ndarray) -> dict[str, np.ndarray]:
    """Each rep's total of the band's metric before and after, and its bounds and target."""
    k, has = band_key(band), cur >= 0
    before = Band(band.metric, band.weights[has], band.lower, band.upper).totals(cur[has]) if band.weights.ndim == 1 \
        else np.bincount(cur[has], weights=band.weights[np.flatnonzero(has), cur[has]], minlength=len(band.lower))
    out = {f"{k}_before": before, f"{k}_after": band.totals(x), f"{k}_lower": band.lower, f"{k}_upper": band.upper}
    if band.target is not None:
        out[f"{k}_target"] = band.target
    return out


def band_summary(band: Band, x: np.ndarray, cur: np.ndarray, price: float) -> BandSummary:
    cols = band_columns(band, x, cur)
    k = band_key(band)
    ref = band.target if band.target is not None else band.upper
    ratio = {w: cols[f"{k}_{w}"] / np.where(ref > 0, ref, np.nan) for w in ("before", "after")}
    outside = {w: int(((cols[f"{k}_{w}"] < band.lower - 1e-9 * np.abs(band.lower) - 1e-9)
                       | (cols[f"{k}_{w}"] > band.upper + 1e-9 * np.abs(band.upper) + 1e-9)).sum()) for w in ratio}
    return BandSummary(band.metric, band.tolerance, outside["after"], outside["before"],
                       float(np.nanmin(ratio["after"])), float(np.nanmax(ratio["after"])),
                       float(np.nanmin(ratio["before"])), float(np.nanmax(ratio["before"])), price)


def _assignment_table(ds: S.Dataset, x: np.ndarray, cur: np.ndarray, p_new: np.ndarray,
                      p_cur: np.ndarray) -> pd.DataFrame:
    """One row per account: its proposed and previous rep, P(win) and expected value, whether it moved, its tier.
    ``p_new``, ``p_cur``: P(win) of each account's pair in the plan and today (NaN: no current rep)."""
    accs = ds.accounts
    potential = accs[S.POTENTIAL].to_numpy(float)
    return pd.DataFrame({
        S.ACCOUNT_ID: accs[S.ACCOUNT_ID].to_numpy(str), S.REP_ID: ds.reps[S.REP_ID].to_numpy(str)[x],
        "previous_rep_id": accs[S.CURRENT_REP_ID].to_numpy(object),
        "p_win": p_new, "expected_value": p_new * potential, "previous_p_win": p_cur,
        "previous_expected_value": p_cur * potential, "moved": (cur >= 0) & (x != cur), S.TIER: accs[S.TIER].to_numpy(str),
    })


def _tables(ds: S.Dataset, x: np.ndarray, cur: np.ndarray, p_new: np.ndarray, p_cur: np.ndarray,
            bands: tuple[Band, ...]) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """The assignment table, the per-rep table (with each band's columns) and the tiers they count."""
    tiers = sorted(ds.accounts[S.TIER].astype(str).unique())
    assignment = _assignment_table(ds, x, cur, p_new, p_cur)
    per_rep = _per_rep_table(ds, x, cur, assignment, tiers)
    for band in bands:
        per_rep = per_rep.assign(**band_columns(band, x, cur))
    return assignment, per_rep, tiers


def _per_rep_table(ds: S.Dataset, x: np.ndarray, cur: np.ndarray, assignment: pd.DataFrame,
                   tiers: list[str]) -> pd.DataFrame:
    """One row per rep: capacity, load and expected value before and after, and the count of each tier."""
    R, has = len(ds.reps), cur >= 0
    ev_now = np.nan_to_num(assignment["previous_expected_value"].to_numpy())
    per_rep = pd.DataFrame({
        S.REP_ID: ds.reps[S.REP_ID].to_numpy(str), S.CAPACITY: ds.reps[S.CAPACITY].to_numpy(),
        "load_before": np.bincount(cur[has], minlength=R), "load_after": np.bincount(x, minlength=R),
        "ev_before": np.bincount(cur[has], weights=ev_now[has], minlength=R),
        "ev_after": np.bincount(x, weights=assignment["expected_value"].to_numpy(), minlength=R),
    })
    tier = ds.accounts[S.TIER].astype(str).to_numpy()
    for t in tiers:
        in_t = tier == t
        per_rep[f"tier_{t}_before"] = np.bincount(cur[has & in_t], minlength=R)
        per_rep[f"tier_{t}_after"] = np.bincount(x[in_t], minlength=R)
    return per_rep


MAX_REST_TOLERANCE = 1e-3  # the rounding may cost at most this share of what all but the largest account are worth


def _certificate(prob: Problem, sol: Solution) -> tuple[bool, tuple[str, ...]]:
    """What "certified optimal" certifies: optimal for the values rounded to integer units, so within
    ``value_tolerance`` of the real-valued optimum. The tolerance is judged against the value of every account
    but the largest (one huge account must not make it look negligible); above ``MAX_REST_TOLERANCE`` of that,
    the plan is NOT certified and says why (issue 11, item 1)."""
    if not sol.certified:
        return False, ()
    return _rounding_certificate(prob.objective_values().max(axis=1), prob.value_tolerance, prob.scale)


def _rounding_certificate(best: np.ndarray, tol: float, scale: float) -> tuple[bool, tuple[str, ...]]:
    """``_certificate`` from each account's best value (``best``), the rounding tolerance and the scale."""
    rest = float(best.sum() - best.max()) if len(best) > 1 else float(best.sum())
    rel = tol / rest if rest > 0 else 0.0
    if rel > MAX_REST_TOLERANCE:
        return False, (f"NOT certified: the values span too wide a range for exact integer solving (largest account "
                       f"{best.max():.3g}, all others together {rest:.3g}); the plan is optimal for values rounded to "
                       f"1/{scale:.4g} units, so it may fall up to {tol:.3g} ({rel:.1%} of the other accounts' "
                       "value) short of the real optimum. Fix: plan the largest accounts separately (lock them).",)
    return True, (f"certified for values rounded to 1/{scale:.4g} units: within {tol:.3g} of the real-valued "
                  f"optimum ({rel:.1e} of the value of all accounts but the largest)",)


def _summary(cfg: AssignConfig, prob: Problem, sol: Solution, seconds: float, assignment: pd.DataFrame,
             per_rep: pd.DataFrame, tiers: list[str], certificate: tuple[bool, tuple[str, ...]] | None = None,
             flat: bool | None = None) -> PlanSummary:
    """The plan's summary; ``certificate`` and ``flat`` (default: from ``prob``'s values) for a problem that
    holds no values (a plan on candidates)."""
    has = prob.current >= 0
    p_new, p_cur = assignment["p_win"].to_numpy(), assignment["previous_p_win"].to_numpy()
    total_now = float(np.nan_to_num(assignment["previous_expected_value"].to_numpy()).sum())
    total_new = float(assignment["expected_value"].to_numpy().sum())
    certified, cert_notes = _certificate(prob, sol) if certificate is None else certificate
    return PlanSummary(
        objective=cfg.objective, solver=sol.solver, certified_optimal=certified,
        solver_notes=tuple(sol.notes) + cert_notes
        + (("warning: every pair has the same value (e.g. all potential 0), so no reassignment can gain; today's "
            "owners are kept wherever the constraints allow",) if (prob.flat if flat is None else flat) else ()),
        solve_seconds=seconds, accounts=len(p_new), reps=len(per_rep), accounts_with_current_rep=int(has.sum()),
        expected_value_current=total_now, expected_value_proposed=total_new, uplift=total_new - total_now,
        uplift_pct=(total_new / total_now - 1) * 100 if total_now else float("nan"),
        expected_wins_current=float(np.nansum(p_cur)), expected_wins_proposed=float(p_new.sum()),
        moves=prob.moves(sol.assignment),
        constraints=PlanConstraints(require_match=tuple(cfg.require_match), balance_tiers=cfg.balance_tiers,
                                    continuity=cfg.continuity, max_moves=cfg.max_moves, locked=int(prob.locked.sum()),
                                    balance=tuple(str(b) for b in parse_balance(cfg.balance)),
                                    capacity_unit=cfg.capacity_unit, time_limit=cfg.time_limit),
        spread_after=_spreads(per_rep, tiers, "after"), spread_before=_spreads(per_rep, tiers, "before"),
    )


def format_plan(s: PlanSummary) -> str:
    """The summary as the lines ``repfit assign`` prints."""
    lines = [
        f"solver: {s.solver} ({'certified optimal' if s.certified_optimal else 'NOT certified'}"
        f"{'' if s.gap is None or s.certified_optimal else f', gap {s.gap:.2%} to a proven bound'}; {s.solve_seconds:.2f} s)",
    ] + [f"  {n}" for n in s.solver_notes] + [
        f"objective: {s.objective}",
        f"expected value   current {s.expected_value_current:>16,.2f}   proposed {s.expected_value_proposed:>16,.2f}   "
        f"uplift {s.uplift:+,.2f} ({s.uplift_pct:+.2f}%)",
        f"expected wins    current {s.expected_wins_current:>16,.2f}   proposed {s.expected_wins_proposed:>16,.2f}",
        f"moves: {s.moves:,} of {s.accounts_with_current_rep:,} accounts with a current rep",
        "per-rep spread     before: min / max / CV          after: min / max / CV",
    ]
    for key, a in s.spread_after.items():
        b = s.spread_before[key]
        lines.append(f"  {key:<16} {b.min:>12,.1f} {b.max:>12,.1f} {b.cv:>6.3f}    "
                     f"{a.min:>12,.1f} {a.max:>12,.1f} {a.cv:>6.3f}")
    if s.bands:
        lines.append("balance bands      each rep's total / its target: today min-max (reps outside)   plan min-max "
                     "(outside)   price of the band")
    for b in s.bands:
        band = f"{b.metric} +-{b.tolerance:.0%}" if b.tolerance is not None else f"{b.metric} (limit)"
        price = "" if not math.isfinite(b.price) else f"{b.price:+,.2f} ({_pct(b.price, s)})"
        if b.price == 0 and s.gap:
            price = "0 (within the solvers' gap)"
        lines.append(f"  {band:<22} {b.ratio_min_before:>6.2f}-{b.ratio_max_before:<6.2f} ({b.reps_outside_before:>3})   "
                     f"{b.ratio_min_after:>6.2f}-{b.ratio_max_after:<6.2f} ({b.reps_outside_after:>3})   {price}")
    return "\n".join(lines)


def _pct(price: float, s: PlanSummary) -> str:
    return f"{price / s.uplift:.1%} of the uplift" if s.uplift > 0 else "uplift not positive"
