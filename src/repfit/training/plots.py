"""Figures a person would rather look at than read: reliability curve, feature importance."""

from __future__ import annotations

import pandas as pd


def calibration_figure(cal: pd.DataFrame):
    from matplotlib.figure import Figure  # not pyplot: no global registry of open figures to leak into

    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="perfect")
    for split, t in cal.groupby("split"):
        ax.plot(t.predicted, t.observed, marker="o", label=split)
    ax.set(xlabel="predicted P(win)", ylabel="observed win rate", title="Reliability (equal-count bins)",
           xlim=(0, 1), ylim=(0, 1))
    ax.legend()
    fig.tight_layout()
    return fig


def importance_figure(imp: pd.DataFrame, top: int = 20):
    from matplotlib.figure import Figure

    t = imp.head(top).iloc[::-1]
    fig = Figure(figsize=(6, 0.3 * len(t) + 1))
    ax = fig.subplots()
    ax.barh(t.feature, t.gain)
    ax.set(xlabel="total gain", title="LightGBM feature importance")
    fig.tight_layout()
    return fig
