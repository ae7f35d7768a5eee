"""Guess a starter ``repfit.toml`` for a CRM export: one deals/opportunities file, CSV or Parquet.

Each contract column of the opportunities table is matched to the export's most likely header, by name
(``Deal owner``, ``sales_agent`` -> ``rep_id``) and by content (a stage column holds won/lost labels, date
columns parse as dates, an id is unique per row, owners are few and companies many). The guess also lists
the columns that leak the outcome under ``[exclude]``, and the columns that describe the company or the
owner under ``[derive.accounts]`` / ``[derive.reps]``. Every line carries the evidence it rests on, and a
line is marked ``# UNSURE:`` where a runner-up came close or nothing matched.

Example::

    >>> print(guess_mapping("deals.csv"))                                  # doctest: +SKIP
    [columns.opportunities]
    "Record ID" = "opportunity_id"  # unique on all 412 rows; the header names the deal's id
    ...
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from repfit.errors import SchemaError
from repfit.mapping import ANY_OTHER, MAPPING_FILE, MAX_AUC, PRESETS, Mapping, preset_text
from repfit.schema import (
    ACCOUNT_ID, AMOUNT, CLOSED_AT, CREATED_AT, CURRENT_REP_ID, FALSE_LABELS, OPPORTUNITY_ID, OUTCOME, REP_ID,
    REQUIRED, RESERVED, TRUE_LABELS, csv_separator,
)

TARGETS = (OPPORTUNITY_ID, REP_ID, ACCOUNT_ID, OUTCOME, CREATED_AT, CLOSED_AT, AMOUNT)
MAX_ROWS = 200_000  # rows read from the export: enough to judge any column, quick on a laptop
CLOSE_MARGIN = 0.15  # a runner-up scoring within this of the pick makes the line UNSURE
NAME_WEIGHT = 0.6  # score = NAME_WEIGHT * name match + (1 - NAME_WEIGHT) * content fit
SAMPLE = 20_000  # distinct values a column's date format is judged on
MIXED = "mixed"  # pandas reads each value on its own, month first: US dates with and without a time
PARSE_SHARE = 0.9  # a column is dates / numbers when this share of its filled values parse
CONSTANT_SHARE = 0.9  # a company (owner) property: one value within this share of companies (owners)
FEW_OWNERS = 0.2  # owners: at most this many distinct values per row

# What each contract column is, in words (comments and messages).
WHAT = {OPPORTUNITY_ID: "the deal's id", REP_ID: "the deal owner", ACCOUNT_ID: "the company",
        OUTCOME: "the stage", CREATED_AT: "the create date", CLOSED_AT: "the close date", AMOUNT: "the amount"}

# Header (lower case, words split on anything not a letter or digit) -> score per contract column: a whole
# header naming the thing scores 1, a header merely mentioning it 0.5.
_NAME_RULES: dict[str, tuple[tuple[str, float], ...]] = {
    OPPORTUNITY_ID: ((r"^(opportunity |opp |deal |record )?(id|key|number|no)$", 1.0), (r"\b(id|key)\b", 0.5)),
    REP_ID: ((r"^(deal |opportunity |opp |sales )?(owner|agent|sales agent|rep|sales rep|representative|user|"
              r"salesperson|sales person|seller|account executive)( name| id| email)?$", 1.0),
             (r"\b(owner|agent|rep|user|salesperson|seller)\b", 0.5)),
    ACCOUNT_ID: ((r"^(associated |primary |parent )?(account|company|customer|organi[sz]ation|org|client)"
                  r"( name| id)?( primary)?$", 1.0), (r"\b(account|company|customer|organi[sz]ation|client)\b", 0.5)),
    OUTCOME: ((r"^(deal |opportunity |opp |sales )?(stage|status|outcome|result|phase)( name)?$", 1.0),
              (r"\b(stage|status|outcome|result)\b", 0.5)),
    CREATED_AT: ((r"^(date )?(create|created|creation|engage|engaged|engagement|open|opened|start)"
                  r"( date| at| on| time| datetime| date time| timestamp)?$", 1.0),
                 (r"\b(create|created|creation|engage|engaged|opened|start)\b", 0.5)),
    CLOSED_AT: ((r"^(date )?(close|closed|closing|end)( date| at| on| time| datetime| date time| timestamp)$", 1.0),
                (r"^(close|closing)$", 0.8), (r"\b(close|closed|closing)\b", 0.5)),
    AMOUNT: ((r"^(deal |opportunity |opp |close |closed |total |contract |booking |sales )?(amount|value|size|"
              r"revenue|price|arr|acv|tcv|mrr)( usd| eur| gbp| in company currency)?$", 1.0),
             (r"\b(amount|value|revenue|price)\b", 0.5)),
}
_FLAG = "says whether the deal closed or was won"
# Headers that leak the outcome (known only once the deal moves or closes), with the reason.
_LEAK_NAMES = (
    (r"\bprobability\b", "a probability is set from the stage"),
    (r"\bforecast", "the forecast follows the stage"),
    (r"\bweighted\b", "weighted by the stage's probability"),
    (r"\bexpected revenue\b", "the amount times the stage's probability"),
    (r"^(is )?(closed|won|lost)$|\bis (closed|won|lost)\b", _FLAG),
    (r"\bclosed? (won|lost)\b|\b(won|lost) reason\b", "filled in when the deal is won or lost"),
    (r"\bdays? to (close|closing)\b|\bage\b|\bstage duration\b|\btime in\b|\bcumulative time\b",
     "counts time up to the close or within a stage"),
    (r"\blast (modified|activity|stage change|updated)\b|\b(modified|updated)\b", "changes as the deal moves"),
    (r"\bdate (entered|exited)\b", "the date the deal reached or left a stage"),
    (r"\bfiscal\b", "the fiscal period of the close date"),
    (r"\bnext step\b", "edited as the deal moves"),
    (r"\bdeal score\b", "a score of the deal's progress"),
)
_WON = re.compile(r"\b(won|win)\b|closedwon")
_LOST = re.compile(r"\b(lost|loss)\b|closedlost")
_LOST_MAYBE = re.compile(r"\b(dead|disqualified|unqualified|rejected|cancell?ed|no decision|churned)\b")
_DATE = (r"^(?:(?P<iso>\d{4}-\d{1,2}-\d{1,2})|(?P<a>\d{1,2})(?P<sep>[/.-])(?P<b>\d{1,2})(?P=sep)(?P<y>\d{4}|\d{2}))"
         r"(?:(?:T|\s+)(?P<time>\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*(?P<ampm>[AaPp]\.?[Mm]\.?)?)?"
         r"\s*(?:Z|[+-]\d{2}:?\d{2}|UTC|GMT)?$")
_PLAIN_NUMBER = r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_COMMA_NUMBER = r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?"


@dataclass(frozen=True)
class Column:
    """What one column of the export holds."""

    name: str
    key: str  # the header in lower-case words, for name matching
    values: pd.Series  # text, stripped; NA where empty
    filled: int
    distinct: int
    dates: pd.Series | None = None  # parsed (naive UTC) where the column reads as dates
    date_format: str | None = None
    day_month_unsure: bool = False  # d/m or m/d: no day above 12 told them apart
    numbers: pd.Series | None = None
    thousands: bool = False  # numbers written 69,245.09


@dataclass(frozen=True)
class Pick:
    """The header chosen for one contract column, and why."""

    target: str
    column: str | None
    why: str
    unsure: str = ""  # why the line is marked UNSURE (empty: it is not)
    hint: str | None = None  # nothing matched: the likeliest header by content alone


@dataclass(frozen=True)
class Guess:
    """A guessed mapping: the TOML ``text``, the ``warnings`` to show, and how many lines are ``unsure``."""

    text: str
    warnings: tuple[str, ...] = ()
    unsure: int = 0
    path: Path | None = None  # where the text was written, if it was
    picks: dict[str, Pick] = field(default_factory=dict)


def guess_mapping(path: str | Path) -> str:
    """The TOML text of a starter ``repfit.toml`` for the export at ``path`` (see ``guess``)."""
    return guess(path).text


def guess(path: str | Path, out: str | Path | None = None) -> Guess:
    """Guess a ``repfit.toml`` for a one-file export (deals or opportunities, CSV or Parquet).

    Parameters
    ----------
    path : the export.
    out : where to write the TOML (atomically); None: do not write.

    Returns
    -------
    Guess: ``text`` (valid under ``Mapping.from_text``), ``warnings`` (one line per required column nothing
    matched, or outcome labels not found), ``unsure`` (lines marked ``# UNSURE:``).

    Raises
    ------
    SchemaError
        The file is missing, unreadable, or has no rows or a single column.
    """
    path = Path(path)
    df = read_export(path)
    cols = {c: _profile(c, df[c]) for c in df.columns}
    leaks = {c: f"name: {why}" for c in cols if (why := _name_leak(cols[c]))}
    picks = _assign(cols, leaks, len(df))
    labels = _outcome_labels(cols[picks[OUTCOME].column]) if picks[OUTCOME].column else None
    won = _won_flags(cols, picks, labels)
    rest = [c for c in cols if c not in leaks and c not in {p.column for p in picks.values()}]
    created = cols[picks[CREATED_AT].column].dates if picks[CREATED_AT].column else None
    leaks |= {c: why for c in rest if (why := _content_leak(cols[c], won, created))}
    derive, skip = _derive(cols, [c for c in rest if c not in leaks], picks)
    dates = _date_choice(picks, cols)
    sections = [
        _head(path, df, _preset_note(list(cols), dates[0], labels, leaks)),
        _columns_section(picks, cols, derive, skip, leaks, won),
        _derive_section(derive),
        _outcome_section(picks[OUTCOME].column, labels),
        _dates_section(dates),
        _numbers_section(picks, cols, derive),
        _exclude_section(leaks | skip),
    ]
    text = "\n".join(s for s in sections if s)
    warnings = _warnings(path, picks, labels)
    written = None
    if out is not None:
        from repfit.io import protect_inputs, write_text

        protect_inputs([path])
        written = write_text(text, out)
    return Guess(text, tuple(warnings), text.count("# UNSURE:"), written, picks)


# --- reading and profiling --------------------------------------------------------------------
def read_export(path: Path) -> pd.DataFrame:
    """The export as text columns (stripped, NA where empty); at most ``MAX_ROWS`` rows."""
    if not path.is_file():
        raise SchemaError(f"{path}: file not found. Fix: pass the CSV or Parquet file your CRM exported.")
    try:
        if path.suffix.lower() == ".parquet":
            df = pd.read_parquet(path).head(MAX_ROWS)
        else:
            df = pd.read_csv(path, dtype="string", sep=csv_separator(path), nrows=MAX_ROWS, encoding="utf-8-sig",
                             encoding_errors="replace", skipinitialspace=False)
    except (ValueError, OSError, ImportError, pd.errors.ParserError) as exc:
        raise SchemaError(f"{path}: cannot be read as {'Parquet' if path.suffix.lower() == '.parquet' else 'CSV'} "
                          f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}). "
                          "Fix: export the deals as CSV (comma-separated, with a header row) or Parquet.") from None
    if df.empty or len(df.columns) < 2:
        raise SchemaError(f"{path}: {len(df):,} rows and {len(df.columns)} columns; a deals export has a header "
                          "row, one row per deal and several columns. Fix: export the deals with their properties.")
    df.columns = [str(c) for c in df.columns]
    text = {c: df[c].astype("string").str.strip() for c in df.columns}
    return pd.DataFrame({c: s.mask(s == "") for c, s in text.items()})


def header_key(header: str) -> str:
    """``"Deal owner"``, ``"deal_owner"``, ``"dealOwner"`` -> ``"deal owner"``."""
    split = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", header)
    return " ".join(re.sub(r"[^0-9a-z]+", " ", split.lower()).split())


def _profile(name: str, values: pd.Series) -> Column:
    filled = values.dropna()
    col = Column(name, header_key(name), values, len(filled), int(filled.nunique()))
    if not len(filled):
        return col
    dates = _read_dates(filled)
    if dates is not None:
        parsed, fmt, unsure = dates
        return replace(col, dates=parsed.reindex(values.index), date_format=fmt, day_month_unsure=unsure)
    plain = filled.str.fullmatch(_PLAIN_NUMBER)
    comma = filled.str.fullmatch(_COMMA_NUMBER)
    if (plain | comma).mean() >= PARSE_SHARE:
        numbers = pd.to_numeric(values.str.replace(",", "", regex=False), errors="coerce")
        return replace(col, numbers=numbers.astype(float), thousands=bool(comma.any()))
    return col


def _read_dates(filled: pd.Series) -> tuple[pd.Series, str, bool] | None:
    """Parsed dates, their format (``"ISO8601"`` or strftime codes) and whether day/month order is a guess."""
    parts = pd.Series(filled.unique()[:SAMPLE], dtype="string").str.extract(_DATE)  # the format, from a sample
    iso, slash = parts["iso"].notna(), parts["a"].notna()
    if (iso | slash).mean() < PARSE_SHARE:
        return None
    unsure = False
    if iso.sum() >= slash.sum():
        fmt = "ISO8601"
    else:
        p = parts[slash]
        n_day, n_month = int((p["a"].astype(int) > 12).sum()), int((p["b"].astype(int) > 12).sum())
        if n_day and n_month and max(n_day, n_month) < 10 * min(n_day, n_month):
            return None  # both orders have real support: not one date format
        # a few values against the order (13/45/2024 in a US export) are bad dates, not evidence
        day_first, month_first = n_day > 10 * n_month, n_month > 10 * n_day
        unsure = not (day_first or month_first)
        sep, year = p["sep"].mode()[0], "%Y" if p["y"].str.len().mode()[0] == 4 else "%y"
        fmt = f"%d{sep}%m{sep}{year}" if day_first else f"%m{sep}%d{sep}{year}"
        time = p["time"].dropna()
        if len(time) > len(p) / 2:
            ampm = p["ampm"].notna().mean() > 0.5
            fmt += (" %I:%M" if ampm else " %H:%M") + (":%S" if (time.str.count(":") == 2).mean() > 0.5 else "")
            fmt += " %p" if ampm else ""
    parsed = _parse_dates(filled, fmt)
    if parsed.notna().mean() < PARSE_SHARE and fmt.startswith("%m"):
        fmt, parsed = MIXED, _parse_dates(filled, MIXED)  # 3/13/2024 beside 3/14/2024 10:15 AM
    if parsed.notna().mean() < PARSE_SHARE:
        return None
    return parsed, fmt, unsure


def _parse_dates(filled: pd.Series, fmt: str) -> pd.Series:
    """As the loader reads them (``schema._dates``): UTC, then without the zone."""
    return pd.to_datetime(filled, format=fmt, errors="coerce", utc=True).dt.tz_localize(None)


# --- matching contract columns ----------------------------------------------------------------
@dataclass(frozen=True)
class _Candidate:
    score: float
    target: str
    column: str
    name: float  # how well the header names the target (0: not at all)
    evidence: str

    @property
    def matched(self) -> bool:
        """Owners, companies and amounts need a header that names them: their content alone says too little."""
        return self.name > 0 or self.target in (OPPORTUNITY_ID, OUTCOME, CREATED_AT, CLOSED_AT)


def _name_score(target: str, key: str) -> float:
    return max((score for rx, score in _NAME_RULES[target] if re.search(rx, key)), default=0.0)


def _name_leak(c: Column) -> str | None:
    why = next((why for rx, why in _LEAK_NAMES if re.search(rx, c.key)), None)
    if why == _FLAG and c.dates is not None:
        return None  # a column "Closed" that holds dates is the close date
    return why


def _content(target: str, c: Column, n: int) -> tuple[float, str] | None:
    """How well a column's content fits a contract column (0..1) and the evidence; None: it cannot be it."""
    if c.filled == 0:
        return None
    if target in (CREATED_AT, CLOSED_AT):
        return None if c.dates is None else (1.0, f"dates on {_share(c.dates.notna().sum(), n)} rows")
    if c.dates is not None:
        return None
    if target == AMOUNT:
        return None if c.numbers is None else (1.0, f"numbers on {_share(c.numbers.notna().sum(), n)} rows")
    if target == OUTCOME:
        labels = _outcome_labels(c)
        if labels is None or not (labels.won or labels.lost):
            return None
        return (1.0 if labels.won and labels.lost else 0.5), "holds the labels " + labels.shown()
    if c.numbers is not None and bool((c.numbers.dropna() % 1 != 0).any()):
        return None  # 1054.5 is no id
    return _id_content(target, c, n)


def _id_content(target: str, c: Column, n: int) -> tuple[float, str] | None:
    """Deal ids are unique; owners are few per row; companies more, and repeated."""
    ratio = c.distinct / c.filled
    if target == OPPORTUNITY_ID:
        if c.filled < 0.9 * n or ratio < 0.98:
            return None
        return (1.0, f"unique on all {c.filled:,} rows") if ratio == 1 else (0.6, f"unique on {ratio:.0%} of rows")
    if c.filled < n / 2 or c.distinct < 2:
        return None
    example = f"e.g. {_quote(c.values.dropna().iloc[0])}"
    if target == REP_ID:
        if ratio > 0.5 and c.filled >= 20:  # on a handful of rows, ratios say little
            return None
        return (1.0 if ratio <= FEW_OWNERS else 0.5), f"{c.distinct:,} distinct values over {c.filled:,} rows, {example}"
    if c.distinct >= c.filled and c.filled >= 20:
        return None
    return (1.0 if ratio <= 0.9 else 0.5), (f"{c.distinct:,} distinct values, {c.filled / c.distinct:.1f} rows each, "
                                            f"{example}")


def _assign(cols: dict[str, Column], leaks: dict[str, str], n: int) -> dict[str, Pick]:
    """Each contract column's header: the best-scoring candidates first, each header used once."""
    cands = []
    for target in TARGETS:
        for c in cols.values():
            fit = None if c.name in leaks else _content(target, c, n)
            if fit is not None:
                name = _name_score(target, c.key)
                cands.append(_Candidate(NAME_WEIGHT * name + (1 - NAME_WEIGHT) * fit[0], target, c.name, name, fit[1]))
    cands.sort(key=lambda x: -x.score)  # stable: on a tie, the column further left wins
    chosen: dict[str, _Candidate] = {}
    for cand in cands:
        if cand.matched and cand.target not in chosen and cand.column not in {x.column for x in chosen.values()}:
            chosen[cand.target] = cand
    used = {x.column for x in chosen.values()}
    picks = {t: _pick(t, chosen.get(t), [x for x in cands if x.target == t and x.column not in used],
                      _named_unfit(t, cols, used | set(leaks))) for t in TARGETS}
    return _check_pairs(picks, cols)


def _named_unfit(target: str, cols: dict[str, Column], used: set[str]) -> Column | None:
    """A free column whose header names ``target`` outright, though its content did not fit (dates that do not parse)."""
    return next((c for c in cols.values() if c.name not in used and c.filled and _name_score(target, c.key) == 1.0),
                None)


def _pick(target: str, best: _Candidate | None, others: list[_Candidate], named: Column | None = None) -> Pick:
    """The pick for ``target`` and why; UNSURE when only content chose it or a runner-up came close."""
    if best is None:
        nothing = f"nothing matched {target}" if target in REQUIRED["opportunities"] else ""
        if named is not None:
            dates, values = target in (CREATED_AT, CLOSED_AT), named.values.dropna()
            odd = values[~values.str.match(_DATE)] if dates else values  # a value the date patterns do not read
            return Pick(target, None, f"the header names {WHAT[target]}, but its values do not read as "
                        f"{'dates' if dates else WHAT[target]} (e.g. {_quote((odd if len(odd) else values).iloc[0])})",
                        nothing, named.name)
        hint = f"; by content alone the likeliest is {others[0].column!r} ({others[0].evidence})" if others else ""
        return Pick(target, None, f"no header looks like {WHAT[target]}{hint}", nothing,
                    others[0].column if others else None)
    named = {1.0: f"the header names {WHAT[target]}", 0.0: f"no header names {WHAT[target]}"}.get(
        best.name, f"the header mentions {WHAT[target]}")
    unsure = "" if best.name else f"chosen by content alone ({named})"
    runner = next((x for x in others if x.matched), None)
    if runner is not None and best.score - runner.score < CLOSE_MARGIN:
        unsure = "; ".join(filter(None, [unsure, f"runner-up {runner.column!r} ({runner.evidence})"]))
    return Pick(target, best.column, f"{best.evidence}; {named}" if best.name else best.evidence, unsure)


def _check_pairs(picks: dict[str, Pick], cols: dict[str, Column]) -> dict[str, Pick]:
    """The create date is the earlier of the two dates; companies outnumber owners."""
    picks = _date_order(picks, cols)
    rep, acc = picks[REP_ID], picks[ACCOUNT_ID]
    if rep.column and acc.column and cols[acc.column].distinct <= cols[rep.column].distinct:
        more = f"no more companies ({cols[acc.column].distinct:,}) than owners ({cols[rep.column].distinct:,})"
        picks = {**picks, ACCOUNT_ID: replace(acc, unsure="; ".join(filter(None, [acc.unsure, more])))}
    return picks


def _date_order(picks: dict[str, Pick], cols: dict[str, Column]) -> dict[str, Pick]:
    """Swap the two dates if the "create" date falls after the "close" date on most rows; say how often it is earlier."""
    created, closed = picks[CREATED_AT], picks[CLOSED_AT]
    if not (created.column and closed.column):
        return picks
    a, b = cols[created.column].dates, cols[closed.column].dates
    both = a.notna() & b.notna()
    if not both.any():
        return picks
    if (a[both] <= b[both]).mean() < 0.5:  # the headers had it the wrong way round: the later date is the close
        swap = f"swapped: {closed.column!r} falls before {created.column!r} on most rows with both"
        created, closed = (Pick(CREATED_AT, closed.column, closed.why.split(";")[0], swap),
                           Pick(CLOSED_AT, created.column, created.why.split(";")[0], swap))
        a, b = b, a
    before, late = float((a[both] <= b[both]).mean()), int((a[both] > b[both]).sum())
    created = replace(created, why=f"{created.why}; before {closed.column} on {before:.0%} of {int(both.sum()):,} "
                                   "rows with both")
    if late:
        closed = replace(closed, why=f"{closed.why}; before {created.column} on {late:,} rows: the loader rejects "
                                     "those if closed")
    return {**picks, CREATED_AT: created, CLOSED_AT: closed}


# --- outcome labels and leaks -----------------------------------------------------------------
@dataclass(frozen=True)
class Labels:
    """A stage column's labels (stripped, with their row counts), sorted into won, lost and the rest."""

    won: tuple[tuple[str, int], ...]
    lost: tuple[tuple[str, int], ...]
    maybe_lost: tuple[tuple[str, int], ...]  # dead, disqualified...: taken as lost, marked UNSURE
    other: tuple[tuple[str, int], ...]

    def shown(self, limit: int = 6) -> str:
        every = sorted(self.won + self.lost + self.maybe_lost + self.other, key=lambda x: -x[1])
        more = f" and {len(every) - limit} more" if len(every) > limit else ""
        return ", ".join(f"{_quote(label)} ({n:,})" for label, n in every[:limit]) + more


def _outcome_labels(c: Column) -> Labels | None:
    if c.distinct > 100 or c.numbers is not None or c.dates is not None:
        return None
    sorts: dict[str, list[tuple[str, int]]] = {"won": [], "lost": [], "maybe_lost": [], "other": []}
    for label, n in c.values.value_counts().items():
        key = header_key(str(label))
        won, lost = bool(_WON.search(key)), bool(_LOST.search(key))
        kind = ("won" if won and not lost else "lost" if lost and not won
                else "maybe_lost" if not won and _LOST_MAYBE.search(key) else "other")
        sorts[kind].append((str(label), int(n)))
    return Labels(**{k: tuple(v) for k, v in sorts.items()})


def _won_flags(cols: dict[str, Column], picks: dict[str, Pick], labels: Labels | None) -> pd.Series | None:
    """Per row: 1.0 won, 0.0 lost, NaN open (None without a stage column or without won and lost labels)."""
    if labels is None or not labels.won or not (labels.lost or labels.maybe_lost):
        return None
    stage = cols[picks[OUTCOME].column].values
    won = stage.isin([w for w, _ in labels.won]).fillna(False).to_numpy(bool)
    lost = stage.isin([w for w, _ in labels.lost + labels.maybe_lost]).fillna(False).to_numpy(bool)
    return pd.Series(np.where(won, 1.0, np.where(lost, 0.0, np.nan)), index=stage.index)


def _content_leak(c: Column, won: pd.Series | None, created: pd.Series | None) -> str | None:
    """Why a column's content says it is known only once the deal closes (None: no sign of that)."""
    if won is not None and (won == 1).sum() >= 5 and (won == 0).sum() >= 5:
        filled = c.values.notna()
        on_won, on_lost = filled[won == 1].mean(), filled[won == 0].mean()
        for share, other, what in ((on_won, on_lost, "won"), (on_lost, on_won, "lost")):
            if share >= 0.5 and other <= 0.02:
                rest = "lost" if what == "won" else "won"
                return f"filled on {share:.0%} of {what} deals and {other:.0%} of {rest} ones"
        is_open = won.isna()
        if is_open.sum() >= 5 and filled[~is_open].mean() >= 0.5 and not filled[is_open].any():
            return (f"filled on {filled[~is_open].mean():.0%} of closed deals and none of the {int(is_open.sum()):,} "
                    "open ones: known only at the close")
        auc = _auc(c, won)
        if auc is not None and auc[0] > MAX_AUC:
            return f"alone separates won from lost (AUC {auc[0]:.2f} on {auc[1]:,} closed deals)"
    if c.dates is not None and created is not None:
        both = c.dates.notna() & created.notna()
        after = float((c.dates[both] > created[both]).mean()) if both.any() else 0.0
        if after > 0.5:
            return f"a date after the create date on {after:.0%} of {int(both.sum()):,} rows: set as the deal moves"
    return None


def _auc(c: Column, won: pd.Series) -> tuple[float, int] | None:
    """How well the column alone ranks won above lost deals, either way round (0.5..1), and on how many deals."""
    x = c.numbers
    if x is None and c.distinct == 2:
        low = c.values.str.lower()
        if low.dropna().isin(TRUE_LABELS + FALSE_LABELS).all():
            x = low.map(lambda v: 1.0 if v in TRUE_LABELS else 0.0 if v in FALSE_LABELS else np.nan).astype(float)
    if x is None:
        return None
    ok = won.notna() & x.notna()
    y, ranks = won[ok], x[ok].rank()
    n1, n0 = int((y == 1).sum()), int((y == 0).sum())
    if n1 < 5 or n0 < 5 or x[ok].nunique() < 2:
        return None
    auc = (ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)
    return max(auc, 1 - auc), n1 + n0


# --- company and owner properties -------------------------------------------------------------
def _derive(cols: dict[str, Column], rest: list[str], picks: dict[str, Pick]):
    """``{"reps": {column: (target, evidence)}, "accounts": {...}}`` and the columns to leave out (ids, free text)."""
    n = len(next(iter(cols.values())).values)
    groups = {t: cols[picks[c].column].values if picks[c].column else None
              for t, c in (("reps", REP_ID), ("accounts", ACCOUNT_ID))}
    derive: dict[str, dict[str, tuple[str, str]]] = {"reps": {}, "accounts": {}}
    skip: dict[str, str] = {}
    for name in rest:
        c = cols[name]
        if c.distinct <= 1:
            continue
        owner = _company_owner(c, groups) if CURRENT_REP_ID not in derive_targets(derive["accounts"]) else None
        if owner:
            derive["accounts"][name] = (CURRENT_REP_ID, owner)
        elif why := _identifier(c, groups, n):
            skip[name] = why
        else:
            for table, what in (("reps", "owner"), ("accounts", "company")):
                found = _constant_within(c.values, groups[table]) if groups[table] is not None else None
                if found and found[0] >= CONSTANT_SHARE and found[0] - found[2] >= 0.3:
                    target = _target_name(table, name, derive_targets(derive[table]))
                    plural = {"owner": "owners", "company": "companies"}[what]
                    derive[table][name] = (target, f"one value per {what} on {found[0]:.0%} of {found[1]:,} {plural} "
                                                   f"with 2+ deals (by chance: {found[2]:.0%})")
                    break
    return derive, skip


def derive_targets(entries: dict[str, tuple[str, str]]) -> set[str]:
    return {target for target, _ in entries.values()}


def _company_owner(c: Column, groups: dict[str, pd.Series | None]) -> str | None:
    """Evidence that a column names each company's owner (values among the deal owners, one per company)."""
    reps, accounts = groups["reps"], groups["accounts"]
    if reps is None or accounts is None or c.numbers is not None or c.dates is not None:
        return None
    among = float(c.values.dropna().isin(reps.dropna().unique()).mean())
    found = _constant_within(c.values, accounts) if among >= 0.8 else None
    if not found or found[0] < CONSTANT_SHARE:
        return None
    return f"{among:.0%} of its values are deal owners; one value per company on {found[0]:.0%} of {found[1]:,} companies"


def _identifier(c: Column, groups: dict[str, pd.Series | None], n: int) -> str | None:
    """Why a column is no attribute: free text unique per row, or another id of the company or owner."""
    if c.numbers is not None or c.dates is not None:
        return None  # employees, revenue: often one value per company, yet attributes
    if c.distinct == c.filled and c.filled >= max(10, n / 2):
        return f"unique on all {c.filled:,} filled rows: a name or free text, not an attribute"
    if c.distinct < 10:
        return None  # a handful of values (industry, region) may fall one per company by chance
    for table, what in (("accounts", "company"), ("reps", "owner")):
        g = groups[table]
        if g is None:
            continue
        one, other = _constant_within(c.values, g), _constant_within(g, c.values)
        if one and other and one[0] >= 0.98 and other[0] >= 0.98:
            return f"one value per {what} and one {what} per value: another id or name of the {what}"
    return None


def _constant_within(values: pd.Series, groups: pd.Series) -> tuple[float, int, float] | None:
    """Share of groups (with 2+ filled rows) holding one value, their number, and the share were rows shuffled."""
    df = pd.DataFrame({"g": groups, "v": values}).dropna()
    if df.empty:
        return None
    shuffled = df.assign(v=np.random.default_rng(0).permutation(df["v"].to_numpy()))
    shares = []
    for frame in (df, shuffled):
        stats = frame.groupby("g", sort=False)["v"].agg(["size", "nunique"])
        multi = stats[stats["size"] >= 2]
        if len(multi) < 3:
            return None
        shares.append(float((multi["nunique"] == 1).mean()))
    return shares[0], len(multi), shares[1]


def _target_name(table: str, header: str, taken: set[str]) -> str:
    """snake_case, without a leading "Company"/"Owner"; never a contract id ("Account ID" -> "company_account_id")."""
    words = re.sub(r"[^0-9a-z]+", " ", header.lower()).split() or ["attribute"]
    drop = {"reps": ("owner", "rep", "agent", "user"), "accounts": ("company", "account", "customer")}[table]
    if len(words) > 1 and words[0] in drop:
        words = words[1:]
    name = "_".join(words)
    own = RESERVED[table] - {REP_ID, ACCOUNT_ID}  # capacity; potential, tier...: the table's own columns
    if name[0].isdigit() or name in set().union(*RESERVED.values()) - own:
        name = {"reps": "owner_", "accounts": "company_"}[table] + name
    base, k = name, 2
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    return name


# --- the TOML text ----------------------------------------------------------------------------
def _head(path: Path, df: pd.DataFrame, preset_note: list[str]) -> str:
    name = _clean(path.name)
    lines = [f"# {MAPPING_FILE} guessed by `repfit mapping guess` from {name} ({len(df):,} rows, "
             f"{len(df.columns)} columns).",
             "# Each line says what it rests on. Check the lines marked UNSURE, then load the export with it:",
             f"#   repfit validate --data {name} --mapping {MAPPING_FILE}"]
    if len(df) >= MAX_ROWS:
        lines.append(f"# Judged on the first {MAX_ROWS:,} rows.")
    return "\n".join(lines + preset_note + ["", "[export]", f"name = {_toml(f'{path.name} (guessed)')}", ""])


def _preset_note(headers: list[str], date_format: str, labels: Labels | None, leaks: dict[str, str]) -> list[str]:
    """'This looks like a HubSpot deals export' when the headers hold a preset's headers for every required column,
    with what the preset would read differently from this guess."""
    for name in PRESETS:
        preset = Mapping.from_text(preset_text(name), f"preset {name}")
        found = {t for source, t in preset.columns.get("opportunities", {}).items() if source in headers}
        if not set(REQUIRED["opportunities"]) <= found:
            continue
        but = []
        if date_format != preset.date_format:
            but.append(f"its dates read as {date_format!r} where the preset expects {preset.date_format!r}")
        known = {x.lower() for x in preset.won + preset.lost}
        odd = [x for x, _ in (labels.won + labels.lost + labels.maybe_lost if labels else ()) if x.lower() not in known]
        if odd:
            but.append(f"the preset takes {', '.join(map(_quote, odd[:5]))} for open deals")
        what = preset.name or name
        lines = [f"# This looks like a {what}: --mapping {name} reads it as is." if not but else
                 f"# This looks like a {what}: --mapping {name} reads it, except that {'; '.join(but)}."]
        kept = [c for c in leaks if c in headers and not preset.excluded(c)]
        if kept:
            lines += _wrapped("# The preset keeps as attributes these columns, which leak the outcome (see [exclude]): ",
                              [_clean(_quote(c, 60)) for c in kept])
        return lines
    return []


def _columns_section(picks, cols, derive, skip, leaks, won) -> str:
    lines = ["[columns.opportunities]"]
    for target in TARGETS:
        p = picks[target]
        if p.column is None and target in REQUIRED["opportunities"]:
            lines.append(f"# {_toml(p.hint or 'COLUMN')} = {_toml(target)}" + _comment(
                f"{p.why}; name the column and uncomment this line", p.unsure))
        elif p.column is None:
            lines.append(f"# {target}: {p.why} (optional: repfit reads deals without it)")
        else:
            why = p.why
            if target == AMOUNT and (leak := _content_leak(cols[p.column], won, None)):
                why += f"; NOTE: {leak}, but repfit never uses the amount as a feature"
            lines.append(f"{_toml(p.column)} = {_toml(target)}" + _comment(why, p.unsure))
    taken = set(leaks) | set(skip) | {p.column for p in picks.values()} | {c for d in derive.values() for c in d}
    rest = [f"{c} ({_kind(cols[c])})" for c in cols if c not in taken]
    if rest:
        lines += _wrapped("# Every other column is a deal-level attribute: ", [_clean(x) for x in rest])
    return "\n".join(lines) + "\n"


def _kind(c: Column) -> str:
    if c.distinct <= 1:
        return "one value on every row: no information" if c.distinct else "always empty"
    return "dates" if c.dates is not None else "numbers" if c.numbers is not None else f"{c.distinct:,} values"


def _derive_section(derive: dict[str, dict[str, tuple[str, str]]]) -> str:
    heads = {"accounts": "# Company properties on the deal rows: each account takes the value on its latest deal.",
             "reps": "# Owner properties on the deal rows: each rep takes the value on their latest deal."}
    out = []
    for table in ("accounts", "reps"):
        if derive[table]:
            lines = [heads[table], f"[derive.{table}]"]
            lines += [f"{_toml(c)} = {_toml(t)}" + _comment(why) for c, (t, why) in derive[table].items()]
            out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def _outcome_section(column: str | None, labels: Labels | None) -> str:
    lines = ["[outcome]"]
    if column is None or labels is None:
        lines += ["won = []" + _comment("list the won stages here", "no stage column found"),
                  "lost = []" + _comment("list the lost stages here", "no stage column found")]
    else:
        lost = labels.lost + labels.maybe_lost
        for key, found, prefix in (("won", labels.won, f"{column}: "), ("lost", lost, "")):
            if not found:
                lines.append(f"{key} = []" + _comment(f"list the {key} stages here; labels: {labels.shown()}",
                                                      f"no label of {column} looks {key}"))
                continue
            why = prefix + "; ".join(f"{_quote(x)} on {_rows(n)}" for x, n in found)
            maybe = ", ".join(_quote(x) for x, _ in labels.maybe_lost) if key == "lost" else ""
            lines.append(f"{key} = {_toml([x for x, _ in found])}" + _comment(why, maybe and f"{maybe} taken as lost"))
    other = Labels((), (), (), labels.other).shown() if labels and labels.other else "none seen"
    lines.append(f"open = {_toml([ANY_OTHER])}" + _comment(f"every other label is an open deal: {other}"))
    return "\n".join(lines) + "\n"


def _date_choice(picks: dict[str, Pick], cols: dict[str, Column]) -> tuple[str, str, str]:
    """[dates] format, the evidence, and why it is unsure (empty: it is not)."""
    used = [cols[p.column] for p in (picks[CREATED_AT], picks[CLOSED_AT]) if p.column]
    if not used:
        return "ISO8601", "the default: 2024-03-01, 2024-03-01 10:15", "no date column found"
    formats = list(dict.fromkeys(u.date_format for u in used))
    if not any(f.startswith("%d") for f in formats) and len(formats) > 1:
        formats.append(MIXED)
    counts = {f: sum(int(_parse_dates(u.values.dropna(), f).notna().sum()) for u in used) for f in formats}
    fmt = max(formats, key=counts.get)  # one format reads both columns: the one that reads the most
    unsure = [f"the two date columns read as {' and '.join(map(repr, formats[:2]))}"] if len(formats) > 1 else []
    if fmt == MIXED:
        unsure.append(f"some dates carry a time, some not: {MIXED!r} reads each on its own, month first")
    if any(u.day_month_unsure for u in used):
        unsure.append("no day above 12 tells day from month: month first (US) assumed")
    kind = ("ISO dates" if fmt == "ISO8601" else "day first" if fmt.startswith("%d") else "month first (US)") + (
        "" if fmt in ("ISO8601", MIXED) or unsure else ": a number above 12 stands only " + (
            "second" if fmt.startswith("%m") else "first"))
    filled = sum(u.filled for u in used)
    examples = " / ".join(f"{u.name}: e.g. {_quote(u.values.dropna().iloc[0])}" for u in used)
    return fmt, f"{kind}; {examples}; {counts[fmt]:,} of {filled:,} filled values parse", "; ".join(unsure)


def _dates_section(date_choice: tuple[str, str, str]) -> str:
    fmt, why, unsure = date_choice
    return f"[dates]\nformat = {_toml(fmt)}{_comment(why, unsure)}\n"


def _numbers_section(picks: dict[str, Pick], cols: dict[str, Column], derive) -> str:
    names = [picks[AMOUNT].column] + [c for d in derive.values() for c in d]
    comma = [cols[c] for c in names if c and cols[c].thousands]
    if not comma:
        return ""
    example = comma[0].values.dropna()
    example = example[example.str.contains(",", regex=False)].iloc[0]
    return f"[numbers]\nthousands = \",\"{_comment(f'{comma[0].name}: e.g. {_quote(example)}')}\n"


def _exclude_section(excluded: dict[str, str]) -> str:
    head = "# Known only once a deal moves or closes (they leak the outcome), or no attribute at all: never features."
    if not excluded:
        return f"{head}\n[exclude]\ncolumns = []  # no column looks like it leaks the outcome\n"
    lines = [head, "[exclude]", "columns = ["]
    lines += [f"  {_toml(_glob_literal(c))},{_comment(why)}" for c, why in excluded.items()]
    return "\n".join(lines + ["]"]) + "\n"


def _warnings(path: Path, picks: dict[str, Pick], labels: Labels | None) -> list[str]:
    out = [f"{path.name}: no column looks like {t} ({WHAT[t]}); its line in [columns.opportunities] is commented out. "
           "Fix: name the column there and uncomment it." for t in REQUIRED["opportunities"] if picks[t].column is None]
    stage = picks[OUTCOME].column
    if stage and labels is not None:
        for key, found in (("won", labels.won), ("lost", labels.lost + labels.maybe_lost)):
            if not found:
                out.append(f"{path.name}: no label of column {stage!r} looks {key} ({labels.shown()}). "
                           f"Fix: list the {key} stages under [outcome] {key} = [...].")
    return out


# --- small helpers ----------------------------------------------------------------------------
def _toml(value) -> str:
    """A TOML string or array of strings (JSON's escapes are TOML's, but for DEL)."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def _quote(value: str, limit: int = 40) -> str:
    text = " ".join(str(value).split())
    return json.dumps(text if len(text) <= limit else text[:limit - 3] + "...", ensure_ascii=False)


def _comment(why: str, unsure: str = "") -> str:
    return "  # " + _clean(f"UNSURE: {unsure}. {why}" if unsure else why)


def _clean(text: str) -> str:
    """Text fit for a TOML comment: one line, no control characters, whatever the data held."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


def _rows(n: int) -> str:
    return f"{n:,} row" + ("" if n == 1 else "s")


def _share(k: int, n: int) -> str:
    return f"all {n:,}" if k == n else f"{k:,} of {n:,}"


def _glob_literal(name: str) -> str:
    """A header as an [exclude] pattern matching just itself: * ? [ stand for themselves."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def _wrapped(prefix: str, items: list[str], width: int = 110) -> list[str]:
    lines, line = [], prefix
    for i, item in enumerate(items):
        piece = item + (", " if i < len(items) - 1 else "")
        if len(line) + len(piece) > width and line.strip() != "#":
            lines.append(line.rstrip())
            line = "#   "
        line += piece
    return lines + [line.rstrip()]
