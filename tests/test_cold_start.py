"""Scoring a newer export than the model was trained on (issue 11, items 3 and 4): the data's own attribute
values, and reps and accounts that are new since training (cold start), against the planted truth."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from repfit.config import FeatureConfig, TrainConfig
from repfit.schema import load_dataset
from repfit.scoring import cold_reps, refresh_history, score_matrix
from repfit.synth import true_win_probability, write_org
from repfit.training.train import train

CUTOFF = "2025-01-01"  # two of the generator's three years
NEW_REPS = 4
NEW_ACCOUNTS = 60


@pytest.fixture(scope="module")
def later(tmp_path_factory):
    """A synthetic org seen twice: ``before`` (the first two years, without the 4 reps hired since and the 60
    accounts created since) and ``after`` (everything, where the new reps have only the deals since the cutoff).
    Returns (before dir, after dir, model trained on before, new rep ids, new account ids)."""
    base = tmp_path_factory.mktemp("later")
    after = base / "after"
    write_org(after, 30, 1500, seed=5)
    reps = pd.read_csv(after / "reps.csv", dtype=str, keep_default_na=False)
    accs = pd.read_csv(after / "accounts.csv", dtype=str, keep_default_na=False)
    opp = pd.read_csv(after / "opportunities.csv", dtype=str, keep_default_na=False)
    new_reps = reps.rep_id.iloc[-NEW_REPS:].tolist()
    new_accs = accs.account_id.iloc[-NEW_ACCOUNTS:].tolist()
    opp = opp[~(opp.rep_id.isin(new_reps) & (opp.created_at < CUTOFF))]  # hired at the cutoff
    opp.to_csv(after / "opportunities.csv", index=False)
    before = base / "before"
    shutil.copytree(after, before)
    kept = reps[~reps.rep_id.isin(new_reps)]
    kept.to_csv(before / "reps.csv", index=False)
    old_accs = accs[~accs.account_id.isin(new_accs)].copy()
    orphan = old_accs.current_rep_id.isin(new_reps)
    old_accs.loc[orphan, "current_rep_id"] = kept.rep_id.iloc[0]
    old_accs.to_csv(before / "accounts.csv", index=False)
    opp[(opp.created_at < CUTOFF) & ~opp.account_id.isin(new_accs)].to_csv(before / "opportunities.csv", index=False)
    scorer = train(load_dataset(before), FeatureConfig(), TrainConfig()).scorer
    return before, after, scorer, new_reps, new_accs


def test_new_reps_and_accounts_are_scored_calibrated_and_marked_cold_only_without_history(later):
    before, after, scorer, new_reps, new_accs = later
    ds = load_dataset(after)
    fresh = refresh_history(scorer, ds)
    P = score_matrix(fresh, ds)
    assert np.isfinite(P).all() and ((P > 0) & (P < 1)).all()
    truth = true_win_probability(after).pivot(index="account_id", columns="rep_id", values="p_true")
    T = truth.loc[ds.accounts.account_id, ds.reps.rep_id].to_numpy()
    new_r = ds.reps.rep_id.isin(new_reps).to_numpy()
    new_a = ds.accounts.account_id.isin(new_accs).to_numpy()
    for block, name in ((np.s_[:, new_r], "new reps"), (np.s_[new_a, :], "new accounts")):
        assert abs(P[block].mean() - T[block].mean()) < 0.05, name  # calibrated on average
        assert np.abs(P[block] - T[block]).mean() < 0.15, name
    # cold: no closed deal behind the rep's strengths. The new reps have their deals since the cutoff.
    assert not cold_reps(fresh).any()
    lonely = refresh_history(scorer, ds.__class__(**{**vars(ds), "opportunities": lonely_ds_opps(ds, new_reps[0])}))
    assert cold_reps(lonely)[fresh.space.rep_index([new_reps[0]])].all() and cold_reps(lonely).sum() == 1
    # and suggestions of a cold rep are never marked confident, however large the gain
    from repfit.suggest import Context, confidence

    ds_l = ds.__class__(**{**vars(ds), "opportunities": lonely_ds_opps(ds, new_reps[0])})
    ctx = Context(ds_l, lonely, score_matrix(lonely, ds_l), signal=True)
    r = int(np.flatnonzero(ds.reps.rep_id.to_numpy() == new_reps[0])[0])
    acc = np.arange(len(ds.accounts))
    conf, _ = confidence(ctx, acc, np.full(len(acc), r), np.full(len(acc), -1))
    assert not conf.any()
    warm = int(np.flatnonzero(~ds.reps.rep_id.isin(new_reps).to_numpy())[0])
    assert confidence(ctx, acc, np.full(len(acc), warm), np.full(len(acc), -1))[0].any()  # the check can pass


def lonely_ds_opps(ds, rep: str) -> pd.DataFrame:
    """The opportunities of ``ds`` without the closed deals of ``rep`` (a rep hired yesterday)."""
    o = ds.opportunities
    return o[~((o.rep_id == rep) & (o.outcome != "open"))]


def test_a_new_reps_planted_strength_shows_once_its_deals_are_in_the_data(later):
    """Each new rep's planted strong industry against its weak one: the model trained before the hire ranks them
    the planted way once the rep's deals since the cutoff are in the data."""
    _, after, scorer, new_reps, _ = later
    ds = load_dataset(after)
    P = score_matrix(refresh_history(scorer, ds), ds)
    eff = pd.read_csv(after / "truth" / "rep_strengths.csv", keep_default_na=False)
    eff = eff[(eff.dimension == "industry") & eff.rep_id.isin(new_reps)]
    industry = ds.accounts.industry.to_numpy()
    shown = []
    for rep, e in eff.groupby("rep_id"):
        r = int(np.flatnonzero(ds.reps.rep_id.to_numpy() == rep)[0])
        strong, weak = e.loc[e.effect.idxmax(), "value"], e.loc[e.effect.idxmin(), "value"]
        shown.append(P[industry == strong, r].mean() - P[industry == weak, r].mean())
    assert len(shown) == NEW_REPS
    assert np.mean(shown) > 0.05 and sum(s > 0 for s in shown) >= NEW_REPS - 1, shown


def test_scores_follow_the_attribute_values_of_the_data_given(later, tmp_path):
    """Issue 11, item 3: with every account moved to another industry, P(win) changed nowhere before."""
    before, _, scorer, _, _ = later
    moved = tmp_path / "moved"
    shutil.copytree(before, moved)
    accs = pd.read_csv(moved / "accounts.csv", dtype=str, keep_default_na=False)
    levels = sorted(accs.industry.unique())
    accs["industry"] = accs.industry.map({v: levels[(i + 1) % len(levels)] for i, v in enumerate(levels)})
    accs.to_csv(moved / "accounts.csv", index=False)
    ds0, ds1 = load_dataset(before), load_dataset(moved)
    s1 = refresh_history(scorer, ds1)
    P0, P1 = score_matrix(refresh_history(scorer, ds0), ds0), score_matrix(s1, ds1)
    # the account's own effect (from its history) carries much of its P(win), so the change is small, but everywhere
    assert (np.abs(P1 - P0) > 1e-6).mean() > 0.9
    code = s1.features(ds1.reps.rep_id[:1].repeat(3), ds1.accounts.account_id[:3])["account_industry"].to_numpy()
    assert [levels[int(c)] for c in code] == ds1.accounts.industry[:3].tolist()


def test_a_match_attribute_read_as_numbers_on_one_side_scores(later, tmp_path):
    """Review of issue 11: a newer export whose reps carry region as numbers and accounts as text crashed sorting."""
    before, _, scorer, _, _ = later
    mixed = tmp_path / "mixed"
    shutil.copytree(before, mixed)
    reps = pd.read_csv(mixed / "reps.csv", dtype=str, keep_default_na=False)
    reps["region"] = [str(i % 3) for i in range(len(reps))]
    reps.to_csv(mixed / "reps.csv", index=False)
    ds = load_dataset(mixed)
    assert pd.api.types.is_numeric_dtype(ds.reps.region)
    P = score_matrix(refresh_history(scorer, ds), ds)
    assert np.isfinite(P).all()
