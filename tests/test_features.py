"""Feature pipelines: point-in-time correctness, one formula for training and scoring, planted strengths."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from repfit import schema as S
from repfit.config import FeatureConfig, TrainConfig, load_feature_config, load_train_config
from repfit.errors import ConfigError, SchemaError
from repfit.features import FeatureSpace, pair_features, point_in_time_features, resolve_dimensions, snapshot
from repfit.schema import load_dataset

from conftest import ROOT


@pytest.fixture(scope="module")
def ds(small_org):
    return load_dataset(small_org)


@pytest.fixture(scope="module")
def space(ds):
    return FeatureSpace.build(ds, FeatureConfig())


def test_dimensions_cover_attributes_bands_products_and_matches(space):
    kinds = {d.name: d.kind for d in space.dims}
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


def test_unknown_ids_are_named(space):
    with pytest.raises(SchemaError, match=r"unknown rep_id 'NOPE'.*Fix"):
        space.rep_index(["R001", "NOPE"])


def test_config_files_spell_out_the_built_in_defaults():
    assert load_feature_config(ROOT / "features" / "default.toml") == FeatureConfig()
    assert load_train_config(ROOT / "training" / "default.toml") == TrainConfig()


def test_bad_config_is_named(tmp_path):
    p = tmp_path / "t.toml"
    p.write_text("[lightgbm]\nlearnin_rate = 0.1\n")
    with pytest.raises(ConfigError, match="unknown setting.*'learnin_rate'"):
        load_train_config(p)
    p.write_text("[split]\ntest_fraction = 0.95\n")
    with pytest.raises(ConfigError, match="test_fraction 0.95"):
        load_train_config(p)


def test_feature_spec_with_ineligible_column_is_named(ds):
    with pytest.raises(ConfigError, match=r"account_attributes 'employees' not usable"):
        resolve_dimensions(ds, FeatureConfig(account_attributes=["employees"]))
