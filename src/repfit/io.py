"""Atomic file output: write to a temporary file beside the target, then rename.

A crash or an error half-way leaves the previous file (or nothing) in place, never half a file.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from repfit.errors import RepfitError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()
_PROTECTED: set[Path] = set()  # the input tables of the running command: never an output


def reset_protected() -> None:
    """A new command begins: forget the inputs of the one before (the CLI calls this)."""
    _PROTECTED.clear()


def protect_inputs(paths) -> None:
    """Refuse outputs onto these files (the tables a command read) for the rest of the process."""
    _PROTECTED.update(Path(p).resolve() for p in paths)


def refuse_input(path: str | os.PathLike) -> None:
    """Raise when ``path`` is an input table of this run (for outputs that ``atomic_write`` does not write)."""
    if Path(path).resolve() in _PROTECTED:
        raise RepfitError(f"{path}: is an input table of this run; writing there would overwrite it. Fix: choose "
                          "another output path.", option="out")


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and move the result onto ``path`` only if it succeeded."""
    target = Path(path)
    if target.is_dir():
        raise RepfitError(f"{target}: is a directory. Fix: give a file name for the output.")
    if target.resolve() in _PROTECTED:
        raise RepfitError(f"{target}: is an input table of this run; writing there would overwrite it. Fix: choose "
                          "another output path.", option="out")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise RepfitError(f"{target}: cannot write there ({exc.strerror or type(exc).__name__}: {exc.filename or target.parent}). "
                          "Fix: choose an output path in a writable directory.") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions, as open() would
        write(tmp)
        os.replace(tmp, target)
    except OSError as exc:  # disk full, quota, a path gone mid-way: the previous output (or none) stays
        raise RepfitError(f"{target}: could not be written ({exc.strerror or type(exc).__name__}). Fix: free space "
                          "or choose another output path; any previous file there is unchanged.") from None
    finally:
        tmp.unlink(missing_ok=True)
    return target


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``df`` as CSV or Parquet (by suffix), atomically.

    CSV cells that a spreadsheet would read as a formula are escaped (see ``escape_formulas``).
    """
    target = Path(path)
    if target.suffix.lower() == ".parquet":
        return atomic_write(target, lambda p: df.to_parquet(p, index=False))
    return atomic_write(target, lambda p: escape_formulas(df).to_csv(p, index=False))


def write_text(text: str, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def _json_safe(obj):
    """NaN and infinities become null (strict JSON has no NaN); numpy scalars become Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(obj, path: str | os.PathLike) -> Path:
    """Write ``obj`` as strict JSON (see ``_json_safe``), atomically; values JSON cannot hold become strings."""
    return write_text(json.dumps(_json_safe(obj), indent=2, default=str, allow_nan=False), path)


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
