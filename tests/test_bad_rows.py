"""Row-level problems of the opportunities (issue 12, item 3): strict stops and names the flag; quarantine sets
each bad row aside with its source line and reason and goes on; more than the allowed share stops."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import run
from repfit.errors import SchemaError
from repfit.schema import load_dataset


def _opps(org) -> pd.DataFrame:
    return pd.read_csv(org / "opportunities.csv", dtype=str, keep_default_na=False)


def _closed_rows(df: pd.DataFrame, k: int, skip: int = 0) -> list[int]:
    return list(df.index[df["outcome"].isin(["won", "lost"])][skip:skip + k])


def _shift(df, rows, days):
    df.loc[rows, "closed_at"] = (pd.to_datetime(df.loc[rows, "created_at"]) + pd.Timedelta(days=days)).dt.strftime("%Y-%m-%d")


# kind -> (reason code, breaker(df) -> the data rows it spoils, a phrase of the strict message)
KINDS = {
    "missing_id": (lambda df: _set(df, [3, 40], "opportunity_id", ""), "'opportunity_id' is empty"),
    "duplicate_id": (lambda df: _dup(df, [(2, 50), (5, 61)]), "duplicate values"),
    "unknown_outcome": (lambda df: _set(df, [4, 77], "outcome", "maybe later"), "unknown labels"),
    "missing_rep": (lambda df: _set(df, _closed_rows(df, 2), "rep_id", ""), "'rep_id' is empty"),
    "missing_account": (lambda df: _set(df, _closed_rows(df, 3, 5), "account_id", ""), "'account_id' is empty"),
    "bad_date": (lambda df: _set(df, _closed_rows(df, 2, 9), "created_at", "31/02/2024"), "unparseable"),
    "close_before_create": (lambda df: _shift_rows(df, _closed_rows(df, 4, 12)), "is before"),
    "unknown_rep": (lambda df: _set(df, [8], "rep_id", "R999"), "names ids not in reps.csv"),
    "unknown_account": (lambda df: _set(df, [9, 90], "account_id", "A99999"), "names ids not in accounts.csv"),
}


def _set(df, rows, column, value):
    df.loc[rows, column] = value
    return rows


def _dup(df, pairs):
    for first, later in pairs:
        df.loc[later, "opportunity_id"] = df.loc[first, "opportunity_id"]
    return [later for _, later in pairs]


def _shift_rows(df, rows):
    _shift(df, rows, -10)
    return rows


def _spoil(org, kind) -> list[int]:
    df = _opps(org)
    rows = KINDS[kind][0](df)
    df.to_csv(org / "opportunities.csv", index=False)
    return rows


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_strict_stops_naming_the_line_and_the_quarantine_flag(org_copy, kind):
    rows = _spoil(org_copy, kind)
    with pytest.raises(SchemaError) as err:
        load_dataset(org_copy)
    msg = str(err.value)
    assert KINDS[kind][1] in msg and "--on-bad-rows quarantine" in msg and "opportunities.csv" in msg
    assert f"{rows[-1] + 2}" in msg  # the (last) spoiled row's line number


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_quarantine_sets_each_bad_row_aside_with_its_line_and_reason(org_copy, small_org, kind):
    rows = _spoil(org_copy, kind)
    ds = load_dataset(org_copy, on_bad_rows="quarantine")
    rej = ds.rejected
    assert sorted(rej["line"]) == sorted(r + 2 for r in rows)
    assert set(rej["reason"]) == {kind} and ds.rejected_counts == {kind: len(rows)}
    spoiled = _opps(org_copy)
    assert rej["opportunity_id"].fillna("").tolist() == spoiled.loc[sorted(rows), "opportunity_id"].tolist()  # the rows as read
    clean = load_dataset(small_org).opportunities
    kept_ids = clean["opportunity_id"].drop(index=[r for r in rows]).tolist()
    assert ds.opportunities["opportunity_id"].tolist() == kept_ids  # every other row kept, in order


def test_the_cli_writes_the_rejected_rows_and_prints_the_counts(org_copy, tmp_path):
    _spoil(org_copy, "close_before_create")
    _spoil(org_copy, "unknown_outcome")
    strict = run("validate", "--data", org_copy)
    assert strict.exit_code != 0 and "--on-bad-rows quarantine" in strict.output and "Traceback" not in strict.output
    out = tmp_path / "bad.csv"
    res = run("validate", "--data", org_copy, "--on-bad-rows", "quarantine", "--rejected", out)
    assert res.exit_code == 0, res.output
    assert "close_before_create 4" in res.output and "unknown_outcome 2" in res.output
    rej = pd.read_csv(out)
    assert sorted(rej["reason"].unique()) == ["close_before_create", "unknown_outcome"]
    assert {"file", "line", "reason", "detail", "outcome"} <= set(rej.columns)


def test_the_mapping_can_choose_quarantine(org_copy, tmp_path):
    _spoil(org_copy, "bad_date")
    (org_copy / "repfit.toml").write_text('[rows]\non_bad = "quarantine"\n')
    ds = load_dataset(org_copy)
    assert ds.rejected_counts == {"bad_date": 2}
    with pytest.raises(SchemaError, match="unparseable"):
        load_dataset(org_copy, on_bad_rows="strict")  # the command's choice wins


def test_more_than_the_allowed_share_stops(org_copy):
    df = _opps(org_copy)
    bad = df.index[: int(len(df) * 0.25)]
    df.loc[bad, "outcome"] = "pending review?"
    df.to_csv(org_copy / "opportunities.csv", index=False)
    with pytest.raises(SchemaError, match=rf"\(25%\) would be set aside \(unknown_outcome: {len(bad)}\), more than the 20% allowed"):
        load_dataset(org_copy, on_bad_rows="quarantine")
    ds = load_dataset(org_copy, on_bad_rows="quarantine", max_rejected_share=0.3)
    assert ds.rejected_counts == {"unknown_outcome": len(bad)}
    res = run("validate", "--data", org_copy, "--on-bad-rows", "quarantine", "--rejected", org_copy / "r.csv")
    assert res.exit_code != 0 and "more than the 20% allowed" in res.output and not (org_copy / "r.csv").exists()


@pytest.mark.parametrize("breaker, phrase", [
    (lambda o: _opps(o).drop(columns=["outcome"]).to_csv(o / "opportunities.csv", index=False), "'outcome' is missing"),
    (lambda o: _opps(o).iloc[:0].to_csv(o / "opportunities.csv", index=False), "no rows"),
    (lambda o: (o / "opportunities.csv").write_bytes(b"\x00\x01\xff\xfe" * 50), "not a readable CSV"),
])
def test_table_level_problems_stop_even_in_quarantine(org_copy, breaker, phrase):
    breaker(org_copy)
    with pytest.raises(SchemaError, match=phrase):
        load_dataset(org_copy, on_bad_rows="quarantine")


def test_a_rejected_path_that_cannot_be_written_is_one_error_line(org_copy, tmp_path):
    """--rejected onto the input table (or anywhere unwritable) stops with a message naming --rejected, no traceback,
    and leaves the input as it was (review of issue 12: a NameError escaped)."""
    _spoil(org_copy, "close_before_create")
    table = org_copy / "opportunities.csv"
    before = table.read_bytes()
    res = run("validate", "--data", org_copy, "--on-bad-rows", "quarantine", "--rejected", table)
    assert res.exit_code != 0 and isinstance(res.exception, SystemExit), res.exception
    assert "error: --rejected:" in res.output and "input table" in res.output
    assert table.read_bytes() == before


@pytest.mark.parametrize("share", [None, 1.0])
def test_quarantine_that_sets_every_closed_deal_aside_is_one_error(tmp_path, share):
    """With reps and accounts derived from the deals, setting aside every closed deal left no reps: the load divided
    by zero (review of issue 12). It stops on the share, or (all rows allowed) says no closed deal is left."""
    (tmp_path / "deals.csv").write_text(
        "Record ID,Deal owner,Associated Company,Deal Stage,Create Date,Close Date,Amount\n"
        "D1,Ann,Acme,Closed Won,2024-03-01,2024-01-01,100\n"
        "D2,,,Appointment scheduled,2024-01-01,,100\n")
    want = "more than the 20% allowed" if share is None else r"no closed \(won or lost\) opportunities.*1 of 2 rows"
    with pytest.raises(SchemaError, match=want):
        load_dataset(tmp_path / "deals.csv", "hubspot", on_bad_rows="quarantine", max_rejected_share=share)
    res = run("validate", "--data", tmp_path / "deals.csv", "--mapping", "hubspot", "--on-bad-rows", "quarantine",
              "--rejected", tmp_path / "r.csv", *(["--max-rejected-share", share] if share else []))
    assert res.exit_code != 0 and isinstance(res.exception, SystemExit) and "error: " in res.output, res.output


@pytest.mark.parametrize("gap", ['"a note\nover\nthree lines"', 'ok\n\n'])
def test_line_numbers_count_the_file_lines_not_the_records(tmp_path, gap):
    """A quoted cell with line breaks, or blank lines, before a bad row: its line is the file's line where the row
    starts, as an editor shows it (review of issue 12: it was the record number + 1)."""
    (tmp_path / "deals.csv").write_text(
        "Record ID,Deal owner,Associated Company,Deal Stage,Create Date,Close Date,Notes\n"
        f"D1,Ann,Acme,Closed Won,2024-01-01,2024-02-01,{gap}\n"
        "D2,Bob,Beta,Closed Lost,2024-01-05,2024-01-02,reversed\n"
        "D3,Bob,Beta,Closed Lost,2024-01-05,2024-02-02,ok\n")
    with pytest.raises(SchemaError, match="on line 5 "):
        load_dataset(tmp_path / "deals.csv", "hubspot")
    ds = load_dataset(tmp_path / "deals.csv", "hubspot", on_bad_rows="quarantine", max_rejected_share=1)
    assert ds.rejected["line"].tolist() == [5] and ds.rejected["Record ID"].tolist() == ["D2"]
    assert ds.opportunities["opportunity_id"].tolist() == ["D1", "D3"]
