"""Feature pipelines: point-in-time correctness, one formula for training and scoring, planted strengths."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

from repfit import schema as S
from repfit.config import (
    FeatureConfig,
    TrainConfig,
    load_feature_config,
    load_train_config,
)
from repfit.errors import ConfigError, SchemaError
from repfit.features import (
    FeatureSpace,
    learn_joint,
    pair_features,
    point_in_time_features,
    resolve_dimensions,
    snapshot,
)
from repfit.schema import load_dataset


@pytest.fixture(scope="module")
def ds(small_org):
    return load_dataset(small_org)


@pytest.fixture(scope="module")
def space(ds):
    return FeatureSpace.build(ds, FeatureConfig())


def test_dimensions_cover_attributes_bands_products_and_matches(space):
    kinds = {d.name: d.kind.value for d in space.dims}
    assert kinds == {"industry": "account", "region": "account", "employees_band": "band",
                     "product": "opportunity", "region_match": "match"}
    # names are ids (all distinct): never features
    assert not any("name" in c for c in list(space.rep_static.columns) + list(space.account_static.columns))


def test_appending_later_opportunities_never_changes_earlier_features(ds, space):
    closed = ds.closed.sort_values(S.CREATED_AT)
    cutoff = closed[S.CREATED_AT].quantile(0.6)
    early = closed[closed[S.CREATED_AT] < cutoff]
    history_then = closed[closed[S.CREATED_AT] < cutoff]  # what existed (created) before the cutoff
    before = point_in_time_features(space, history_then, early)
    after = point_in_time_features(space, closed, early)  # later opportunities appended
    pd.testing.assert_frame_equal(before, after)
    # flipping the outcome of every deal closed on or after a row's creation changes nothing for that row
    flipped = closed.assign(**{S.WON: np.where(closed[S.CLOSED_AT] >= cutoff, 1 - closed[S.WON], closed[S.WON])})
    pd.testing.assert_frame_equal(point_in_time_features(space, flipped, early), before)
    # ... while the features of later rows do see history (the test can fail)
    late = closed[closed[S.CREATED_AT] > closed[S.CREATED_AT].quantile(0.8)]
    assert len(late) > 50 and not point_in_time_features(space, flipped, late).equals(point_in_time_features(space, closed, late))


def test_row_created_after_all_history_gets_the_scoring_features(ds, space):
    snap = snapshot(space, ds.closed)
    q = ds.closed.drop(columns=["product"]).sample(40, random_state=0).assign(**{S.CREATED_AT: pd.Timestamp("2100-01-01")})
    a = point_in_time_features(space, ds.closed, q)
    b = pair_features(space, snap, space.rep_index(q[S.REP_ID]), space.account_index(q[S.ACCOUNT_ID]))
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b, rtol=1e-12)


def test_a_row_gets_the_same_features_whatever_batch_it_is_scored_in(ds, space):
    """The champion is scored on the challenger's test rows alone, the challenger on all of history at once: the
    comparison is only fair if a row's features do not depend on the rows around it (review of the joint model)."""
    closed = ds.closed.sort_values([S.CREATED_AT, S.OPPORTUNITY_ID]).reset_index(drop=True)
    late = closed.tail(120).reset_index(drop=True)
    alone = point_in_time_features(space, closed, late)
    in_full = point_in_time_features(space, closed, closed).tail(120).reset_index(drop=True)
    pd.testing.assert_frame_equal(alone, in_full)
    assert {"joint_logit", "industry_joint"} <= set(alone.columns)
    empty = point_in_time_features(space, closed, closed.head(0))
    assert list(empty.columns) == list(alone.columns) and len(empty) == 0


def test_first_deal_has_no_history(ds, space):
    first = ds.closed.nsmallest(1, S.CREATED_AT)
    x = point_in_time_features(space, ds.closed, first).iloc[0]
    assert x["rep_n"] == 0 and x["pair_n"] == 0 and x["industry_n"] == 0


def test_rep_strength_finds_the_planted_best_and_worst_industry():
    import tempfile
    from pathlib import Path

    from repfit.synth import write_org

    with tempfile.TemporaryDirectory() as d:
        write_org(d, 20, 1500, seed=5)
        data = load_dataset(d)
        truth = pd.read_csv(Path(d) / "truth" / "rep_strengths.csv", keep_default_na=False)
    sp = FeatureSpace.build(data, FeatureConfig())
    snap = snapshot(sp, data.closed)
    ind = next(d for d in sp.dims if d.name == "industry")
    t = snap.tables["industry"]
    k = sp.cfg.prior_deals
    rate = (t["w_rv"] + k * 0.4) / (t["n_rv"] + k)
    t_ind = truth[truth.dimension == "industry"]
    right = 0
    for r, rep in enumerate(sp.rep_ids):
        eff = t_ind[t_ind.rep_id == rep].set_index("value")["effect"]
        best, worst = ind.levels.index(eff.idxmax()), ind.levels.index(eff.idxmin())
        right += rate[r, best] > rate[r, worst]
    assert right >= 18  # of 20 reps: the estimated strength orders the planted best above the planted worst


@pytest.fixture(scope="module")
def joint_org():
    """20 reps x 1,500 accounts, seed 5, with the joint model learned on all of its history, and the truth."""
    import tempfile
    from pathlib import Path

    from repfit.synth import true_win_matrix, write_org

    with tempfile.TemporaryDirectory() as d:
        write_org(d, 20, 1500, seed=5)
        data = load_dataset(d)
        truth = pd.read_csv(Path(d) / "truth" / "rep_strengths.csv", keep_default_na=False)
        ease = pd.read_csv(Path(d) / "truth" / "accounts.csv")
        ease.attrs["true_p"] = true_win_matrix(d, data.reps[S.REP_ID], data.accounts[S.ACCOUNT_ID])
    sp = learn_joint(data, FeatureConfig(), data.closed)
    return data, sp, snapshot(sp, data.closed), truth, ease


def test_joint_model_ranks_reps_within_an_account_closer_to_the_truth_than_summed_rate_lifts(joint_org):
    """What decides an assignment is the order of reps on one account. The joint model's rep-specific log-odds
    must order them closer to the planted truth than ``combined_logit`` (the sum of per-dimension rate lifts)
    does; and it finds each rep's planted best industry and tracks the planted account difficulty."""
    from scipy.stats import spearmanr

    _, sp, snap, truth, ease = joint_org
    R, A = len(sp.rep_ids), len(sp.account_ids)
    X = pair_features(sp, snap, np.tile(np.arange(R), A), np.repeat(np.arange(A), R))
    ind = next(d for d in sp.dims if d.name == "industry")
    planted = truth[truth.dimension == "industry"].pivot(index=S.REP_ID, columns="value", values="effect")
    planted = planted.loc[sp.rep_ids, list(ind.levels)].to_numpy()
    true_p = ease.attrs["true_p"]

    def within(col):
        m = X[col].to_numpy().reshape(A, R)
        return float(np.mean([spearmanr(m[i], true_p[i])[0] for i in range(A)]))

    assert within("joint_rep_logit") > 0.75 and within("joint_rep_logit") > within("combined_logit") + 0.04
    joint = snap.joint.rep_levels["industry"]
    assert np.mean(joint.argmax(axis=1) == planted.argmax(axis=1)) >= 0.8  # planted best industry found
    difficulty = ease.set_index(S.ACCOUNT_ID).loc[sp.account_ids, "difficulty"].to_numpy()
    assert np.corrcoef(snap.joint.account, difficulty)[0, 1] > 0.25


def test_joint_priors_shrink_what_was_not_planted_and_keep_what_was(joint_org):
    """The generator plants no rep-specific home-region effect (one bonus for everyone) but large rep x industry
    effects (sd ~0.6 with the strong/weak industries): the learned prior sds must say so."""
    sd = joint_org[1].joint_sd
    assert sd["rep_level:region_match"] < 0.1 and sd["rep_level:industry"] > 0.4
    assert sd["rep_level:industry"] > 3 * sd["rep_level:region_match"]


def test_size_band_edges_are_learned_near_the_planted_cut_points(joint_org):
    """The generator's size bands cut at 250 and 2,000 employees (synth.SIZE_EDGES); the quantile tertiles are
    far from them, the learned edges must not be."""
    from repfit.synth import SIZE_EDGES

    data, sp = joint_org[0], joint_org[1]
    learned = next(d for d in sp.dims if d.name == "employees_band").levels
    tertiles = np.quantile(data.accounts["employees"], [1 / 3, 2 / 3])
    assert abs(np.log(tertiles[1] / SIZE_EDGES[1])) > 0.5  # the default would miss the large-account cut
    assert len(learned) == 2
    for got, want in zip(learned, SIZE_EDGES):
        assert abs(np.log(got / want)) < 0.35, (learned, SIZE_EDGES)


def test_joint_fit_does_not_depend_on_the_order_of_deals(ds, space):
    """Training and scoring must agree: the same deals in another order give the very same coefficients."""
    a = snapshot(space, ds.closed).joint
    b = snapshot(space, ds.closed.sample(frac=1.0, random_state=1)).joint
    np.testing.assert_array_equal(a.account, b.account)
    np.testing.assert_array_equal(a.rep_levels["industry"], b.rep_levels["industry"])


def test_joint_features_can_be_turned_off(ds):
    sp = FeatureSpace.build(ds, FeatureConfig(joint_prior_sd=0.0))
    x = point_in_time_features(sp, ds.closed, ds.closed.head(50))
    assert not any("joint" in c for c in x.columns) and snapshot(sp, ds.closed).joint is None


def test_unknown_ids_are_named(space):
    with pytest.raises(SchemaError, match=r"unknown rep_id 'NOPE'.*Fix"):
        space.rep_index(["R001", "NOPE"])


def test_config_files_spell_out_the_built_in_defaults():
    assert load_feature_config(ROOT / "features" / "default.toml") == FeatureConfig()
    assert load_train_config(ROOT / "training" / "default.toml") == TrainConfig()


@pytest.mark.parametrize(("load", "text", "message"), [
    (load_train_config, "[lightgbm]\nlearnin_rate = 0.1\n", "unknown setting.*'learnin_rate'"),
    (load_train_config, "[split]\ntest_fraction = 0.95\n", "test_fraction 0.95"),
    (load_feature_config, "[strengths]\nband_edges = \"deciles\"\n", "band_edges 'deciles' is not one of learned, quantile"),
    (load_feature_config, "[joint]\njoint_prior_sd = -1.0\n", "joint_prior_sd -1.0 must be >= 0"),
])
def test_bad_config_is_named(tmp_path, load, text, message):
    p = tmp_path / "t.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load(p)


def test_feature_spec_with_ineligible_column_is_named(ds):
    with pytest.raises(ConfigError, match=r"account_attributes 'employees' not usable"):
        resolve_dimensions(ds, FeatureConfig(account_attributes=["employees"]))
