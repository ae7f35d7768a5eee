"""The data contract: the three input tables, their column names, loading and validation.

This module is the only home of the contract's column names. A data directory holds ``reps``,
``accounts`` and ``opportunities`` (``.csv`` or ``.parquet``); an optional ``repfit.toml`` maps a
source's file names, column names and labels onto the contract (see ``Mapping``).

Every problem raises one ``SchemaError`` naming the file, the column, up to five offending values
or line numbers, and the fix.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from repfit.errors import SchemaError
from repfit.messages import MAX_SHOWN, lines as _lines, listed
from repfit.export import (derive_table, join_on, plain_numbers, renames, select_columns, snake_attributes,
                           split_derived, supplying_rows)
from repfit.leakage import Dropped, guard_leakage
from repfit.rows import REASONS, RowPolicy, RowProblems
from repfit.mapping import MAPPING_FILE, TABLES, Mapping, resolve_mapping

# --- column names (the contract) -------------------------------------------------------------
REP_ID = "rep_id"
CAPACITY = "capacity"
ACCOUNT_ID = "account_id"
CURRENT_REP_ID = "current_rep_id"
POTENTIAL = "potential"
LOCKED = "locked"
TIER = "tier"
OPPORTUNITY_ID = "opportunity_id"
CREATED_AT = "created_at"
CLOSED_AT = "closed_at"
OUTCOME = "outcome"
AMOUNT = "amount"
QUOTA = "quota"  # optional: a rep's quota; balance targets are shares of it (else of capacity)
WORKLOAD = "workload"  # optional: an account's workload (e.g. hours a year), default 1
PARENT_ACCOUNT_ID = "parent_account_id"  # optional: accounts of one family go to one rep together
MAX_CAPACITY = 10**12  # accounts one rep may own: far above any book, far below int64 sums over reps
WON = "won"  # derived: 1.0 won, 0.0 lost, NaN open

REQUIRED = {
    "reps": (REP_ID,),
    "accounts": (ACCOUNT_ID,),
    "opportunities": (OPPORTUNITY_ID, REP_ID, ACCOUNT_ID, CREATED_AT, CLOSED_AT, OUTCOME),
}
RESERVED = {
    "reps": {REP_ID, CAPACITY, QUOTA},
    "accounts": {ACCOUNT_ID, CURRENT_REP_ID, POTENTIAL, LOCKED, TIER, WORKLOAD, PARENT_ACCOUNT_ID},
    "opportunities": {OPPORTUNITY_ID, REP_ID, ACCOUNT_ID, CREATED_AT, CLOSED_AT, OUTCOME, AMOUNT, WON},
}

OUTCOME_WON, OUTCOME_LOST, OUTCOME_OPEN = "won", "lost", "open"
DEFAULT_WON_LABELS = ("won", "1", "true", "closed won", "win", "yes")
DEFAULT_LOST_LABELS = ("lost", "0", "false", "closed lost", "loss", "no")
DEFAULT_OPEN_LABELS = (
    "open", "prospecting", "qualification", "qualifying", "needs analysis", "discovery",
    "engaging", "proposal", "negotiation", "pending", "in progress",
)
TRUE_LABELS = ("true", "1", "yes", "y", "t")
FALSE_LABELS = ("false", "0", "no", "n", "f", "")
TIER_SHARES = (("A", 0.2), ("B", 0.3), ("C", 0.5))  # top 20% of potential -> A, next 30% -> B


# --- the loaded data set ----------------------------------------------------------------------
@dataclass(frozen=True)
class Dataset:
    """The three validated tables, with contract dtypes.

    ``reps``: ``rep_id`` (str), ``capacity`` (int), attributes.
    ``accounts``: ``account_id`` (str), ``current_rep_id`` (str or NA), ``potential`` (float),
    ``locked`` (bool), ``tier`` (str), attributes.
    ``opportunities``: ids (str), ``created_at``/``closed_at`` (datetime64), ``outcome``
    (won/lost/open), ``won`` (1.0/0.0/NaN), ``amount`` (float, may be NaN), attributes.
    """

    reps: pd.DataFrame
    accounts: pd.DataFrame
    opportunities: pd.DataFrame
    paths: dict[str, str]
    warnings: tuple[str, ...] = ()
    rejected: pd.DataFrame | None = None  # rows set aside (quarantine): file, line, reason, detail, source columns
    rejected_counts: dict[str, int] = field(default_factory=dict)  # reason code -> rows
    dropped: tuple[Dropped, ...] = ()  # attributes the leakage guard took out of the features
    policy: RowPolicy = RowPolicy()

    @property
    def closed(self) -> pd.DataFrame:
        return self.opportunities[self.opportunities[OUTCOME] != OUTCOME_OPEN]

    def attributes(self, table: str) -> list[str]:
        df = getattr(self, table)
        return [c for c in df.columns if c not in RESERVED[table]]

    def categorical(self, table: str) -> list[str]:
        df = getattr(self, table)
        return [c for c in self.attributes(table) if not pd.api.types.is_numeric_dtype(df[c])]

    def numeric(self, table: str) -> list[str]:
        df = getattr(self, table)
        return [c for c in self.attributes(table) if pd.api.types.is_numeric_dtype(df[c])]

    def shared_attributes(self) -> list[str]:
        """Categorical attributes that reps and accounts both carry (e.g. region)."""
        return [c for c in self.categorical("accounts") if c in self.categorical("reps")]

    def summary(self) -> dict[str, Any]:
        closed = self.closed
        opps = self.opportunities
        dates = pd.concat([opps[CREATED_AT], opps[CLOSED_AT]]).dropna()
        return {
            "reps": len(self.reps),
            "accounts": len(self.accounts),
            "opportunities": len(opps),
            "closed_opportunities": len(closed),
            "open_opportunities": int((opps[OUTCOME] == OUTCOME_OPEN).sum()),
            "win_rate": float(closed[WON].mean()) if len(closed) else float("nan"),
            "first_date": dates.min().date().isoformat() if len(dates) else None,
            "last_date": dates.max().date().isoformat() if len(dates) else None,
            "total_capacity": int(self.reps[CAPACITY].sum()),
            "tiers": self.accounts[TIER].value_counts().sort_index().to_dict(),
        }


# --- reading ----------------------------------------------------------------------------------
def _find_file(data_dir: Path, table: str, mapping: Mapping) -> Path:
    if table in mapping.files:
        path = data_dir / mapping.files[table]
        if not path.is_file():
            raise SchemaError(
                f"{path}: file not found (the mapping {mapping.source} names it for table '{table}'). "
                f"Fix: correct [files] {table} in the mapping or add the file."
            )
        return path
    found = [p for p in (data_dir / f"{table}.csv", data_dir / f"{table}.parquet") if p.is_file()]
    if len(found) > 1:
        raise SchemaError(
            f"{data_dir}: both {found[0].name} and {found[1].name} hold the '{table}' table, and repfit will not guess "
            f"which is current. Fix: remove one, or name it in {MAPPING_FILE} under [files] {table} = \"...\"."
        )
    if found:
        return found[0]
    present = sorted(p.name for p in data_dir.iterdir()) if data_dir.is_dir() else []
    where = f"found: {listed(present)}" if present else "the directory is empty or missing"
    raise SchemaError(
        f"{data_dir}: no '{table}' table ({table}.csv or {table}.parquet; {where}). "
        f"Fix: add {table}.csv, or map your file name in {MAPPING_FILE} under [files] {table} = \"...\"."
    )


def _read_file(path: Path) -> pd.DataFrame:
    try:
        if path.suffix.lower() == ".parquet":
            df = pd.read_parquet(path)
            return df.astype({c: "string" for c in df.columns if df[c].dtype == object})
        sep = csv_separator(path)
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""], skipinitialspace=True)
    except UnicodeDecodeError:
        raise SchemaError(
            f"{path}: not a readable CSV (it is not UTF-8 text). Fix: export the table as a UTF-8 CSV "
            "with a header row, or as Parquet."
        ) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, OSError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SchemaError(
            f"{path}: not a readable {'Parquet file' if path.suffix.lower() == '.parquet' else 'CSV'} "
            f"({detail}). Fix: export the table as a comma-separated CSV with one header row, or as Parquet."
        ) from None
    if df.shape[1] <= 1 and any("\x00" in str(c) for c in df.columns):
        raise SchemaError(f"{path}: not a readable CSV (binary content). Fix: export the table as CSV.")
    # pandas renames a repeated header ("region" -> "region.1"): read it raw
    header = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False).iloc[0]
    df.columns = [str(c).strip() for c in header]
    df.index = _record_rows(path, len(df), sep)
    twice = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    if twice:
        raise SchemaError(f"{path}: the header names column(s) {listed(twice)} more than once. Fix: keep one column "
                          "per name (rename or delete the others).")
    return df


def csv_separator(path: Path) -> str:
    """Comma, semicolon, tab or pipe: whichever the header line holds most of (Excel saves ';' in many locales)."""
    with path.open(encoding="utf-8-sig", errors="replace") as fh:
        header = fh.readline()
    return max((",", ";", "\t", "|"), key=header.count)


def _record_rows(path: Path, n_rows: int, sep: str = ",") -> pd.Index:
    """Each record's row number such that row + 2 is the file line it starts on (``messages.lines``): a quoted cell
    with line breaks, or a blank line, puts later records further down the file than their count says."""
    with path.open("rb") as fh:
        breaks, last = 0, b"\n"
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            breaks, last = breaks + chunk.count(b"\n"), chunk[-1:]
    if breaks + (last != b"\n") == n_rows + 1:  # one line per record: the usual case, no second pass
        return pd.RangeIndex(n_rows)
    starts, end = [], 0
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter=sep, skipinitialspace=True)
        for record in reader:
            if record:  # pandas skips blank lines
                starts.append(end + 1)
            end = reader.line_num
    if len(starts) != n_rows + 1:  # the two parsers disagree: keep the record count
        return pd.RangeIndex(n_rows)
    return pd.Index(np.array(starts[1:]) - 2)


_EXPORT_HINTS = {"hubspot": ("Deal owner", "Deal Stage"), "salesforce": ("Opportunity Owner", "Stage")}


def _require_columns(df: pd.DataFrame, table: str, path: Path, mp: Mapping | None = None) -> None:
    missing = [c for c in REQUIRED[table] if c not in df.columns]
    if missing:
        hint, where = "", mp.source if mp is not None and mp.source else MAPPING_FILE
        if mp is not None and table == "opportunities":
            known = [name for name, heads in _EXPORT_HINTS.items() if all(h in df.columns for h in heads)]
            if known and mp.source != f"preset {known[0]}":
                hint = f" This looks like a {known[0]} export: --mapping {known[0]} reads it as is."
            elif not known and not mp.columns.get(table):
                hint = " For a CRM export, `repfit mapping guess FILE` proposes a mapping."
        raise SchemaError(
            f"{path}: column {listed(missing)} is missing (found: {listed(list(df.columns), 12)}). "
            f"Fix: add it, or map your column onto it in {where} [columns.{table}].{hint}"
        )
    if df.empty:
        raise SchemaError(f"{path}: the table has no rows. Fix: export the {table} with at least one row.")


def _ids(df: pd.DataFrame, column: str, path: Path, unique: bool = True) -> pd.Series:
    s = df[column].astype("string").str.strip()
    blank = s.isna() | (s == "")
    if blank.any():
        raise SchemaError(
            f"{path}: column '{column}' is empty on {_lines(df.index[blank])}. Fix: give every row a {column}."
        )
    if unique:
        dup = s[s.duplicated(keep=False)]
        if len(dup):
            raise SchemaError(
                f"{path}: column '{column}' has duplicate values {listed(pd.unique(dup))} "
                f"(on {_lines(dup.index)}). Fix: make each {column} unique (one row per id)."
            )
    return s


def _numbers(df: pd.DataFrame, column: str, path: Path, label: str | None = None) -> pd.Series:
    """``label``: how messages name the column (default ``'column'``)."""
    raw, label = df[column], label or f"'{column}'"
    num = pd.to_numeric(raw, errors="coerce")
    bad = raw.notna() & num.isna()
    if bad.any():
        raise SchemaError(
            f"{path}: column {label} has non-numeric values {listed(pd.unique(raw[bad]))} "
            f"(on {_lines(df.index[bad])}). Fix: use plain numbers (no units or thousands separators)."
        )
    num = num.astype(float)
    inf = num.notna() & ~np.isfinite(num)
    if inf.any():
        raise SchemaError(
            f"{path}: column {label} has non-finite values {listed(pd.unique(raw[inf]))} "
            f"(on {_lines(df.index[inf])}). Fix: use finite numbers (leave the cell empty for the default)."
        )
    return num


def _booleans(df: pd.DataFrame, column: str, path: Path, label: str | None = None) -> pd.Series:
    s = df[column].astype("string").str.strip().str.lower().fillna("")
    ok = s.isin(TRUE_LABELS + FALSE_LABELS)
    if not ok.all():
        raise SchemaError(
            f"{path}: column {label or repr(column)} has values {listed(pd.unique(df[column][~ok]))} that are not "
            f"true/false (on {_lines(df.index[~ok])}). Fix: use true/false, yes/no or 1/0."
        )
    return s.isin(TRUE_LABELS)


def _parse_dates(raw: pd.Series, fmt: str) -> pd.Series:
    """Dates as UTC without the zone (CRM exports carry zones: 2024-03-01T10:00:00Z, mixed offsets, UTC Parquet
    timestamps; a finding says so); implausible years (before 1900, after 2200: "-1" parses as year -1) -> NaT."""
    try:
        parsed = pd.to_datetime(raw, errors="coerce", format=fmt, utc=True).dt.tz_localize(None)
    except ValueError as exc:  # a format pandas cannot use at all (e.g. "%Q")
        raise SchemaError(f"[dates] format {fmt!r} is not a date format ({exc}). Fix: use strftime codes, e.g. "
                          f"format = \"%m/%d/%Y\", or \"ISO8601\" (the default) in {MAPPING_FILE}.") from None
    implausible = parsed.notna() & ((parsed < pd.Timestamp("1900-01-01")) | (parsed > pd.Timestamp("2200-01-01")))
    return parsed.where(~implausible)


def _dates(df: pd.DataFrame, column: str, path: Path, fmt: str, closed: pd.Series,
           problems: RowProblems) -> tuple[pd.Series, pd.Series]:
    """The parsed column and the rows to keep: a closed deal's date must be there and parse."""
    raw = df[column]
    parsed = _parse_dates(raw, fmt)
    bad = closed & raw.notna() & parsed.isna()
    keep = problems.flag(bad, "bad_date", (
        f"{path}: column {problems.column(column)} has unparseable or implausible dates {listed(pd.unique(raw[bad]))} "
        f"(on {_lines(df.index[bad])}). Fix: use ISO dates (YYYY-MM-DD), or set [dates] format "
        f"in {MAPPING_FILE} (e.g. format = \"%m/%d/%Y\")."), lambda m: column + "=" + raw[m].astype("string").fillna(""))
    missing = closed & raw.isna() & keep
    keep &= problems.flag(missing, "bad_date", (
        f"{path}: column {problems.column(column)} is empty on {_lines(df.index[missing])} of closed opportunities. "
        "Fix: fill in the date, or mark the rows as open."), f"{column} empty")
    return parsed, keep


def _infer_attributes(df: pd.DataFrame, reserved: set[str], path: Path) -> pd.DataFrame:
    """Attribute columns that parse fully as numbers become float; others stay text (categorical). A numeric
    attribute with an infinite value is bad input (issue 11, item 2)."""
    out = {}
    for c in df.columns:
        if c in reserved:
            continue
        col = df[c]
        if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            out[c] = col.astype(float)
        else:
            num = pd.to_numeric(col, errors="coerce")
            numeric = col.notna().any() and (num.notna() == col.notna()).all()
            out[c] = num.astype(float) if numeric else col.astype("string").str.strip()
        if pd.api.types.is_float_dtype(out[c]):
            inf = np.isinf(out[c].to_numpy(float))
            if inf.any():
                raise SchemaError(f"{path}: column '{c}' has non-finite values {listed(pd.unique(col[inf]))} "
                                  f"(on {_lines(df.index[inf])}). Fix: use finite numbers (leave the cell empty if "
                                  "unknown).")
    return df.assign(**out) if out else df

def derive_tiers(potential: pd.Series) -> pd.Series:
    """Tier labels from potential quantiles: top 20% 'A', next 30% 'B', rest 'C'; ties share a tier."""
    if potential.nunique() <= 1:
        return pd.Series("A", index=potential.index, dtype="string")
    share_above = 1.0 - potential.rank(method="max", pct=True)  # share of accounts strictly above
    tiers = pd.Series(TIER_SHARES[-1][0], index=potential.index, dtype="string")
    lo = 0.0
    for label, share in TIER_SHARES[:-1]:
        tiers[(share_above >= lo - 1e-12) & (share_above < lo + share - 1e-12)] = label
        lo += share
    return tiers


# --- validation per table ---------------------------------------------------------------------
def _capacity(df: pd.DataFrame, column: str, path: Path, label: str | None = None) -> pd.Series:
    cap = _numbers(df, column, path, label)
    bad = cap.notna() & ((cap <= 0) | (cap != np.floor(cap)) | (cap > MAX_CAPACITY))
    if bad.any():
        raise SchemaError(
            f"{path}: column {label or repr(column)} must be a positive whole number; found "
            f"{listed(pd.unique(df[column][bad]))} (on {_lines(df.index[bad])}). "
            f"Fix: set each rep's capacity to the most accounts it can own (1 to {MAX_CAPACITY:,}), or leave it empty."
        )
    return cap


def _potential(df: pd.DataFrame, column: str, path: Path, label: str | None = None) -> pd.Series:
    pot = _numbers(df, column, path, label)
    bad = pot < 0
    if bad.any():
        raise SchemaError(
            f"{path}: column {label or repr(column)} must be >= 0; found {listed(pd.unique(df[column][bad]))} "
            f"(on {_lines(df.index[bad])}). Fix: use the value of winning the account (0 or more)."
        )
    return pot


def _check_carried(carried: dict[str, dict[str, pd.Series]], deals: pd.DataFrame, path: Path, mp: Mapping) -> None:
    """The contract values derived reps and accounts take, checked on the deal rows they come from, so an error
    names the file's line and header rather than a row of the derived table."""
    checks = {"reps": (REP_ID, {CAPACITY: _capacity}), "accounts": (ACCOUNT_ID, {POTENTIAL: _potential, LOCKED: _booleans})}
    for table, columns in carried.items():
        key, check = checks[table]
        headers = {target: src for src, target in mp.derive.get(table, {}).items()}
        for column in check.keys() & columns.keys():
            values = columns[column].loc[deals.index]
            rows = supplying_rows(deals[key], values, deals[CREATED_AT])
            frame = pd.DataFrame({column: values.loc[rows].astype("string").str.strip()})
            check[column](frame, column, path, f"'{headers[column]}' ({column})")


def _validate_reps(df: pd.DataFrame, path: Path, n_accounts: int) -> pd.DataFrame:
    rep_id = _ids(df, REP_ID, path)
    cap = _capacity(df, CAPACITY, path) if CAPACITY in df.columns else pd.Series(np.nan, index=df.index)
    default = math.ceil(1.1 * n_accounts / len(df))
    df = df.assign(**{REP_ID: rep_id, CAPACITY: cap.fillna(default).astype("int64")})
    if QUOTA in df.columns:
        quota = _numbers(df, QUOTA, path)
        bad = quota.isna() | (quota < 0)
        if bad.any():
            raise SchemaError(f"{path}: column '{QUOTA}' must be a number >= 0 for every rep; found "
                              f"{listed(pd.unique(df[QUOTA][bad].fillna('(empty)')))} (on {_lines(df.index[bad])}). "
                              "Fix: give every rep its quota (balance targets are shares of it), or drop the column.")
        df = df.assign(**{QUOTA: quota})
    return _infer_attributes(df, RESERVED["reps"], path)


def _validate_accounts(df: pd.DataFrame, path: Path, rep_ids: pd.Index, reps_path: Path) -> pd.DataFrame:
    account_id = _ids(df, ACCOUNT_ID, path)
    cols: dict[str, Any] = {ACCOUNT_ID: account_id}
    if CURRENT_REP_ID in df.columns:
        cur = df[CURRENT_REP_ID].astype("string").str.strip().replace("", pd.NA)
        unknown = cur.notna() & ~cur.isin(rep_ids)
        if unknown.any():
            raise SchemaError(
                f"{path}: column '{CURRENT_REP_ID}' names reps not in {reps_path.name}: "
                f"{listed(pd.unique(cur[unknown]))} (on {_lines(df.index[unknown])}). "
                f"Fix: add them to {reps_path.name} or leave {CURRENT_REP_ID} empty."
            )
        cols[CURRENT_REP_ID] = cur
    else:
        cols[CURRENT_REP_ID] = pd.Series(pd.NA, index=df.index, dtype="string")
    if POTENTIAL in df.columns:
        cols[POTENTIAL] = _potential(df, POTENTIAL, path).fillna(1.0)
    else:
        cols[POTENTIAL] = pd.Series(1.0, index=df.index)
    locked = _booleans(df, LOCKED, path) if LOCKED in df.columns else pd.Series(False, index=df.index)
    orphan = locked & cols[CURRENT_REP_ID].isna()
    if orphan.any():
        raise SchemaError(
            f"{path}: accounts {listed(account_id[orphan])} are locked but have no {CURRENT_REP_ID} "
            f"(on {_lines(df.index[orphan])}). Fix: give them a current rep or unlock them."
        )
    cols[LOCKED] = locked.astype(bool)
    if TIER in df.columns and df[TIER].notna().any():
        tier = df[TIER].astype("string").str.strip()
        if tier.isna().any():
            raise SchemaError(
                f"{path}: column '{TIER}' is empty on {_lines(df.index[tier.isna()])}. "
                "Fix: give every account a tier, or drop the column to derive tiers from potential."
            )
        cols[TIER] = tier
    else:
        cols[TIER] = derive_tiers(cols[POTENTIAL])
    cols.update(_workload_and_family(df, path))
    return _infer_attributes(df.assign(**cols), RESERVED["accounts"], path)


def _workload_and_family(df: pd.DataFrame, path: Path) -> dict[str, pd.Series]:
    """``workload`` (> 0, default 1: what an account uses of a rep's capacity in workload units) and
    ``parent_account_id`` (text or NA: accounts sharing it form a family that goes to one rep)."""
    out = {}
    if WORKLOAD in df.columns:
        work = _numbers(df, WORKLOAD, path)
        bad = work <= 0
        if bad.any():
            raise SchemaError(f"{path}: column '{WORKLOAD}' must be > 0; found {listed(pd.unique(df[WORKLOAD][bad]))} "
                              f"(on {_lines(df.index[bad])}). Fix: give the account's workload (e.g. hours a year), "
                              "or leave it empty for 1.")
        out[WORKLOAD] = work.fillna(1.0)
    if PARENT_ACCOUNT_ID in df.columns:
        out[PARENT_ACCOUNT_ID] = df[PARENT_ACCOUNT_ID].astype("string").str.strip().replace("", pd.NA)
    return out


def _normalise_outcome(raw: pd.Series, path: Path, df: pd.DataFrame, mapping: Mapping,
                       problems: RowProblems) -> tuple[pd.Series, pd.Series]:
    """won / lost / open per row, and the rows to keep (an unknown label is a row problem)."""
    label = raw.astype("string").str.strip().str.lower().fillna("")
    won = {s.lower().strip() for s in mapping.won} or set(DEFAULT_WON_LABELS)
    lost = {s.lower().strip() for s in mapping.lost} or set(DEFAULT_LOST_LABELS)
    opened = {s.lower().strip() for s in mapping.open} | set(DEFAULT_OPEN_LABELS) | {""}
    won_m, lost_m = label.isin(won), label.isin(lost)
    open_m = (label.isin(opened) | mapping.open_any()) & ~won_m & ~lost_m
    unknown = ~(won_m | lost_m | open_m)
    keep = problems.flag(unknown, "unknown_outcome", (
        f"{path}: column {problems.column(OUTCOME)} has unknown labels {listed(pd.unique(raw[unknown]))} "
        f"(on {_lines(df.index[unknown])}). Won labels: {listed(sorted(won))}; lost: {listed(sorted(lost))}. "
        f"Fix: map them in {MAPPING_FILE} under [outcome] won = [...], lost = [...] or open = [...] "
        "(open = [\"*\"]: every other label is open)."), lambda m: OUTCOME + "=" + raw[m].astype("string").fillna(""))
    out = pd.Series(OUTCOME_OPEN, index=raw.index, dtype="string")
    out[won_m] = OUTCOME_WON
    out[lost_m] = OUTCOME_LOST
    return out, keep


def _opportunity_ids(df: pd.DataFrame, path: Path, problems: RowProblems) -> pd.Series:
    """Rows to keep: an id must be there, and a repeated id keeps its first row only."""
    s = df[OPPORTUNITY_ID].astype("string").str.strip()
    blank = s.isna() | (s == "")
    keep = problems.flag(blank, "missing_id", f"{path}: column {problems.column(OPPORTUNITY_ID)} is empty on "
                         f"{_lines(df.index[blank])}. Fix: give every row a {OPPORTUNITY_ID}.")
    dup = s.duplicated(keep="first") & keep
    repeated = s.isin(s[dup]) & keep

    def first_lines(m: pd.Series) -> pd.Series:
        first = pd.Series(df.index[repeated], index=s[repeated].to_numpy()).groupby(level=0).min() + 2
        return OPPORTUNITY_ID + "=" + s[m] + " first on line " + s[m].map(first).astype("string")

    return keep & problems.flag(dup, "duplicate_id", (
        f"{path}: column {problems.column(OPPORTUNITY_ID)} has duplicate values {listed(pd.unique(s[repeated]))} "
        f"(on {_lines(df.index[repeated])}). Fix: make each {OPPORTUNITY_ID} unique (one row per id)."), first_lines)


def _check_rows(df: pd.DataFrame, path: Path, mapping: Mapping, problems: RowProblems) -> pd.DataFrame:
    """The opportunity rows without row-level problems (strict: the first problem raises), with contract ids,
    outcome and dates. Checks run in order on the rows still kept, so each row has one reason."""
    df = df[_opportunity_ids(df, path, problems)]
    outcome, keep = _normalise_outcome(df[OUTCOME], path, df, mapping, problems)
    df, outcome = df[keep], outcome[keep]
    closed = outcome != OUTCOME_OPEN
    cols: dict[str, Any] = {}
    for column, code in ((REP_ID, "missing_rep"), (ACCOUNT_ID, "missing_account")):
        cols[column] = df[column].astype("string").str.strip().replace("", pd.NA)
        empty = closed & cols[column].isna()
        keep = problems.flag(empty, code, (
            f"{path}: column {problems.column(column)} is empty on {_lines(df.index[empty])} of closed opportunities. "
            f"Fix: fill in the {column}, or drop those rows."), f"{column} empty")
        df, outcome, closed, cols = df[keep], outcome[keep], closed[keep], {k: v[keep] for k, v in cols.items()}
    created, keep = _dates(df, CREATED_AT, path, mapping.date_format, closed, problems)
    closed_at, keep2 = _dates(df, CLOSED_AT, path, mapping.date_format, closed, problems)
    keep &= keep2
    reversed_ = keep & closed & (closed_at < created)

    def pairs(m: pd.Series) -> pd.Series:
        return closed_at[m].dt.strftime("%Y-%m-%d") + " < " + created[m].dt.strftime("%Y-%m-%d")

    keep &= problems.flag(reversed_, "close_before_create", (
        f"{path}: {problems.column(CLOSED_AT)} is before {problems.column(CREATED_AT)} on {_lines(df.index[reversed_])} "
        f"({listed(pairs(reversed_))}). Fix: correct the dates, or swap the two columns in the mapping if they are "
        "reversed."), lambda m: CLOSED_AT + " " + pairs(m))
    cols.update({OPPORTUNITY_ID: df[OPPORTUNITY_ID].astype("string").str.strip(), CREATED_AT: created,
                 CLOSED_AT: closed_at, OUTCOME: outcome,
                 WON: outcome.map({OUTCOME_WON: 1.0, OUTCOME_LOST: 0.0}).astype(float)})
    return df.assign(**cols)[keep]


def _check_references(df: pd.DataFrame, path: Path, rep_ids: pd.Index, account_ids: pd.Index, names: dict,
                      problems: RowProblems) -> pd.DataFrame:
    """Rows whose rep and account are in the reps and accounts tables (an unknown id is a row problem)."""
    for column, known, table, code in ((REP_ID, rep_ids, "reps", "unknown_rep"),
                                       (ACCOUNT_ID, account_ids, "accounts", "unknown_account")):
        s = df[column]
        unknown = s.notna() & ~s.isin(known)
        df = df[problems.flag(unknown, code, (
            f"{path}: column {problems.column(column)} names ids not in {names[table]}: {listed(pd.unique(s[unknown]))} "
            f"(on {_lines(df.index[unknown])}). Fix: add them to {names[table]}, or correct the ids."),
            lambda m: column + "=" + s[m].fillna(""))]
    return df


def _finish_opportunities(df: pd.DataFrame, path: Path, label: str) -> pd.DataFrame:
    if AMOUNT in df.columns:
        df = df.assign(**{AMOUNT: _numbers(df, AMOUNT, path, label)})
    return _infer_attributes(df, RESERVED["opportunities"], path)


def load_dataset(data: str | Path, mapping: str | Path | Mapping | None = None, *,
                 on_bad_rows: str | None = None, max_rejected_share: float | None = None) -> Dataset:
    """Load and validate a data set: a directory of reps, accounts and opportunities tables, or one CRM export.

    Parameters
    ----------
    data : a directory holding the tables (csv or parquet; reps and accounts may be absent: they are then
        derived from the opportunities' rows), or one opportunities/deals file (a CRM export).
    mapping : a ``repfit.toml`` path, a preset name (``hubspot``, ``salesforce``) or a ``Mapping``; default:
        ``repfit.toml`` in the directory (or beside the file) if present.
    on_bad_rows : ``strict`` (the first row-level problem of the opportunities raises) or ``quarantine`` (such
        rows are set aside); default: the mapping's ``[rows] on_bad``, else strict.
    max_rejected_share : stop if more than this share of rows would be set aside (default: the mapping's, else 0.2).

    Returns
    -------
    Dataset with contract dtypes (see ``Dataset``); ``rejected`` holds the rows set aside (quarantine).

    Raises
    ------
    SchemaError
        On the first broken rule, naming file, column, offending values and the fix.
    """
    base, paths, mp = _locate(Path(data), mapping)
    policy = RowPolicy.of(mp, on_bad_rows, max_rejected_share)
    opp_path = paths["opportunities"]
    raw_opps = _read_file(opp_path)
    sources = {target: src for src, target in renames(mp.columns.get("opportunities", {}), raw_opps.columns).items()}
    problems = RowProblems(opp_path, policy, raw_opps, sources=sources)
    derived = tuple(t for t in ("reps", "accounts") if paths[t] is None)
    deals, excluded, carried = _mapped_deals(raw_opps, opp_path, mp, derived)
    deals = _check_rows(deals, opp_path, mp, problems)
    problems.check_share()
    _require_closed(deals, opp_path, problems)  # before deriving: reps and accounts come from the closed deals
    _check_carried(carried, deals, opp_path, mp)
    order = deals[CREATED_AT]
    tables = {t: (derive_table(deals, t, carried.get(t, {}), order) if t == "accounts" else None) if paths[t] is None
              else _mapped_table(paths[t], t, mp, excluded) for t in ("reps", "accounts")}
    deals, tables = _joined(deals, tables, paths, mp)
    if tables["reps"] is None:
        owners = tables["accounts"][CURRENT_REP_ID] if CURRENT_REP_ID in tables["accounts"] else None
        tables["reps"] = derive_table(deals, "reps", carried.get("reps", {}), order, owners)
    return _validated(tables, deals, paths, mp, problems, excluded)


def _require_closed(deals: pd.DataFrame, path: Path, problems: RowProblems) -> None:
    if (deals[OUTCOME] != OUTCOME_OPEN).any():
        return
    per = ", ".join(f"{code} {k:,}" for code, k in problems.counts().items())
    aside = f" ({len(problems.reasons):,} of {len(problems.raw):,} rows set aside: {per})" if problems.reasons else ""
    raise SchemaError(
        f"{path}: no closed (won or lost) opportunities{aside}, so there is nothing to learn from. "
        f"Fix: include closed deals, or map their labels in {MAPPING_FILE} [outcome]."
    )


def _joined(deals: pd.DataFrame, tables: dict, paths: dict, mp: Mapping) -> tuple[pd.DataFrame, dict]:
    """``[join] accounts = "Company name"``: the deals (and, for reps, the accounts' owners) carry that column's
    values; translate them to the second file's ids."""
    if paths["accounts"] is not None and "accounts" in mp.join:
        deals = deals.assign(**{ACCOUNT_ID: join_on(deals[ACCOUNT_ID], tables["accounts"], "accounts",
                                                    mp.join["accounts"], paths["accounts"])})
    if paths["reps"] is not None and "reps" in mp.join:
        deals = deals.assign(**{REP_ID: join_on(deals[REP_ID], tables["reps"], "reps", mp.join["reps"], paths["reps"])})
        accounts = tables["accounts"]
        if CURRENT_REP_ID in accounts:
            owners = join_on(accounts[CURRENT_REP_ID], tables["reps"], "reps", mp.join["reps"], paths["reps"])
            tables = {**tables, "accounts": accounts.assign(**{CURRENT_REP_ID: owners})}
    return deals, tables


def _locate(data: Path, mapping) -> tuple[Path, dict[str, Path | None], Mapping]:
    """The directory, each table's file (None: derived from the deal rows) and the mapping."""
    if data.is_file():
        base = data.parent
        mp = resolve_mapping(base, mapping)
        paths: dict[str, Path | None] = {"opportunities": data}
        for t in ("reps", "accounts"):
            paths[t] = _find_file(base, t, mp) if t in mp.files else None
        return base, paths, mp
    if not data.is_dir():
        raise SchemaError(f"{data}: no such file or directory. Fix: name the directory holding the tables, or one "
                          "opportunities/deals export file.", option="data")
    mp = resolve_mapping(data, mapping)
    paths = {"opportunities": _find_file(data, "opportunities", mp)}
    for t in ("reps", "accounts"):
        present = t in mp.files or any((data / f"{t}{ext}").is_file() for ext in (".csv", ".parquet"))
        paths[t] = _find_file(data, t, mp) if present else None
    return data, paths, mp


def _mapped_deals(raw: pd.DataFrame, path: Path, mp: Mapping, derived: tuple[str, ...]):
    """The deal rows renamed onto the contract; the excluded source columns; the columns carried for derived tables."""
    df, excluded = select_columns(plain_numbers(raw, mp.thousands), "opportunities", path, mp)
    _require_columns(df, "opportunities", path, mp)
    df, carried = split_derived(df, mp, derived)
    if derived:
        df = snake_attributes(df, RESERVED["opportunities"])
    return df, [("opportunities", c) for c in excluded], carried


def _mapped_table(path: Path, table: str, mp: Mapping, excluded: list) -> pd.DataFrame:
    df, gone = select_columns(plain_numbers(_read_file(path), mp.thousands), table, path, mp)
    excluded += [(table, c) for c in gone]
    _require_columns(df, table, path, mp)
    return df


def _validated(tables: dict, deals: pd.DataFrame, paths: dict, mp: Mapping, problems: RowProblems,
               excluded: list) -> Dataset:
    opp_path = paths["opportunities"]
    where = {t: paths[t] or opp_path for t in TABLES}
    names = {t: where[t].name if paths[t] else f"the owners in {opp_path.name}" if t == "reps" else
             f"the companies in {opp_path.name}" for t in TABLES}
    reps = _validate_reps(tables["reps"], where["reps"], len(tables["accounts"]))
    accounts = _validate_accounts(tables["accounts"], where["accounts"], pd.Index(reps[REP_ID]), where["reps"])
    deals = _check_references(deals, opp_path, pd.Index(reps[REP_ID]), pd.Index(accounts[ACCOUNT_ID]), names, problems)
    problems.check_share()
    _require_closed(deals, opp_path, problems)
    opps = _finish_opportunities(deals, opp_path, problems.column(AMOUNT))
    reps, accounts, opps, dropped = guard_leakage(reps.reset_index(drop=True), accounts.reset_index(drop=True),
                                                  opps.reset_index(drop=True), mp, RESERVED)
    notes = _source_notes(paths, mp, excluded, problems)
    return Dataset(
        reps=reps, accounts=accounts, opportunities=opps, paths={t: str(p) for t, p in where.items()},
        warnings=tuple(notes + [d.message for d in dropped] + _findings(reps, accounts, opps, names)
                       + _zone_findings(problems.raw, problems.sources, names)),
        rejected=problems.frame() if problems.policy.on_bad == "quarantine" else None,
        rejected_counts=problems.counts(), dropped=tuple(dropped), policy=problems.policy,
    )


def _source_notes(paths: dict, mp: Mapping, excluded: list, problems: RowProblems) -> list[str]:
    out = []
    opp = paths["opportunities"].name
    for t in ("reps", "accounts"):
        if paths[t] is None:
            what = "owners" if t == "reps" else "companies"
            out.append(f"{t}: the distinct {what} of {opp} (no {t} table), attributes from their latest deal.")
    if excluded:
        out.append(f"excluded by the mapping ({mp.source}), never features: "
                   + listed([c for _, c in excluded], 12) + ".")
    if problems.reasons:
        per = ", ".join(f"{REASONS[c]}: {k:,}" for c, k in problems.counts().items())
        out.append(f"{len(problems.reasons):,} of {len(problems.raw):,} rows of {opp} set aside ({per}).")
    return out


def _zone_findings(raw: pd.DataFrame, sources: dict[str, str], names: dict) -> list[str]:
    """Say when dates carried time zones (they are read as UTC and kept without the zone)."""
    out = []
    for c in (CREATED_AT, CLOSED_AT):
        s = raw.get(sources.get(c, c))
        if s is None:
            continue
        zoned = (isinstance(s.dtype, pd.DatetimeTZDtype)
                 or s.astype("string").str.contains(r"(?:Z|[+-]\d{2}:?\d{2})$", na=False).any())
        if zoned:
            out.append(f"{names['opportunities']}: column '{c}' has dates with time zones; read as UTC, kept without "
                       "the zone.")
    return out


def _findings(reps: pd.DataFrame, accounts: pd.DataFrame, opps: pd.DataFrame, names: dict) -> list[str]:
    """Non-fatal issues worth a look: printed by ``repfit validate``."""
    out = []
    closed = opps[opps[OUTCOME] != OUTCOME_OPEN]
    idle = reps.loc[~reps[REP_ID].isin(closed[REP_ID]), REP_ID]
    if len(idle):
        out.append(f"{len(idle)} rep(s) have no closed opportunities ({listed(idle)}): their strengths fall back to priors.")
    unseen = accounts.loc[~accounts[ACCOUNT_ID].isin(closed[ACCOUNT_ID]), ACCOUNT_ID]
    if len(unseen):
        out.append(f"{len(unseen)} account(s) have no closed opportunities ({listed(unseen)}).")
    open_ = opps[opps[OUTCOME] == OUTCOME_OPEN]
    if len(open_):
        no_acc = int(open_[ACCOUNT_ID].isna().sum())
        msg = f"{len(open_)} open opportunities are kept out of training"
        out.append(msg + (f" ({no_acc} of them have no account)." if no_acc else "."))
    if accounts[CURRENT_REP_ID].isna().all():
        out.append(f"{names['accounts']} has no {CURRENT_REP_ID}: there is no current assignment to compare with.")
    elif accounts[CURRENT_REP_ID].isna().any():
        out.append(f"{int(accounts[CURRENT_REP_ID].isna().sum())} account(s) have no current rep.")
    total = int(reps[CAPACITY].sum())
    if total < len(accounts):
        out.append(f"total capacity {total:,} < {len(accounts):,} accounts: no assignment can cover every account.")
    return out
