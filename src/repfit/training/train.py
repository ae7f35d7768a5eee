"""Train and honestly evaluate a win-probability model on one data set, as small typed steps:

    split_by_time -> learn_space -> point_in_time_features -> fit_model -> evaluate -> make_bundle

``train`` wires them. Pure library code: no MLflow here (``repfit.tracking`` logs what this returns), and no
knowledge of synthetic orgs (recovery of planted truth is for tests and benchmarks: ``evaluate.truth_recovery``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

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
from repfit.features import FeatureSpace, learn_joint, point_in_time_features, snapshot
from repfit.features.catalogue import DimensionKind, Role, Subject
from repfit.probability import log_losses
from repfit.progress import NO_PROGRESS, Progress
from repfit.training.evaluate import calibration_table, score
from repfit.card import ModelCard, Period, SignalCheck, SplitInfo
from repfit.winprob import PairScorer, WinProbModel

SPLITS = ("train", "validation", "test")
MIN_REP_SPREAD = 0.01  # mean std of P(win) across reps for one deal: below this, rep choice hardly matters
MIN_ROWS = {"train": 50, "validation": 20, "test": 20}
SIGNAL_PAIRS = 2_500_000  # (deal, rep) pairs the signal check scores at most: 2.4M peaked at 3.7 GB (issue 14)


@dataclass(frozen=True)
class TrainResult:
    scorer: PairScorer
    metrics: dict[str, float]  # "<model>.<split>.<metric>", validation and signal.* figures
    table: pd.DataFrame  # test-period evaluation: one row per model (repfit + baselines)
    calibration: pd.DataFrame  # reliability curve on validation and test
    importance: pd.DataFrame  # gain importance per feature
    split: SplitInfo
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


@dataclass(frozen=True)
class Split:
    """Closed opportunities (oldest first) and which period each falls in."""

    closed: pd.DataFrame
    masks: dict[str, np.ndarray]  # period -> bool mask over ``closed``

    @property
    def y(self) -> np.ndarray:
        return self.closed[S.WON].to_numpy(float)

    def info(self) -> SplitInfo:
        def period(s: str) -> Period:
            t = self.closed.loc[self.masks[s], S.CREATED_AT]
            return Period(int(self.masks[s].sum()), str(t.min().date()), str(t.max().date()))

        return SplitInfo(*(period(s) for s in SPLITS))


@dataclass(frozen=True)
class Fitted:
    """The fitted model with what was measured on validation before any refit saw those rows."""

    model: WinProbModel
    metrics: dict[str, float]
    calibration: pd.DataFrame  # validation reliability curve


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, float]  # "<model>.<split>.<metric>"
    table: pd.DataFrame  # test-period evaluation: one row per model (repfit + baselines)
    calibration: pd.DataFrame  # reliability curve on validation and test
    importance: pd.DataFrame  # gain importance per feature


def check_learnable(closed: pd.DataFrame, path: str) -> None:
    """Say before any fitting what the history lacks (issue 11, item 10): a model of P(win) needs won and lost
    deals, and rep strengths need at least two reps and two accounts to compare."""
    won = int(closed[S.WON].sum())
    lacks = [what for what, missing in (
        ("no won deals", won == 0), ("no lost deals", won == len(closed)),
        ("closed deals of only one rep (strengths compare reps)", closed[S.REP_ID].nunique() < 2),
        ("closed deals on only one account", closed[S.ACCOUNT_ID].nunique() < 2)) if missing]
    if lacks:
        raise SchemaError(f"{path}: {'; '.join(lacks)} among {len(closed):,} closed opportunities: nothing to learn "
                          "rep strengths from. Fix: include the history of more deals (won and lost, several reps).")


def split_by_time(ds: S.Dataset, cfg: TrainConfig) -> Split:
    """Closed opportunities split into train / validation / test by ``created_at`` (see ``time_split``).

    Raises ``SchemaError`` when a period would be too small to fit or judge a model on."""
    closed = ds.closed.sort_values([S.CREATED_AT, S.OPPORTUNITY_ID]).reset_index(drop=True)
    check_learnable(closed, ds.paths["opportunities"])
    label = time_split(closed[S.CREATED_AT], cfg)
    counts = label.value_counts()
    short = {s: int(counts.get(s, 0)) for s in SPLITS if counts.get(s, 0) < MIN_ROWS[s]}
    if short:
        raise SchemaError(
            f"{ds.paths['opportunities']}: too few closed opportunities to split by time "
            f"({', '.join(f'{k}: {v}' for k, v in short.items())}; need at least {MIN_ROWS}). "
            "Fix: provide more history, or change validation_fraction / test_fraction in the training config."
        )
    return Split(closed, {s: (label == s).to_numpy() for s in SPLITS})


def learn_space(ds: S.Dataset, cfg: FeatureConfig, split: Split) -> FeatureSpace:
    """The feature space, with the joint model's band edges and priors learned from the training period only
    (deals closed before the validation period starts), so validation and test stay unseen."""
    c, m = split.closed, split.masks
    return learn_joint(ds, cfg, c[m["train"] & (c[S.CLOSED_AT] < c.loc[~m["train"], S.CREATED_AT].min())])


def fit_model(X: pd.DataFrame, split: Split, space: FeatureSpace, cfg: TrainConfig) -> Fitted:
    """Fit LightGBM with early stopping on validation, measure it there, then (``cfg.refit``) refit on
    train + validation; the test period stays unseen."""
    y, m = split.y, split.masks
    model = WinProbModel(cfg).fit(X[m["train"]], y[m["train"]], X[m["validation"]], y[m["validation"]], space.catalogue)
    mv = m["validation"]
    p_val = model.predict_win(X[mv])
    metrics = {f"repfit.validation.{k}": v for k, v in score(y[mv], p_val).items()}
    metrics["repfit.validation.ece_uncalibrated"] = score(y[mv], model.predict_uncalibrated(X[mv]))["ece"]
    metrics["best_iteration"] = float(model.best_iteration_)
    metrics.update({f"calibration_cv_log_loss.{k}": v for k, v in model.calibration_scores_.items()})
    if cfg.refit:
        tv = m["train"] | mv
        model.refit(X[tv], y[tv])
        metrics["refit_rounds"] = float(model.best_iteration_)
    return Fitted(model, metrics, calibration_table(y[mv], p_val).assign(split="validation"))


def evaluate(fitted: Fitted, X: pd.DataFrame, split: Split, space: FeatureSpace, cfg: TrainConfig) -> Evaluation:
    """The model and its baselines, fitted in the same run, on the test period (baselines on validation too):
    the global win rate, the rep's shrunk overall rate, and a logistic regression on the same features."""
    y, m, model = split.y, split.masks, fitted.model
    rep_rate = space.catalogue.one(role=Role.RATE, subject=Subject.REP)
    preds = {"repfit": model.predict_win(X), "global_rate": np.full(len(y), y[m["train"]].mean()),
             "rep_rate": X[rep_rate].to_numpy(),
             "logistic": _logistic_baseline(X[m["train"]], y[m["train"]], space.categorical, cfg.seed).predict_proba(X)[:, 1]}
    metrics, rows = dict(fitted.metrics), []
    for name, p in preds.items():
        for s in ("test",) if name == "repfit" else ("validation", "test"):
            metrics.update({f"{name}.{s}.{k}": v for k, v in score(y[m[s]], p[m[s]]).items()})
        rows.append({"model": name, **{k: metrics[f"{name}.test.{k}"] for k in ("auc", "log_loss", "brier", "ece")}})
    test_cal = calibration_table(y[m["test"]], preds["repfit"][m["test"]]).assign(split="test")
    importance = pd.DataFrame({
        "feature": model.feature_names_in_,
        "gain": model.booster_.feature_importance("gain", iteration=model.best_iteration_),
    }).sort_values("gain", ascending=False, ignore_index=True)
    return Evaluation(metrics, pd.DataFrame(rows), pd.concat([fitted.calibration, test_cal], ignore_index=True), importance)


def learned_settings(space: FeatureSpace) -> dict[str, float | str]:
    """What the joint model learned from the training period: band edges and each block's prior sd."""
    out: dict[str, float | str] = {f"learned.{d.name}_edges": ", ".join(f"{e:.6g}" for e in d.levels)
                                   for d in space.dims if d.kind is DimensionKind.BAND}
    out.update({f"learned.prior_sd.{k.replace(':', '.')}": round(v, 4) for k, v in (space.joint_sd or {}).items()})
    return out


def make_bundle(model: WinProbModel, space: FeatureSpace, split: Split, ev: Evaluation, fcfg: FeatureConfig,
                tcfg: TrainConfig, signal: SignalCheck | None = None) -> PairScorer:
    """The scorer a deployed model is: model, space, the history snapshot over all closed deals, and its card
    (with the signal check of its rep strengths on the test period: ``signal``, else run here)."""
    if signal is None:
        signal = rep_signal_check(model, space, split.closed, split.closed.loc[split.masks["test"]], tcfg.seed)
    card = ModelCard(feature_config=as_dict(fcfg), train_config=as_dict(tcfg), split=split.info(),
                     calibration=model.calibration_, signal=signal,
                     test_metrics={k: v for k, v in ev.metrics.items() if ".test." in k},
                     calibration_table=ev.calibration, learned=learned_settings(space))
    return PairScorer(model=model, space=space, history=snapshot(space, split.closed), card=card)


def train(ds: S.Dataset, fcfg: FeatureConfig, tcfg: TrainConfig, progress: Progress = NO_PROGRESS) -> TrainResult:
    """Split by time, learn the feature space, fit LightGBM, evaluate it against baselines on the test
    period, and bundle it: the pipeline of the steps above, nothing else."""
    split = split_by_time(ds, tcfg)
    progress.stage("features: joint model (band edges, priors)")
    space = learn_space(ds, fcfg, split)
    progress.stage("features: point in time")
    X = point_in_time_features(space, split.closed, split.closed)
    progress.stage("lightgbm")
    fitted = fit_model(X, split, space, tcfg)
    progress.stage("baselines")
    ev = evaluate(fitted, X, split, space, tcfg)
    progress.stage("signal check")
    signal = rep_signal_check(fitted.model, space, split.closed, split.closed.loc[split.masks["test"]], tcfg.seed)
    progress.stage("snapshot")
    scorer = make_bundle(fitted.model, space, split, ev, fcfg, tcfg, signal)
    test = split.masks["test"]
    return TrainResult(
        scorer=scorer, metrics={**ev.metrics, **scorer.card.signal.metrics()}, table=ev.table,
        calibration=ev.calibration, importance=ev.importance, split=scorer.card.split, fingerprint=fingerprint(ds),
        test_rows=split.closed.loc[test].reset_index(drop=True),  # every column: features may use attributes
        test_features=X[test].reset_index(drop=True),
        params={**as_dict(tcfg), **{f"features.{k}": v for k, v in as_dict(fcfg).items()}, **scorer.card.learned},
    )


def rep_signal_check(model: WinProbModel, space: FeatureSpace, closed: pd.DataFrame, rows: pd.DataFrame, seed: int,
                     n_boot: int = 300, max_pairs: int = SIGNAL_PAIRS) -> SignalCheck:
    """Does the test period bear out the model's rep strengths?

    For each test deal, compare the model's P(win) for the rep who worked it with the same model's
    average over *all* reps for that account at that moment (rep-blind). If the rep-specific part is
    real, the actual-rep prediction has the lower log loss. Bootstrap over deals: the strengths are
    only worth acting on if the 5th percentile of the gain is above zero *and* the model's P(win) differs
    across reps by at least ``MIN_REP_SPREAD`` on average (a real but negligible difference is no reason
    to move an account).

    Every deal is scored for every rep, so the work is deals x reps: beyond ``max_pairs`` the check runs on a
    random sample of the deals (``SignalCheck.deals`` says how many), and its bootstrap interval widens to match.
    The rep-blind average stays over all reps: sampling reps instead would make it noisy, and noise in it adds to
    its log loss, i.e. biases the check toward "detected".
    """
    R = len(space.rep_ids)
    if len(rows) * R > max_pairs:  # 1,000 reps x 60,000 test deals would be 60M feature rows (issue 14)
        keep = np.random.default_rng(seed).choice(len(rows), max(max_pairs // R, 1), replace=False)
        rows = rows.iloc[np.sort(keep)]
    expanded = rows.loc[rows.index.repeat(R)].assign(**{S.REP_ID: np.tile(space.rep_ids, len(rows))})
    p_all = model.predict_win(point_in_time_features(space, closed, expanded)).reshape(len(rows), R)
    p_rep = p_all[np.arange(len(rows)), space.rep_index(rows[S.REP_ID])]
    p_blind = p_all.mean(axis=1)
    y = rows[S.WON].to_numpy(float)
    gain = log_losses(y, p_blind) - log_losses(y, p_rep)
    spread = float(p_all.std(axis=1).mean())
    boot = gain[np.random.default_rng(seed).integers(0, len(y), (n_boot, len(y)))].mean(axis=1)
    lo, hi = np.quantile(boot, [0.05, 0.95])
    return SignalCheck(log_loss_gain=float(gain.mean()), gain_p05=float(lo), gain_p95=float(hi), rep_spread=spread,
                       detected=bool(lo > 0 and spread >= MIN_REP_SPREAD), deals=len(rows))


def score_rows(scorer: PairScorer, ds: S.Dataset, rows: pd.DataFrame) -> np.ndarray:
    """P(win) of a model for given opportunity rows, with point-in-time features built by that model's
    own feature space. Used to score a champion on a challenger's test period.

    The model's feature space is put on ``ds`` (``FeatureSpace.for_data``), so it scores reps and accounts it
    never saw from their attributes and history (cold start). Returns NaN for every row when it cannot (``ds``
    lacks an attribute it uses).
    """
    try:
        space = scorer.space.for_data(ds)
    except SchemaError:
        return np.full(len(rows), np.nan)
    return scorer.model.predict_win(point_in_time_features(space, ds.closed, rows))
