"""The model card: what a trained model knows about itself, carried in its bundle (plain dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Period:
    """One period of the time split: its closed opportunities and the dates they were created."""

    rows: int
    first: str
    last: str


@dataclass(frozen=True)
class SplitInfo:
    train: Period
    validation: Period
    test: Period

    def as_tags(self) -> dict[str, str]:
        return {f"{name}_{k}": str(v) for name in ("train", "validation", "test")
                for k, v in (("rows", getattr(self, name).rows), ("from", getattr(self, name).first),
                             ("to", getattr(self, name).last))}


@dataclass(frozen=True)
class SignalCheck:
    """Does the test period bear out the model's rep strengths (see ``training.train.rep_signal_check``)?"""

    log_loss_gain: float  # mean log-loss gain of the actual rep's P(win) over the all-rep average
    gain_p05: float  # its 90% bootstrap interval
    gain_p95: float
    rep_spread: float  # mean std of P(win) across reps for one deal
    detected: bool
    deals: int = 0  # test deals it was measured on (a sample when deals x reps is large; 0: not recorded)

    def metrics(self) -> dict[str, float]:
        return {"signal.log_loss_gain": self.log_loss_gain, "signal.gain_p05": self.gain_p05,
                "signal.gain_p95": self.gain_p95, "signal.detected": float(self.detected),
                "signal.rep_spread": self.rep_spread, "signal.deals": float(self.deals)}


@dataclass(frozen=True)
class ModelCard:
    """What a trained model knows about itself: configs, split, calibration, test metrics, the signal verdict."""

    feature_config: dict
    train_config: dict
    split: SplitInfo
    calibration: str
    signal: SignalCheck
    test_metrics: dict[str, float]  # "<model>.test.<metric>" for repfit and each baseline
    calibration_table: pd.DataFrame  # reliability curve on validation and test (split, bin, predicted, observed, n)
    learned: dict[str, float | str]  # what the joint model learned: band edges, each block's prior sd
