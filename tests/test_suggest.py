"""repfit suggest: suggestions judged against the planted truth, move groups that ops can accept top-down,
the three modes end to end (real LightGBM, real MLflow store), spreadsheet-safe CSV, and Maven CRM."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repfit.schema import load_dataset
from repfit.scoring import score_matrix
from repfit.suggest import Context, for_account, group_moves
from repfit.synth import true_win_matrix

from conftest import MAVEN_MAPPING, run


@pytest.mark.slow
def test_top1_suggestion_beats_the_current_rep_on_the_planted_truth(demo_org, demo_trained):
    """Acceptance (issue 5): for accounts whose truth-optimal rep is not the current one, the top-1 suggested
    rep's *true* P(win) beats the current rep's in >= 80% of cases (measured 90-91% on seeds 7, 8, 9)."""
    ds = load_dataset(demo_org)
    scorer = demo_trained.scorer
    P = score_matrix(scorer, ds)
    ctx = Context(ds, scorer, P, signal=True)
    truth = true_win_matrix(demo_org, ds.reps.rep_id, ds.accounts.account_id)
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
    if draw(st.booleans()):  # some reps over capacity today (the synthetic org has such reps)
        crowd = np.array(draw(st.lists(st.booleans(), min_size=A, max_size=A)))
        cur = np.where(crowd, 0, cur)
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
    limit = np.maximum(cap, np.bincount(cur[cur >= 0], minlength=len(cap)))  # no rep fuller than today or cap
    for g in groups:
        state[g] = new[g]
        load = np.bincount(state[state >= 0], minlength=len(cap))
        assert (load <= limit).all(), (groups, g)
    assert (state == new).all()


def test_move_groups_take_the_best_available_group_at_almost_every_step():
    """Greedy by gain: measured against recomputing every pending group at each step (1% of steps differ,
    where a chain's value changed deeper down; see ``group_moves``)."""
    from repfit.suggest import move_chain

    rng = np.random.default_rng(1)
    steps = worse = 0
    for _ in range(400):
        R, A = int(rng.integers(2, 6)), int(rng.integers(2, 20))
        cap = rng.integers(1, 6, R)
        cap[0] += max(0, A - cap.sum())
        cur = rng.permutation(np.repeat(np.arange(R), cap))[:A]
        new = rng.permutation(np.repeat(np.arange(R), cap))[:A]
        gain = rng.normal(size=A)
        load = np.bincount(cur, minlength=R)
        pending = set(np.flatnonzero(new != cur).tolist())
        for g in group_moves(cur, new, gain, cap):
            out_of: dict = {}
            for a in pending:
                out_of.setdefault(int(cur[a]), set()).add(a)
            chains = [move_chain(a, cur, new, gain, load, cap, out_of)[0] for a in pending]
            best = max(sum(gain[i] for i in c) for c in chains if c is not None)
            steps += 1
            worse += sum(gain[i] for i in g) < best - 1e-9
            for a in g:
                pending.discard(a)
                load[cur[a]] -= 1
                load[new[a]] += 1
    assert steps > 1000 and worse / steps < 0.03, (worse, steps)


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
    assert set(t[t.action == "hand over"].room) <= {"receiver has room"}

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
    assert set(t.group) <= {"move", "chain", "exchange"}
    for why in t.reasons:  # issue 11 (minor): a reason was printed twice in one suggestion
        parts = why.split("; ")
        assert len(parts) == len(set(parts)), why

    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("repfit").experiment_id], "tags.`repfit.kind` = 'suggest'")
    assert len(runs) == 3 and {r.data.params["mode"] for r in runs} == {"account A00042", "rep R003", "all"}
    assert all(r.data.tags["repfit.model_version"] == "1" for r in runs)


def test_exchanges_make_room_and_charge_only_their_cost(trained, tmp_path):
    """Every rep full but one (two over capacity): each exchange, applied with the suggested move, keeps every rep
    within capacity (or today's load), moves no locked account, and net gain = gain - the hand-offs' losses
    (a hand-off that gains on its own is charged nothing), all recomputed from the scores."""
    import re
    import shutil

    from repfit.jobs import DataSource, Store, suggestion_context

    org, uri, _ = trained
    full = tmp_path / "full"
    shutil.copytree(org, full)
    acc = pd.read_csv(full / "accounts.csv", dtype=str, keep_default_na=False)
    reps = pd.read_csv(full / "reps.csv", dtype=str, keep_default_na=False)
    load = acc.current_rep_id.value_counts()
    reps["capacity"] = reps.rep_id.map(load).fillna(1).astype(int)
    locked = acc[acc.locked.str.lower() == "true"].current_rep_id.value_counts()
    over = [r for r in load.index if load[r] - 1 >= locked.get(r, 0) + 1][:2]
    reps.loc[reps.rep_id.isin(over), "capacity"] -= 1  # today above capacity by one
    reps.loc[reps.rep_id == load.index[-1], "capacity"] += 2  # one rep with room: over-full reps need two slots
    reps.to_csv(full / "reps.csv", index=False)
    ctx = suggestion_context(data=DataSource(full), store=Store(uri, tmp_path))
    ev, cur = ctx.ev(), ctx.current
    rep_pos = {r: i for i, r in enumerate(ctx.ds.reps.rep_id)}
    acc_pos = {a: i for i, a in enumerate(ctx.ds.accounts.account_id)}
    cap = ctx.ds.reps.capacity.to_numpy()
    today = np.bincount(cur, minlength=len(cap))
    is_locked = ctx.ds.accounts.locked.to_numpy(bool)
    checked = over_checked = 0
    for a in np.flatnonzero(~is_locked)[:25]:
        t = for_account(ctx, ctx.ds.accounts.account_id.iloc[a], top=len(cap))
        for row in t[~t.has_room].itertuples():
            if row.exchange.startswith("no exchange"):
                continue
            r = rep_pos[row.rep_id]
            state = cur.copy()
            state[a] = r
            charged = 0.0
            for b, frm, to in re.findall(r"(\S+) goes from (\S+) to (\S+) \(", row.exchange):
                b = acc_pos[b]
                assert frm == row.rep_id and state[b] == r and not is_locked[b]
                state[b] = rep_pos[to]
                charged += max(ev[b, r] - ev[b, rep_pos[to]], 0.0)
            after = np.bincount(state, minlength=len(cap))
            assert after[r] <= cap[r] and (after <= np.maximum(cap, today)).all(), row.exchange
            assert row.net_gain == pytest.approx(row.gain - charged, rel=1e-9, abs=1e-6)
            checked += 1
            over_checked += row.rep_id in over
    assert checked > 20 and over_checked > 0


def test_a_locked_account_is_named_not_moved(trained):
    org, uri, _ = trained
    acc = pd.read_csv(org / "accounts.csv", dtype=str)
    locked = acc[acc.locked.str.lower() == "true"].iloc[0]
    res = run("suggest", "--data", org, "--tracking-uri", uri, "--account", locked.account_id)
    assert res.exit_code == 2 and f"is locked to {locked.current_rep_id}" in res.output and "Traceback" not in res.output


def test_suggest_needs_exactly_one_mode_and_known_ids(trained):
    org, uri, _ = trained
    res = run("suggest", "--data", org, "--tracking-uri", uri, "--account", "A00001", "--all")
    assert res.exit_code == 2 and "exactly one of --account ID, --rep ID or --all" in res.output
    res = run("suggest", "--data", org, "--tracking-uri", uri, "--account", "NOPE")
    assert res.exit_code == 2 and "--account: account_id 'NOPE' is not in" in res.output and "accounts.csv" in res.output
    assert "Traceback" not in res.output
    res = run("suggest", "--data", org, "--tracking-uri", uri, "--rep", "R999")
    assert res.exit_code == 2 and "--rep: rep_id 'R999' is not in" in res.output and "reps.csv" in res.output


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
    # `assign --scores scores.csv` above read the escaped ids back: the quote is only for spreadsheets


@pytest.mark.slow
def test_maven_suggest_all_marks_noise_as_uncertain(maven_dir, maven_trained, tmp_path):
    """Acceptance (issue 5): on Maven CRM, where the model finds no rep-account signal, `suggest --all` must not
    present its moves as gains it can stand behind."""
    tracking_uri = maven_trained.copy_to(tmp_path)  # Maven trained once per session, this test's copy of the store
    res = run("suggest", "--data", maven_dir, "--mapping", MAVEN_MAPPING, "--tracking-uri", tracking_uri, "--all",
              "--max-moves", "20", "--out", tmp_path / "s.csv")
    assert res.exit_code == 0, res.output
    t = pd.read_csv(tmp_path / "s.csv")
    assert len(t) == 0 or (t.confidence == "within the model's uncertainty").all()
    assert "NOT borne out" in res.output and "[confident]" not in res.output
    # the per-pair check alone (ignoring the training verdict) also finds no gain beyond twice its standard error
    from dataclasses import replace

    from repfit.jobs import DataSource, Store, suggestion_context
    from repfit.suggest import confidence

    ctx = suggestion_context(data=DataSource(maven_dir, MAVEN_MAPPING), store=Store(tracking_uri, tmp_path))
    ctx = replace(ctx, signal=True)
    A = len(ctx.p_win)
    masked = ctx.p_win.copy()
    has = ctx.current >= 0
    masked[np.flatnonzero(has), ctx.current[has]] = -1
    confident, _ = confidence(ctx, np.arange(A), masked.argmax(axis=1), ctx.current)
    assert not confident.any()
