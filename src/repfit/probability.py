"""One home for the small formulas on probabilities that several modules use.

Clipping keeps logs and log-odds finite: ``EPS`` for predictions; rates built from counts pass their own.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-6


def logit(p, eps: float = EPS) -> np.ndarray:
    """Log-odds of ``p``, clipped to ``[eps, 1 - eps]`` first."""
    p = np.clip(np.asarray(p, float), eps, 1 - eps)
    return np.log(p / (1 - p))


def sigmoid(z) -> np.ndarray:
    """The inverse of ``logit``; overflow-free for any finite ``z``."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, float)))


def log_losses(y, p, eps: float = EPS) -> np.ndarray:
    """Per-row log loss of predictions ``p`` for 0/1 labels ``y``."""
    y = np.asarray(y, float)
    p = np.clip(np.asarray(p, float), eps, 1 - eps)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def log_loss(y, p, eps: float = EPS) -> float:
    """Mean log loss (as ``sklearn.metrics.log_loss`` with both labels, after clipping to ``eps``)."""
    return float(log_losses(y, p, eps).mean()) if len(np.asarray(y)) else float("nan")


def laplace_rate(wins, deals):
    """The win rate with one pseudo-win and one pseudo-loss, ``(wins + 1) / (deals + 2)``: the team's rate that
    every shrunk rate starts from, defined with no history at all."""
    return (wins + 1.0) / (deals + 2.0)
