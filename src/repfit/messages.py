"""How values and lines are shown in error messages: at most five, each cut short, with a count of the rest."""

from __future__ import annotations

from typing import Any

import pandas as pd

MAX_SHOWN = 5


def clip(text: str, limit: int = 80) -> str:
    """A value as shown in a message: at most ``limit`` characters (a 200 KB id must not make a 1 MB line)."""
    return text if len(text) <= limit else f"{text[:limit - 20]}...({len(text):,} characters)"


def listed(values: Any, n: int = MAX_SHOWN) -> str:
    """Render up to ``n`` values for an error message, with a count of the rest."""
    vals = list(values)
    shown = ", ".join(clip(repr(v) if isinstance(v, str) else str(v)) for v in vals[:n])
    more = len(vals) - n
    return shown + (f" (and {more} more)" if more > 0 else "")


def lines(index: pd.Index) -> str:
    """Data rows are 0-based; a CSV's header is line 1, so row i sits on line i + 2."""
    return "line " + listed([int(i) + 2 for i in index]) if len(index) == 1 else "lines " + listed(
        [int(i) + 2 for i in index]
    )
