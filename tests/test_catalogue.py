"""The feature catalogue (issue 10): every column says what it is, and nothing outside features/ reads names."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from repfit.config import FeatureConfig, TrainConfig
from repfit.errors import ConfigError
from repfit.features import FeatureSpace, point_in_time_features
from repfit.features.catalogue import Catalogue, DimensionKind, Role, Subject, Topic, TopicKind
from repfit.schema import load_dataset
from repfit.scoring import score_matrix
from repfit.suggest import Context, reasons
from repfit.winprob import PairScorer, WinProbModel

SRC = Path(__file__).resolve().parents[1] / "src" / "repfit"


@pytest.fixture(scope="module")
def space(small_org) -> FeatureSpace:
    return FeatureSpace.build(load_dataset(small_org), FeatureConfig())


def test_feature_frames_have_exactly_the_catalogue_columns_in_its_order(small_org, space):
    ds = load_dataset(small_org)
    X = point_in_time_features(space, ds.closed, ds.closed.head(50))
    assert list(X.columns) == space.catalogue.names
    assert space.catalogue.categorical() == [c for c in X.columns if space.catalogue[c].categorical]


def test_match_columns_belong_to_the_match_dimension_not_to_the_account_attribute_of_the_same_name(space):
    """The old defect: ``col.startswith(d.name + "_")`` filed every ``region_match_*`` column under ``region``."""
    cat = space.catalogue
    kinds = {d.name: d.kind for d in space.dims}
    assert kinds["region"] is DimensionKind.ACCOUNT and kinds["region_match"] is DimensionKind.MATCH
    for col in cat.select(dimension="region_match"):
        assert cat.topic(col.name) == Topic(TopicKind.DIMENSION, "region_match")
    assert {c.name for c in cat.select(dimension="region")}.isdisjoint({c.name for c in cat.select(dimension="region_match")})
    assert cat.select(dimension="region_match", role=Role.STRENGTH)


def test_the_joint_models_whole_and_rep_wide_log_odds_are_no_single_fact(space):
    """Their contributions mix every dimension: filed under the rep's record they made reasons state the rep's
    overall rate for what the dimensions moved. Each is a topic of its own, which no sentence speaks for."""
    cat = space.catalogue
    for role in (Role.JOINT_TOTAL, Role.JOINT_REP):
        (col,) = cat.select(role=role)
        assert cat.topic(col.name).kind is TopicKind.JOINT
    assert cat.topic(cat.one(role=Role.RATE, subject=Subject.REP)).kind is TopicKind.REP_HISTORY


def test_an_attribute_named_like_a_strength_is_not_constrained_monotone(org_copy):
    acc = pd.read_csv(org_copy / "accounts.csv")
    acc["credit_strength"] = np.random.default_rng(0).normal(size=len(acc))  # a user attribute, not a win rate
    acc.to_csv(org_copy / "accounts.csv", index=False)
    ds = load_dataset(org_copy)
    space = FeatureSpace.build(ds, FeatureConfig(joint_prior_sd=0.0))
    col = space.catalogue["account_credit_strength"]
    assert col.role is Role.ATTRIBUTE and not col.monotone
    X = point_in_time_features(space, ds.closed, ds.closed)
    y = ds.closed["won"].to_numpy(float)
    half = len(X) // 2
    model = WinProbModel(TrainConfig(max_rounds=5, boost_from="")).fit(X[:half], y[:half], X[half:], y[half:], space.catalogue)
    constrained = dict(zip(model.feature_names_in_, model.monotone_))
    assert constrained["account_credit_strength"] == 0
    assert constrained[space.catalogue.one(role=Role.RATE, subject=Subject.REP)] == 1  # the real rates still are


def test_a_name_collision_between_an_attribute_and_a_derived_feature_is_a_clear_error():
    with pytest.raises(ConfigError, match="would be made twice"):
        Catalogue.build(dimensions=[], rep_attributes=[("n", False)], account_attributes=[], joint=False)


def test_no_module_outside_features_reads_a_feature_name():
    """Derived feature names are made and read in features/ alone (baseline *model* names such as the
    rep_rate baseline are not feature columns)."""
    pattern = re.compile(r"[\"'][^\"']*(_strength|_lift|_joint|_logit|pair_rate|rep_n|pair_n|account_n|\}_n)[\"']"
                         r"|\.startswith\(d\.|\.endswith\(\(")
    offenders = []
    for path in SRC.rglob("*.py"):
        if "features" in path.relative_to(SRC).parts or path.name in ("config.py", "synth.py"):
            continue  # config.py names the default start column (a setting); synth.py is the generator's own model
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(SRC)}:{i}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


@pytest.fixture(scope="module")
def region_org(small_org, tmp_path_factory):
    """``small_org`` re-dealt so that region match is what decides deals: every closed deal goes to a random rep
    and is won with probability 0.7 when the rep works the account's region, 0.15 otherwise (planted); accounts
    get random current owners."""
    import shutil

    org = tmp_path_factory.mktemp("region_org") / "org"
    shutil.copytree(small_org, org)
    rng = np.random.default_rng(11)
    reps, accs = pd.read_csv(org / "reps.csv"), pd.read_csv(org / "accounts.csv")
    opp = pd.read_csv(org / "opportunities.csv", dtype=str, keep_default_na=False)
    closed = opp["outcome"].isin(["won", "lost"])
    opp.loc[closed, "rep_id"] = rng.choice(reps.rep_id.to_numpy(), closed.sum())
    same = (opp.rep_id.map(reps.set_index("rep_id").region) == opp.account_id.map(accs.set_index("account_id").region))
    won = rng.random(len(opp)) < np.where(same, 0.7, 0.15)
    opp.loc[closed, "outcome"] = np.where(won, "won", "lost")[closed.to_numpy()]
    opp.to_csv(org / "opportunities.csv", index=False)
    accs["current_rep_id"] = rng.choice(reps.rep_id.to_numpy(), len(accs))  # many accounts now owned across regions
    accs.to_csv(org / "accounts.csv", index=False)
    return org


def test_the_same_region_reason_is_given_when_region_match_is_the_strongest_contribution(region_org):
    """Among (account, rep from its region, current rep from another region) triples where the region-match topic
    carries the largest contribution, the first reason is the same-region sentence."""
    from repfit.training.train import train

    ds = load_dataset(region_org)
    scorer = train(ds, FeatureConfig(), TrainConfig()).scorer
    cat = scorer.catalogue
    ctx = Context(ds, scorer, score_matrix(scorer, ds), signal=True)
    A, R = ctx.p_win.shape
    region = ("dimension", "region_match")
    acc, new = np.repeat(np.arange(A), R), np.tile(np.arange(R), A)
    r_reg, a_reg = ds.reps.region.to_numpy(), ds.accounts.region.to_numpy()
    old = ctx.current[acc]
    keep = (old >= 0) & (r_reg[new] == a_reg[acc]) & (r_reg[np.maximum(old, 0)] != a_reg[acc])
    acc, new, old = acc[keep], new[keep], old[keep]
    rids, aids = ds.reps.rep_id.to_numpy(str), ds.accounts.account_id.to_numpy(str)
    diff = (scorer.model.contributions(scorer.features(rids[new], aids[acc]))
            - scorer.model.contributions(scorer.features(rids[old], aids[acc])).to_numpy()).drop(columns=["bias"])
    topics = pd.Series([cat.topic(c) for c in diff.columns], index=diff.columns)
    by_topic = diff.T.groupby(topics.map(lambda t: (t.kind.value, t.name))).sum().T
    top = np.flatnonzero((by_topic.idxmax(axis=1) == region).to_numpy())
    assert len(top) >= 50, f"region match is the strongest contribution for only {len(top)} of {len(acc)} triples"
    words = reasons(ctx, acc[top[:40]], new[top[:40]], old[top[:40]])
    facts = [re.match(r"same region as the account, unlike the current rep: reps win (\d+)% of deals in their own "
                      r"region vs (\d+)% outside it", w) for w in words]
    assert all(facts), words[:5]
    assert all(int(f[1]) > int(f[2]) + 30 for f in facts)  # planted: 70% vs 15%
