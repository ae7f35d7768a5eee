"""The synthetic org: deterministic, and its truth files reproduce the planted probabilities."""

from __future__ import annotations

import filecmp
import json

import numpy as np
import pandas as pd
from click.testing import CliRunner

from repfit.cli import app
from repfit.synth import generate, true_win_probability


def test_same_seed_same_files_different_seed_different(tmp_path):
    paths = []
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        res = CliRunner().invoke(app, ["synth", "--out", str(tmp_path / name), "--reps", "8", "--accounts", "60", "--seed", str(seed)])
        assert res.exit_code == 0, res.output
        paths.append(tmp_path / name)
    files = sorted(p.relative_to(paths[0]) for p in paths[0].rglob("*") if p.is_file())
    assert len(files) == 7  # 3 tables + 4 truth files
    for f in files:
        assert filecmp.cmp(paths[0] / f, paths[1] / f, shallow=False), f
    assert not filecmp.cmp(paths[0] / "opportunities.csv", paths[2] / "opportunities.csv", shallow=False)


def test_truth_files_reproduce_each_opportunity_probability(small_org):
    opps = pd.read_csv(small_org / "opportunities.csv").merge(pd.read_csv(small_org / "truth" / "opportunities.csv"))
    for product, rows in opps.groupby("product"):
        pairs = true_win_probability(small_org, product=product).set_index(["rep_id", "account_id"])["p_true"]
        got = pairs.loc[list(zip(rows.rep_id, rows.account_id))].to_numpy()
        np.testing.assert_allclose(got, rows.p_true.to_numpy(), rtol=1e-12)


def test_pair_probability_is_the_product_mix_average(small_org):
    mix = pd.read_csv(small_org / "truth" / "accounts.csv").set_index("account_id")
    pair = true_win_probability(small_org, rep_ids=["R003"], account_ids=["A00010"])["p_true"].item()
    per_product = {
        p: true_win_probability(small_org, ["R003"], ["A00010"], product=p)["p_true"].item()
        for p in json.loads((small_org / "truth" / "params.json").read_text())["products"]
    }
    assert pair == sum(mix.loc["A00010", f"mix_{p}"] * v for p, v in per_product.items())
    assert len(true_win_probability(small_org)) == 12 * 150


def test_outcomes_follow_the_planted_probability():
    org = generate(30, 1500, seed=11)
    o = org["opportunities"].merge(org["truth_opportunities"])
    closed = o[o.outcome != "open"]
    won = (closed.outcome == "won").to_numpy(float)
    p = closed.p_true.to_numpy()
    bins = np.quantile(p, np.linspace(0, 1, 6))
    idx = np.clip(np.searchsorted(bins, p, side="right") - 1, 0, 4)
    for b in range(5):
        m = idx == b
        se = np.sqrt(p[m].mean() * (1 - p[m].mean()) / m.sum())
        assert abs(won[m].mean() - p[m].mean()) < 4 * se


def test_history_is_territory_biased_and_stated_specialty_often_wrong():
    org = generate(40, 2000, seed=7)
    reps, acc, opp = org["reps"], org["accounts"], org["opportunities"]
    region = opp.merge(acc[["account_id", "region"]]).merge(reps[["rep_id", "region"]], on="rep_id", suffixes=("_a", "_r"))
    same = (region.region_a == region.region_r).mean()
    assert same > 0.85  # owners and same-region reps work most deals
    owners = acc.merge(reps[["rep_id", "region"]], left_on="current_rep_id", right_on="rep_id", suffixes=("", "_rep"))
    assert (owners.region == owners.region_rep).all()
    t = org["truth_reps"]
    best = t[t.dimension == "industry"].sort_values("effect").groupby("rep_id").tail(1).set_index("rep_id")["value"]
    agree = (reps.set_index("rep_id").stated_specialty == best.loc[reps.rep_id].to_numpy()).mean()
    assert 0.2 < agree < 0.7  # stated strengths match the hidden best industry only sometimes
