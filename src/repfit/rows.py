"""Row-level problems of an opportunities table: fatal by default, or set aside (``--on-bad-rows quarantine``).

A row-level problem (close before create, an unparseable date, an unknown outcome label, a closed deal
without rep or account, a repeated opportunity id, an id unknown to the reps or accounts table) stops the
load in ``strict`` mode with one message naming the file, the column, the lines, the values and the fix.
In ``quarantine`` mode the row is set aside with its source line and reason, the load goes on, and the
caller writes the rejected rows to a CSV. If more than ``max_share`` of the rows would be set aside the
load stops: that many bad rows means a wrong mapping, not a dirty export.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from repfit.errors import SchemaError
from repfit.mapping import MAX_REJECTED_SHARE, Mapping, OnBadRows

STRICT, QUARANTINE = "strict", "quarantine"
REASONS = {  # code -> what the rejected-rows file and the summary say
    "missing_id": "empty opportunity id",
    "duplicate_id": "repeated opportunity id (the first row is kept)",
    "unknown_outcome": "unknown outcome label",
    "missing_rep": "closed deal without a rep",
    "missing_account": "closed deal without an account",
    "bad_date": "empty, unparseable or implausible date on a closed deal",
    "close_before_create": "close date before create date",
    "unknown_rep": "rep id not in the reps table",
    "unknown_account": "account id not in the accounts table",
}
QUARANTINE_FIX = (" Or set such rows aside with --on-bad-rows quarantine ([rows] on_bad = \"quarantine\" in the "
                  "mapping): they go to a rejected-rows CSV with their line and reason.")


@dataclass(frozen=True)
class RowPolicy:
    """What to do with a row-level problem: ``strict`` stops, ``quarantine`` sets the row aside."""

    on_bad: OnBadRows = STRICT
    max_share: float = MAX_REJECTED_SHARE

    @classmethod
    def of(cls, mapping: Mapping, on_bad: str | None = None, max_share: float | None = None) -> RowPolicy:
        """The command's choice, else the mapping's ``[rows]``, else strict with a 20% limit."""
        share = max_share if max_share is not None else mapping.max_rejected_share
        return cls(on_bad or mapping.on_bad_rows or STRICT, MAX_REJECTED_SHARE if share is None else share)


@dataclass
class RowProblems:
    """The row problems found in one table. ``raw``: the table as read (source headers), index = row number."""

    path: Path
    policy: RowPolicy
    raw: pd.DataFrame
    reasons: dict[int, tuple[str, str]] = field(default_factory=dict)  # row -> (code, detail)
    sources: dict[str, str] = field(default_factory=dict)  # contract column -> the file's header the mapping renamed

    def column(self, name: str) -> str:
        """A contract column as messages name it: with the file's own header when the mapping renamed one."""
        source = self.sources.get(name)
        return f"'{source}' ({name})" if source and source != name else f"'{name}'"

    def flag(self, bad: pd.Series, code: str, message: str,
             detail: str | Callable[[pd.Series], pd.Series] = "") -> pd.Series:
        """Rows where ``bad`` holds have problem ``code``: raise (strict) or set them aside (quarantine), with
        ``detail`` (a text, or a function of the mask giving one per bad row: only computed when rows are bad).
        Returns the mask of rows to keep."""
        bad = bad.fillna(False).astype(bool)
        if not bad.any():
            return ~bad
        if self.policy.on_bad == STRICT:
            raise SchemaError(message + QUARANTINE_FIX)
        text = detail(bad).astype(str) if callable(detail) else pd.Series(detail, index=bad.index[bad])
        for row, d in zip(bad.index[bad], text):
            self.reasons.setdefault(int(row), (code, d))
        return ~bad

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for code, _ in self.reasons.values():
            out[code] = out.get(code, 0) + 1
        return out

    def check_share(self) -> None:
        """Stop when more than ``policy.max_share`` of the rows were set aside."""
        n, total = len(self.reasons), len(self.raw)
        if total and n > self.policy.max_share * total:
            per = ", ".join(f"{code}: {k:,}" for code, k in sorted(self.counts().items(), key=lambda x: -x[1]))
            raise SchemaError(
                f"{self.path}: {n:,} of {total:,} rows ({n / total:.0%}) would be set aside ({per}), more than the "
                f"{self.policy.max_share:.0%} allowed: so many bad rows usually means the mapping does not fit this "
                "export. Fix: check the mapping's [columns], [dates] format and [outcome] labels (repfit mapping "
                "guess FILE proposes one), or raise the limit with --max-rejected-share / [rows] max_rejected_share."
            )

    def frame(self) -> pd.DataFrame:
        """The rejected rows as they were read, after ``file``, ``line``, ``reason`` and ``detail`` columns."""
        rows = sorted(self.reasons)
        raw = self.raw.loc[rows] if rows else self.raw.iloc[:0]
        head = pd.DataFrame({
            "file": str(self.path), "line": [r + 2 for r in rows],
            "reason": [self.reasons[r][0] for r in rows], "detail": [self.reasons[r][1] for r in rows],
        }, index=raw.index)
        clash = [c for c in raw.columns if c in head.columns]
        return pd.concat([head, raw.rename(columns={c: f"{c} (source)" for c in clash})], axis=1).reset_index(drop=True)
