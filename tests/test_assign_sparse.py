"""Plans on candidate pairs alone (``repfit.assign.sparse``): the flow on the candidates, its rep prices and the
relaxed bound against the dense solvers, which see every pair."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from repfit.assign import Band, Problem, solve
from repfit.assign import sparse as sp
from repfit.assign.solvers import rep_prices
from repfit.scores_io import Candidates


def every_pair(P: np.ndarray) -> Candidates:
    """A candidates file that lists every pair (nothing left out)."""
    A, R = P.shape
    a, r = np.divmod(np.arange(P.size), R)
    return Candidates(a.astype(np.int32), r.astype(np.int32), P.ravel().astype(np.float32),
                      np.full(A, np.nan, np.float32), (A, R))


def instance(seed: int, A: int, R: int, fewest: bool, locked: bool):
    rng = np.random.default_rng(seed)
    P = rng.random((A, R)).astype(np.float32).astype(float)
    potential = rng.lognormal(0, 1, A)
    current = np.where(rng.random(A) < 0.8, rng.integers(0, R, A), -1)
    lock = (rng.random(A) < 0.2) & (current >= 0) if locked else np.zeros(A, bool)
    cap = np.full(R, int(np.ceil(1.3 * A / R)))
    cap = np.maximum(cap, np.bincount(current[lock], minlength=R))
    bands = (Band("accounts", np.ones(A), np.full(R, np.floor(0.6 * A / R)), np.full(R, np.inf), 0.4),) if fewest else ()
    common = dict(capacity=cap, current=current, locked=lock, continuity=0.1, bands=bands)
    return P, potential, common


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), A=st.integers(2, 30), R=st.integers(1, 6), fewest=st.booleans(),
       locked=st.booleans())
def test_on_every_pair_the_candidates_plan_is_the_flow_optimum_and_certified(seed, A, R, fewest, locked):
    P, potential, common = instance(seed, A, R, fewest, locked)
    dense = Problem(values=P * potential[:, None], **common)
    best = solve(dense, "flow").assignment
    prob = sp.shape_only(common, A, R)
    c = every_pair(P)
    arcs = sp.candidate_arcs(c, potential, prob)
    sol = sp.solve_candidates(prob, arcs, sp.left_out_bounds(c, arcs, prob, potential))
    v = dense.objective_values()
    assert sol.certified and sol.gap == 0
    assert v[np.arange(A), sol.assignment].sum() == pytest.approx(v[np.arange(A), best].sum(), rel=1e-9, abs=1e-9)
    assert (sol.assignment[common["locked"]] == common["current"][common["locked"]]).all()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), A=st.integers(2, 30), R=st.integers(1, 6), fewest=st.booleans())
def test_edge_prices_are_the_dense_rep_prices(seed, A, R, fewest):
    """The prices from the arcs alone equal ``rep_prices`` on the (A, R) matrix of the same integer values."""
    P, potential, common = instance(seed, A, R, fewest, locked=False)
    prob = sp.shape_only(common, A, R)
    arcs = sp.candidate_arcs(every_pair(P), potential, prob)
    gain = sp.int_gains(arcs, prob, sp.value_scale(arcs, sp.LeftOut(np.full(A, -np.inf)), A, R))
    x = sp.flow_on_candidates(prob, arcs)
    V = np.zeros((A, R), np.int64)
    V[arcs.acc, arcs.rep] = gain
    np.testing.assert_array_equal(sp.edge_prices(prob, arcs, gain, x), rep_prices(prob, V, x, arcs.acc, arcs.rep))


def test_find_names_each_pair_or_minus_one():
    arcs = sp.Arcs(np.array([0, 0, 2]), np.array([1, 3, 0]), np.zeros(3), np.zeros(3))
    assert arcs.find(np.array([0, 0, 1, 2, 2]), np.array([3, 2, 0, 0, -1]), 4).tolist() == [1, -1, -1, 2, -1]


@pytest.mark.parametrize("options", [dict(), dict(balance=("none",)), dict(require_match=("region",), continuity=0.05),
                                     dict(objective="p_win", balance=("accounts=10%",))])
def test_a_plan_from_a_file_of_every_pair_equals_the_plan_from_the_matrix(small_org, options):
    """``plan_assignment`` on candidates (the sparse flow) and on the (A, R) matrix (the dense solvers) reach the
    same value under the same options, and the candidates' plan is proven over all pairs."""
    from repfit.assign.plan import plan_assignment
    from repfit.config import AssignConfig
    from repfit.schema import load_dataset

    ds = load_dataset(small_org)
    A, R = len(ds.accounts), len(ds.reps)
    P = np.random.default_rng(5).random((A, R)).astype(np.float32).astype(float)
    cfg = AssignConfig(**options)
    dense = plan_assignment(ds, P, cfg)
    on_cands = plan_assignment(ds, None, cfg, candidates=every_pair(P))
    assert on_cands.summary.solver == sp.SOLVER and on_cands.summary.certified_optimal
    for key in ("expected_value_proposed", "expected_wins_proposed"):
        assert getattr(on_cands.summary, key) == pytest.approx(getattr(dense.summary, key), rel=1e-9)
    assert (on_cands.assignment.moved == dense.assignment.moved).sum() >= A - 2  # same plan up to ties
    for b, c in zip(dense.summary.bands, on_cands.summary.bands):
        assert b.reps_outside_after == c.reps_outside_after == 0
        assert c.price == pytest.approx(b.price, rel=1e-6, abs=1e-6)


def test_options_a_flow_cannot_hold_solve_on_the_matrix_and_say_the_plan_is_not_proven(small_org):
    from repfit.assign.plan import plan_assignment
    from repfit.config import AssignConfig
    from repfit.schema import load_dataset

    ds = load_dataset(small_org)
    P = np.random.default_rng(6).random((len(ds.accounts), len(ds.reps)))
    plan = plan_assignment(ds, None, AssignConfig(balance_tiers=True), candidates=every_pair(P))
    assert plan.summary.solver != sp.SOLVER and not plan.summary.certified_optimal
    assert any("tier balance" in n for n in plan.summary.solver_notes)


def test_accounts_owned_across_the_required_match_keep_their_previous_p_win(small_org):
    """Review 16: an account owned today by a rep the required match forbids (the reason to plan with
    ``--require-match``) had previous_p_win NaN on candidates (its current pair is in the file, but not among the
    pairs it may take), so the plan's value today was understated and its uplift overstated against the dense plan."""
    from dataclasses import replace

    from repfit.assign.plan import plan_assignment
    from repfit.config import AssignConfig
    from repfit.schema import load_dataset

    ds = load_dataset(small_org)
    accs, reps = ds.accounts, ds.reps
    moved = accs.index[~accs.locked.to_numpy(bool)][:5]
    elsewhere = {g: reps.rep_id[reps.region != g].iloc[0] for g in reps.region.unique()}
    accs = accs.copy()
    accs.loc[moved, "current_rep_id"] = [elsewhere[g] for g in accs.loc[moved, "region"]]
    ds = replace(ds, accounts=accs)
    A, R = len(accs), len(reps)
    P = np.random.default_rng(5).random((A, R)).astype(np.float32).astype(float)
    cfg = AssignConfig(require_match=("region",))
    dense, on_cands = plan_assignment(ds, P, cfg), plan_assignment(ds, None, cfg, candidates=every_pair(P))
    assert on_cands.summary.solver == sp.SOLVER
    cur = np.array([reps.rep_id.tolist().index(r) for r in accs.loc[moved, "current_rep_id"]])
    np.testing.assert_allclose(on_cands.assignment.previous_p_win.to_numpy()[moved], P[moved, cur], rtol=1e-7)
    for name in ("assignment", "reps"):
        a, b = getattr(dense, name), getattr(on_cands, name)
        assert list(a.columns) == list(b.columns)
        for col in a.columns:
            if a[col].dtype.kind == "f":
                np.testing.assert_allclose(b[col].to_numpy(), a[col].to_numpy(), rtol=1e-9, err_msg=col)
    for key in ("expected_value_current", "uplift", "expected_wins_current"):
        assert getattr(on_cands.summary, key) == pytest.approx(getattr(dense.summary, key), rel=1e-9), key


@pytest.mark.parametrize("options, says", [
    (dict(require_match=("no_such_column",)), "no column 'no_such_column'"),
    (dict(continuity=-0.5), "continuity bonus must be"),
    (dict(objective="p-win"), "objective 'p-win' is not one of"),
    (dict(time_limit=0.0), "time limit must be"),
])
def test_a_plan_on_candidates_checks_its_options_as_the_dense_plan_does(small_org, options, says):
    """Review 16: the plan on candidates skipped ``build_problem``'s checks: a required-match attribute the tables
    lack was a KeyError traceback through ``repfit assign``; a negative continuity (which the left-out bound's
    continuity factor assumes away), an unknown objective or a zero time limit passed silently."""
    from repfit.assign.plan import plan_assignment
    from repfit.config import AssignConfig
    from repfit.errors import ConfigError
    from repfit.schema import load_dataset

    ds = load_dataset(small_org)
    P = np.random.default_rng(5).random((len(ds.accounts), len(ds.reps)))
    with pytest.raises(ConfigError, match=says):
        plan_assignment(ds, P, AssignConfig(**options))
    with pytest.raises(ConfigError, match=says):
        plan_assignment(ds, None, AssignConfig(**options), candidates=every_pair(P))


def test_scoring_prices_far_above_the_values_neither_overflow_nor_break_the_bound():
    """Review 16: the relaxed network's hub arcs carry the scoring prices, but ``value_scale`` counted them only
    when some account had a finite net bound. Accounts whose current pair the required match forbids have none
    (only the P(win) bound holds for them): with prices 1e6 x the values, the scaled prices overflowed int64
    (OverflowError through ``repfit assign``)."""
    A, R = 4, 3
    P = np.array([[0.9, 0.5, 0.2], [0.3, 0.6, 0.8], [0.7, 0.1, 0.4], [0.2, 0.5, 0.9]])
    region_acc, region_rep = np.zeros(A, int), np.array([0, 1, 0])
    current = np.full(A, 1)  # every account is owned today across the match
    common = dict(capacity=np.full(R, A), current=current, locked=np.zeros(A, bool))
    kept = [(a, r) for a in range(A) for r in sorted(range(R), key=lambda r: -P[a, r])[:1]] + [(a, 1) for a in range(A)]
    kept = sorted(set(kept))
    acc, rep = (np.array(c, np.int32) for c in zip(*kept))
    listed = np.zeros((A, R), bool)
    listed[acc, rep] = True
    prices = np.array([1e6, -2e6, 3e6])
    left_out = np.where(listed, -np.inf, P).max(axis=1)
    net = np.where(listed, -np.inf, P - prices).max(axis=1)
    c = Candidates(acc, rep, P[acc, rep].astype(np.float32), left_out.astype(np.float32), (A, R), 1, net, prices)
    prob = sp.shape_only(common, A, R)
    arcs = sp.candidate_arcs(c, np.ones(A), prob, lambda a, r: region_acc[a] == region_rep[r])
    sol = sp.solve_candidates(prob, arcs, sp.left_out_bounds(c, arcs, prob, np.ones(A)), 1)
    allowed = region_acc[:, None] == region_rep[None, :]
    best = solve(Problem(values=P, allowed=allowed, **common), "flow").assignment
    assert sol.assignment.tolist() == best.tolist() == [0, 2, 0, 2]
    assert sol.certified  # the pairs left out (rep 2 of accounts 0 and 2) are worth less than what they hold


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), A=st.integers(2, 20), R=st.integers(1, 6), k=st.integers(1, 3),
       ties=st.booleans(), potential=st.sampled_from(["one", "lognormal", "1e-3..1e9", "half zero"]),
       prices=st.sampled_from([None, "exponential", "signed", "1e6", "negative"]),
       continuity=st.sampled_from([0.0, 0.1, 2.0]), locks=st.booleans(), band=st.sampled_from([None, "floor", "ceiling"]),
       match=st.booleans(), current_listed=st.booleans())
def test_a_certified_plan_on_candidates_is_the_all_pairs_optimum_in_its_own_integer_units(
        seed, A, R, k, ties, potential, prices, continuity, locks, band, match, current_listed):
    """Review 16, adversarially: the candidates ``top_k`` keeps (from float64 P(win), read back as float32), any
    scoring prices (wildly wrong, negative, 1e6 x the values), ties, zero and 1e-3..1e9 potentials, continuity, locks,
    count floors and ceilings, the required match, and current pairs the file left out. Certified: the plan's integer
    value is the optimum over every allowed pair of the same integer values (rint(value x scale) + 1 on current pairs,
    solved by the flow on all of them); else that optimum is within the relaxed bound."""
    from repfit.assign.solvers import _flow_on_arcs
    from repfit.candidates import top_k
    from repfit.errors import InfeasibleAssignment
    from repfit.scores_io import LEFT_OUT, NET_LEFT_OUT

    rng = np.random.default_rng(seed)
    P64 = np.round(rng.random((A, R)), 1) if ties else rng.random((A, R))
    pot = {"one": np.ones(A), "lognormal": rng.lognormal(0, 1, A), "1e-3..1e9": 10 ** rng.uniform(-3, 9, A),
           "half zero": np.where(rng.random(A) < 0.5, 0.0, rng.random(A))}[potential]
    pi = {None: None, "exponential": rng.exponential(0.3, R) * pot.mean(), "signed": rng.normal(0, 5, R) * pot.mean(),
          "1e6": rng.normal(0, 1e6, R) * max(pot.max(), 1.0), "negative": -rng.exponential(3, R) * pot.mean()}[prices]
    current = np.where(rng.random(A) < 0.7, rng.integers(0, R, A), -1)
    locked = (rng.random(A) < 0.2) & (current >= 0) if locks else np.zeros(A, bool)
    cap = np.maximum(np.full(R, int(np.ceil(rng.uniform(1.0, 1.6) * A / R))), np.bincount(current[locked], minlength=R))
    bands = {None: (), "floor": (Band("accounts", np.ones(A), np.full(R, np.floor(0.5 * A / R)), np.full(R, np.inf), 0.5),),
             "ceiling": (Band("accounts", np.ones(A), np.full(R, -np.inf), np.full(R, np.ceil(1.1 * A / R)), 0.1),)}[band]
    common = dict(capacity=cap, current=current, locked=locked, continuity=continuity, bands=bands)
    region_acc, region_rep = rng.integers(0, 2, A), rng.integers(0, 2, R)
    allowed = region_acc[:, None] == region_rep[None, :] if match else None

    a, r = np.divmod(np.arange(P64.size), R)  # what `repfit score --top-k` keeps, as `repfit assign` reads it back
    block = pd.DataFrame({"rep_id": [f"R{i}" for i in r], "account_id": [f"A{i}" for i in a], "p_win": P64.ravel(),
                          "expected_value": P64.ravel() * pot[a]})
    owner = np.where(locked | current_listed, current, -1)
    kept = top_k(block, k, pd.Series([f"R{c}" if c >= 0 else None for c in owner], index=[f"A{i}" for i in range(A)]),
                 None if pi is None else pd.Series(pi, index=[f"R{i}" for i in range(R)]))
    acc, rep = kept.account_id.str[1:].astype(int).to_numpy(), kept.rep_id.str[1:].astype(int).to_numpy()
    left = np.full(A, -np.inf)
    np.fmax.at(left, acc, kept[LEFT_OUT].to_numpy(float))
    net = None
    if pi is not None:
        net = np.full(A, -np.inf)
        np.fmax.at(net, acc, kept[NET_LEFT_OUT].to_numpy(float))
    c = Candidates(acc.astype(np.int32), rep.astype(np.int32), kept.p_win.to_numpy(np.float32),
                   np.where(np.isfinite(left), left, np.nan).astype(np.float32), (A, R), k, net, pi)

    prob = sp.shape_only(common, A, R)
    try:
        sp.check_counts(prob)
        arcs = sp.candidate_arcs(c, pot, prob, (lambda x, y: allowed[x, y]) if match else None)
        sp.unmatched_accounts(arcs, prob)
        left_out = sp.left_out_bounds(c, arcs, prob, pot)
        sol = sp.solve_candidates(prob, arcs, left_out, k)
    except InfeasibleAssignment:
        event("refused on the candidates")
        return  # nothing claimed
    event("certified" if sol.certified else "gap")
    scale = sp.value_scale(arcs, left_out, A, R)
    everything = Problem(values=P64.astype(np.float32).astype(float) * pot[:, None], allowed=allowed, **common)
    V = np.rint(everything.objective_values() * scale).astype(np.int64)
    has = np.flatnonzero(current >= 0)
    V[has, current[has]] += 1
    ai, ri = np.nonzero(everything.mask())
    best = int(V[np.arange(A), _flow_on_arcs(everything, ai, ri, V[ai, ri])].sum())
    assert sol.int_objective <= best
    assert sol.int_objective == best if sol.certified else best <= sol.bound


@pytest.mark.parametrize("change, says", [("orphan", "no rep has region 'Atlantis'"),
                                          ("locked", "are owned by reps that the required match forbids"),
                                          ("crowded", "has 150 accounts but its reps' capacity is")])
def test_a_required_match_that_cannot_hold_says_why_on_candidates_as_on_every_pair(small_org, change, says):
    """Review 16: on candidates, a required match that no K could satisfy (an account region no rep has, a locked
    account owned across the match, a region whose reps lack the capacity) was blamed on the candidates ("score
    with a larger --top-k"); the dense plan names the region, the account, or the capacity and the real fix."""
    from dataclasses import replace

    from repfit.assign.plan import plan_assignment
    from repfit.config import AssignConfig
    from repfit.errors import InfeasibleAssignment
    from repfit.schema import load_dataset

    ds = load_dataset(small_org)
    accs, reps = ds.accounts.copy(), ds.reps.copy()
    if change == "orphan":
        accs.loc[accs.index[7], "region"] = "Atlantis"
    elif change == "locked":
        lk = accs.index[accs.locked.to_numpy(bool)][0]
        accs.loc[lk, "region"] = next(g for g in reps.region.unique()
                                      if g != reps.set_index("rep_id").region[accs.loc[lk, "current_rep_id"]])
    else:
        accs["region"] = reps.region.iloc[0]
    ds = replace(ds, accounts=accs, reps=reps)
    P = np.random.default_rng(5).random((len(accs), len(reps)))
    cfg = AssignConfig(require_match=("region",), balance=("none",))
    with pytest.raises(InfeasibleAssignment, match=says):
        plan_assignment(ds, P, cfg)
    with pytest.raises(InfeasibleAssignment, match=says):
        plan_assignment(ds, None, cfg, candidates=every_pair(P))
