"""Issue 14, points 3 and 5: the fast scoring path (features gathered per rep / account / level, compiled trees)
gives the same P(win) as the reference path (``pair_features`` + LightGBM's ``Booster.predict``), and the Dask path
gives the single process's scores, which ``repfit assign`` reads back."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from repfit import schema as S
from repfit.features import pair_features
from repfit.features.grid import PairGrid, checked_grid
from repfit.schema import load_dataset
from repfit.scoring import ScoreGrid, read_scores, refresh_history, score_blocks, score_matrix, write_scores
from repfit.winprob import PairScorer

from conftest import run


@pytest.fixture(scope="module")
def scorer_ds(trained_store, small_org):
    ds = load_dataset(small_org)
    scorer = PairScorer.load(trained_store.models / "repfit-winprob-champion.joblib")
    return refresh_history(scorer, ds), ds


def _reference(scorer, ds) -> np.ndarray:
    """The uncompiled path, pair by pair: ``pair_features`` then ``WinProbModel.predict_win`` (Booster.predict)."""
    R, A = len(ds.reps), len(ds.accounts)
    r = scorer.space.rep_index(ds.reps[S.REP_ID])
    a = scorer.space.account_index(ds.accounts[S.ACCOUNT_ID])
    return scorer.model.predict_win(pair_features(scorer.space, scorer.history, np.tile(r, A), np.repeat(a, R)))


def test_grid_features_equal_pair_features(scorer_ds):
    scorer, ds = scorer_ds
    kinds = {d.kind.value for d in scorer.space.dims}
    assert kinds >= {"account", "band", "opportunity", "match"}, kinds  # every kind of dimension is exercised
    g = ScoreGrid.of(scorer, ds)
    rev = g.r_idx[::-1].copy()  # reps in another order than the space's: the grid follows the order it is given
    cols = scorer.model.feature_names_in_
    F = PairGrid(scorer.space, scorer.history, cols, rev).block(g.a_idx, 7, 61)
    X = pair_features(scorer.space, scorer.history, np.tile(rev, 54), np.repeat(g.a_idx[7:61], len(rev)))[cols]
    X = X.to_numpy()
    assert (X[:, list(cols).index("pair_n")] > 0).any()  # pairs with deals together are among them
    np.testing.assert_array_equal(np.isnan(F), np.isnan(X))
    np.testing.assert_allclose(np.nan_to_num(F), np.nan_to_num(X), rtol=1e-13, atol=1e-13)
    assert isinstance(checked_grid(scorer.space, scorer.history, cols, g.r_idx, g.a_idx), PairGrid)


def test_compiled_trees_equal_booster_predict(scorer_ds, tmp_path):
    """Compiled trees vs LightGBM's own predict on the same features (with missing values), then the whole P(win)
    of every pair vs the uncompiled path: 1e-9. The compiled model is cached and reloaded."""
    pytest.importorskip("lleaves")
    scorer, ds = scorer_ds
    m = scorer.model
    trees = m.trees("compiled", cache_dir=tmp_path)
    assert trees.name == "compiled", trees.note
    assert trees.cache.is_file()
    g = ScoreGrid.of(scorer, ds)
    X = PairGrid(scorer.space, scorer.history, m.feature_names_in_, g.r_idx).block(g.a_idx, 0, len(g.accounts))
    X[np.random.default_rng(0).random(X.shape) < 0.05] = np.nan  # LightGBM's missing: same branch both ways
    expect = m.booster_.predict(X, num_iteration=m.best_iteration_, raw_score=True)
    np.testing.assert_allclose(trees.raw(X), expect, rtol=0, atol=1e-9)
    again = m.trees("auto", cache_dir=tmp_path)  # cached: "auto" takes it even for a small run
    assert again.name == "compiled" and again.cache == trees.cache
    np.testing.assert_allclose(again.raw(X[:100]), expect[:100], rtol=0, atol=1e-9)

    ref = _reference(scorer, ds)
    for t in (None, trees, m.trees("lightgbm")):  # the last two: chunks on 2 threads (config n_jobs)
        got = np.concatenate([b["p_win"].to_numpy() for b in score_blocks(scorer, ds, 1000, trees=t)])
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)


def test_blocks_keep_their_layout(scorer_ds):
    """Blocks: rep_id / account_id (categorical), p_win, expected_value, cold; account-major in data order."""
    scorer, ds = scorer_ds
    blocks = list(score_blocks(scorer, ds, 1000))
    assert len(blocks) > 1
    df = pd.concat([b.astype({S.REP_ID: str, S.ACCOUNT_ID: str}) for b in blocks], ignore_index=True)
    R = len(ds.reps)
    assert list(df.columns) == [S.REP_ID, S.ACCOUNT_ID, "p_win", "expected_value", "cold"]
    assert (df[S.REP_ID].to_numpy() == np.tile(ds.reps[S.REP_ID].to_numpy(str), len(ds.accounts))).all()
    assert (df[S.ACCOUNT_ID].to_numpy() == np.repeat(ds.accounts[S.ACCOUNT_ID].to_numpy(str), R)).all()
    np.testing.assert_allclose(df["expected_value"], df["p_win"] * np.repeat(ds.accounts[S.POTENTIAL].to_numpy(float), R))
    np.testing.assert_array_equal(score_matrix(scorer, ds), df["p_win"].to_numpy().reshape(-1, R))


def test_no_compiler_falls_back_with_a_note(scorer_ds, tmp_path, monkeypatch):
    """lleaves missing or broken: LightGBM's predict, one line saying so, scoring unchanged."""
    import builtins

    real = builtins.__import__

    def no_lleaves(name, *a, **kw):
        if name.startswith("lleaves"):
            raise ImportError("No module named 'lleaves'")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_lleaves)
    trees = scorer_ds[0].model.trees("compiled", cache_dir=tmp_path)
    assert trees.name == "lightgbm"
    assert "not compiled" in trees.note and "lleaves" in trees.note and "\n" not in trees.note


def top2(block: pd.DataFrame) -> pd.DataFrame:
    """A per-block transform as the workers apply it: each account's two best reps."""
    return block.sort_values("p_win", ascending=False, kind="stable").groupby(S.ACCOUNT_ID, observed=True).head(2)


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c:
        yield c


def test_dask_scores_equal_single_process_and_assign_reads_them(cluster, trained, tmp_path):
    """`repfit score --dask ADDRESS` writes Parquet parts equal to the single process's file, and `repfit assign`
    reads the directory back."""
    org, uri, store = trained
    one, parts = tmp_path / "one.parquet", tmp_path / "parts.parquet"
    scorer = refresh_history(PairScorer.load(store / "models" / "repfit-winprob-champion.joblib"), load_dataset(org))
    write_scores(score_blocks(scorer, load_dataset(org)), one)  # the single process (its CLI: other tests)
    res = run("score", "--data", org, "--tracking-uri", uri, "--out", parts, "--dask", cluster.scheduler_address,
              "--block-pairs", 1000)
    assert res.exit_code == 0, res.output
    assert "4 parts from 2 Dask workers" in res.output
    files = sorted(parts.glob("*.parquet"))
    assert [f.name for f in files] == [f"part-{i:05d}.parquet" for i in range(4)]
    a, b = pd.read_parquet(one), pd.read_parquet(parts)
    assert len(b) == len(a) == 12 * 150
    for c in (S.REP_ID, S.ACCOUNT_ID):
        assert (a[c].astype(str).to_numpy() == b[c].astype(str).to_numpy()).all()
    for c in ("p_win", "expected_value", "cold"):
        np.testing.assert_array_equal(a[c].to_numpy(), b[c].to_numpy())
    ds = load_dataset(org)
    np.testing.assert_array_equal(read_scores(parts, ds), read_scores(one, ds))  # the reader assign uses
    out = tmp_path / "assignment.csv"
    res = run("assign", "--data", org, "--tracking-uri", uri, "--scores", parts, "--out", out)
    assert res.exit_code == 0, res.output
    plan = pd.read_csv(out)
    assert sorted(plan[S.ACCOUNT_ID].astype(str)) == sorted(ds.accounts[S.ACCOUNT_ID].astype(str))


def test_dask_applies_the_block_transform_on_workers(cluster, scorer_ds, tmp_path):
    from distributed import Client

    from repfit.distributed import score_on_cluster

    scorer, ds = scorer_ds
    grid = ScoreGrid.of(scorer, ds)
    with Client(cluster) as client:
        res = score_on_cluster(client, scorer, grid, tmp_path / "top2", block_pairs=1000, engine="lightgbm",
                               transform=top2)
    got = pd.read_parquet(tmp_path / "top2").astype({S.REP_ID: str, S.ACCOUNT_ID: str})
    assert res.pairs == len(ds.reps) * len(ds.accounts) and res.rows == len(got) == 2 * len(ds.accounts)
    P = score_matrix(scorer, ds)
    best = np.sort(P, axis=1)[:, -2:].sum(axis=1)
    per_account = got.groupby(S.ACCOUNT_ID)["p_win"].sum().reindex(ds.accounts[S.ACCOUNT_ID])
    np.testing.assert_allclose(per_account.to_numpy(), best, rtol=0, atol=1e-12)


def test_dask_bad_address_and_csv_are_one_line_errors(trained, tmp_path):
    org, uri, _ = trained
    res = run("score", "--data", org, "--tracking-uri", uri, "--out", tmp_path / "s", "--dask", "local:zero")
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "--dask: 'local:zero' is not a local cluster" in res.output and "Fix:" in res.output
    res = run("score", "--data", org, "--tracking-uri", uri, "--out", tmp_path / "s.csv", "--dask", "local:2")
    assert res.exit_code != 0 and "not one CSV file" in res.output
    assert not (tmp_path / "s.csv").exists()


def test_grid_that_disagrees_with_pair_features_is_not_used(scorer_ds, monkeypatch):
    """Should the gathered features drift from ``pair_features`` (a formula changed in one place only), scoring
    falls back to ``pair_features`` and keeps the reference P(win)."""
    from repfit.features.grid import FrameGrid

    scorer, ds = scorer_ds
    real = PairGrid.block

    def drifted(self, *a, **kw):
        F = real(self, *a, **kw)
        F[:, self.col["rep_rate"]] += 1e-6
        return F

    monkeypatch.setattr(PairGrid, "block", drifted)
    g = ScoreGrid.of(scorer, ds)
    assert isinstance(checked_grid(scorer.space, scorer.history, scorer.model.feature_names_in_, g.r_idx, g.a_idx),
                      FrameGrid)
    got = np.concatenate([b["p_win"].to_numpy() for b in score_blocks(scorer, ds, 1000)])
    np.testing.assert_allclose(got, _reference(scorer, ds), rtol=0, atol=1e-9)
