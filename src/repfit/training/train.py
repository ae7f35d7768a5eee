"""Train and honestly evaluate a win-probability model on one data set.

Pure library code: no MLflow here (``repfit.tracking`` logs what this returns).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from repfit import schema as S
from repfit.config import FeatureConfig, TrainConfig, as_dict
from repfit.errors import SchemaError
from repfit.features import learn_joint, point_in_time_features, snapshot
from repfit.training.evaluate import calibration_table, score, truth_recovery
from repfit.winprob import PairScorer, WinProbModel

SPLITS = ("train", "validation", "test")
MIN_REP_SPREAD = 0.01  # mean std of P(win) across reps for one deal: below this, rep choice hardly matters
MIN_ROWS = {"train": 50, "validation": 20, "test": 20}


@dataclass
class TrainResult:
    scorer: PairScorer
    metrics: dict[str, float]  # "<model>.<split>.<metric>" and truth_* figures
    table: pd.DataFrame  # test-period evaluation: one row per model (repfit + baselines)
    calibration: pd.DataFrame  # reliability curve on validation and test
    importance: pd.DataFrame  # gain importance per feature
    split: dict[str, str]  # date boundaries and row counts
    fingerprint: dict[str, str]
    test_rows: pd.DataFrame = field(repr=False)  # test rows and labels: a champion is scored on the same rows
    test_features: pd.DataFrame = field(repr=False)
    params: dict = field(default_factory=dict)


def fingerprint(ds: S.Dataset) -> dict[str, str]:
    """Row counts, date range and a content hash of the three tables (stable across file formats)."""
    h = hashlib.sha256()
    for t in S.TABLES:
        df = getattr(ds, t)
        h.update(t.encode())
        h.update(pd.util.hash_pandas_object(df.astype(str), index=False).to_numpy().tobytes())
    s = ds.summary()
    return {
        "data_rows_reps": str(s["reps"]), "data_rows_accounts": str(s["accounts"]),
        "data_rows_closed": str(s["closed_opportunities"]), "data_rows_open": str(s["open_opportunities"]),
        "data_first_date": str(s["first_date"]), "data_last_date": str(s["last_date"]),
        "data_sha256": h.hexdigest(),
    }


def time_split(created_at: pd.Series, cfg: TrainConfig) -> pd.Series:
    """Label each row train / validation / test by ``created_at`` quantiles (oldest first).

    Rows on the same day fall on the same side, so no day straddles two periods.
    """
    t = created_at.to_numpy("datetime64[ns]")
    q_val, q_test = np.quantile(t.astype("int64"), [1 - cfg.validation_fraction - cfg.test_fraction, 1 - cfg.test_fraction])
    b_val = pd.Timestamp(int(q_val)).normalize()
    b_test = pd.Timestamp(int(q_test)).normalize()
    out = pd.Series("train", index=created_at.index)
    out[created_at >= b_val] = "validation"
    out[created_at >= b_test] = "test"
    return out


def _logistic_baseline(X: pd.DataFrame, y: np.ndarray, categorical: list[str], seed: int):
    num = [c for c in X.columns if c not in categorical]
    pre = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), num),
        ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")), categorical),
    ])
    return make_pipeline(pre, LogisticRegression(C=1.0, max_iter=2000, random_state=seed)).fit(X, y)


def train(ds: S.Dataset, fcfg: FeatureConfig, tcfg: TrainConfig, truth_dir: str | Path | None = None,
          progress=None) -> TrainResult:
    """Build point-in-time features, split by time, fit LightGBM, calibrate, and evaluate on the test period
    against baselines computed in the same run (global rate, rep overall rate, logistic regression).

    With ``truth_dir`` (a synthetic org's ``truth/``), also compare predictions for *all* rep x account pairs
    with the planted win probabilities.
    """
    step = progress or (lambda msg: None)
    closed = ds.closed.sort_values([S.CREATED_AT, S.OPPORTUNITY_ID]).reset_index(drop=True)
    split = time_split(closed[S.CREATED_AT], tcfg)
    counts = split.value_counts()
    short = {s: int(counts.get(s, 0)) for s in SPLITS if counts.get(s, 0) < MIN_ROWS[s]}
    if short:
        raise SchemaError(
            f"{ds.paths['opportunities']}: too few closed opportunities to split by time "
            f"({', '.join(f'{k}: {v}' for k, v in short.items())}; need at least {MIN_ROWS}). "
            "Fix: provide more history, or change validation_fraction / test_fraction in the training config."
        )
    m = {s: (split == s).to_numpy() for s in SPLITS}
    step("features")
    # band edges and prior strengths of the joint model are learned from the training period only
    space = learn_joint(ds, fcfg, closed[m["train"] & (closed[S.CLOSED_AT] < closed.loc[~m["train"], S.CREATED_AT].min())])
    X = point_in_time_features(space, closed, closed)
    y = closed[S.WON].to_numpy(float)
    step("lightgbm")
    model = WinProbModel(tcfg).fit(X[m["train"]], y[m["train"]], X[m["validation"]], y[m["validation"]], space.categorical)

    # validation figures come from the early-stopped model, before the optional refit sees validation rows
    mv = m["validation"]
    metrics: dict[str, float] = {f"repfit.validation.{k}": v for k, v in score(y[mv], model.predict_win(X[mv])).items()}
    raw_val = model._raw(X[mv])  # before calibration (with the joint model's start, if the booster has one)
    metrics["repfit.validation.ece_uncalibrated"] = score(y[mv], raw_val)["ece"]
    cal_val = calibration_table(y[mv], model.predict_win(X[mv])).assign(split="validation")
    metrics["best_iteration"] = float(model.best_iteration_)
    if tcfg.refit:
        tv = m["train"] | m["validation"]
        model.refit(X[tv], y[tv])
        metrics["refit_rounds"] = float(model.best_iteration_)

    step("baselines")
    preds = {"repfit": model.predict_win(X)}
    preds["global_rate"] = np.full(len(y), y[m["train"]].mean())
    preds["rep_rate"] = X["rep_rate"].to_numpy()  # the rep's shrunk overall win rate, point-in-time
    logit = _logistic_baseline(X[m["train"]], y[m["train"]], space.categorical, tcfg.seed)
    preds["logistic"] = logit.predict_proba(X)[:, 1]
    rows = []
    for name, p in preds.items():
        splits = ("test",) if name == "repfit" else ("validation", "test")
        for s in splits:
            for k, v in score(y[m[s]], p[m[s]]).items():
                metrics[f"{name}.{s}.{k}"] = v
        rows.append({"model": name, **{k: metrics[f"{name}.test.{k}"] for k in ("auc", "log_loss", "brier", "ece")}})
    for method, v in model.calibration_scores_.items():
        metrics[f"calibration_cv_log_loss.{method}"] = v
    cal = pd.concat([cal_val, calibration_table(y[m["test"]], preds["repfit"][m["test"]]).assign(split="test")],
                    ignore_index=True)
    importance = pd.DataFrame({
        "feature": model.feature_names_in_,
        "gain": model.booster_.feature_importance("gain", iteration=model.best_iteration_),
    }).sort_values("gain", ascending=False, ignore_index=True)

    step("snapshot")
    bounds = {s: closed.loc[m[s], S.CREATED_AT] for s in SPLITS}
    split_info = {}
    for s in SPLITS:
        split_info[f"{s}_rows"] = str(int(m[s].sum()))
        split_info[f"{s}_from"] = str(bounds[s].min().date())
        split_info[f"{s}_to"] = str(bounds[s].max().date())
    info = {"feature_config": as_dict(fcfg), "train_config": as_dict(tcfg), "split": split_info,
            "dimensions": [d.name for d in space.dims], "calibration": model.calibration_}
    scorer = PairScorer(model=model, space=space, history=snapshot(space, closed), info=info)
    step("signal")
    metrics.update(rep_signal_check(scorer, closed, closed.loc[m["test"]], tcfg.seed))
    scorer.info["signal"] = {k: metrics[k] for k in metrics if k.startswith("signal.")}
    scorer.info["test_metrics"] = {k: v for k, v in metrics.items() if ".test." in k}
    scorer.info["calibration_table"] = cal.to_dict("list")  # for `repfit report`
    if truth_dir is not None and Path(truth_dir).is_dir():
        step("truth")
        from repfit.synth import true_win_probability

        truth = true_win_probability(Path(truth_dir).parent)
        pred = truth[[S.REP_ID, S.ACCOUNT_ID]].assign(p_win=scorer.score(truth[S.REP_ID], truth[S.ACCOUNT_ID]))
        metrics.update(truth_recovery(pred, truth))
        base = truth[[S.REP_ID, S.ACCOUNT_ID]].assign(p_win=scorer.features(truth[S.REP_ID], truth[S.ACCOUNT_ID])["rep_rate"].to_numpy())
        metrics.update({f"rep_rate.{k}": v for k, v in truth_recovery(base, truth).items() if k != "truth_pairs"})
    # what the joint model learned from the training period: band edges and each block's prior sd
    learned = {f"learned.{d.name}_edges": ", ".join(f"{e:.6g}" for e in d.levels) for d in space.dims if d.kind == "band"}
    learned.update({f"learned.prior_sd.{k.replace(':', '.')}": round(v, 4) for k, v in (space.joint_sd or {}).items()})
    scorer.info["learned"] = learned
    test_rows = closed.loc[m["test"]].reset_index(drop=True)  # every column: features may use attributes
    return TrainResult(
        scorer=scorer, metrics=metrics, table=pd.DataFrame(rows), calibration=cal, importance=importance,
        split=split_info, fingerprint=fingerprint(ds), test_rows=test_rows,
        test_features=X[m["test"]].reset_index(drop=True),
        params={**as_dict(tcfg), **{f"features.{k}": v for k, v in as_dict(fcfg).items()}, **learned},
    )


def rep_signal_check(scorer: PairScorer, closed: pd.DataFrame, rows: pd.DataFrame, seed: int,
                     n_boot: int = 300) -> dict[str, float]:
    """Does the test period bear out the model's rep strengths?

    For each test deal, compare the model's P(win) for the rep who worked it with the same model's
    average over *all* reps for that account at that moment (rep-blind). If the rep-specific part is
    real, the actual-rep prediction has the lower log loss. Bootstrap over deals: the strengths are
    only worth acting on if the 5th percentile of the gain is above zero *and* the model's P(win) differs
    across reps by at least ``MIN_REP_SPREAD`` on average (a real but negligible difference is no reason
    to move an account).
    """
    space, R = scorer.space, len(scorer.space.rep_ids)
    expanded = rows.loc[rows.index.repeat(R)].assign(**{S.REP_ID: np.tile(space.rep_ids, len(rows))})
    p_all = scorer.model.predict_win(point_in_time_features(space, closed, expanded)).reshape(len(rows), R)
    p_rep = p_all[np.arange(len(rows)), space.rep_index(rows[S.REP_ID])]
    p_blind = p_all.mean(axis=1)
    y = rows[S.WON].to_numpy(float)

    def ll(p):
        p = np.clip(p, 1e-6, 1 - 1e-6)
        return -(y * np.log(p) + (1 - y) * np.log(1 - p))

    gain = ll(p_blind) - ll(p_rep)
    spread = float(p_all.std(axis=1).mean())
    boot = gain[np.random.default_rng(seed).integers(0, len(y), (n_boot, len(y)))].mean(axis=1)
    lo, hi = np.quantile(boot, [0.05, 0.95])
    return {"signal.log_loss_gain": float(gain.mean()), "signal.gain_p05": float(lo), "signal.gain_p95": float(hi),
            "signal.detected": float(lo > 0 and spread >= MIN_REP_SPREAD), "signal.rep_spread": spread}


def score_rows(scorer: PairScorer, ds: S.Dataset, rows: pd.DataFrame) -> np.ndarray:
    """P(win) of a model for given opportunity rows, with point-in-time features built by that model's
    own feature space. Used to score a champion on a challenger's test period.

    Rows or history whose rep/account the model never saw are left out of its history; rows it cannot
    score get NaN.
    """
    space = scorer.space
    known_r, known_a = set(space.rep_ids), set(space.account_ids)
    closed = ds.closed
    closed = closed[closed[S.REP_ID].isin(known_r) & closed[S.ACCOUNT_ID].isin(known_a)]
    ok = rows[S.REP_ID].isin(known_r) & rows[S.ACCOUNT_ID].isin(known_a)
    out = np.full(len(rows), np.nan)
    if ok.any():
        X = point_in_time_features(space, closed, rows[ok])
        out[ok.to_numpy()] = scorer.model.predict_win(X)
    return out
