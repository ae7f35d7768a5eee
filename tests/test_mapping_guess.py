"""`repfit mapping guess` / `mapping show` (issue 12, item 4): a starter repfit.toml for a one-file CRM export.

The exports below are made by hand, shaped like the real ones, so the right mapping is known by construction.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from repfit import schema as S
from repfit.cli import app
from repfit.errors import SchemaError
from repfit.guess import guess, guess_mapping, header_key
from repfit.mapping import Mapping, preset_text

N_DEALS = 80
OWNERS = ("Ana Ruiz", "Ben Okafor", "Chloe Martin", "Dev Patel")
COMPANIES = tuple(f"{a} {b}" for a in ("Acme", "Globex", "Initech", "Umbrella") for b in ("Ltd", "Inc", "GmbH"))


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _deals(seed: int = 0) -> pd.DataFrame:
    """Deals with a known truth: owners, companies with fixed properties, stages, two dates 3-90 days apart."""
    rng = np.random.default_rng(seed)
    company = rng.choice(len(COMPANIES), N_DEALS)
    owner = rng.choice(len(OWNERS), N_DEALS)
    created = pd.Timestamp("2024-01-05") + pd.to_timedelta(rng.integers(0, 300, N_DEALS), "D") \
        + pd.to_timedelta(rng.integers(8 * 60, 18 * 60, N_DEALS), "min")
    stage = rng.choice(["won", "lost", "open"], N_DEALS, p=[0.4, 0.4, 0.2])
    return pd.DataFrame({
        "company": company, "owner": owner, "stage": stage, "created": created,
        "closed": created + pd.to_timedelta(rng.integers(3, 90, N_DEALS), "D"),
        "amount": rng.integers(500, 90_000, N_DEALS) + rng.integers(0, 100, N_DEALS) / 100,
        "product": rng.choice(["Core", "Plus", "Suite"], N_DEALS),
        "score": np.where(stage == "won", rng.uniform(60, 100, N_DEALS), rng.uniform(0, 55, N_DEALS)),
    })


def _hubspot(tmp_path: Path) -> Path:
    """A HubSpot deals export: Record ID, Deal owner, Deal Stage (trailing spaces), Create Date 2025-02-20 15:27."""
    d = _deals(1)
    stages = {"won": "Closed Won ", "lost": "Closed Lost ", "open": "Appointment Scheduled"}
    df = pd.DataFrame({
        "Record ID": 18_000_000_000 + np.arange(N_DEALS) * 7,
        "Deal Name": [f"{COMPANIES[c]} - deal {i}" for i, c in enumerate(d.company)],
        "Deal Stage": d.stage.map(stages),
        "Close Date": d.closed.dt.strftime("%Y-%m-%d %H:%M").where(d.stage != "open", ""),
        "Deal owner": [OWNERS[o] for o in d.owner],
        "Amount": d.amount,
        "Create Date": d.created.dt.strftime("%Y-%m-%d %H:%M"),
        "Pipeline": "Sales Pipeline",
        "Deal Type": d["product"].map({"Core": "newbusiness", "Plus": "existingbusiness", "Suite": "newbusiness"}),
        "Associated Company": [COMPANIES[c] for c in d.company],
        "Deal probability": d.stage.map({"won": 1.0, "lost": 0.0, "open": 0.2}),
        "Is Closed Won": (d.stage == "won").map({True: "true", False: "false"}),
        "Last Modified Date": (d.closed + pd.Timedelta(days=2)).dt.strftime("%Y-%m-%d %H:%M"),
        "Industry": [("Software", "Retail", "Health", "Energy")[c % 4] for c in d.company],
        "Number of Employees": [(c + 1) * 37 for c in d.company],
        "Company owner": [OWNERS[c % 4] for c in d.company],
        "HubSpot Team": [("East", "West")[o % 2] for o in d.owner],
        "Discount approved": np.where(d.stage == "won", "yes", ""),  # filled only on won deals: leaks by content
        "Engagement points": d.score.round(1),  # separates won from lost (AUC 1): leaks by content
    })
    path = tmp_path / "hubspot-deals.csv"
    df.to_csv(path, index=False)
    return path


def _salesforce(tmp_path: Path) -> Path:
    """A Salesforce opportunity report: US dates 9/12/2023, amounts 69,245.09, Stage, Opportunity Owner."""
    d = _deals(2)
    stages = {"won": "Closed Won", "lost": "Closed Lost", "open": "Negotiation/Review"}
    df = pd.DataFrame({
        "Opportunity Owner": [OWNERS[o] for o in d.owner],
        "Account Name": [COMPANIES[c] for c in d.company],
        "Opportunity Name": [f"{COMPANIES[c]} renewal {i}" for i, c in enumerate(d.company)],
        "Stage": d.stage.map(stages),
        "Fiscal Period": "Q" + d.closed.dt.quarter.astype(str) + "-" + d.closed.dt.year.astype(str),
        "Amount": [f"{a:,.2f}" for a in d.amount],
        "Probability (%)": d.stage.map({"won": 100, "lost": 0, "open": 60}),
        "Age": (d.closed - d.created).dt.days,
        "Close Date": [f"{t.month}/{t.day}/{t.year}" for t in d.closed],
        "Created Date": [f"{t.month}/{t.day}/{t.year}" for t in d.created],
        "Type": d["product"].map({"Core": "New Business", "Plus": "Existing Business", "Suite": "New Business"}),
        "Lead Source": np.where(np.arange(N_DEALS) % 3, "Web", "Partner"),
        "Opportunity ID": [f"0065g00000{i:05d}AAA" for i in range(N_DEALS)],
        "Billing State/Province": [("CA", "NY", "TX")[c % 3] for c in d.company],
        "Won": (d.stage == "won").astype(int),
        "Closed": (d.stage != "open").astype(int),
    })
    path = tmp_path / "opportunities.csv"
    df.to_csv(path, index=False)
    return path


def _parsed(text: str) -> tuple[Mapping, dict]:
    """The guess read back: as repfit reads it, and as plain TOML."""
    return Mapping.from_text(text, "guessed"), tomllib.loads(text)


def _mapped(mapping: Mapping) -> dict[str, str]:
    return {target: source for source, target in mapping.columns["opportunities"].items()}


def test_hubspot_export_maps_each_contract_column_to_its_header(tmp_path):
    mapping, raw = _parsed(guess_mapping(_hubspot(tmp_path)))
    assert _mapped(mapping) == {
        S.OPPORTUNITY_ID: "Record ID", S.REP_ID: "Deal owner", S.ACCOUNT_ID: "Associated Company",
        S.OUTCOME: "Deal Stage", S.CREATED_AT: "Create Date", S.CLOSED_AT: "Close Date", S.AMOUNT: "Amount",
    }
    assert (mapping.won, mapping.lost, mapping.open) == (("Closed Won",), ("Closed Lost",), ("*",))
    assert mapping.date_format == "ISO8601" and mapping.thousands is None


def test_hubspot_leaking_columns_are_excluded_by_name_and_by_content(tmp_path):
    mapping, _ = _parsed(guess_mapping(_hubspot(tmp_path)))
    for column in ("Deal probability", "Is Closed Won", "Last Modified Date",  # by name
                   "Discount approved", "Engagement points"):  # by content: only on won deals; AUC 1
        assert mapping.excluded(column), column
    for column in ("Deal Type", "Pipeline", "Industry", "HubSpot Team", "Amount", "Create Date"):
        assert not mapping.excluded(column), column


def test_hubspot_company_and_owner_properties_are_derived(tmp_path):
    mapping, _ = _parsed(guess_mapping(_hubspot(tmp_path)))
    assert mapping.derive["accounts"] == {"Industry": "industry", "Number of Employees": "number_of_employees",
                                          "Company owner": S.CURRENT_REP_ID}
    assert mapping.derive["reps"] == {"HubSpot Team": "hubspot_team"}


def test_hubspot_headers_are_recognised_as_the_preset(tmp_path):
    lines = guess_mapping(_hubspot(tmp_path)).splitlines()
    assert "# This looks like a HubSpot deals export: --mapping hubspot reads it as is." in lines
    assert ('# The preset keeps as attributes these columns, which leak the outcome (see [exclude]): '
            '"Discount approved",') in lines


def test_salesforce_report_us_dates_and_thousands(tmp_path):
    mapping, raw = _parsed(guess_mapping(_salesforce(tmp_path)))
    assert _mapped(mapping) == {
        S.OPPORTUNITY_ID: "Opportunity ID", S.REP_ID: "Opportunity Owner", S.ACCOUNT_ID: "Account Name",
        S.OUTCOME: "Stage", S.CREATED_AT: "Created Date", S.CLOSED_AT: "Close Date", S.AMOUNT: "Amount",
    }
    assert (mapping.won, mapping.lost, mapping.open) == (("Closed Won",), ("Closed Lost",), ("*",))
    assert mapping.date_format == "%m/%d/%Y" and mapping.thousands == ","
    for column in ("Probability (%)", "Age", "Fiscal Period", "Won", "Closed", "Opportunity Name"):
        assert mapping.excluded(column), column
    assert not mapping.excluded("Lead Source") and not mapping.excluded("Type")
    assert mapping.derive["accounts"] == {"Billing State/Province": "billing_state_province"}
    assert pd.to_datetime("9/12/2023", format=mapping.date_format) == pd.Timestamp("2023-09-12")


def test_salesforce_headers_are_recognised_as_the_preset(tmp_path):
    assert "--mapping salesforce reads it as is" in guess_mapping(_salesforce(tmp_path))


def test_maven_pipeline_file(maven_dir):
    text = guess_mapping(maven_dir / "sales_pipeline.csv")
    mapping, _ = _parsed(text)
    assert _mapped(mapping) == {
        S.OPPORTUNITY_ID: "opportunity_id", S.REP_ID: "sales_agent", S.ACCOUNT_ID: "account",
        S.OUTCOME: "deal_stage", S.CREATED_AT: "engage_date", S.CLOSED_AT: "close_date", S.AMOUNT: "close_value",
    }
    assert (mapping.won, mapping.lost, mapping.open) == (("Won",), ("Lost",), ("*",))
    assert mapping.date_format == "ISO8601" and mapping.exclude == ()
    assert not mapping.excluded("product") and "# UNSURE:" not in text
    assert "looks like a" not in text  # neither preset's headers


def test_day_first_dates_with_times_and_a_parquet_export(tmp_path):
    d = _deals(3)
    df = pd.DataFrame({
        "Deal ID": np.arange(N_DEALS), "Sales Rep": [OWNERS[o] for o in d.owner],
        "Customer": [COMPANIES[c] for c in d.company], "Status": d.stage.str.title(),
        "Opened": d.created.dt.strftime("%d.%m.%Y %H:%M"), "Closed On": d.closed.dt.strftime("%d.%m.%Y %H:%M"),
        "Value": d.amount,
    })
    csv, parquet = tmp_path / "deals.csv", tmp_path / "deals.parquet"
    df.to_csv(csv, index=False)
    df.assign(Opened=d.created, **{"Closed On": d.closed}).to_parquet(parquet)
    for path, fmt in ((csv, "%d.%m.%Y %H:%M"), (parquet, "ISO8601")):
        mapping, _ = _parsed(guess_mapping(path))
        assert _mapped(mapping) == {S.OPPORTUNITY_ID: "Deal ID", S.REP_ID: "Sales Rep", S.ACCOUNT_ID: "Customer",
                                    S.OUTCOME: "Status", S.CREATED_AT: "Opened", S.CLOSED_AT: "Closed On",
                                    S.AMOUNT: "Value"}, path
        assert mapping.date_format == fmt and (mapping.won, mapping.lost) == (("Won",), ("Lost",))


def test_swapped_date_headers_follow_the_content(tmp_path):
    """Dates whose headers say nothing: the earlier of the two on most rows is the create date."""
    d = _deals(4)
    df = pd.DataFrame({"id": np.arange(N_DEALS), "owner": [OWNERS[o] for o in d.owner],
                       "company": [COMPANIES[c] for c in d.company], "stage": d.stage,
                       "d1": d.closed.dt.strftime("%Y-%m-%d"), "d2": d.created.dt.strftime("%Y-%m-%d")})
    df.to_csv(tmp_path / "x.csv", index=False)
    text = guess_mapping(tmp_path / "x.csv")
    mapping, _ = _parsed(text)
    assert _mapped(mapping)[S.CREATED_AT] == "d2" and _mapped(mapping)[S.CLOSED_AT] == "d1"
    assert '"d2" = "created_at"  # UNSURE:' in text  # chosen by content alone


def test_a_required_column_nothing_matches_is_commented_out_and_warned(tmp_path):
    d = _deals(5)
    df = pd.DataFrame({"Deal ID": np.arange(N_DEALS), "Company": [COMPANIES[c] for c in d.company],
                       "Stage": d.stage, "Created": d.created.dt.strftime("%Y-%m-%d"),
                       "Closed At": d.closed.dt.strftime("%Y-%m-%d"), "Region": [OWNERS[o][:3] for o in d.owner]})
    path = tmp_path / "no-owner.csv"
    df.to_csv(path, index=False)
    res = guess(path)
    mapping, _ = _parsed(res.text)
    assert S.REP_ID not in _mapped(mapping)
    assert any(line.startswith('# "Region" = "rep_id"  # UNSURE: nothing matched rep_id.')
               for line in res.text.splitlines())
    assert res.warnings == ("no-owner.csv: no column looks like rep_id (the deal owner); its line in "
                            "[columns.opportunities] is commented out. Fix: name the column there and uncomment it.",)


def test_a_close_runner_up_is_marked_unsure(tmp_path):
    d = _deals(6)
    df = pd.DataFrame({"Deal ID": np.arange(N_DEALS), "Owner": [OWNERS[o] for o in d.owner],
                       "Account": [COMPANIES[c] for c in d.company], "Stage": d.stage,
                       "Create Date": d.created.dt.strftime("%Y-%m-%d"), "Close Date": d.closed.dt.strftime("%Y-%m-%d"),
                       "Amount": d.amount, "Amount in company currency": d.amount * 1.1})
    df.to_csv(tmp_path / "x.csv", index=False)
    line = next(x for x in guess_mapping(tmp_path / "x.csv").splitlines() if x.endswith("") and '= "amount"' in x)
    assert line.startswith('"Amount" = "amount"  # UNSURE: runner-up \'Amount in company currency\'')


def test_a_closed_column_holding_dates_is_the_close_date_and_us_dates_may_carry_times(tmp_path):
    """A header "Closed" is a flag that leaks the outcome, unless it holds dates; 3/13/2024 beside
    3/14/2024 10:15 AM reads with format "mixed" (each value on its own, month first)."""
    d = _deals(7)
    df = pd.DataFrame({"ID": np.arange(N_DEALS), "Owner": [OWNERS[o] for o in d.owner],
                       "Account": [COMPANIES[c] for c in d.company], "Result": d.stage.str.upper(),
                       "Created": [f"{t.month}/{t.day}/{t.year}" + (" 10:15 AM" if i % 2 else "")
                                   for i, t in enumerate(d.created)],
                       "Closed": [f"{t.month}/{t.day}/{t.year}" for t in d.closed]})
    df.to_csv(tmp_path / "x.csv", index=False)
    text = guess_mapping(tmp_path / "x.csv")
    mapping, _ = _parsed(text)
    assert _mapped(mapping)[S.CLOSED_AT] == "Closed" and not mapping.excluded("Closed")
    assert (mapping.won, mapping.lost) == (("WON",), ("LOST",))
    assert mapping.date_format == "mixed" and 'format = "mixed"  # UNSURE: ' in text
    parsed = pd.to_datetime(df["Created"], format=mapping.date_format)
    assert (parsed.dt.normalize() == d.created.dt.normalize()).all()


def test_odd_headers_still_make_valid_toml_and_exclude_only_themselves(tmp_path):
    d = _deals(8)
    df = pd.DataFrame({'Deal "ID"': np.arange(N_DEALS), "Owner\x7f": [OWNERS[o] for o in d.owner],
                       "Company\\Name": [COMPANIES[c] for c in d.company], "Stage": d.stage,
                       "Create Date": d.created.dt.strftime("%Y-%m-%d"), "Close Date": d.closed.dt.strftime("%Y-%m-%d"),
                       "Win probability [*]": (d.stage == "won") * 0.9, "Note\nline": "x"})
    df.to_csv(tmp_path / "x.csv", index=False)
    mapping, _ = _parsed(guess_mapping(tmp_path / "x.csv"))
    assert _mapped(mapping)[S.OPPORTUNITY_ID] == 'Deal "ID"' and _mapped(mapping)[S.ACCOUNT_ID] == "Company\\Name"
    assert _mapped(mapping)[S.REP_ID] == "Owner\x7f"
    assert mapping.excluded("Win probability [*]") and not mapping.excluded("Win probability x")


def test_labels_neither_won_nor_lost_are_warned(tmp_path):
    d = _deals(9)
    df = pd.DataFrame({"Deal ID": np.arange(N_DEALS), "Owner": [OWNERS[o] for o in d.owner],
                       "Account": [COMPANIES[c] for c in d.company],
                       "Stage": d.stage.map({"won": "Won", "lost": "Dead", "open": "Open"}),
                       "Create Date": d.created.dt.strftime("%Y-%m-%d"), "Close Date": d.closed.dt.strftime("%Y-%m-%d")})
    df.to_csv(tmp_path / "x.csv", index=False)
    res = guess(tmp_path / "x.csv")
    assert Mapping.from_text(res.text, "x").lost == ("Dead",)
    assert any(x.startswith('lost = ["Dead"]  # UNSURE: "Dead" taken as lost.') for x in res.text.splitlines())
    df.assign(Stage=d.stage.map({"won": "Won", "lost": "Open", "open": "Open"})).to_csv(tmp_path / "x.csv", index=False)
    res = guess(tmp_path / "x.csv")
    won = int((d.stage == "won").sum())
    assert res.warnings == (f'x.csv: no label of column \'Stage\' looks lost ("Open" ({N_DEALS - won}), "Won" ({won})). '
                            "Fix: list the lost stages under [outcome] lost = [...].",)


def test_header_keys_split_words_however_they_are_written():
    assert {header_key(h) for h in ("Deal owner", "deal_owner", "dealOwner", " DEAL-OWNER ")} == {"deal owner"}


def test_unreadable_exports_raise_one_schema_error(tmp_path):
    with pytest.raises(SchemaError, match=r"missing\.csv: file not found\. Fix: pass the CSV or Parquet file"):
        guess(tmp_path / "missing.csv")
    (tmp_path / "one.csv").write_text("just one column\nvalue\n")
    with pytest.raises(SchemaError, match=r"one\.csv: 1 rows and 1 columns; a deals export has a header row"):
        guess(tmp_path / "one.csv")


# --- the commands -----------------------------------------------------------------------------
def test_mapping_show_prints_the_preset():
    res = run("mapping", "show", "hubspot")
    assert res.exit_code == 0, res.output
    assert res.output == preset_text("hubspot")


def test_mapping_show_unknown_preset_is_one_line():
    res = run("mapping", "show", "hubsopt")
    assert res.exit_code == 2
    assert res.output == ("error: unknown preset 'hubsopt'; presets: hubspot, salesforce. "
                          "Fix: use one of those (did you mean 'hubspot'?).\n")


def test_mapping_guess_prints_the_toml_or_writes_it(tmp_path):
    export = _salesforce(tmp_path)
    res = run("mapping", "guess", export)
    assert res.exit_code == 0, res.output
    assert res.stdout == guess_mapping(export) and res.stderr == ""
    out = tmp_path / "conf" / "repfit.toml"
    res = run("mapping", "guess", export, "--out", out)
    assert res.exit_code == 0, res.output
    assert out.read_text() == guess_mapping(export)
    assert res.stdout == f"wrote {out}: {len(_mapped(Mapping.from_toml(out)))} columns mapped, 0 lines marked UNSURE\n"


def test_mapping_guess_warns_on_stderr_and_refuses_to_overwrite_its_input(tmp_path):
    path = tmp_path / "deals.csv"
    pd.DataFrame({"a": ["x", "y"], "b": ["1", "2"]}).to_csv(path, index=False)
    res = run("mapping", "guess", path)
    assert res.exit_code == 0
    assert "warning: deals.csv: no column looks like rep_id (the deal owner)" in res.stderr
    assert res.stdout.startswith("# repfit.toml guessed by `repfit mapping guess` from deals.csv (2 rows, 2 columns).")
    res = run("mapping", "guess", path, "--out", path)
    assert res.exit_code == 2 and "is an input table of this run" in res.output
    assert path.read_text().startswith("a,b")


def test_a_header_that_names_a_date_whose_values_do_not_parse_is_named(tmp_path):
    """'Create Date' holding Excel serial numbers: the comment said "no header looks like the create date" (review
    of issue 12); it names the header and says its values do not read as dates."""
    path = tmp_path / "serial.csv"
    path.write_text("Record ID,Deal owner,Associated Company,Deal Stage,Create Date,Close Date\n" + "".join(
        f"D{i},Rep {i % 3},Co {i % 7},Closed {'Won' if i % 2 else 'Lost'},{45292 + i},2024-03-{1 + i % 20:02d}\n"
        for i in range(40)))
    text = guess(path).text
    line = next(x for x in text.splitlines() if '"created_at"' in x)
    assert line.startswith('# "Create Date" = "created_at"  # UNSURE: nothing matched created_at.'), line
    assert "the header names the create date, but its values do not read as dates (e.g. \"45292\")" in line, line
