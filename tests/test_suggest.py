"""repfit suggest: suggestions judged against the planted truth, move groups that ops can accept top-down,
the three modes end to end (real LightGBM, real MLflow store), spreadsheet-safe CSV, and Maven CRM."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from repfit.schema import load_dataset
from repfit.scoring import score_matrix
from repfit.suggest import Context, for_account, group_moves
from repfit.synth import true_win_probability

from conftest import MAVEN_MAPPING, run


def test_top1_suggestion_beats_the_current_rep_on_the_planted_truth(demo_org, demo_trained):
    """Acceptance (issue 5): for accounts whose truth-optimal rep is not the current one, the top-1 suggested
    rep's *true* P(win) beats the current rep's in >= 80% of cases (measured 90-91% on seeds 7, 8, 9)."""
    ds = load_dataset(demo_org)
    scorer = demo_trained.scorer
    P = score_matrix(scorer, ds)
    ctx = Context(ds, scorer, P, signal=True)
    truth = (true_win_probability(demo_org).pivot(index="account_id", columns="rep_id", values="p_true")
             .loc[ds.accounts.account_id, ds.reps.rep_id].to_numpy())
    cur, rows = ctx.current, np.arange(len(P))
    assert (cur >= 0).all()
    differ = np.flatnonzero(truth.argmax(axis=1) != cur)
    assert len(differ) > 1000  # the territory assignment is far from the truth-optimal one
    # for_account ranks by expected value = P(win) x potential; within one account that is the P(win) order
    masked = np.where(np.arange(P.shape[1])[None, :] == cur[:, None], -np.inf, P)
    top1 = masked.argmax(axis=1)
    share = float(np.mean(truth[differ, top1[differ]] > truth[differ, cur[differ]]))
    assert share >= 0.80, share
    # the shortcut above is what `suggest --account` returns
    rep_ids = ds.reps.rep_id.to_numpy()
    for a in differ[:15]:
        assert for_account(ctx, ds.accounts.account_id.iloc[a], top=1).rep_id.iloc[0] == rep_ids[top1[a]]
    # and the confidence mark is not a constant: with a real signal, many suggestions are confident
    best = for_account(ctx, ds.accounts.account_id.iloc[differ[0]], top=40)
    assert set(best.confidence) == {"confident", "within the model's uncertainty"}
    assert best.gain.is_monotonic_decreasing
    # reasons state facts that point the right way: the rep's rate beats the rate it is compared with
    facts = best.reasons.str.extractall(r"wins (\d+)% of [^;]*? vs (\d+)% (?:overall|for the current rep)").astype(int)
    assert len(facts) >= 20 and (facts[0] > facts[1]).all()
    del rows


@st.composite
def reassignments(draw):
    R = draw(st.integers(2, 6))
    cap = np.array(draw(st.lists(st.integers(1, 4), min_size=R, max_size=R)))
    slots = np.repeat(np.arange(R), cap)
    A = draw(st.integers(1, len(slots)))
    perm_cur = draw(st.permutations(list(slots)))
    perm_new = draw(st.permutations(list(slots)))
    cur, new = np.array(perm_cur[:A]), np.array(perm_new[:A])
    unassigned = np.array(draw(st.lists(st.booleans(), min_size=A, max_size=A)))
    cur = np.where(unassigned & draw(st.booleans()), -1, cur)
    gain = np.array(draw(st.lists(st.floats(-5, 10, allow_nan=False), min_size=A, max_size=A)))
    return cur, new, gain, cap


@settings(max_examples=300, deadline=None)
@given(reassignments())
def test_move_groups_partition_the_moves_and_every_prefix_fits(case):
    cur, new, gain, cap = case
    groups = group_moves(cur, new, gain, cap)
    moved = sorted(np.flatnonzero(new != cur).tolist())
    assert sorted(a for g in groups for a in g) == moved
    state = cur.copy()
    for g in groups:
        state[g] = new[g]
        load = np.bincount(state[state >= 0], minlength=len(cap))
        assert (load <= cap).all(), (groups, g)
    assert (state == new).all()


def test_exchange_between_two_full_reps_is_one_group():
    cur, new = np.array([0, 1, 0]), np.array([1, 0, 0])
    groups = group_moves(cur, new, np.array([5.0, -1.0, 0.0]), np.array([2, 1]))
    assert groups == [[0, 1]]
    # a three-rep chain A->B->C where only C has room
    cur, new = np.array([0, 1, 2]), np.array([1, 2, 2])
    assert group_moves(cur, new, np.array([3.0, 1.0, 0.0]), np.array([1, 1, 2])) == [[0, 1]]


def test_suggest_account_rep_and_all_end_to_end(trained):
    org, uri, tmp = trained
    res = run("suggest", "--data", org, "--tracking-uri", uri, "--account", "A00042", "--top", "3", "--out", tmp / "acc.csv")
    assert res.exit_code == 0, res.output
    t = pd.read_csv(tmp / "acc.csv", dtype={"account_id": str, "exchange": str}, keep_default_na=False)
    assert len(t) == 3 and (t.account_id == "A00042").all() and list(t["rank"]) == [1, 2, 3]
    acc = pd.read_csv(org / "accounts.csv", dtype=str).set_index("account_id")
    assert (t.current_rep_id == acc.loc["A00042", "current_rep_id"]).all() and (t.rep_id != t.current_rep_id).all()
    pot = float(acc.loc["A00042", "potential"])
    np.testing.assert_allclose(t.gain, (t.p_win - t.current_p_win) * pot, rtol=1e-6)
    assert t.expected_value.is_monotonic_decreasing
    full = t[~t.has_room]
    assert (full.exchange.str.contains(" goes from ") | full.exchange.str.startswith("no exchange")).all()
    assert (full.net_gain <= full.gain + 1e-9).all() and (t[t.has_room].net_gain == t[t.has_room].gain).all()
    assert t.reasons.str.len().gt(0).all() and "P(win)" in res.output

    res = run("suggest", "--data", org, "--tracking-uri", uri, "--rep", "R003", "--top", "4", "--out", tmp / "rep.csv")
    assert res.exit_code == 0, res.output
    t = pd.read_csv(tmp / "rep.csv", dtype=str)
    assert set(t.action) <= {"take on", "hand over"} and len(t) <= 8
    assert (t[t.action == "take on"].to_rep_id == "R003").all() and (t[t.action == "hand over"].from_rep_id == "R003").all()
    assert (t.gain.astype(float) > 0).all()

    res = run("suggest", "--data", org, "--tracking-uri", uri, "--all", "--max-moves", "10", "--out", tmp / "all.csv")
    assert res.exit_code == 0, res.output
    t = pd.read_csv(tmp / "all.csv", dtype={"account_id": str, "from_rep_id": str, "to_rep_id": str})
    assert 0 < len(t) <= 10 and t.account_id.is_unique
    # the same moves as `repfit assign` under the same budget
    res2 = run("assign", "--data", org, "--tracking-uri", uri, "--max-moves", "10", "--out", tmp / "a.csv")
    assert res2.exit_code == 0, res2.output
    a = pd.read_csv(tmp / "a.csv", dtype=str)
    moved = a[a.moved == "True"].set_index("account_id").rep_id
    assert t.set_index("account_id").to_rep_id.sort_index().equals(moved.sort_index().rename("to_rep_id"))
    np.testing.assert_allclose(t.groupby("rank").gain.sum(), t.groupby("rank").group_gain.first())
    assert set(t.group) <= {"move", "chain", "exchange"}

    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("repfit").experiment_id], "tags.`repfit.kind` = 'suggest'")
    assert len(runs) == 3 and {r.data.params["mode"] for r in runs} == {"account A00042", "rep R003", "all"}
    assert all(r.data.tags["repfit.model_version"] == "1" for r in runs)


def test_suggest_needs_exactly_one_mode_and_known_ids(trained):
    org, uri, _ = trained
    res = run("suggest", "--data", org, "--tracking-uri", uri, "--account", "A00001", "--all")
    assert res.exit_code == 2 and "exactly one of --account ID, --rep ID or --all" in res.output
    res = run("suggest", "--data", org, "--tracking-uri", uri, "--account", "NOPE")
    assert res.exit_code == 2 and "--account 'NOPE' is not in" in res.output and "accounts.csv" in res.output
    assert "Traceback" not in res.output
    res = run("suggest", "--data", org, "--tracking-uri", uri, "--rep", "R999")
    assert res.exit_code == 2 and "--rep 'R999' is not in" in res.output and "reps.csv" in res.output


HOSTILE = '=HYPERLINK("http://evil.example","click")'


def test_csv_outputs_escape_a_hostile_account_name(org_copy, tracking_uri, tmp_path):
    for name in ("accounts.csv", "opportunities.csv"):
        f = org_copy / name
        f.write_text(f.read_text().replace("A00007", HOSTILE.replace('"', '""')).replace(
            HOSTILE.replace('"', '""'), '"' + HOSTILE.replace('"', '""') + '"'))
    assert load_dataset(org_copy).accounts.account_id.eq(HOSTILE).any()
    res = run("train", "--data", org_copy, "--tracking-uri", tracking_uri, "--models-dir", tmp_path / "models")
    assert res.exit_code == 0, res.output
    outs = {"suggest": tmp_path / "s.csv", "score": tmp_path / "scores.csv", "assign": tmp_path / "a.csv"}
    res = run("suggest", "--data", org_copy, "--tracking-uri", tracking_uri, "--account", HOSTILE, "--out", outs["suggest"])
    assert res.exit_code == 0, res.output
    res = run("score", "--data", org_copy, "--tracking-uri", tracking_uri, "--out", outs["score"])
    assert res.exit_code == 0, res.output
    res = run("assign", "--data", org_copy, "--tracking-uri", tracking_uri, "--scores", outs["score"], "--out", outs["assign"])
    assert res.exit_code == 0, res.output
    for kind, path in outs.items():
        cells = pd.read_csv(path, dtype=str, keep_default_na=False)
        values = set(cells.to_numpy().ravel())
        assert "'" + HOSTILE in values, kind
        assert HOSTILE not in values, kind  # never a bare formula
        assert not any(v.startswith(("=", "+", "@")) for v in values), kind
    # reading the escaped scores back still finds the account (the quote is only for spreadsheets)
    assert pd.read_csv(outs["score"]).shape[0] == 12 * 150


def test_maven_suggest_all_marks_noise_as_uncertain(maven_dir, tracking_uri, tmp_path):
    """Acceptance (issue 5): on Maven CRM, where the model finds no rep-account signal, `suggest --all` must not
    present its moves as gains it can stand behind."""
    res = run("train", "--data", maven_dir, "--mapping", MAVEN_MAPPING, "--tracking-uri", tracking_uri,
              "--models-dir", tmp_path / "models")
    assert res.exit_code == 0, res.output
    res = run("suggest", "--data", maven_dir, "--mapping", MAVEN_MAPPING, "--tracking-uri", tracking_uri, "--all",
              "--max-moves", "20", "--out", tmp_path / "s.csv")
    assert res.exit_code == 0, res.output
    t = pd.read_csv(tmp_path / "s.csv")
    assert len(t) == 0 or (t.confidence == "within the model's uncertainty").all()
    assert "NOT borne out" in res.output and "[confident]" not in res.output
    # the per-pair check alone (ignoring the training verdict) also finds no gain beyond twice its standard error
    from repfit.jobs import _context
    from repfit.suggest import _confidence
    from repfit.tracking import open_tracker

    ctx, _, _ = _context(maven_dir, MAVEN_MAPPING, None, None, open_tracker(tracking_uri, tmp_path), None)
    ctx.signal = True
    A = len(ctx.p_win)
    masked = ctx.p_win.copy()
    has = ctx.current >= 0
    masked[np.flatnonzero(has), ctx.current[has]] = -1
    confident, _ = _confidence(ctx, np.arange(A), masked.argmax(axis=1), ctx.current)
    assert not confident.any()
