"""Training, honest evaluation against baselines and the planted truth, MLflow registry and champion logic.

Real LightGBM, a real MLflow SQLite store and registry: nothing is mocked.
"""

from __future__ import annotations

import json
from pathlib import Path
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from repfit.cli import app
from repfit.schema import load_dataset
from repfit.features.catalogue import Role, Subject
from repfit.synth import true_win_probability
from repfit.training.evaluate import recovery_of, truth_recovery


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.slow
def test_demo_org_recovers_planted_strengths_and_beats_every_baseline(demo_org, demo_trained):
    """Acceptance (issue 3): ~40 x 2,000, ~8,000 closed deals. Figures also in benchmarks/winprob_quality.md."""
    ds = load_dataset(demo_org)
    assert 7500 < len(ds.closed) < 8500
    m = {**demo_trained.metrics, **recovery_of(demo_trained.scorer, true_win_probability(demo_org))}
    assert m["truth_pairs"] == 40 * 2000
    assert m["truth_spearman_within_account"] >= 0.70
    assert m["truth_spearman_within_account"] > m["rep_rate.truth_spearman_within_account"] + 0.1
    assert m["truth_mae"] < m["rep_rate.truth_mae"]
    for base in ("global_rate", "rep_rate", "logistic"):
        assert m["repfit.test.auc"] > m[f"{base}.test.auc"], base
    assert m["signal.detected"] == 1.0


@pytest.mark.slow
def test_contributions_add_up_to_the_log_odds_when_boosting_from_the_joint_model(demo_trained):
    """Reasons read per-feature contributions; with the booster starting from the joint model's log-odds, that
    start must be split into its features (not lost), and every row must still add up to the model's log-odds."""
    model, cat = demo_trained.scorer.model, demo_trained.scorer.catalogue
    assert cat[model.offset_].role is Role.JOINT_TOTAL
    X = demo_trained.test_features.head(200)
    c = model.contributions(X)
    p = model.predict_uncalibrated(X)
    np.testing.assert_allclose(c.sum(axis=1), np.log(p / (1 - p)), atol=1e-8)
    joint_cols = [col.name for col in cat.select(role=Role.JOINT_DIM)]
    assert {col.dimension for col in cat.select(role=Role.JOINT_DIM)} >= {"industry", "employees_band", "product"}
    rep_rate, rep_part = cat.one(role=Role.RATE, subject=Subject.REP), cat.one(role=Role.JOINT_REP, subject=Subject.REP)
    # what the start adds: its rep-specific part to the rep's dimensions and overall rate, the rest to the bias
    booster = model.booster_.predict(X[model.feature_names_in_], num_iteration=model.best_iteration_, pred_contrib=True)
    added = c - pd.DataFrame(booster, columns=c.columns, index=c.index)
    a, b = model.offset_scale_  # the start is the joint log-odds recalibrated on the training rows
    assert 0.3 < a < 3.0
    np.testing.assert_allclose(added[joint_cols + [rep_rate]].sum(axis=1), a * X[rep_part], atol=1e-8)
    np.testing.assert_allclose(added["bias"], a * (X[model.offset_] - X[rep_part]) + b, atol=1e-8)
    assert (added.drop(columns=joint_cols + [rep_rate, "bias"]) == 0).all().all()


def test_truth_recovery_metric_against_known_answers():
    pairs = pd.DataFrame({"rep_id": ["a", "b", "c"] * 2, "account_id": ["x"] * 3 + ["y"] * 3})
    truth = pairs.assign(p_true=[0.1, 0.2, 0.3, 0.3, 0.2, 0.1])
    same = truth_recovery(pairs.assign(p_win=[0.2, 0.3, 0.4, 0.5, 0.4, 0.3]), truth)
    assert same["truth_spearman_within_account"] == pytest.approx(1.0)
    assert same["truth_mae"] == pytest.approx(0.15)  # errors 0.1 on account x, 0.2 on y
    rev = truth_recovery(pairs.assign(p_win=[0.3, 0.2, 0.1, 0.1, 0.2, 0.3]), truth)
    assert rev["truth_spearman_within_account"] == pytest.approx(-1.0)


def _train(org, uri, tmp_path, *extra):
    return run("train", "--data", org, "--tracking-uri", uri, "--models-dir", tmp_path / "models", *extra)


def test_champion_only_changes_for_a_better_model_and_runs_read_back(small_org, tracking_uri, tmp_path):
    from mlflow.tracking import MlflowClient

    weak = tmp_path / "base_rate.toml"  # one tiny boosting round from a constant: about the base rate
    weak.write_text("[lightgbm]\nmax_rounds = 1\nlearning_rate = 0.01\nrefit = false\nboost_from = \"\"\n")
    worse = tmp_path / "overfit.toml"  # no regularisation, no early stopping: memorises the training period
    worse.write_text("[lightgbm]\nmax_rounds = 300\nearly_stopping_rounds = 1000\nlearning_rate = 0.5\nnum_leaves = 63\n"
                     "min_child_samples = 2\nlambda_l2 = 0.0\nmonotone = false\nrefit = false\n"
                     "[calibration]\ncalibration = \"none\"\n")

    first = _train(small_org, tracking_uri, tmp_path, "--config", weak)
    assert first.exit_code == 0, first.output
    assert "version 1: no champion yet" in first.output and "champion -> v1" in first.output

    second = _train(small_org, tracking_uri, tmp_path, "--config", worse)
    assert second.exit_code == 0, second.output
    assert "version 2: kept as challenger: does not beat the champion" in second.output
    assert "champion stays v1" in second.output

    third = _train(small_org, tracking_uri, tmp_path)  # default config: better
    assert third.exit_code == 0, third.output
    assert "version 3: promoted: beats the champion" in third.output

    client = MlflowClient(tracking_uri)
    assert str(client.get_model_version_by_alias("repfit-winprob", "champion").version) == "3"
    assert str(client.get_model_version_by_alias("repfit-winprob", "challenger").version) == "3"
    forced = _train(small_org, tracking_uri, tmp_path, "--config", worse, "--promote")
    assert "promoted on request although it does not beat the champion" in forced.output
    assert str(client.get_model_version_by_alias("repfit-winprob", "champion").version) == "4"

    runs = client.search_runs([client.get_experiment_by_name("repfit").experiment_id], order_by=["attributes.start_time ASC"])
    assert len(runs) == 4
    r3 = runs[2]
    for key in ("repfit.test.auc", "repfit.test.log_loss", "repfit.test.brier", "repfit.test.ece",
                "logistic.test.auc", "global_rate.test.log_loss", "rep_rate.test.auc",
                "champion.test.log_loss", "signal.log_loss_gain"):
        assert key in r3.data.metrics, key
    # planted truth is for tests and benchmarks: production training never looks for it (issue 10)
    assert not any(k.startswith(("truth_", "rep_rate.truth")) for k in r3.data.metrics)
    assert r3.data.metrics["champion.test.log_loss"] > r3.data.metrics["challenger.test.log_loss_same_rows"]
    assert r3.data.tags["data_rows_closed"] == str(len(load_dataset(small_org).closed))
    assert len(r3.data.tags["data_sha256"]) == 64
    assert r3.data.params["seed"] == "42"
    artifacts = {a.path for a in client.list_artifacts(r3.info.run_id)} | {
        a.path for d in ("plots", "evaluation", "bundle") for a in client.list_artifacts(r3.info.run_id, d)}
    assert {"plots/calibration.png", "plots/feature_importance.png", "evaluation/test_metrics.csv",
            "bundle/scorer.joblib"} <= artifacts
    assert (tmp_path / "models" / "repfit-winprob-v3.joblib").is_file()
    assert (tmp_path / "models" / "repfit-winprob-champion.joblib").is_file()


def test_champion_loads_in_a_fresh_process_and_scores_pairs(trained):
    from repfit.winprob import PairScorer

    _, tracking_uri, tmp_path = trained
    pairs = pd.DataFrame({"rep_id": ["R001", "R002", "R012"], "account_id": ["A00001", "A00150", "A00042"]})
    code = (
        "import json, sys, pandas as pd, mlflow\n"
        "m = mlflow.pyfunc.load_model('models:/repfit-winprob@champion')\n"
        "out = m.predict(pd.DataFrame(json.loads(sys.argv[1])))\n"
        "print(json.dumps(out['p_win'].tolist()))\n"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    proc = subprocess.run([sys.executable, "-c", code, pairs.to_json(orient="records")], env=env,
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    fresh = json.loads(proc.stdout.strip().splitlines()[-1])
    local = PairScorer.load(tmp_path / "models" / "repfit-winprob-champion.joblib").score(pairs.rep_id, pairs.account_id)
    np.testing.assert_allclose(fresh, local, rtol=1e-9)
    assert all(0 < p < 1 for p in fresh)


def test_train_on_bad_data_fails_cleanly(org_copy, tracking_uri, tmp_path):
    (org_copy / "reps.csv").write_text("rep_id\nR001\nR001\n")
    res = CliRunner().invoke(app, ["train", "--data", str(org_copy), "--tracking-uri", tracking_uri])
    assert res.exit_code == 2 and "duplicate values 'R001'" in res.output and "Traceback" not in res.output


@pytest.mark.slow
def test_maven_crm_trains_through_the_mapping_and_claims_no_strengths(maven_trained):
    res = maven_trained.result  # `repfit train --data <maven> --mapping examples/maven_crm/repfit.toml`
    assert res.exit_code == 0, res.output
    assert "rep strengths: NOT borne out by the test period" in res.output


def test_a_champion_of_an_older_bundle_format_is_replaced_not_a_dead_end(small_org, tracking_uri, tmp_path):
    """After an upgrade the store's champion may be a bundle this repfit refuses to load: training compares with
    nothing and promotes the new version, and loading the old one says what to do (issue 10 review). A fresh
    store: the bundle is overwritten in place."""
    from dataclasses import replace
    from urllib.parse import urlparse

    from mlflow.tracking import MlflowClient

    from repfit.errors import RepfitError
    from repfit.winprob import BUNDLE_VERSION, PairScorer

    assert _train(small_org, tracking_uri, tmp_path).exit_code == 0
    client = MlflowClient(tracking_uri)
    champ = client.get_model_version_by_alias("repfit-winprob", "champion")
    bundle = Path(urlparse(client.get_run(champ.run_id).info.artifact_uri).path) / "bundle" / "scorer.joblib"
    replace(PairScorer.load(bundle), version=1).save(bundle)
    with pytest.raises(RepfitError, match=f"format version 1, but this repfit reads version {BUNDLE_VERSION}"):
        PairScorer.load(bundle)
    res = _train(small_org, tracking_uri, tmp_path)
    assert res.exit_code == 0, res.output
    assert f"champion v{champ.version} cannot be read by this repfit" in res.output
    assert str(client.get_model_version_by_alias("repfit-winprob", "champion").version) == "2"
    (tmp_path / "junk.joblib").write_bytes(b"not a pickle")
    res = CliRunner().invoke(app, ["score", "--data", str(small_org), "--tracking-uri", tracking_uri,
                                   "--model", str(tmp_path / "junk.joblib"), "--out", str(tmp_path / "s.csv")])
    assert res.exit_code == 2 and "junk.joblib: not a repfit model bundle" in res.output
    assert "Traceback" not in res.output and not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize("case, expected", [
    ("all lost", "no won deals"), ("all won", "no lost deals"),
    ("one rep", "closed deals of only one rep"), ("one account", "closed deals on only one account"),
])
def test_degenerate_history_is_refused_before_training(org_copy, tracking_uri, case, expected):
    """Issue 11, item 10: these crashed after the whole fit."""
    opp = pd.read_csv(org_copy / "opportunities.csv", dtype=str, keep_default_na=False)
    closed = opp.outcome.isin(["won", "lost"])
    if case == "all lost":
        opp.loc[closed, "outcome"] = "lost"
    elif case == "all won":
        opp.loc[closed, "outcome"] = "won"
    elif case == "one rep":
        opp["rep_id"] = opp.rep_id.iloc[0]
    else:
        opp["account_id"] = opp.account_id.iloc[0]
    opp.to_csv(org_copy / "opportunities.csv", index=False)
    res = CliRunner().invoke(app, ["train", "--data", str(org_copy), "--tracking-uri", tracking_uri])
    assert res.exit_code == 2, res.output
    assert expected in res.output and "nothing to learn rep strengths from" in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
