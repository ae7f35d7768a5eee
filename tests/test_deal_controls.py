"""Deal-level attributes as controls (issue 12, item 5), on an org of ``worlds.py`` (not ``repfit synth``).

Renewals (+1.5 log-odds) and inbound leads (+0.8) are routed to a renewal desk and an inbound desk, a third of the
reps each, drawn independently of skill. A rep must be credited with its skill, not with the ease of the deals it
was handed: with deal_type and lead_source in opportunities.csv, the reps' ranking must follow their planted skill,
and the renewal desk must not be ranked above it.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import run
from worlds import CONTROLS, deal_shares, generate, rep_recovery, write_deal_world

from repfit import schema as S
from repfit.config import FeatureConfig
from repfit.features import FeatureSpace, pair_features, point_in_time_features, snapshot
from repfit.schema import load_dataset

REPS, ACCOUNTS, SEED = 30, 900, 4  # trained twice through the CLI: ~9 s


def _train_and_score(org, store_template, folder) -> pd.DataFrame:
    """``repfit train`` then ``repfit score`` on ``org``, as a user runs them, into a store of its own."""
    (folder / "mlruns").mkdir(parents=True)
    shutil.copy(store_template, folder / "mlruns" / "mlflow.db")
    uri = f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"
    res = run("train", "--data", org, "--tracking-uri", uri, "--models-dir", folder / "models")
    assert res.exit_code == 0, res.output
    res = run("score", "--data", org, "--out", folder / "scores.parquet", "--tracking-uri", uri)
    assert res.exit_code == 0, res.output
    return pd.read_parquet(folder / "scores.parquet")


@pytest.fixture(scope="module")
def arms(tmp_path_factory, _migrated_db):
    """The same org trained and scored with and without its deal-level columns: (world, {arm: recovery})."""
    out = {}
    for arm, controls in (("with", True), ("without", False)):
        folder = tmp_path_factory.mktemp(f"deal_{arm}")
        world = write_deal_world(folder / "org", REPS, ACCOUNTS, SEED, controls=controls)
        out[arm] = rep_recovery(_train_and_score(folder / "org", _migrated_db, folder), world)
    return world, out


def test_the_world_is_confounded_so_the_check_can_fail(arms):
    """Without the deal-level columns the renewal desk is ranked well above its skill: what the controls must undo."""
    world, m = arms
    shares = deal_shares(world).merge(world.truth_reps, on=S.REP_ID)
    assert shares.loc[shares.renewal_desk, "renewal_share"].min() > 0.6
    assert shares.loc[~shares.renewal_desk, "renewal_share"].max() < 0.3
    assert m["without"]["renewal_desk_lift"] < -3 and m["without"]["renewal_coef"] > 0.7


def test_with_deal_controls_reps_are_ranked_by_skill_not_by_their_deals(arms):
    _, m = arms
    w, wo = m["with"], m["without"]
    assert w["rep_skill"] > wo["rep_skill"] + 0.05, (w, wo)
    assert w["within_account"] > wo["within_account"] + 0.03, (w, wo)
    # the renewal desk is not ranked above its true skill (rank positions among 30 reps; chance level ~1)
    assert w["renewal_desk_lift"] > -1.5, w
    assert abs(w["renewal_coef"]) < 0.4 and abs(w["inbound_coef"]) < 0.4, w


@pytest.fixture(scope="module")
def deal_org(tmp_path_factory):
    """60 reps x 3,000 accounts (~11k closed deals): counting is cheap, and a rep's rate over ~190 deals is precise
    enough to tell a leak of the deal ease (~1 log-odds per unit share, gross) from noise (~0.1)."""
    folder = tmp_path_factory.mktemp("deal_world")
    world = write_deal_world(folder, 60, 3000, SEED)
    return world, load_dataset(folder)


def test_shrunk_rep_rates_are_net_of_deal_level_attributes(deal_org):
    """The rep's overall rate (a feature, and the baseline of every strength) counts its wins against what its deal
    mix predicts: it must follow skill, not the renewal share (gross, the renewal desk's rate is ~1 log-odds up)."""
    world, ds = deal_org
    space = FeatureSpace.build(ds, FeatureConfig(joint_prior_sd=0.0))
    snap = snapshot(space, ds.closed)
    rate = pd.Series(pair_features(space, snap, np.arange(len(space.rep_ids)), np.zeros(len(space.rep_ids), int))
                     ["rep_rate"].to_numpy(), index=space.rep_ids)
    gross = pd.Series(snap.w_r / snap.n_r, index=space.rep_ids)
    tr = world.truth_reps.merge(deal_shares(world), on=S.REP_ID)
    X = np.column_stack([np.ones(len(tr)), tr["skill"], tr["renewal_share"], tr["inbound_share"]])

    def coef(p: pd.Series) -> np.ndarray:
        y = p.loc[tr[S.REP_ID]].to_numpy()
        return np.linalg.lstsq(X, np.log(y / (1 - y)), rcond=None)[0]

    gross_coef, net = coef(gross), coef(rate)
    assert gross_coef[2] > 0.8 and gross_coef[3] > 0.4, gross_coef  # the history is confounded: the check can fail
    assert abs(net[2]) < 0.3 and abs(net[3]) < 0.3 and net[1] > 0.5, net


def test_training_and_scoring_features_agree_with_two_deal_level_attributes(deal_org):
    """One formula for both paths (each opportunity dimension's counts net of the other's ease)."""
    _, ds = deal_org
    space = FeatureSpace.build(ds, FeatureConfig())
    q = (ds.closed.drop(columns=list(CONTROLS)).sample(40, random_state=0)
         .assign(**{S.CREATED_AT: pd.Timestamp("2100-01-01")}))
    a = point_in_time_features(space, ds.closed, q)
    b = pair_features(space, snapshot(space, ds.closed), space.rep_index(q[S.REP_ID]), space.account_index(q[S.ACCOUNT_ID]))
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b, rtol=1e-12)
    assert {"deal_type_strength", "lead_source_strength"} <= set(a.columns)


def test_the_world_is_deterministic_and_its_truth_averages_the_accounts_mix():
    a, b = generate(6, 40, seed=2), generate(6, 40, seed=2)
    pd.testing.assert_frame_equal(a.opportunities, b.opportunities)
    assert not a.opportunities.equals(generate(6, 40, seed=3).opportunities)
    t = a.true_win_probability()
    assert len(t) == 6 * 40 and t["p_true"].between(0, 1).all()
    # rep 2 on account 7, by hand: the planted log-odds averaged over the account's own renewal x inbound mix
    p, rep, acc = a.params, a.truth_reps.iloc[2], a.truth_accounts.iloc[7]
    z = (p.base_logit + rep["skill"] + p.segment_effect[acc["segment_code"]] + rep[f"rep_segment_{acc['segment']}"]
         + acc["difficulty"])
    want = sum((acc["p_renewal"] if ren else 1 - acc["p_renewal"]) * (acc["p_inbound"] if inb else 1 - acc["p_inbound"])
               / (1 + np.exp(-(z + p.renewal_effect * ren + p.inbound_effect * inb))) for ren in (0, 1) for inb in (0, 1))
    got = t.set_index([S.REP_ID, S.ACCOUNT_ID]).loc[(rep[S.REP_ID], acc[S.ACCOUNT_ID]), "p_true"]
    assert got == pytest.approx(want, rel=1e-12)
