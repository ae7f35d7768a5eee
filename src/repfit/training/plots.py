"""Figures a person would rather look at than read: reliability curve, feature importance."""

from __future__ import annotations

import pandas as pd


def calibration_figure(cal: pd.DataFrame):
    """Predicted P(win) against the observed win rate per equal-count bin, one line per period (the training
    run's plot and the report's). Each period's line has the SVG id ``data-calibration-<period>``: the report's
    in-page check counts it as a data mark."""
    from matplotlib.figure import Figure  # not pyplot: no global registry of open figures to leak into

    fig = Figure(figsize=(4.6, 4.2))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], ls="--", c="#7f7f7f", lw=1, label="perfect")
    for split, t in cal.groupby("split"):
        (line,) = ax.plot(t.predicted, t.observed, marker="o", label=f"{split} period")
        line.set_gid(f"data-calibration-{split}")
    ax.set(xlabel="predicted P(win)", ylabel="observed win rate", xlim=(0, 1), ylim=(0, 1),
           title="Calibration (equal-count bins)")
    ax.legend(loc="upper left")
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
