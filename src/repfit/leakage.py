"""A guard against attributes that leak the outcome, for what no exclusion list foresees.

Exports carry dozens of custom fields: contract start and end dates, last activity dates, annual contract
values, filled only once a deal is won. Such a column predicts the past perfectly and the future not at all.
An attribute (of the deals, or of the rep or account a deal belongs to) is dropped from the data set, with a
warning naming it and why, when on the closed deals

- alone it separates won from lost almost perfectly: AUC above ``[leakage] max_auc`` (0.9), its missing
  values counted as a value of their own (a field filled only on won deals), categories scored by their win
  rate out of fold (so an id-like column does not score itself); or
- it holds dates that fall after the deal's creation on most deals (known only later).

The check runs on every closed deal when the data is loaded, so training, scoring and every other command see
the same columns. ``[leakage] keep = ["column"]`` keeps a column the guard would drop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from repfit.mapping import Mapping

MIN_CLASS = 20  # fewer won (or lost) closed deals than this: nothing to judge by
SAMPLE = 200_000  # closed deals the guard looks at, at most (a seeded sample beyond)
DATE_SHARE = 0.9  # a text column is a date column when this share of its values parse as dates
AFTER_SHARE = 0.5  # ... and leaks when it falls after the deal's creation on this share of closed deals
FOLDS, SMOOTH = 5, 20.0
PLAUSIBLE = (pd.Timestamp("1900-01-01"), pd.Timestamp("2200-01-01"))  # dates outside are no dates (as the loader's)


@dataclass(frozen=True)
class Dropped:
    """An attribute the guard took out, and why."""

    table: str
    column: str
    reason: str

    @property
    def message(self) -> str:
        return (f"leakage guard: dropped {self.table} column '{self.column}' from the features: {self.reason}. "
                f"If it is known when a deal is created, keep it with [leakage] keep = [\"{self.column}\"].")


def guard_leakage(reps: pd.DataFrame, accounts: pd.DataFrame, opps: pd.DataFrame, mp: Mapping,
                  reserved: dict[str, set[str]]):
    """The three tables without the leaking attributes (``reserved``: the contract's own columns per table, never
    attributes), and the list of what was dropped."""
    closed = opps[opps["outcome"] != "open"]
    if len(closed) > SAMPLE:
        closed = closed.sample(SAMPLE, random_state=0)
    won = closed["won"].to_numpy(float)
    if min(won.sum(), len(won) - won.sum()) < MIN_CLASS:
        return reps, accounts, opps, []
    tables = {"reps": reps, "accounts": accounts, "opportunities": opps}
    keys = {"reps": "rep_id", "accounts": "account_id"}
    dropped = []
    for table, df in tables.items():
        for column in (c for c in df.columns if c not in reserved[table] and c not in mp.keep):
            if table == "opportunities":
                values = closed[column]
            else:
                values = closed[keys[table]].map(df.set_index(keys[table])[column])
            reason = _leak(values.reset_index(drop=True), closed["created_at"].reset_index(drop=True), won, mp)
            if reason:
                dropped.append(Dropped(table, column, reason))
    for d in dropped:
        tables[d.table] = tables[d.table].drop(columns=[d.column])
    return tables["reps"], tables["accounts"], tables["opportunities"], dropped


def _leak(values: pd.Series, created: pd.Series, won: np.ndarray, mp: Mapping) -> str | None:
    """Why this per-deal column leaks the outcome, or None."""
    if values.notna().sum() == 0:
        return None
    if not pd.api.types.is_numeric_dtype(values):
        after = _after_creation(values, created, mp.date_format)
        if after is not None and after >= AFTER_SHARE:
            return f"a date after the deal's creation on {after:.0%} of closed deals (known only later)"
    auc = _numeric_auc(values, won) if pd.api.types.is_numeric_dtype(values) else _category_auc(values, won)
    if auc > mp.max_auc:
        filled = values.notna().to_numpy()
        how = (f" (filled on {filled[won == 1].mean():.0%} of won and {filled[won == 0].mean():.0%} of lost deals)"
               if not filled.all() else "")
        return f"alone it separates won from lost deals almost perfectly (AUC {auc:.2f} > {mp.max_auc}){how}"
    return None


def _after_creation(values: pd.Series, created: pd.Series, fmt: str) -> float | None:
    """Share of filled closed deals whose date is more than a day after creation; None if not a date column."""
    text = values.dropna().astype(str)
    probe = text.head(200)
    for f in dict.fromkeys((fmt, "ISO8601", "mixed")):
        try:
            if pd.to_datetime(probe, errors="coerce", format=f).notna().mean() < DATE_SHARE:
                continue
            dates = pd.to_datetime(text, errors="coerce", format=f, utc=True).dt.tz_localize(None)
        except (ValueError, TypeError):
            continue
        # "mixed" reads a band "11-50" as 2050-11-01 and "1-10" as year 1: a date names its year in full
        dates = dates.where(dates.between(*PLAUSIBLE) & (f != "mixed" or text.str.contains(r"\d{4}")))
        if dates.notna().mean() < DATE_SHARE:
            continue
        later = dates > created.loc[dates.index] + pd.Timedelta(days=1)
        return float(later[dates.notna()].mean())
    return None


def _numeric_auc(values: pd.Series, won: np.ndarray) -> float:
    """The best AUC of the column alone, its missing values placed below or above every number."""
    x = values.to_numpy(float)
    missing = np.isnan(x)
    best = 0.5
    lo, hi = (np.nanmin(x) - 1, np.nanmax(x) + 1) if (~missing).any() else (0.0, 1.0)
    for fill in (lo, hi):
        auc = roc_auc_score(won, np.where(missing, fill, x))
        best = max(best, auc, 1 - auc)
    return best


def _category_auc(values: pd.Series, won: np.ndarray) -> float:
    """AUC of the category's win rate, learned on the other folds (shrunk toward the overall rate)."""
    labels = values.astype("string").fillna("\x00missing").to_numpy()
    fold = np.random.default_rng(0).integers(0, FOLDS, len(labels))
    score = np.empty(len(labels))
    for k in range(FOLDS):
        train, test = fold != k, fold == k
        g = won[train].mean()
        stats = pd.DataFrame({"v": labels[train], "y": won[train]}).groupby("v")["y"].agg(["sum", "count"])
        rate = (stats["sum"] + SMOOTH * g) / (stats["count"] + SMOOTH)
        score[test] = pd.Series(labels[test]).map(rate).fillna(g).to_numpy()
    auc = roc_auc_score(won, score)
    return max(auc, 1 - auc)
