"""CRM exports as they come: one deals file (reps and accounts derived from its rows), or a deals file and a
companies (or users) file joined by id or name; thousands separators; columns a mapping excludes.

Reps are the distinct deal owners (and account owners), accounts the distinct companies. A column the
mapping lists under ``[derive.accounts]`` describes the account: each account takes the value on its
latest deal (by create date) where the value is not empty; ``[derive.reps]`` likewise per owner. Every
other column of the deal rows stays a deal-level attribute, named in snake_case (``Deal Type`` ->
``deal_type``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from repfit.errors import SchemaError
from repfit.mapping import Mapping
from repfit.messages import lines as _lines, listed as _listed

_CURRENCY = "[$€£¥]"
KEYS = {"reps": "rep_id", "accounts": "account_id"}


def snake(name: str) -> str:
    """``Deal Type`` -> ``deal_type``; ``Billing State/Province`` -> ``billing_state_province``."""
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_") or name


def plain_numbers(df: pd.DataFrame, thousands: str | None) -> pd.DataFrame:
    """Columns whose every value is a number written with ``thousands`` separators (``69,245.09``, ``$1,200``;
    with ``"."``, ``1.200,50``: the decimal mark is then ``,``) as plain numbers (``69245.09``); other columns
    (``Smith, John``) as they are."""
    if not thousands:
        return df
    sep, decimal = re.escape(thousands), "," if thousands == "." else r"\."
    head = rf"^\s*[-+]?{_CURRENCY}?\s*[-+]?"
    grouped_rx, plain_rx = rf"{head}\d{{1,3}}(?:{sep}\d{{3}})+(?:{decimal}\d+)?\s*$", rf"{head}\d+(?:{decimal}\d+)?\s*$"
    out = {}
    for c in df.columns:
        s = df[c]
        if s.dtype != object and not pd.api.types.is_string_dtype(s):
            continue
        text = s.dropna().astype(str)
        grouped = text.str.match(grouped_rx)
        if grouped.any() and (grouped | text.str.match(plain_rx) | (text.str.strip() == "")).all():
            plain = s.astype("string").str.replace(thousands, "", regex=False)
            out[c] = plain.str.replace(rf"{_CURRENCY}|\s", "", regex=True).str.replace(",", ".", regex=False)
    return df.assign(**out) if out else df


def select_columns(df: pd.DataFrame, table: str, path: Path, mapping: Mapping) -> tuple[pd.DataFrame, list[str]]:
    """The columns of one table renamed onto the contract; returns it and the source columns the mapping excludes.

    A mapped column the file lacks is an error, unless the mapping has ``optional_columns`` (a preset: one
    export carries ``Associated Company``, another ``Associated Company (Primary)``); when several present
    columns map onto one contract column, the first listed wins."""
    cols = align_headers(mapping.columns.get(table, {}), df.columns)
    missing = [src for src in cols if src not in df.columns]
    if missing and not mapping.optional_columns:
        raise SchemaError(
            f"{path}: the mapping {mapping.source} renames column(s) {_listed(missing)}, which the file "
            f"does not have (found: {_listed(list(df.columns), 12)}). Fix: correct [columns.{table}]."
        )
    rename = renames(cols, df.columns)
    spare = [src for src in cols if src in df.columns and src not in rename]
    excluded = [c for c in df.columns if c not in rename and mapping.excluded(c)]
    df = df.drop(columns=spare + excluded).rename(columns=rename)
    for column, replace in mapping.values.get(table, {}).items():
        if column in df.columns:
            df = df.assign(**{column: df[column].replace({str(k): str(v) for k, v in replace.items()})})
    return df, excluded


def _header_key(name: str) -> str:
    return re.sub(r"\s+", " ", str(name)).strip().casefold()


def align_headers(columns: dict[str, str], present) -> dict[str, str]:
    """``columns`` (source header -> target) with each source header the file lacks replaced by the file's header
    that differs only in case or spacing (``DEAL OWNER`` for ``Deal owner``), when exactly one does."""
    present = list(present)
    by_key: dict[str, list[str]] = {}
    for h in present:
        by_key.setdefault(_header_key(h), []).append(h)
    out = {}
    for src, target in columns.items():
        found = by_key.get(_header_key(src), [])
        out[found[0] if src not in present and len(found) == 1 else src] = target
    return out


def renames(columns: dict[str, str], present) -> dict[str, str]:
    """Source header -> contract column for the mapped headers ``present`` in a file; several onto one contract
    column: the first listed wins."""
    out: dict[str, str] = {}
    for src, target in columns.items():
        if src in present and target not in out.values():
            out[src] = target
    return out


def split_derived(deals: pd.DataFrame, mapping: Mapping, derive: tuple[str, ...]) -> tuple[pd.DataFrame, dict]:
    """Take the ``[derive.<table>]`` columns (for each table in ``derive``) out of the deal rows, snake_case the
    remaining attribute columns; returns the deals and, per table, its derived columns (target -> values)."""
    taken: dict[str, dict[str, pd.Series]] = {}
    drop = []
    for table, cols in mapping.derive.items():
        cols = align_headers(cols, deals.columns)
        present = {src: target for src, target in cols.items() if src in deals.columns}
        missing = [src for src in cols if src not in deals.columns]
        if missing and not mapping.optional_columns and table in derive:
            raise SchemaError(f"{mapping.source}: [derive.{table}] names column(s) {_listed(missing)}, which the deals "
                              f"file does not have. Fix: correct [derive.{table}].")
        if table in derive:
            taken[table] = {target: deals[src] for src, target in present.items() if target not in taken.get(table, {})}
        drop += list(present)
    return deals.drop(columns=list(dict.fromkeys(drop))), taken


def snake_attributes(deals: pd.DataFrame, reserved: set[str]) -> pd.DataFrame:
    """Attribute columns of an export in snake_case (``Deal Type`` -> ``deal_type``), a clash keeping its name."""
    names, seen = {}, set(reserved)
    for c in deals.columns:
        new = c if c in reserved else snake(c)
        names[c] = new if new not in seen else c
        seen.add(names[c])
    return deals.rename(columns=names)


def derive_table(deals: pd.DataFrame, table: str, columns: dict[str, pd.Series], order: pd.Series,
                 extra_ids: pd.Series | None = None) -> pd.DataFrame:
    """One row per distinct id of ``table`` among the deals (and ``extra_ids``), sorted, with each derived column's
    value on the id's latest deal (by ``order``, then row) where it is not empty."""
    key = KEYS[table]
    ids = deals[key].astype("string").str.strip().replace("", pd.NA)
    frame = pd.DataFrame({key: ids, "_order": order, **{t: s.astype("string").str.strip().replace("", pd.NA)
                                                          for t, s in columns.items()}}, index=deals.index)
    frame = frame.dropna(subset=[key]).sort_values("_order", kind="stable", na_position="first")
    latest = frame.groupby(key, sort=True)[list(columns)].last() if columns else None
    all_ids = sorted(set(frame[key]) | (set(extra_ids.dropna()) if extra_ids is not None else set()))
    out = pd.DataFrame({key: pd.Series(all_ids, dtype="string")})
    if latest is not None:
        out = out.merge(latest, left_on=key, right_index=True, how="left")
    return out.reset_index(drop=True)


def supplying_rows(ids: pd.Series, values: pd.Series, order: pd.Series) -> pd.Index:
    """The deal rows whose value each id takes in ``derive_table`` (its latest deal where the value is not empty)."""
    blank = {"id": ids, "v": values}
    frame = pd.DataFrame({k: s.astype("string").str.strip().replace("", pd.NA) for k, s in blank.items()} |
                         {"_order": order}, index=ids.index).dropna(subset=["id", "v"])
    frame = frame.sort_values("_order", kind="stable", na_position="first")
    return frame.index[~frame["id"].duplicated(keep="last")]


def join_on(values: pd.Series, table_df: pd.DataFrame, table: str, column: str, path: Path) -> pd.Series:
    """``values`` (what the deals carry, e.g. company names) translated through ``[join] <table> = column``: the
    second file's ``column`` holds those values, its id column the id to use; an unmatched value stays as it is
    (and is then an unknown id)."""
    key = KEYS[table]
    if column not in table_df.columns:
        raise SchemaError(f"{path}: [join] {table} = {column!r}, but the file has no such column (found: "
                          f"{_listed(list(table_df.columns), 12)}). Fix: name the column holding what the deals carry.")
    names, ids = table_df[column].astype("string").str.strip(), table_df[key].astype("string").str.strip()
    text = values.astype("string").str.strip()
    shared = ids.groupby(names).nunique()
    ambiguous = names.isin(shared.index[shared > 1]) & names.isin(text.dropna())
    if ambiguous.any():
        raise SchemaError(
            f"{path}: column '{column}' gives the same name to several {table} ({_listed(pd.unique(names[ambiguous]))} "
            f"(on {_lines(table_df.index[ambiguous])})), and deals carry it: [join] {table} = {column!r} cannot tell "
            f"which one they mean. Fix: make those names unique in {path.name}, or join by id.")
    lookup = dict(zip(names, ids))
    return text.map(lambda v: lookup.get(v, v) if pd.notna(v) else v).astype("string")
