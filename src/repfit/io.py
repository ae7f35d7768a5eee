"""Atomic file output: write to a temporary file beside the target, then rename.

A crash or an error half-way leaves the previous file (or nothing) in place, never half a file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and move the result onto ``path`` only if it succeeded."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``df`` as CSV or Parquet (by suffix), atomically.

    CSV cells that a spreadsheet would read as a formula are escaped (see ``escape_formulas``).
    """
    target = Path(path)
    if target.suffix == ".parquet":
        return atomic_write(target, lambda p: df.to_parquet(p, index=False))
    return atomic_write(target, lambda p: escape_formulas(df).to_csv(p, index=False))


def write_text(text: str, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def escape_formulas(df: pd.DataFrame) -> pd.DataFrame:
    """Prefix text cells that start like a spreadsheet formula with a single quote (OWASP CSV injection).

    Numbers are left alone (a negative number is data, not a formula); only object/string columns
    are touched, and the input frame is not modified.
    """
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            s = out[col]
            mask = s.map(lambda v: isinstance(v, str) and v.startswith(_FORMULA_START))
            if mask.any():
                out[col] = s.where(~mask, "'" + s.astype(str))
    return out


def unescape_ids(values: pd.Series, known: pd.Index) -> pd.Series:
    """Undo ``escape_formulas`` on an id column read back from CSV: a value that is not a known id but is one
    once its leading quote is dropped gets that quote dropped."""
    s = values.astype(str)
    quoted = s.str.startswith("'") & ~s.isin(known)
    if quoted.any():
        bare = s[quoted].str[1:]
        s = s.where(~quoted | ~s.index.isin(bare[bare.isin(known)].index), s.str[1:])
    return s
