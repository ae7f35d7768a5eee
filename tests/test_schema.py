"""The data contract: loading, defaults, mapping, and one clear error per kind of bad input."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from click.testing import CliRunner

from repfit import schema as S
from repfit.cli import app
from repfit.errors import ConfigError, SchemaError
from repfit.schema import Mapping, derive_tiers, load_dataset

from conftest import MAVEN_MAPPING


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def edit(org, table, fn):
    path = org / f"{table}.csv"
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    fn(df).to_csv(path, index=False)
    return path


def test_synthetic_org_loads_with_contract_dtypes(small_org):
    ds = load_dataset(small_org)
    assert len(ds.reps) == 12 and len(ds.accounts) == 150
    assert ds.reps[S.CAPACITY].dtype == "int64"
    assert set(ds.opportunities[S.OUTCOME]) == {"won", "lost", "open"}
    closed = ds.closed
    assert closed[S.WON].isin([0.0, 1.0]).all()
    assert (closed[S.CLOSED_AT] >= closed[S.CREATED_AT]).all()
    assert ds.categorical("accounts") == ["name", "industry", "region"]
    assert ds.numeric("accounts") == ["employees"]
    assert ds.shared_attributes() == ["name", "region"]
    assert ds.categorical("opportunities") == ["product"]


def test_validate_prints_counts(small_org):
    ds = load_dataset(small_org)
    res = run("validate", "--data", small_org)
    assert res.exit_code == 0, res.output
    opps = pd.read_csv(small_org / "opportunities.csv")
    n_open = int((opps.outcome == "open").sum())
    assert re.search(rf"closed opportunities\s+{len(opps) - n_open:,}", res.output)
    assert re.search(rf"open opportunities\s+{n_open:,}", res.output)
    assert re.search(r"reps\s+12\n", res.output) and re.search(r"accounts\s+150\n", res.output)
    win_rate = (opps.outcome == "won").sum() / (len(opps) - n_open)
    assert f"{win_rate:.3f}" in res.output
    assert ds.summary()["first_date"] in res.output


def test_default_capacity_is_ceil_1_1_accounts_per_rep(org_copy):
    edit(org_copy, "reps", lambda d: d.drop(columns=["capacity"]))
    ds = load_dataset(org_copy)
    assert (ds.reps[S.CAPACITY] == 14).all()  # ceil(1.1 * 150 / 12) = ceil(13.75)


def test_derive_tiers_from_potential_quantiles():
    pot = pd.Series(range(1, 11), dtype=float)
    assert derive_tiers(pot).tolist() == ["C"] * 5 + ["B"] * 3 + ["A"] * 2
    assert set(derive_tiers(pd.Series([1.0] * 5))) == {"A"}
    tied = derive_tiers(pd.Series([5.0, 5.0, 1.0, 1.0, 1.0]))
    assert tied[0] == tied[1]


@pytest.mark.parametrize("label,expected", [
    ("Won", "won"), ("closed won", "won"), ("1", "won"), ("TRUE", "won"),
    ("Lost", "lost"), ("Closed Lost", "lost"), ("0", "lost"), ("false", "lost"),
    ("Prospecting", "open"), ("", "open"),
])
def test_outcome_labels_accepted(org_copy, label, expected):
    def f(d):
        d.loc[0, "outcome"] = label
        if expected == "open":
            d.loc[0, "closed_at"] = ""
        return d
    edit(org_copy, "opportunities", f)
    assert load_dataset(org_copy).opportunities.loc[0, S.OUTCOME] == expected


def test_mapping_renames_files_columns_labels_and_values(org_copy):
    (org_copy / "reps.csv").rename(org_copy / "team.csv")
    edit(org_copy, "opportunities", lambda d: d.rename(columns={"rep_id": "owner", "outcome": "stage"}).assign(
        stage=lambda x: x.stage.map({"won": "Gewonnen", "lost": "Verloren", "open": "Offen"}),
        product=lambda x: x["product"].replace({"cloud": "CLD"})))
    (org_copy / "repfit.toml").write_text(
        '[files]\nreps = "team.csv"\n[columns.opportunities]\nowner = "rep_id"\nstage = "outcome"\n'
        '[outcome]\nwon = ["Gewonnen"]\nlost = ["Verloren"]\nopen = ["Offen"]\n'
        '[values.opportunities.product]\nCLD = "cloud"\n'
    )
    ds = load_dataset(org_copy)
    assert set(ds.opportunities[S.OUTCOME]) == {"won", "lost", "open"}
    assert "cloud" in set(ds.opportunities["product"]) and "CLD" not in set(ds.opportunities["product"])


def test_maven_crm_through_mapping(maven_dir):
    ds = load_dataset(maven_dir, MAVEN_MAPPING)
    s = ds.summary()
    # figures measured independently in ../shared/data/crm_sales_opportunities/SOURCE.md
    assert (s["reps"], s["accounts"], s["closed_opportunities"], s["open_opportunities"]) == (35, 85, 6711, 2089)
    assert s["win_rate"] == pytest.approx(4238 / 6711)
    assert (s["first_date"], s["last_date"]) == ("2016-10-20", "2017-12-31")
    assert "GTXPro" not in set(ds.opportunities["product"].dropna())
    assert (ds.opportunities["product"] == "GTX Pro").sum() == 1480
    assert any("1425 of them have no account" in w for w in ds.warnings)


def test_maven_validate_cli(maven_dir):
    res = run("validate", "--data", maven_dir, "--mapping", MAVEN_MAPPING)
    assert res.exit_code == 0, res.output
    assert re.search(r"closed opportunities\s+6,711", res.output)
    assert re.search(r"win rate\s+0\.632", res.output)


# --- bad input: one message naming file, column, values and fix; non-zero exit; no traceback ---
def _set(table, col, row, value):
    def f(d):
        d.loc[row, col] = value
        return d
    return table, f


BAD = {
    "missing file": (lambda o: (o / "opportunities.csv").unlink(),
                     [r"no 'opportunities' table", r"Fix: add opportunities.csv"]),
    "missing column": (lambda o: edit(o, "reps", lambda d: d.rename(columns={"rep_id": "id"})),
                       [r"reps.csv: column 'rep_id' is missing \(found: 'id'", r"Map your column|map your column"]),
    "duplicate ids": (lambda o: edit(o, "accounts", lambda d: d.assign(account_id=d.account_id.where(d.index != 5, d.account_id[4]))),
                      [r"accounts.csv: column 'account_id' has duplicate values 'A00005'", r"lines 6, 7", r"Fix: make each"]),
    "unknown rep in opportunities": (lambda o: edit(o, *_set("opportunities", "rep_id", 3, "R999")),
                                     [r"opportunities.csv: column 'rep_id' names ids not in reps.csv: 'R999'", r"line 5", "Fix"]),
    "unknown account in opportunities": (lambda o: edit(o, *_set("opportunities", "account_id", 0, "A_NOPE")),
                                         [r"column 'account_id' names ids not in accounts.csv: 'A_NOPE'", r"line 2"]),
    "unknown current rep": (lambda o: edit(o, *_set("accounts", "current_rep_id", 2, "GHOST")),
                            [r"accounts.csv: column 'current_rep_id' names reps not in reps.csv: 'GHOST'", r"line 4"]),
    "unparseable date": (lambda o: edit(o, *_set("opportunities", "created_at", 1, "31/02/2024")),
                         [r"column 'created_at' has unparseable or implausible dates '31/02/2024'", r"line 3", r"\[dates\] format"]),
    "reversed dates": (lambda o: edit(o, *_set("opportunities", "closed_at", 0, "2000-01-01")),
                       [r"'closed_at' is before 'created_at' on line 2", r"2000-01-01 <"]),
    "unknown outcome": (lambda o: edit(o, *_set("opportunities", "outcome", 7, "maybe")),
                        [r"column 'outcome' has unknown labels 'maybe'", r"line 9", r"\[outcome\]"]),
    "negative potential": (lambda o: edit(o, *_set("accounts", "potential", 0, "-5")),
                           [r"column 'potential' must be >= 0; found '-5'", r"line 2"]),
    "negative capacity": (lambda o: edit(o, *_set("reps", "capacity", 1, "-3")),
                          [r"column 'capacity' must be a positive whole number; found '-3'", r"line 3"]),
    "fractional capacity": (lambda o: edit(o, *_set("reps", "capacity", 0, "2.5")),
                            [r"column 'capacity' must be a positive whole number; found '2.5'"]),
    "empty table": (lambda o: edit(o, "reps", lambda d: d.iloc[0:0]),
                    [r"reps.csv: the table has no rows"]),
    "not a csv (binary)": (lambda o: (o / "opportunities.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe" * 20),
                           [r"opportunities.csv: not a readable CSV", r"Fix: export"]),
    "not a csv (ragged)": (lambda o: (o / "reps.csv").write_text('rep_id,capacity\nR1,3\nR2,"4\n'),
                           [r"reps.csv: not a readable CSV", r"Fix: export"]),
    "non-numeric potential": (lambda o: edit(o, *_set("accounts", "potential", 3, "12k")),
                              [r"column 'potential' has non-numeric values '12k'", r"line 5"]),
    "bad locked flag": (lambda o: edit(o, *_set("accounts", "locked", 0, "perhaps")),
                        [r"column 'locked' has values 'perhaps' that are not true/false"]),
    "implausible date": (lambda o: edit(o, *_set("opportunities", "created_at", 0, "-1")),
                         [r"column 'created_at' has unparseable or implausible dates '-1'", r"line 2"]),
    # issue 11, item 2: non-finite numbers are bad input everywhere
    "infinite potential": (lambda o: edit(o, *_set("accounts", "potential", 2, "inf")),
                           [r"column 'potential' has non-finite values 'inf'", r"line 4", r"Fix: use finite numbers"]),
    "potential beyond float range": (lambda o: edit(o, *_set("accounts", "potential", 0, "1e400")),
                                     [r"column 'potential' has non-finite values '1e400'", r"line 2"]),
    "Infinity amount": (lambda o: edit(o, *_set("opportunities", "amount", 1, "Infinity")),
                        [r"column 'amount' has non-finite values 'Infinity'", r"line 3"]),
    "infinite capacity": (lambda o: edit(o, *_set("reps", "capacity", 0, "inf")),
                          [r"column 'capacity' has non-finite values 'inf'"]),
    # issue 11, item 7: a capacity beyond any book would overflow sums over reps
    "capacity 1e30": (lambda o: edit(o, *_set("reps", "capacity", 0, "1e30")),
                      [r"column 'capacity' must be a positive whole number; found '1e30'", r"1 to 1,000,000,000,000"]),
    "empty id": (lambda o: edit(o, *_set("reps", "rep_id", 0, "")),
                 [r"reps.csv: column 'rep_id' is empty on line 2"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_gives_one_clear_error(org_copy, case):
    breaker, patterns = BAD[case]
    breaker(org_copy)
    with pytest.raises(SchemaError, match=patterns[0]):
        load_dataset(org_copy)
    res = run("validate", "--data", org_copy)
    assert res.exit_code == 2
    assert "Traceback" not in res.output
    assert res.output.startswith("error: ") and res.output.count("\n") == 1, res.output
    for pat in patterns:
        assert re.search(pat, res.output), (pat, res.output)


def test_bad_mapping_section_is_named(org_copy):
    (org_copy / "repfit.toml").write_text("[colums.reps]\nid = 'rep_id'\n")
    res = run("validate", "--data", org_copy)
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "Traceback" not in res.output
    assert "repfit.toml: [colums] unknown section (holding 'reps')" in res.output
    assert "Fix: rename it [columns]." in res.output


def test_mapping_of_absent_column_is_named(org_copy):
    (org_copy / "repfit.toml").write_text("[columns.reps]\nagent = 'rep_id'\n")
    res = run("validate", "--data", org_copy)
    assert res.exit_code == 2 and "renames column(s) 'agent', which the file does not have" in res.output


def test_bad_flag_is_a_usage_error_without_traceback(small_org):
    res = run("synth", "--out", small_org / "x", "--reps", "0")
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "--reps" in res.output and "0 is not in the range x>=1" in res.output
    res = run("validate", "--data", small_org, "--nope")
    assert res.exit_code == 2 and "No such option '--nope'" in res.output


def test_missing_data_dir(tmp_path):
    res = run("validate", "--data", tmp_path / "nowhere")
    assert res.exit_code == 2 and "no such file or directory" in res.output


def test_parquet_tables_load_too(small_org, tmp_path):
    for t in S.TABLES:
        pd.read_csv(small_org / f"{t}.csv", dtype=str).to_parquet(tmp_path / f"{t}.parquet")
    a, b = load_dataset(small_org), load_dataset(tmp_path)
    assert len(a.closed) == len(b.closed) and a.summary()["win_rate"] == b.summary()["win_rate"]


# repfit.toml (issue 10, point 6): unknown sections/keys and wrong types give one line naming file, key and fix.
BAD_MAPPINGS = {
    "unknown table in [files]": ("[files]\nrepz = 'x.csv'\n",
                                 r"\[files\] unknown table 'repz'; known keys in \[files\]: reps, accounts, opportunities; "
                                 r"Fix: use one of those \(did you mean 'reps'\?\)"),
    "unknown table in [columns.*]": ("[columns.rep]\nid = 'rep_id'\n", r"\[columns\] unknown table 'rep'"),
    "unknown section": ("[outcomes]\nwon = ['W']\n",
                        r"\[outcomes\] unknown section \(holding 'won'\).*rename it \[outcome\]"),
    "unknown key": ("[outcome]\nwin = ['W']\n",
                    r"\[outcome\] unknown key 'win'; known keys in \[outcome\]: won, lost, open"),
    "top-level key": ("format = '%d.%m.%Y'\n",
                      r"key 'format' is at the top level, outside any section; .*Fix: put it under \[dates\]"),
    "section given as a value": ("files = 'team.csv'\n", r"'files' must be a section, got files = 'team.csv'"),
    "bare string for labels": ("[outcome]\nwon = 'Won'\n",
                               r"\[outcome\] key 'won' must be a list of strings, got 'Won'; Fix: won = \[\"Won\"\]"),
    "numbers for labels": ("[outcome]\nlost = [0]\n", r"\[outcome\] key 'lost' must be a list of strings, got \[0\]; "
                                                         r"Fix: lost = \[\"0\"\]"),
    "number for a column name": ("[columns.reps]\nagent = 5\n", r"\[columns.reps\] key 'agent' must be a string, got 5"),
    "list for a file name": ("[files]\nreps = ['a.csv']\n", r"\[files\] key 'reps' must be a string"),
    "value for a table": ("[columns]\nreps = 'team.csv'\n", r"\[columns\] key 'reps' must be a table .*"
                                                               r"Fix: write \[columns.reps\] on a line of its own"),
    "number for a value": ("[values.opportunities.product]\nCLD = 1\n",
                           r"\[values.opportunities.product\] key 'CLD' must be a string, got 1; Fix: CLD = \"1\""),
    "number for the date format": ("[dates]\nformat = 1\n", r"\[dates\] key 'format' must be a string"),
    "not TOML": ("[files\n", r"not valid TOML"),
}


@pytest.mark.parametrize("case", list(BAD_MAPPINGS))
def test_bad_mapping_gives_one_line_naming_file_key_and_fix(tmp_path, case):
    text, pattern = BAD_MAPPINGS[case]
    p = tmp_path / "repfit.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(str(p)) + ": " + pattern) as err:
        Mapping.from_toml(p)
    assert "\n" not in str(err.value) and "Fix" in str(err.value)


def test_bad_mapping_through_cli_is_one_line(org_copy):
    (org_copy / "repfit.toml").write_text("[outcome]\nwon = 'won'\n")
    res = run("validate", "--data", org_copy)
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert res.output == f"error: {org_copy / 'repfit.toml'}: [outcome] key 'won' must be a list of strings, got 'won'; " \
                         'Fix: won = ["won"].\n'


def test_missing_mapping_file_names_the_flag(small_org, tmp_path):
    res = run("validate", "--data", small_org, "--mapping", tmp_path / "nope.toml")
    assert res.exit_code == 2 and res.output.startswith("error: --mapping: ")
    assert "nope.toml: mapping file not found" in res.output


def test_maven_mapping_loads_unchanged():
    mp = Mapping.from_toml(MAVEN_MAPPING)
    assert mp.files == {"reps": "sales_teams.csv", "accounts": "accounts.csv", "opportunities": "sales_pipeline.csv"}
    assert mp.columns["opportunities"]["deal_stage"] == "outcome" and mp.columns["reps"] == {"sales_agent": "rep_id"}
    assert (mp.won, mp.lost, mp.open) == (("Won",), ("Lost",), ("Engaging", "Prospecting"))
    assert mp.values == {"opportunities": {"product": {"GTXPro": "GTX Pro"}}} and mp.date_format == "ISO8601"


def test_time_zones_in_dates_are_read_as_utc_and_said(org_copy):
    """Issue 11, item 9: CRM exports carry zones (Z, mixed offsets); they crashed the load."""
    opp = pd.read_csv(org_copy / "opportunities.csv", dtype=str, keep_default_na=False)
    first = opp.created_at.iloc[0]
    opp.loc[0, "created_at"] = f"{first}T23:30:00-02:00"  # 01:30 UTC the next day
    opp.loc[1, "created_at"] = f"{opp.created_at.iloc[1]}T10:00:00Z"
    opp.to_csv(org_copy / "opportunities.csv", index=False)
    ds = load_dataset(org_copy)
    got = ds.opportunities.set_index("opportunity_id").created_at
    assert got[opp.opportunity_id[0]] == pd.Timestamp(first) + pd.Timedelta(hours=25, minutes=30)
    assert got.dt.tz is None
    assert any("has dates with time zones; read as UTC" in w for w in ds.warnings)


def test_a_repeated_header_and_two_files_for_one_table_are_errors(org_copy):
    """Issue 11, item 8: pandas renamed a second 'region' to 'region.1'; reps.csv beside reps.parquet was a guess."""
    text = (org_copy / "reps.csv").read_text().splitlines()
    (org_copy / "reps.csv").write_text("\n".join([text[0] + ",region"] + [t + ",x" for t in text[1:]]) + "\n")
    with pytest.raises(SchemaError, match=r"reps.csv: the header names column\(s\) 'region' more than once"):
        load_dataset(org_copy)
    (org_copy / "reps.csv").write_text("\n".join(text) + "\n")
    pd.read_csv(org_copy / "reps.csv").to_parquet(org_copy / "reps.parquet")
    with pytest.raises(SchemaError, match=r"both reps.csv and reps.parquet hold the 'reps' table"):
        load_dataset(org_copy)


def test_a_bom_in_a_mapping_is_read_and_a_bad_date_format_is_one_line(org_copy):
    """Issue 11, item 12: a BOM (Windows editors) broke the TOML; '%Q' crashed inside pandas."""
    (org_copy / "repfit.toml").write_bytes("\ufeff[dates]\nformat = \"ISO8601\"\n".encode("utf-8"))
    assert len(load_dataset(org_copy).reps) == 12
    (org_copy / "repfit.toml").write_text('[dates]\nformat = "%Q"\n')
    with pytest.raises(SchemaError, match=r"\[dates\] format '%Q' is not a date format"):
        load_dataset(org_copy)
    res = run("validate", "--data", org_copy)
    assert res.exit_code == 2 and "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
