"""Frozen configuration objects, read from the TOML files a user edits (``features/``, ``training/``).

The dataclass defaults *are* the defaults; ``features/default.toml`` and ``training/default.toml``
spell them out (a test keeps them equal).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from repfit.errors import ConfigError

AUTO = "auto"


@dataclass(frozen=True)
class FeatureConfig:
    """Which dimensions rep strengths are built over, and how strongly rates are shrunk.

    Each ``*_attributes`` is ``"auto"`` (every eligible column) or a list of column names.
    """

    account_attributes: Any = AUTO  # categorical account attributes -> strength per value
    numeric_bands: Any = AUTO  # numeric account attributes -> strength per size band
    opportunity_attributes: Any = AUTO  # opportunity attributes (e.g. product), weighted by the account's mix
    shared_attributes: Any = AUTO  # rep & account attributes -> strength on same-value match
    exclude: tuple[str, ...] = ()
    n_bands: int = 3
    max_levels: int = 30  # categorical columns with more distinct values are ids/names: skipped
    prior_deals: float = 10.0  # pseudo-deals each rate is shrunk with (empirical Bayes)
    joint_prior_sd: float = 0.45  # joint model (features/joint.py): start prior sd of each block (learned in training); 0 = off
    joint_refit_months: int = 3  # training rows: the joint model is refitted at the start of every such calendar period
    band_edges: str = "learned"  # numeric bands: "learned" (joint model's evidence, among 5%..95% quantiles) or "quantile"


@dataclass(frozen=True)
class TrainConfig:
    """Time split, LightGBM parameters, calibration and the seed."""

    validation_fraction: float = 0.15  # share of closed opportunities (by created_at) for validation
    test_fraction: float = 0.15  # the latest share, held out for the final evaluation
    learning_rate: float = 0.03
    num_leaves: int = 15
    min_child_samples: int = 40
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 5.0
    max_rounds: int = 2000
    early_stopping_rounds: int = 100
    n_jobs: int = 2  # explicit: LightGBM's default threading is ~1000x slower on a loaded 2-core box
    monotone: bool = True  # P(win) may only rise with the rep's win rates (overall, per dimension, pair)
    boost_from: str = "joint_logit"  # feature whose log-odds the booster starts from and corrects; "" = from a constant
    refit: bool = True  # after early stopping, refit on train + validation (the test period stays unseen)
    calibration: str = AUTO  # "auto" (isotonic or Platt if it helps on validation), "isotonic", "platt", "none"
    seed: int = 42


def _load(cls, path: str | Path | None, section: str | None = None):
    if path is None:
        return cls()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found. Fix: pass an existing file, or omit the option for defaults.")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}). Fix the syntax.") from None
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(flat) - set(known))
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(known))}. "
            "Fix: correct the spelling or remove them."
        )
    cfg = cls()
    for key, value in flat.items():
        default = getattr(cfg, key)
        if isinstance(default, tuple):
            value = tuple(value)
        elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif default is not None and not isinstance(default, str) and type(value) is not type(default):
            raise ConfigError(
                f"{path}: setting '{key}' should be {type(default).__name__}, got {value!r}. Fix: e.g. {key} = {default!r}."
            )
        cfg = replace(cfg, **{key: value})
    return cfg


def load_feature_config(path: str | Path | None = None) -> FeatureConfig:
    cfg = _load(FeatureConfig, path)
    if cfg.band_edges not in ("learned", "quantile"):
        raise ConfigError(f"{path}: band_edges {cfg.band_edges!r} is not one of learned, quantile. Fix: band_edges = \"learned\".")
    if cfg.joint_prior_sd < 0 or not 1 <= cfg.joint_refit_months <= 12 or cfg.n_bands < 2:
        raise ConfigError(
            f"{path}: joint_prior_sd {cfg.joint_prior_sd} must be >= 0, joint_refit_months {cfg.joint_refit_months} "
            f"in 1..12 and n_bands {cfg.n_bands} >= 2. Fix: e.g. joint_prior_sd = 0.45, joint_refit_months = 3, n_bands = 3."
        )
    return cfg


def load_train_config(path: str | Path | None = None) -> TrainConfig:
    cfg = _load(TrainConfig, path)
    if not (0 < cfg.validation_fraction < 1 and 0 < cfg.test_fraction < 1 and cfg.validation_fraction + cfg.test_fraction < 0.9):
        raise ConfigError(
            f"{path}: validation_fraction {cfg.validation_fraction} and test_fraction {cfg.test_fraction} must each be "
            "in (0, 1) and leave at least 10% for training. Fix: e.g. 0.15 and 0.15."
        )
    if cfg.calibration not in (AUTO, "isotonic", "platt", "none"):
        raise ConfigError(f"{path}: calibration {cfg.calibration!r} is not one of auto, isotonic, platt, none.")
    return cfg


def as_dict(cfg) -> dict[str, Any]:
    return {f.name: getattr(cfg, f.name) for f in fields(cfg)}
