"""Metrics for win probabilities: discrimination, proper scores, calibration, and truth recovery."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import brier_score_loss, roc_auc_score

from repfit import schema as S
from repfit.probability import EPS, log_loss


def calibration_table(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Reliability curve on equal-count bins: mean predicted vs observed win rate, with counts."""
    order = np.argsort(p, kind="stable")
    bins = np.empty(len(p), dtype=int)
    bins[order] = np.minimum(np.arange(len(p)) * n_bins // max(len(p), 1), n_bins - 1)
    df = pd.DataFrame({"bin": bins, "p": p, "y": y})
    return df.groupby("bin").agg(predicted=("p", "mean"), observed=("y", "mean"), n=("y", "size")).reset_index()


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    t = calibration_table(y, p, n_bins)
    return float((t.n * (t.predicted - t.observed).abs()).sum() / t.n.sum())


def score(y, p) -> dict[str, float]:
    """AUC, log loss, Brier score and expected calibration error of predictions ``p`` for labels ``y``."""
    y = np.asarray(y, float)
    p = np.clip(np.asarray(p, float), EPS, 1 - EPS)
    auc = roc_auc_score(y, p) if len(np.unique(y)) == 2 else float("nan")
    return {
        "auc": float(auc),
        "log_loss": log_loss(y, p),
        "brier": float(brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p),
    }


def truth_recovery(pred: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    """Compare predicted with planted win probabilities over all pairs.

    ``pred`` and ``truth``: rep_id, account_id and ``p_win`` / ``p_true``. Returns the mean
    within-account Spearman correlation (how well reps are ranked for each account) and the mean
    absolute probability error.
    """
    df = pred.merge(truth, on=[S.REP_ID, S.ACCOUNT_ID], validate="one_to_one")
    R = df[S.REP_ID].nunique()
    df = df.sort_values([S.ACCOUNT_ID, S.REP_ID])
    P = df["p_win"].to_numpy().reshape(-1, R)
    Q = df["p_true"].to_numpy().reshape(-1, R)
    rp = np.argsort(np.argsort(P, axis=1), axis=1).astype(float)
    rq = np.argsort(np.argsort(Q, axis=1), axis=1).astype(float)
    rp -= rp.mean(axis=1, keepdims=True)
    rq -= rq.mean(axis=1, keepdims=True)
    denom = np.sqrt((rp**2).sum(axis=1) * (rq**2).sum(axis=1))
    rho = np.where(denom > 0, (rp * rq).sum(axis=1) / np.where(denom > 0, denom, 1), np.nan)
    return {
        "truth_spearman_within_account": float(np.nanmean(rho)),
        "truth_mae": float(np.abs(df["p_win"] - df["p_true"]).mean()),
        "truth_spearman_all_pairs": float(spearmanr(df["p_win"], df["p_true"]).statistic),
        "truth_pairs": float(len(df)),
    }


def recovery_of(scorer, truth: pd.DataFrame) -> dict[str, float]:
    """How well a scorer recovers planted win probabilities (for tests and benchmarks on synthetic orgs, which
    pass the truth in): ``truth_recovery`` of its P(win), and as ``rep_rate.*`` that of the rep's overall rate
    alone (the baseline the rep strengths must beat).

    ``truth``: rep_id, account_id, p_true for every pair (e.g. ``repfit.synth.true_win_probability``)."""
    from repfit.features.catalogue import Role, Subject

    pairs = truth[[S.REP_ID, S.ACCOUNT_ID]]
    X = scorer.features(pairs[S.REP_ID], pairs[S.ACCOUNT_ID])
    out = truth_recovery(pairs.assign(p_win=scorer.model.predict_win(X)), truth)
    rate = X[scorer.catalogue.one(role=Role.RATE, subject=Subject.REP)].to_numpy()
    base = truth_recovery(pairs.assign(p_win=rate), truth)
    out.update({f"rep_rate.{k}": v for k, v in base.items() if k != "truth_pairs"})
    return out
