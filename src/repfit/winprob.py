"""The win-probability model: a LightGBM booster on pair features, optionally calibrated.

``WinProbModel`` follows the scikit-learn estimator contract on feature frames.
``PairScorer`` bundles it with the feature space and the history snapshot, so that it scores
(rep_id, account_id) pairs directly; it is what ``models/`` and the MLflow pyfunc carry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import joblib
import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from repfit.card import ModelCard
from repfit.config import AUTO, TrainConfig
from repfit.errors import BundleError, NotFittedError
from repfit.features import FeatureSpace, HistorySnapshot, pair_features
from repfit.features.catalogue import Catalogue
from repfit.probability import EPS, log_loss, sigmoid
from repfit.probability import logit as _logit

BUNDLE_VERSION = 4  # 2: the feature catalogue and a typed model card; 3: static columns keep their training levels; 4: rates net of deal-level attributes


class Calibrator:
    """Maps raw booster probabilities to calibrated ones: ``isotonic`` or ``platt`` (logistic on logit)."""

    def __init__(self, method: str):
        self.method = method

    def fit(self, p: np.ndarray, y: np.ndarray) -> Calibrator:
        if self.method == "isotonic":
            self.model_ = IsotonicRegression(out_of_bounds="clip", y_min=EPS, y_max=1 - EPS).fit(p, y)
        else:
            self.model_ = LogisticRegression(C=1e6).fit(_logit(p)[:, None], y)
        return self

    def transform(self, p: np.ndarray) -> np.ndarray:
        if self.method == "isotonic":
            return np.clip(self.model_.predict(p), EPS, 1 - EPS)
        return self.model_.predict_proba(_logit(p)[:, None])[:, 1]


def choose_calibration(p: np.ndarray, y: np.ndarray, requested: str, seed: int) -> tuple[str, dict[str, float]]:
    """Pick a calibration by two-fold cross-fitting on validation (fit on one half, score the other).

    Returns the method ('none', 'isotonic' or 'platt') and each method's cross-fitted log loss.
    """
    if requested != AUTO:
        return requested, {}
    rng = np.random.default_rng(seed)
    half = rng.permutation(len(y)) < len(y) // 2
    scores = {"none": log_loss(y, p)}
    for method in ("isotonic", "platt"):
        out = np.empty_like(p)
        ok = True
        for fit_m in (half, ~half):
            if len(np.unique(y[fit_m])) < 2:
                ok = False
                break
            out[~fit_m] = Calibrator(method).fit(p[fit_m], y[fit_m]).transform(p[~fit_m])
        if ok:
            scores[method] = log_loss(y, out)
    best = min(scores, key=scores.get)
    return best, scores


class WinProbModel:
    """LightGBM binary classifier of P(win) with early stopping and optional calibration.

    Parameters
    ----------
    config : TrainConfig
        LightGBM parameters, seed, thread count and calibration choice.
    """

    def __init__(self, config: TrainConfig | None = None):
        self.config = config or TrainConfig()

    def _params(self) -> dict:
        c = self.config
        return {
            "objective": "binary", "learning_rate": c.learning_rate, "num_leaves": c.num_leaves,
            "min_data_in_leaf": c.min_child_samples, "feature_fraction": c.feature_fraction,
            "bagging_fraction": c.bagging_fraction, "bagging_freq": c.bagging_freq, "lambda_l2": c.lambda_l2,
            "num_threads": c.n_jobs, "seed": c.seed, "deterministic": True, "force_row_wise": True,
            "verbosity": -1, "max_cat_to_onehot": 8,
        }

    def fit(self, X: pd.DataFrame, y, X_val: pd.DataFrame, y_val, catalogue: Catalogue) -> WinProbModel:
        """Fit on (X, y) with early stopping on (X_val, y_val); choose and fit calibration on validation.

        ``catalogue`` (the feature space's) says which columns are categorical, which are constrained
        monotone (the rep's win rates can only raise P(win); ``config.monotone``) and how the booster's start
        splits back into columns (``contributions``)."""
        y, y_val = np.asarray(y, float), np.asarray(y_val, float)
        cats = [c for c in catalogue.categorical() if c in X.columns]
        self.catalogue_ = catalogue
        self.monotone_ = catalogue.monotone(X.columns) if self.config.monotone else [0] * X.shape[1]
        self.offset_ = self.config.boost_from if self.config.boost_from in X.columns else None
        self.offset_scale_ = (1.0, 0.0)
        if self.offset_ is not None:  # the start, recalibrated on the training rows: a * column + b
            lr = LogisticRegression(C=1e6).fit(X[[self.offset_]].to_numpy(float), y)
            self.offset_scale_ = (float(lr.coef_[0, 0]), float(lr.intercept_[0]))
        train = lgb.Dataset(X, y, categorical_feature=cats, free_raw_data=False, init_score=self._offset(X))
        val = lgb.Dataset(X_val, y_val, reference=train, categorical_feature=cats, init_score=self._offset(X_val))
        self.booster_ = lgb.train(
            {**self._params(), "monotone_constraints": self.monotone_}, train, num_boost_round=self.config.max_rounds, valid_sets=[val],
            callbacks=[lgb.early_stopping(self.config.early_stopping_rounds, verbose=False)],
        )
        self.best_iteration_ = int(self.booster_.best_iteration or self.booster_.current_iteration())
        self.feature_names_in_ = np.asarray(X.columns)
        self.n_train_ = len(X)
        self.categorical_ = cats
        raw_val = self.predict_uncalibrated(X_val)
        self.calibration_, self.calibration_scores_ = choose_calibration(raw_val, y_val, self.config.calibration, self.config.seed)
        self.calibrator_ = None if self.calibration_ == "none" else Calibrator(self.calibration_).fit(raw_val, y_val)
        return self

    def refit(self, X: pd.DataFrame, y) -> WinProbModel:
        """Refit the booster on more rows (train + validation) for the early-stopped number of rounds,
        scaled by the growth in rows. The test period stays unseen, so its evaluation stays honest."""
        self._check()
        rounds = max(1, int(round(self.best_iteration_ * len(X) / self.n_train_)))
        data = lgb.Dataset(X[self.feature_names_in_], np.asarray(y, float), categorical_feature=self.categorical_,
                           init_score=self._offset(X))
        self.booster_ = lgb.train({**self._params(), "monotone_constraints": self.monotone_}, data, num_boost_round=rounds)
        self.best_iteration_ = rounds
        return self

    def _check(self) -> None:
        if not hasattr(self, "booster_"):
            raise NotFittedError("WinProbModel is not fitted: call fit() first.")

    def _offset(self, X: pd.DataFrame) -> np.ndarray | None:
        """The log-odds the booster starts from (``a * boost_from + b``), or None."""
        if self.offset_ is None:
            return None
        a, b = self.offset_scale_
        return a * X[self.offset_].to_numpy(float) + b

    def predict_uncalibrated(self, X: pd.DataFrame) -> np.ndarray:
        """The booster's P(win) (with its start, if any) before calibration, for each row of ``X`` (1-D)."""
        self._check()
        z = self.booster_.predict(X[self.feature_names_in_], num_iteration=self.best_iteration_, raw_score=True)
        off = self._offset(X)
        return sigmoid(z if off is None else z + off)

    def predict_win(self, X: pd.DataFrame) -> np.ndarray:
        """P(win) for each row of the feature frame ``X`` (1-D)."""
        p = self.predict_uncalibrated(X)
        return p if self.calibrator_ is None else self.calibrator_.transform(p)

    def trees(self, engine: str = "auto", pairs: int = 0, cache_dir: Path | None = None, n_jobs: int | None = None):
        """What evaluates the booster's trees for ``predict_win_matrix``: compiled (lleaves) or LightGBM's own
        predict, on ``n_jobs`` threads (default: the training config's); see ``repfit.compiled.trees_for``
        (``engine``: auto, compiled or lightgbm; ``pairs``: how many pairs "auto" will score)."""
        from repfit.compiled import trees_for

        self._check()
        return trees_for(self.booster_, self.best_iteration_, n_jobs or self.config.n_jobs, engine, pairs, cache_dir)

    def predict_win_matrix(self, X: np.ndarray, trees=None) -> np.ndarray:
        """``predict_win`` on a float64 matrix whose columns are ``feature_names_in_`` (the batch-scoring path:
        no frame), with the trees evaluated by ``trees`` (``self.trees()``; default LightGBM's predict). The same
        P(win) as ``predict_win`` on the same features, to ~1e-15 with compiled trees."""
        self._check()
        if trees is None:
            z = self.booster_.predict(X, num_iteration=self.best_iteration_, raw_score=True)
        else:
            z = trees.raw(X)
        if self.offset_ is not None:
            a, b = self.offset_scale_
            j = int(np.flatnonzero(self.feature_names_in_ == self.offset_)[0])
            z = z + (a * X[:, j] + b)
        p = sigmoid(z)
        return p if self.calibrator_ is None else self.calibrator_.transform(p)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """scikit-learn style: columns P(lost), P(won)."""
        p = self.predict_win(X)
        return np.column_stack([1 - p, p])

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per-feature contributions to the raw log-odds (LightGBM ``pred_contrib``); last column: bias.

        When the booster starts from the joint model's log-odds (rescaled ``a * start + b`` on the training
        rows), the catalogue splits that start into the columns that make it up (``Catalogue.start_parts``):
        each dimension's joint part, the rep's own effect (credited to the rep's overall rate) and the rest
        (account and intercept, credited to ``bias``). Any other start goes to ``bias``. Rows still sum to the
        raw log-odds."""
        self._check()
        c = self.booster_.predict(X[self.feature_names_in_], num_iteration=self.best_iteration_, pred_contrib=True)
        out = pd.DataFrame(c, columns=list(self.feature_names_in_) + ["bias"], index=X.index)
        if self.offset_ is None:
            return out
        a, b = self.offset_scale_
        parts, rep_part, rep_credit = self.catalogue_.start_parts(self.offset_)
        if rep_part is None:
            out["bias"] += self._offset(X)
            return out
        for col in parts:
            out[col] += a * X[col].to_numpy(float)
        rep = X[rep_part].to_numpy(float) - X[parts].to_numpy(float).sum(axis=1)
        out[rep_credit] += a * rep
        out["bias"] += a * (X[self.offset_].to_numpy(float) - X[rep_part].to_numpy(float)) + b
        return out


@dataclass(frozen=True)
class PairScorer:
    """A fitted model with the feature space and history it scores pairs with. Saved with joblib.

    The bundle carries its format version (``BUNDLE_VERSION``); ``load`` refuses another one with the fix."""

    model: WinProbModel
    space: FeatureSpace
    history: HistorySnapshot
    card: ModelCard
    version: int = BUNDLE_VERSION

    @property
    def catalogue(self) -> Catalogue:
        return self.space.catalogue

    def features(self, rep_ids, account_ids) -> pd.DataFrame:
        return pair_features(self.space, self.history, self.space.rep_index(rep_ids), self.space.account_index(account_ids))

    def score(self, rep_ids, account_ids) -> np.ndarray:
        """P(win) of each (rep_id, account_id) pair, using all closed history the bundle carries."""
        return self.model.predict_win(self.features(rep_ids, account_ids))

    def save(self, path: str | Path) -> Path:
        from repfit.io import atomic_write

        return atomic_write(path, lambda p: joblib.dump(self, p, compress=3))

    @staticmethod
    def load(path: str | Path) -> PairScorer:
        """The bundle at ``path``; ``RepfitError`` when it is not a repfit bundle or of another format version."""
        try:
            obj = joblib.load(path)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not a bundle" to the user
            raise BundleError(f"{path}: not a repfit model bundle ({type(exc).__name__}). Fix: name a .joblib bundle "
                              "that repfit saved, or a registered model.", option="model") from None
        if not isinstance(obj, PairScorer):
            raise BundleError(f"{path}: not a repfit model bundle (it holds a {type(obj).__name__}). Fix: name a "
                              ".joblib bundle that repfit saved, or a registered model.", option="model")
        version = vars(obj).get("version", 1)  # bundles before version 2 had no such field
        if version != BUNDLE_VERSION:
            raise BundleError(f"{path}: a model bundle of format version {version}, but this repfit reads version "
                              f"{BUNDLE_VERSION}. Fix: train the model again on this data (the data and configs are "
                              "enough).", option="model")
        return obj
