"""What keeps training affordable at planner scale (issue 14, point 6): the band-edge search on a sample of reps,
the signal check on a sample of test deals. Speed itself is measured in benchmarks/train_scale.py."""

from __future__ import annotations

import numpy as np
import pytest

from repfit import schema as S
from repfit.config import FeatureConfig, TrainConfig
from repfit.features.pipeline import _search_sample, learn_joint
from repfit.schema import load_dataset
from repfit.synth import SIZE_EDGES, write_org
from repfit.training.train import rep_signal_check, train


def test_search_sample_keeps_whole_reps_within_the_budget_and_renumbers_them():
    rng = np.random.default_rng(0)
    r = rng.integers(0, 30, 3000)
    a = rng.integers(0, 500, 3000)
    won = (rng.random(3000) < 0.4).astype(float)
    codes = {"rep_tag": r.copy()}  # carried along with each deal: tells which rep a sampled deal came from
    everything = _search_sample(r, a, won, codes, 30, 500, max_deals=3000)
    assert everything.n_reps == 30 and len(everything.accounts) == 500 and everything.r is r

    s = _search_sample(r, a, won, codes, 30, 500, max_deals=1000)
    drawn = np.unique(s.codes["rep_tag"])
    assert 0 < len(s.r) <= 1000 and s.n_reps == len(drawn) < 30
    np.testing.assert_array_equal(np.bincount(s.codes["rep_tag"], minlength=30)[drawn], np.bincount(r, minlength=30)[drawn])
    np.testing.assert_array_equal(s.r, np.searchsorted(drawn, s.codes["rep_tag"]))  # reps renumbered 0..n-1
    mine = np.isin(r, drawn)
    np.testing.assert_array_equal(s.accounts[s.a], a[mine])  # accounts renumbered among those with a sampled deal
    np.testing.assert_array_equal(s.won, won[mine])
    assert len(s.accounts) == len(np.unique(a[mine]))


@pytest.fixture(scope="module")
def org():
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        write_org(d, 20, 1500, seed=5)
        return load_dataset(d)


def test_band_edges_searched_on_half_the_reps_still_find_the_planted_cut_points(org):
    """The search runs on a sample of reps beyond ``band_search_deals``: with half of them, the planted size bands
    (250 and 2,000 employees) must still be found; the priors are learned on every deal."""
    cfg = FeatureConfig(band_search_deals=len(org.closed) // 2)
    sp = learn_joint(org, cfg, org.closed)
    learned = next(d for d in sp.dims if d.name == "employees_band").levels
    assert len(learned) == 2
    for got, want in zip(learned, SIZE_EDGES):
        assert abs(np.log(got / want)) < 0.35, (learned, SIZE_EDGES)
    assert sp.joint_sd["rep_level:industry"] > 0.4  # planted rep x industry effects, learned on all deals


@pytest.mark.slow
def test_signal_check_samples_test_deals_beyond_its_budget_and_says_so(org):
    result = train(org, FeatureConfig(), TrainConfig(max_rounds=200))
    scorer, rows = result.scorer, result.test_rows
    R = len(scorer.space.rep_ids)
    full = scorer.card.signal
    assert full.deals == len(rows) and result.metrics["signal.deals"] == len(rows)
    closed = org.closed.sort_values([S.CREATED_AT, S.OPPORTUNITY_ID]).reset_index(drop=True)
    few = rep_signal_check(scorer.model, scorer.space, closed, rows, seed=1, max_pairs=R * 300)
    assert few.deals == 300 < len(rows)
    assert few.detected and full.detected  # planted rep x industry effects: borne out on the sample too
    assert few.gain_p05 < full.log_loss_gain < few.gain_p95  # the sample's interval covers the whole period's gain
    assert few.gain_p95 - few.gain_p05 > full.gain_p95 - full.gain_p05  # fewer deals, a wider interval
