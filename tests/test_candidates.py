"""Top-K candidates instead of all pairs (issue 14, point 4): the plan from candidates is the all-pairs optimum
whenever it claims optimality, and its gap is valid otherwise."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from repfit.assign import Band, Problem, solve
from repfit.assign import sparse as sp
from repfit.candidates import DEEPER_TIMES, top_k
from repfit.errors import InfeasibleAssignment
from repfit.scores_io import LEFT_OUT, NET_LEFT_OUT, Candidates


def candidates_of(P: np.ndarray, k: int, current: np.ndarray, potential=None, prices=None) -> Candidates:
    """The candidates ``repfit score --top-k k`` keeps of the P(win) matrix ``P``, via ``top_k`` on one block
    (ranked by expected value minus ``prices`` when given)."""
    A, R = P.shape
    a, r = np.divmod(np.arange(P.size), R)
    pot = np.ones(A) if potential is None else potential
    block = pd.DataFrame({"rep_id": [f"R{i}" for i in r], "account_id": [f"A{i}" for i in a], "p_win": P.ravel(),
                          "expected_value": P.ravel() * pot[a]})
    owners = pd.Series([f"R{c}" if c >= 0 else None for c in current], index=[f"A{i}" for i in range(A)])
    priced = None if prices is None else pd.Series(prices, index=[f"R{i}" for i in range(R)])
    kept = top_k(block.sample(frac=1, random_state=0), k, owners, priced)  # any row order
    acc = kept.account_id.str[1:].astype(int).to_numpy()
    left = np.full(A, np.nan, np.float32)
    left[acc] = kept[LEFT_OUT].to_numpy(np.float32)
    net = deeper = tiered = None
    if prices is not None:
        from repfit.assign.sparse import PRICE_TIERS

        tiered = np.full((A, PRICE_TIERS), -np.inf)
        for j in range(PRICE_TIERS):  # on each account's first row only, as the reader takes them: the max
            np.fmax.at(tiered[:, j], acc, kept[f"{NET_LEFT_OUT}_tier{j}"].to_numpy(float))
        net, deeper = np.full(A, -np.inf), {}
        net[acc] = kept[NET_LEFT_OUT].fillna(-np.inf).to_numpy(float)
        for m in DEEPER_TIMES:
            deeper[m * k] = np.full(A, -np.inf)
            deeper[m * k][acc] = kept[f"{NET_LEFT_OUT}_{m * k}"].fillna(-np.inf).to_numpy(float)
    return Candidates(acc.astype(np.int32), kept.rep_id.str[1:].astype(int).to_numpy(np.int32),
                      kept.p_win.to_numpy(np.float32), left, (A, R), k, net, prices, deeper, tiered)


def test_top_k_keeps_the_best_and_the_current_rep_and_bounds_the_rest():
    P = np.array([[0.9, 0.1, 0.5, 0.3], [0.2, 0.8, 0.7, 0.6]])
    c = candidates_of(P, 2, np.array([1, -1]))
    assert sorted(zip(c.acc.tolist(), c.rep.tolist())) == [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2)]
    assert c.left_out.tolist() == pytest.approx([0.3, 0.6])  # the largest left out, not the current rep's 0.1
    assert np.isnan(candidates_of(P, 4, np.array([1, -1])).left_out).all()  # nothing left out
    priced = candidates_of(P, 1, np.array([-1, -1]), prices=np.array([0.8, 0.0, 0.0, 0.0]))
    assert sorted(zip(priced.acc.tolist(), priced.rep.tolist())) == [(0, 2), (1, 1)]  # A0: 0.9 - 0.8 < 0.5 - 0
    assert priced.left_out.tolist() == pytest.approx([0.9, 0.7])  # the bound is on P(win), however ranked


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 12), R=st.integers(1, 9), k=st.integers(1, 5))
def test_the_grid_path_keeps_what_the_row_sort_keeps(seed, n, R, k):
    """``score_blocks`` blocks (every rep of each account, in order) take a partition per account instead of one
    sort of the block: the same rows in the same order and the same bounds, ties (P(win) on a coarse grid)
    included."""
    from repfit.candidates import _top_k_grid, _top_k_rows

    rng = np.random.default_rng(seed)
    p = np.round(rng.random(n * R), 1)
    key = p - np.tile(np.round(rng.random(R), 1), n)
    codes, reps = np.repeat(np.arange(n), R), np.tile(np.arange(R), n)
    owner = rng.integers(-1, R, (n, 2))  # the current rep and the planned one (-1: none)
    tier = (np.tile(rng.integers(0, 3, R), n), 3)  # each rep's price tier, on every row
    g, r = (f(codes, reps, p, key, owner, k, DEEPER_TIMES, tier) for f in (_top_k_grid, _top_k_rows))
    assert np.array_equal(g[0], r[0]) and np.array_equal(g[1], r[1])
    for a, b in zip(g[2], r[2]):
        np.testing.assert_array_equal(a, b)


def test_the_deeper_bounds_are_what_a_deeper_k_would_leave_out():
    """``ev_net_left_out_<2K>`` on a top-K file is ``ev_net_left_out`` of the top-2K file of the same scores."""
    rng = np.random.default_rng(3)
    A, R, k = 30, 12, 2
    P, pot, prices = rng.random((A, R)), rng.lognormal(0, 1, A), rng.exponential(0.2, R)
    current = rng.integers(-1, R, A)
    c, deep = candidates_of(P, k, current, pot, prices), candidates_of(P, 2 * k, current, pot, prices)
    assert np.array_equal(c.deeper[2 * k], deep.left_out_net) and np.array_equal(c.deeper[4 * k], deep.deeper[4 * k])
    assert not np.array_equal(c.left_out_net, deep.left_out_net)  # deeper is lower: the check is not vacuous
    assert (deep.left_out_net <= c.left_out_net).all()


def test_sample_prices_price_the_rep_everyone_wants_and_leave_the_others_free():
    from repfit.candidates import sample_prices

    A, R = 40, 4
    P = np.tile([0.9, 0.3, 0.3, 0.3], (A, 1))  # everyone's first choice is R0, which holds a quarter of them
    a, r = np.divmod(np.arange(P.size), R)
    block = pd.DataFrame({"rep_id": [f"R{i}" for i in r], "account_id": [f"A{i}" for i in a], "p_win": P.ravel(),
                          "expected_value": P.ravel()})
    cap = pd.Series([10, 10, 10, 20], index=["R0", "R1", "R2", "R3"])
    for dense_max in (P.size, P.size - 1):  # exact duals of every sampled pair, or of the pairs each account kept
        prices = sample_prices([block.iloc[:80], block.iloc[80:]], cap, A, dense_max=dense_max)
        assert prices["R0"] == pytest.approx(0.6) and (prices[["R1", "R2", "R3"]] == 0).all()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), A=st.integers(4, 40), R=st.integers(2, 7), k=st.integers(1, 4),
       slack=st.floats(1.0, 1.6), fewest=st.booleans(), continuity=st.sampled_from([0.0, 0.1]), priced=st.booleans())
def test_a_plan_from_candidates_is_the_optimum_when_it_says_so_and_its_gap_holds(seed, A, R, k, slack, fewest,
                                                                                  continuity, priced):
    rng = np.random.default_rng(seed)
    potential = rng.lognormal(0, 1, A)
    skill = rng.normal(0, 1, R)  # popular reps: every account's top-K lean the same way
    P = (1 / (1 + np.exp(-(skill[None, :] + rng.normal(0, 1, (A, R)))))).astype(np.float32).astype(float)  # as read
    cap = np.full(R, int(np.ceil(slack * A / R)))
    current = np.where(rng.random(A) < 0.7, rng.integers(0, R, A), -1)
    bands = (Band("accounts", np.ones(A), np.full(R, np.floor(0.5 * A / R)), np.full(R, np.inf), 0.5),) if fewest else ()
    common = dict(capacity=cap, current=current, locked=np.zeros(A, bool), continuity=continuity, bands=bands)
    everything = Problem(values=P * potential[:, None], **common)
    # any ranking and any scoring prices: both bounds (P(win) left out; value net of those prices) hold regardless
    prices = rng.exponential(0.3, R) * potential.mean() if priced else None
    c = candidates_of(P, k, current, potential, prices)
    best_x = solve(everything, "flow").assignment
    sol = plan_on(c, potential, common)
    if sol is None:
        return  # the popular reps filled up within the candidates: refused, nothing claimed
    value = everything.objective_values()
    best, got = value[np.arange(A), best_x].sum(), value[np.arange(A), sol.assignment].sum()
    scale = sol.int_objective / got if got else 1.0  # the candidates' integer units (value x scale + tie-breaks)
    tol = everything.value_tolerance + 2 * A / scale
    if sol.certified:
        assert got >= best - tol
    else:
        assert sol.gap > 0 and best <= got + (sol.bound - sol.int_objective) / scale + tol


def plan_on(c: Candidates, potential: np.ndarray, common: dict):
    """``repfit assign``'s plan on the candidates alone (``repfit.assign.sparse``); None when they cannot hold it."""
    prob = sp.shape_only(common, *c.shape)
    arcs = sp.candidate_arcs(c, potential, prob)
    try:
        return sp.solve_candidates(prob, arcs, sp.left_out_bounds(c, arcs, prob, potential), c.top_k)
    except InfeasibleAssignment:
        return None


def test_with_exact_prices_the_relaxed_bound_certifies_what_top_k_by_value_alone_cannot():
    """The planted truth: reps of capacity 1 that everyone ranks alike. By P(win), every account's top-1 is the
    same rep and the bound stays open; ranked net of the optimum's own rep prices (its LP duals), the left-out
    pairs are bounded tightly enough to certify (the module docstring's claim)."""
    A = R = 6
    base = np.linspace(0.9, 0.4, R)
    P = np.tile(base, (A, 1)) + 0.01 * np.eye(A)  # a small own-rep edge on the diagonal
    common = dict(capacity=np.ones(R, np.int64), current=np.full(A, -1), locked=np.zeros(A, bool))
    plain = plan_on(candidates_of(P, 2, np.full(A, -1)), np.ones(A), common)
    assert plain is None  # by P(win) every account lists the same two reps of capacity 1: refused
    duals = base - base.min()  # the optimum is the diagonal, and these prices are its LP duals
    priced = plan_on(candidates_of(P, 2, np.full(A, -1), prices=duals), np.ones(A), common)
    assert priced is not None and priced.certified and (priced.assignment == np.arange(A)).all()


def test_score_top_k_then_assign_proves_the_all_pairs_optimum_or_states_its_gap(trained):
    """`repfit score --top-k` writes each account's K best reps and its current rep with the left-out bound;
    `repfit assign` from it matches the all-pairs plan when it says certified, else its stated gap covers the
    shortfall; commands that need every pair refuse the file by name."""
    import json

    from conftest import run

    org, uri, tmp = trained
    assert run("score", "--data", org, "--tracking-uri", uri, "--out", tmp / "all.parquet").exit_code == 0
    full = run("assign", "--data", org, "--tracking-uri", uri, "--scores", tmp / "all.parquet", "--out", tmp / "full.csv",
               "--balance", "none")
    assert full.exit_code == 0, full.output
    best = json.loads((tmp / "full_summary.json").read_text())["expected_value_proposed"]
    acc = pd.read_csv(org / "accounts.csv", dtype=str, keep_default_na=False)
    certified = []
    for k in (2, 6, 11):
        res = run("score", "--data", org, "--tracking-uri", uri, "--out", tmp / f"top{k}.parquet", "--top-k", str(k))
        assert res.exit_code == 0, res.output
        c = pd.read_parquet(tmp / f"top{k}.parquet")
        assert c.groupby("account_id").size().between(k, k + 1).all() and LEFT_OUT in c.columns
        owners = dict(zip(acc.account_id, acc.current_rep_id))
        assert {(a, owners[a]) for a in acc.account_id if owners[a]} <= set(zip(c.account_id, c.rep_id))
        assert json.loads((tmp / f"top{k}.parquet.json").read_text())["top_k"] == k
        res = run("assign", "--data", org, "--tracking-uri", uri, "--scores", tmp / f"top{k}.parquet",
                  "--out", tmp / f"a{k}.csv", "--balance", "none")
        if res.exit_code != 0:  # popular reps filled up within the candidates: said so, nothing written
            assert "larger --top-k" in res.output and not (tmp / f"a{k}.csv").exists(), res.output
            continue
        s = json.loads((tmp / f"a{k}_summary.json").read_text())
        certified.append(s["certified_optimal"])
        if s["certified_optimal"]:
            assert s["expected_value_proposed"] == pytest.approx(best, rel=1e-9)
        else:
            assert s["expected_value_proposed"] <= best * (1 + 1e-9)
            assert best - s["expected_value_proposed"] <= s["gap"] * best * 1.001 + 1e-6, s
    assert True in certified and False in certified  # both sides were checked
    # the second pass: ranked by the plan's own rep prices and keeping its reps, never worse, claims as valid
    first = json.loads((tmp / "a6_summary.json").read_text())["expected_value_proposed"]
    prices = pd.read_csv(tmp / "a6_prices.csv", dtype={"rep_id": str})
    assert sorted(prices.rep_id) == sorted(pd.read_csv(org / "reps.csv", dtype=str).rep_id)
    res = run("score", "--data", org, "--tracking-uri", uri, "--out", tmp / "again.parquet", "--top-k", "6",
              "--plan", tmp / "a6.csv")
    assert res.exit_code == 0, res.output
    told = json.loads((tmp / "again.parquet.json").read_text())["prices"]
    assert told == pytest.approx(dict(zip(prices.rep_id, prices.price)), rel=1e-12)
    planned = pd.read_csv(tmp / "a6.csv", dtype=str)
    kept = pd.read_parquet(tmp / "again.parquet")
    assert set(zip(planned.account_id, planned.rep_id)) <= set(zip(kept.account_id.astype(str), kept.rep_id.astype(str)))
    res = run("assign", "--data", org, "--tracking-uri", uri, "--scores", tmp / "again.parquet", "--out",
              tmp / "again.csv", "--balance", "none")
    assert res.exit_code == 0, res.output
    s = json.loads((tmp / "again_summary.json").read_text())
    assert first * (1 - 1e-9) <= s["expected_value_proposed"] <= best * (1 + 1e-9)
    assert best - s["expected_value_proposed"] <= (0 if s["certified_optimal"] else s["gap"] * best * 1.001) + 1e-6
    prices.iloc[1:].to_csv(tmp / "short_prices.csv", index=False)
    prices.astype({"price": object}).assign(price=["lots"] + prices.price.tolist()[1:]).to_csv(tmp / "word_prices.csv",
                                                                                                  index=False)
    planned.assign(account_id=["A_nobody"] + planned.account_id.tolist()[1:]).to_csv(tmp / "who.csv", index=False)
    for plan, says in (("short.csv", "have no price"), ("word.csv", "must be finite numbers; found 'lots'"),
                       ("who.csv", "ids the data does not hold, e.g. 'A_nobody'")):
        if plan != "who.csv":
            planned.to_csv(tmp / plan, index=False)
        else:
            prices.to_csv(tmp / "who_prices.csv", index=False)
        bad = run("score", "--data", org, "--tracking-uri", uri, "--out", tmp / "bad.parquet", "--top-k", "2",
                  "--plan", tmp / plan)
        assert bad.exit_code != 0 and says in bad.output, bad.output
        assert "Traceback" not in bad.output and not (tmp / "bad.parquet").exists()
    alone = run("score", "--data", org, "--tracking-uri", uri, "--out", tmp / "bad.parquet", "--plan", tmp / "a6.csv")
    assert alone.exit_code != 0 and "--top-k" in alone.output and not (tmp / "bad.parquet").exists()
    refused = run("suggest", "--data", org, "--tracking-uri", uri, "--scores", tmp / "top6.parquet", "--all")
    assert refused.exit_code == 2 and "holds each account's top reps only" in refused.output


def test_read_plan_refuses_a_repeated_account_and_names_a_missing_plan_first(small_org, tmp_path):
    """Review 16: a plan naming an account twice (two plans concatenated) passed ``read_plan`` and then crashed the
    top-K filter mid-scoring (pandas' "cannot reindex on an axis with duplicate labels", a traceback through
    ``repfit score --plan``); and a missing plan was reported as a missing prices file."""
    from repfit.candidates import read_plan
    from repfit.errors import SchemaError
    from repfit.schema import load_dataset

    ds = load_dataset(small_org)
    accs, reps = ds.accounts.account_id.astype(str), ds.reps.rep_id.astype(str)
    plan = pd.DataFrame({"account_id": accs, "rep_id": reps.iloc[np.arange(len(accs)) % len(reps)].to_numpy()})
    pd.DataFrame({"rep_id": reps, "price": 0.5}).to_csv(tmp_path / "plan_prices.csv", index=False)
    plan.to_csv(tmp_path / "plan.csv", index=False)
    prices, planned = read_plan(tmp_path / "plan.csv", ds)
    assert planned.to_dict() == dict(zip(plan.account_id, plan.rep_id)) and (prices == 0.5).all()
    with pytest.raises(SchemaError, match=r"nope\.csv: plan file not found"):
        read_plan(tmp_path / "nope.csv", ds)
    twice = pd.concat([plan, plan.iloc[[3]].assign(rep_id=reps.iloc[0])])
    twice.to_csv(tmp_path / "plan.csv", index=False)
    with pytest.raises(SchemaError, match=rf"plan\.csv: column 'account_id' repeats 1 id.*'{accs.iloc[3]}'.*Fix"):
        read_plan(tmp_path / "plan.csv", ds)


def test_read_prices_reads_back_rep_ids_that_assign_escaped_as_formulas(tmp_path):
    """Review 16: `repfit assign` writes <out>_prices.csv through ``write_table``, which quotes ids that start like a
    spreadsheet formula ('-R1'); ``read_plan`` undid that for the plan, ``read_prices`` did not, and refused the
    file assign had just written ("reps of the data have no price, e.g. '-R1'")."""
    from repfit.candidates import read_prices
    from repfit.io import write_table

    reps = pd.Index(["R0", "-R1", "=R2", "+R3"])
    write_table(pd.DataFrame({"rep_id": reps, "price": [0.0, 1.5, -2.0, 3.25]}), tmp_path / "p_prices.csv")
    assert "'-R1" in (tmp_path / "p_prices.csv").read_text()  # escaped on the way out
    got = read_prices(tmp_path / "p_prices.csv", reps)
    assert got.index.tolist() == reps.tolist() and got.tolist() == [0.0, 1.5, -2.0, 3.25]


def test_assign_from_candidates_through_the_cli_leaves_no_stale_prices_and_no_traceback(small_org, tracking_uri,
                                                                                         tmp_path):
    """Review 16, through `repfit assign` on a top-K file: a plan by P(win) has no rep prices, so a <out>_prices.csv
    left by an earlier plan by expected value at the same --out must go (`score --plan` would pair the new plan
    with the old plan's prices); and a --require-match column the tables lack is a message, not a KeyError."""
    from conftest import run
    from repfit.schema import load_dataset

    ds = load_dataset(small_org)
    A, R = len(ds.accounts), len(ds.reps)
    P = np.random.default_rng(4).random((A, R))
    a, r = np.divmod(np.arange(P.size), R)
    block = pd.DataFrame({"rep_id": ds.reps.rep_id.to_numpy(str)[r], "account_id": ds.accounts.account_id.to_numpy(str)[a],
                          "p_win": P.ravel(), "expected_value": P.ravel() * ds.accounts.potential.to_numpy(float)[a],
                          "cold": False})
    top_k(block, 4, ds.accounts.set_index("account_id")["current_rep_id"]).to_csv(tmp_path / "top.csv", index=False)
    args = ("assign", "--data", small_org, "--tracking-uri", tracking_uri, "--scores", tmp_path / "top.csv", "--out",
            tmp_path / "plan.csv")
    res = run(*args)
    assert res.exit_code == 0, res.output
    prices = pd.read_csv(tmp_path / "plan_prices.csv", dtype={"rep_id": str})
    assert sorted(prices.rep_id) == sorted(ds.reps.rep_id.astype(str)) and np.isfinite(prices.price).all()
    res = run(*args, "--objective", "p_win")
    assert res.exit_code == 0, res.output
    assert "plan_prices.csv" not in res.output and not (tmp_path / "plan_prices.csv").exists()
    bad = run(*args, "--require-match", "no_such_column")
    assert bad.exit_code != 0 and "no column 'no_such_column'" in bad.output and "Traceback" not in bad.output


def test_the_deeper_k_advice_counts_accounts_a_deeper_k_would_list_whole():
    """Review 16: ``ev_net_left_out_<K'>`` is empty where K' reps leave nothing out, but the estimate of the K that
    closes a gap read that as "no net bound" and kept the account's P(win) bound: with 8 reps and K = 2 it advised
    "score with --top-k above 8", though --top-k 8 lists every pair."""
    rng = np.random.default_rng(6)
    A = R = 8
    P = (1 / (1 + np.exp(-(rng.normal(0, 2, R)[None] + rng.normal(0, 0.5, (A, R)))))).astype(np.float32).astype(float)
    prices = rng.exponential(0.05, R)
    common = dict(capacity=np.full(R, 2), current=np.full(A, -1), locked=np.zeros(A, bool))
    sol = plan_on(candidates_of(P, 2, np.full(A, -1), np.ones(A), prices), np.ones(A), common)
    assert sol is not None and not sol.certified
    assert re.search(r"Fix: score with --top-k [48] \(estimated", sol.notes[0]), sol.notes[0]
    whole = plan_on(candidates_of(P, 8, np.full(A, -1), np.ones(A), prices), np.ones(A), common)
    assert whole.certified  # what that advice leads to
