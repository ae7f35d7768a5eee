"""The data contract: the three input tables, their column names, loading and validation.

This module is the only home of the contract's column names. A data directory holds ``reps``,
``accounts`` and ``opportunities`` (``.csv`` or ``.parquet``); an optional ``repfit.toml`` maps a
source's file names, column names and labels onto the contract (see ``Mapping``).

Every problem raises one ``SchemaError`` naming the file, the column, up to five offending values
or line numbers, and the fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from repfit.errors import SchemaError
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
MAX_CAPACITY = 10**12  # accounts one rep may own: far above any book, far below int64 sums over reps
WON = "won"  # derived: 1.0 won, 0.0 lost, NaN open

REQUIRED = {
    "reps": (REP_ID,),
    "accounts": (ACCOUNT_ID,),
    "opportunities": (OPPORTUNITY_ID, REP_ID, ACCOUNT_ID, CREATED_AT, CLOSED_AT, OUTCOME),
}
RESERVED = {
    "reps": {REP_ID, CAPACITY},
    "accounts": {ACCOUNT_ID, CURRENT_REP_ID, POTENTIAL, LOCKED, TIER},
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
MAX_SHOWN = 5


def _clip(text: str, limit: int = 80) -> str:
    """A value as shown in a message: at most ``limit`` characters (a 200 KB id must not make a 1 MB line)."""
    return text if len(text) <= limit else f"{text[:limit - 20]}...({len(text):,} characters)"


def listed(values: Any, n: int = MAX_SHOWN) -> str:
    """Render up to ``n`` values for an error message, with a count of the rest."""
    vals = list(values)
    shown = ", ".join(_clip(repr(v) if isinstance(v, str) else str(v)) for v in vals[:n])
    more = len(vals) - n
    return shown + (f" (and {more} more)" if more > 0 else "")


def _lines(index: pd.Index) -> str:
    """Data rows are 0-based; a CSV's header is line 1, so row i sits on line i + 2."""
    return "line " + listed([int(i) + 2 for i in index]) if len(index) == 1 else "lines " + listed(
        [int(i) + 2 for i in index]
    )


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
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], skipinitialspace=True)
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
    if path.suffix.lower() != ".parquet":  # pandas renames a repeated header ("region" -> "region.1"): read it raw
        df.columns = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False).iloc[0].tolist()
    df.columns = [str(c).strip() for c in df.columns]
    twice = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    if twice:
        raise SchemaError(f"{path}: the header names column(s) {listed(twice)} more than once. Fix: keep one column "
                          "per name (rename or delete the others).")
    return df


def _apply_mapping(df: pd.DataFrame, table: str, path: Path, mapping: Mapping) -> pd.DataFrame:
    cols = mapping.columns.get(table, {})
    missing_src = [src for src in cols if src not in df.columns]
    if missing_src:
        raise SchemaError(
            f"{path}: the mapping {mapping.source} renames column(s) {listed(missing_src)}, which the file "
            f"does not have (found: {listed(list(df.columns), 12)}). Fix: correct [columns.{table}]."
        )
    df = df.rename(columns=cols)
    dupes = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    if dupes:
        raise SchemaError(
            f"{path}: column name(s) {listed(dupes)} appear more than once (after mapping). "
            "Fix: rename or drop the duplicates."
        )
    for column, replace in mapping.values.get(table, {}).items():
        if column in df.columns:
            df = df.assign(**{column: df[column].replace({str(k): str(v) for k, v in replace.items()})})
    return df


def _require_columns(df: pd.DataFrame, table: str, path: Path) -> None:
    missing = [c for c in REQUIRED[table] if c not in df.columns]
    if missing:
        raise SchemaError(
            f"{path}: column {listed(missing)} is missing (found: {listed(list(df.columns), 12)}). "
            f"Fix: add it, or map your column onto it in {MAPPING_FILE} [columns.{table}]."
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


def _numbers(df: pd.DataFrame, column: str, path: Path) -> pd.Series:
    raw = df[column]
    num = pd.to_numeric(raw, errors="coerce")
    bad = raw.notna() & num.isna()
    if bad.any():
        raise SchemaError(
            f"{path}: column '{column}' has non-numeric values {listed(pd.unique(raw[bad]))} "
            f"(on {_lines(df.index[bad])}). Fix: use plain numbers (no units or thousands separators)."
        )
    num = num.astype(float)
    inf = num.notna() & ~np.isfinite(num)
    if inf.any():
        raise SchemaError(
            f"{path}: column '{column}' has non-finite values {listed(pd.unique(raw[inf]))} "
            f"(on {_lines(df.index[inf])}). Fix: use finite numbers (leave the cell empty for the default)."
        )
    return num


def _booleans(df: pd.DataFrame, column: str, path: Path) -> pd.Series:
    s = df[column].astype("string").str.strip().str.lower().fillna("")
    ok = s.isin(TRUE_LABELS + FALSE_LABELS)
    if not ok.all():
        raise SchemaError(
            f"{path}: column '{column}' has values {listed(pd.unique(df[column][~ok]))} that are not "
            f"true/false (on {_lines(df.index[~ok])}). Fix: use true/false, yes/no or 1/0."
        )
    return s.isin(TRUE_LABELS)


def _dates(df: pd.DataFrame, column: str, path: Path, fmt: str, rows: pd.Series) -> pd.Series:
    raw = df[column]
    # CRM exports carry time zones (2024-03-01T10:00:00Z, mixed offsets, UTC Parquet timestamps): every date is
    # read as UTC and kept without its zone (a finding says so)
    try:
        parsed = pd.to_datetime(raw, errors="coerce", format=fmt, utc=True).dt.tz_localize(None)
    except ValueError as exc:  # a format pandas cannot use at all (e.g. "%Q")
        raise SchemaError(f"[dates] format {fmt!r} is not a date format ({exc}). Fix: use strftime codes, e.g. "
                          f"format = \"%m/%d/%Y\", or \"ISO8601\" (the default) in {MAPPING_FILE}.") from None
    implausible = parsed.notna() & ((parsed < pd.Timestamp("1900-01-01")) | (parsed > pd.Timestamp("2200-01-01")))
    bad = rows & raw.notna() & (parsed.isna() | implausible)  # "-1" parses as the year -1
    parsed = parsed.where(~implausible)
    if bad.any():
        raise SchemaError(
            f"{path}: column '{column}' has unparseable or implausible dates {listed(pd.unique(raw[bad]))} "
            f"(on {_lines(df.index[bad])}). Fix: use ISO dates (YYYY-MM-DD), or set [dates] format "
            f"in {MAPPING_FILE} (e.g. format = \"%m/%d/%Y\")."
        )
    missing = rows & parsed.isna()
    if missing.any():
        raise SchemaError(
            f"{path}: column '{column}' is empty on {_lines(df.index[missing])} of closed opportunities. "
            "Fix: fill in the date, or mark the rows as open."
        )
    return parsed


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
def _validate_reps(df: pd.DataFrame, path: Path, n_accounts: int) -> pd.DataFrame:
    rep_id = _ids(df, REP_ID, path)
    if CAPACITY in df.columns:
        cap = _numbers(df, CAPACITY, path)
        bad = cap.notna() & ((cap <= 0) | (cap != np.floor(cap)) | (cap > MAX_CAPACITY))
        if bad.any():
            raise SchemaError(
                f"{path}: column '{CAPACITY}' must be a positive whole number; found "
                f"{listed(pd.unique(df[CAPACITY][bad]))} (on {_lines(df.index[bad])}). "
                f"Fix: set each rep's capacity to the most accounts it can own (1 to {MAX_CAPACITY:,}), or leave it empty."
            )
    else:
        cap = pd.Series(np.nan, index=df.index)
    default = math.ceil(1.1 * n_accounts / len(df))
    df = df.assign(**{REP_ID: rep_id, CAPACITY: cap.fillna(default).astype("int64")})
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
        pot = _numbers(df, POTENTIAL, path)
        bad = pot < 0
        if bad.any():
            raise SchemaError(
                f"{path}: column '{POTENTIAL}' must be >= 0; found {listed(pd.unique(df[POTENTIAL][bad]))} "
                f"(on {_lines(df.index[bad])}). Fix: use the value of winning the account (0 or more)."
            )
        cols[POTENTIAL] = pot.fillna(1.0)
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
    return _infer_attributes(df.assign(**cols), RESERVED["accounts"], path)


def _normalise_outcome(raw: pd.Series, path: Path, df: pd.DataFrame, mapping: Mapping) -> pd.Series:
    label = raw.astype("string").str.strip().str.lower().fillna("")
    won = {s.lower() for s in mapping.won} or set(DEFAULT_WON_LABELS)
    lost = {s.lower() for s in mapping.lost} or set(DEFAULT_LOST_LABELS)
    opened = {s.lower() for s in mapping.open} | set(DEFAULT_OPEN_LABELS) | {""}
    won_m, lost_m = label.isin(won), label.isin(lost)
    open_m = label.isin(opened) & ~won_m & ~lost_m
    unknown = ~(won_m | lost_m | open_m)
    if unknown.any():
        raise SchemaError(
            f"{path}: column '{OUTCOME}' has unknown labels {listed(pd.unique(raw[unknown]))} "
            f"(on {_lines(df.index[unknown])}). Won labels: {listed(sorted(won))}; lost: {listed(sorted(lost))}. "
            f"Fix: map them in {MAPPING_FILE} under [outcome] won = [...], lost = [...] or open = [...]."
        )
    out = pd.Series(OUTCOME_OPEN, index=raw.index, dtype="string")
    out[won_m] = OUTCOME_WON
    out[lost_m] = OUTCOME_LOST
    return out


def _validate_opportunities(
    df: pd.DataFrame, path: Path, mapping: Mapping, rep_ids: pd.Index, account_ids: pd.Index, names: dict
) -> pd.DataFrame:
    opp_id = _ids(df, OPPORTUNITY_ID, path)
    outcome = _normalise_outcome(df[OUTCOME], path, df, mapping)
    closed = outcome != OUTCOME_OPEN
    rep = df[REP_ID].astype("string").str.strip().replace("", pd.NA)
    acc = df[ACCOUNT_ID].astype("string").str.strip().replace("", pd.NA)
    for column, s, known, table in ((REP_ID, rep, rep_ids, "reps"), (ACCOUNT_ID, acc, account_ids, "accounts")):
        empty = closed & s.isna()
        if empty.any():
            raise SchemaError(
                f"{path}: column '{column}' is empty on {_lines(df.index[empty])} of closed opportunities. "
                f"Fix: fill in the {column}, or drop those rows."
            )
        unknown = s.notna() & ~s.isin(known)
        if unknown.any():
            raise SchemaError(
                f"{path}: column '{column}' names ids not in {names[table]}: {listed(pd.unique(s[unknown]))} "
                f"(on {_lines(df.index[unknown])}). Fix: add them to {names[table]}, or correct the ids."
            )
    created = _dates(df, CREATED_AT, path, mapping.date_format, closed)
    closed_at = _dates(df, CLOSED_AT, path, mapping.date_format, closed)
    reversed_ = closed & (closed_at < created)
    if reversed_.any():
        pairs = [f"{a.date()} < {b.date()}" for a, b in zip(closed_at[reversed_], created[reversed_])]
        raise SchemaError(
            f"{path}: '{CLOSED_AT}' is before '{CREATED_AT}' on {_lines(df.index[reversed_])} ({listed(pairs)}). "
            "Fix: correct the dates, or swap the two columns in the mapping if they are reversed."
        )
    cols: dict[str, Any] = {
        OPPORTUNITY_ID: opp_id, REP_ID: rep, ACCOUNT_ID: acc, CREATED_AT: created, CLOSED_AT: closed_at,
        OUTCOME: outcome, WON: outcome.map({OUTCOME_WON: 1.0, OUTCOME_LOST: 0.0}).astype(float),
    }
    if AMOUNT in df.columns:
        cols[AMOUNT] = _numbers(df, AMOUNT, path)
    return _infer_attributes(df.assign(**cols), RESERVED["opportunities"], path)


def load_dataset(data_dir: str | Path, mapping: str | Path | Mapping | None = None) -> Dataset:
    """Load and validate the three tables of ``data_dir``.

    Parameters
    ----------
    data_dir : directory holding reps, accounts and opportunities (csv or parquet).
    mapping : a ``repfit.toml`` path or ``Mapping``; default: ``data_dir/repfit.toml`` if present.

    Returns
    -------
    Dataset with contract dtypes (see ``Dataset``).

    Raises
    ------
    SchemaError
        On the first broken rule, naming file, column, offending values and the fix.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise SchemaError(f"{data_dir}: data directory not found. Fix: name an existing directory.", option="data")
    mp = resolve_mapping(data_dir, mapping)
    paths = {t: _find_file(data_dir, t, mp) for t in TABLES}
    raw = {}
    for t in TABLES:
        df = _apply_mapping(_read_file(paths[t]), t, paths[t], mp)
        _require_columns(df, t, paths[t])
        raw[t] = df
    names = {t: paths[t].name for t in TABLES}
    reps = _validate_reps(raw["reps"], paths["reps"], len(raw["accounts"]))
    accounts = _validate_accounts(raw["accounts"], paths["accounts"], pd.Index(reps[REP_ID]), paths["reps"])
    opps = _validate_opportunities(
        raw["opportunities"], paths["opportunities"], mp, pd.Index(reps[REP_ID]), pd.Index(accounts[ACCOUNT_ID]), names
    )
    if (opps[OUTCOME] != OUTCOME_OPEN).sum() == 0:
        raise SchemaError(
            f"{paths['opportunities']}: no closed (won or lost) opportunities, so there is nothing to learn from. "
            f"Fix: include closed deals, or map their labels in {MAPPING_FILE} [outcome]."
        )
    return Dataset(
        reps=reps.reset_index(drop=True),
        accounts=accounts.reset_index(drop=True),
        opportunities=opps.reset_index(drop=True),
        paths={t: str(p) for t, p in paths.items()},
        warnings=tuple(_findings(reps, accounts, opps, names) + _zone_findings(raw["opportunities"], names)),
    )


def _zone_findings(raw: pd.DataFrame, names: dict) -> list[str]:
    """Say when dates carried time zones (they are read as UTC and kept without the zone)."""
    out = []
    for c in (CREATED_AT, CLOSED_AT):
        s = raw[c]
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
