"""Balance bands from the data: ``--balance METRIC=TOL`` -> each rep's total of METRIC within +-TOL of its target.

A rep's target is its share of the metric's total, in proportion to its ``quota`` (an optional rep column) when
the reps table has one, else to its capacity. METRIC is ``accounts``, ``potential``, ``expected_value``,
``workload`` or any numeric account column. ``--balance none`` turns the default band off.

Why the default is ``accounts=20%``: without a band, the optimiser hands the strongest reps every account it
can (up to capacity) and may leave a weaker rep with none; a plan that empties one book and doubles another is
not one sales ops can roll out. +-20% of each rep's fair share of accounts guarantees every rep a book (no book
below 0.8 of its share, none above 1.2) while leaving the optimiser room to match accounts to strengths; a
tighter band costs more uplift (see the price of balance in the summary and the report).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from repfit import schema as S
from repfit.assign.problem import Band
from repfit.errors import ConfigError

NONE = "none"
DEFAULT_BALANCE = ("accounts=20%",)
BUILT_IN = ("accounts", "potential", "expected_value", "workload")
_SPEC = re.compile(r"^\s*(?P<metric>[^=]+?)\s*=\s*(?P<tol>[0-9]*\.?[0-9]+)\s*(?P<pct>%?)\s*$")


@dataclass(frozen=True)
class BalanceSpec:
    """One ``--balance`` option: a metric and its +- tolerance (0.1 for 10%)."""

    metric: str
    tolerance: float

    def __str__(self) -> str:
        return f"{self.metric}={self.tolerance:.0%}" if (self.tolerance * 100).is_integer() else \
            f"{self.metric}={self.tolerance * 100:g}%"


def parse_balance(specs: tuple[str, ...]) -> tuple[BalanceSpec, ...]:
    """``("potential=10%", "accounts=0.1")`` -> specs; ``("none",)`` -> (). Raises ``ConfigError`` on a bad one."""
    if any(s.strip().lower() == NONE for s in specs):
        if len(specs) > 1:
            raise ConfigError(f"--balance none cannot be combined with other bands (got {', '.join(specs)}). "
                              "Fix: give either none or the bands you want.", option="balance")
        return ()
    out: dict[str, BalanceSpec] = {}
    for spec in specs:
        m = _SPEC.match(spec)
        if not m:
            raise ConfigError(f"--balance {spec!r} is not METRIC=TOL. Fix: e.g. --balance potential=10% "
                              "(or 0.1), --balance accounts=15%, or --balance none.", option="balance")
        tol = float(m["tol"]) / (100 if m["pct"] else 1)
        if not 0 <= tol < 1:
            raise ConfigError(f"--balance {spec!r}: the tolerance must be from 0% to under 100% (got {tol:.0%}). "
                              "Fix: e.g. potential=10%.", option="balance")
        out[m["metric"]] = BalanceSpec(m["metric"], tol)  # a metric given twice: the last one counts
    return tuple(out.values())


def rep_shares(ds: S.Dataset) -> np.ndarray:
    """(R,) each rep's share of every metric's total: by quota when the reps table has one, else by capacity."""
    reps = ds.reps
    base = reps[S.QUOTA].to_numpy(float) if S.QUOTA in reps.columns else reps[S.CAPACITY].to_numpy(float)
    total = base.sum()
    if not total > 0:
        raise ConfigError(f"{ds.paths['reps']}: every rep's {S.QUOTA if S.QUOTA in reps.columns else S.CAPACITY} "
                          "is 0, so no rep has a share to balance to. Fix: give reps a positive quota.", option="balance")
    return base / total


def metric_weights(ds: S.Dataset, metric: str, p_win: np.ndarray) -> np.ndarray:
    """Each account's amount of ``metric``: (A,), or (A, R) for expected_value (it depends on the rep)."""
    accs = ds.accounts
    if metric == "accounts":
        return np.ones(len(accs))
    if metric == "expected_value":
        return p_win * accs[S.POTENTIAL].to_numpy(float)[:, None]
    column = {"potential": S.POTENTIAL, "workload": S.WORKLOAD}.get(metric, metric)
    if column == S.WORKLOAD and column not in accs.columns:
        return np.ones(len(accs))
    if column not in accs.columns or not pd.api.types.is_numeric_dtype(accs[column]):
        numeric = [c for c in ds.numeric("accounts")]
        raise ConfigError(f"--balance {metric}: not a metric ({', '.join(BUILT_IN)}) nor a numeric column of "
                          f"{ds.paths['accounts']} (numeric columns: {', '.join(numeric) or 'none'}). Fix: name one of "
                          "those.", option="balance")
    w = accs[column].to_numpy(float)
    if (w < 0).any():
        raise ConfigError(f"--balance {metric}: column '{column}' has negative values, which cannot be balanced as "
                          "totals. Fix: balance a column of amounts of 0 or more.", option="balance")
    return np.nan_to_num(w, nan=0.0)


def band_for(spec: BalanceSpec, weights: np.ndarray, shares: np.ndarray, total: float) -> Band:
    """The band of ``spec``: each rep within +-tolerance of ``share x total``; count metrics get whole bounds that
    always hold the rounded target (a 10% band around 2.3 accounts is 2 to 3, not empty)."""
    target = shares * total
    lower, upper = (1 - spec.tolerance) * target, (1 + spec.tolerance) * target
    if weights.ndim == 1 and np.all(weights == np.round(weights)):
        lower = np.minimum(np.floor(target + 1e-9), np.ceil(lower - 1e-9))
        upper = np.maximum(np.ceil(target - 1e-9), np.floor(upper + 1e-9))
    return Band(spec.metric, weights, lower, upper, spec.tolerance, target)


def build_bands(ds: S.Dataset, p_win: np.ndarray, specs: tuple[BalanceSpec, ...],
                expected_total: float | None = None) -> tuple[Band, ...]:
    """The bands of ``specs`` on ``ds``. ``expected_total``: the total expected value the expected_value band
    shares out (the plan's total without that band); required when it is asked for."""
    shares = rep_shares(ds) if specs else None
    bands = []
    for spec in specs:
        w = metric_weights(ds, spec.metric, p_win)
        if w.ndim == 2:
            if expected_total is None:
                raise ValueError("build_bands: an expected_value band needs expected_total")
            total = expected_total
        else:
            total = float(w.sum())
        bands.append(band_for(spec, w, shares, total))
    return tuple(bands)


def reshared(bands: tuple[Band, ...], columns: np.ndarray) -> tuple[Band, ...]:
    """The bands for a changed set of reps (``repfit capacity``: one rep gone, or copies of one added): new rep
    ``i`` takes the place of old rep ``columns[i]`` (its weights column, its share); shares are renormalised so
    the metric's total is shared out again; hard limits (workload capacity) stay each rep's own."""
    out = []
    for b in bands:
        w = b.weights if b.weights.ndim == 1 else b.weights[:, columns]
        if b.tolerance is None or b.target is None:
            out.append(Band(b.metric, w, b.lower[columns], b.upper[columns], b.tolerance))
            continue
        shares = b.target[columns] / max(float(b.target[columns].sum()), 1e-300)
        out.append(band_for(BalanceSpec(b.metric, b.tolerance), w, shares, float(b.target.sum())))
    return tuple(out)


def tolerance_text(tol: float) -> str:
    return f"{tol:.0%}" if math.isclose(tol * 100, round(tol * 100)) else f"{tol * 100:g}%"
