"""A synthetic sales org whose ground truth is known: the test bed for every later step.

The planted truth (written to ``truth/`` beside the three tables, never read by training):

- each rep has hidden strengths on the logit scale: an overall skill, and an effect per
  industry, size band, region and product. One industry is a clear strength and one a clear
  weakness; the industry a rep *states* as its specialty matches the true best only sometimes.
- reps win a little more in their home region (local presence).
- each account has a difficulty and a product mix (the share of its deals per product).
- history is territory-biased: accounts are owned by reps of their region, and most
  opportunities are worked by the owner or another rep of the same region.
- each closed opportunity is won with the true probability of its (rep, account, product).

The true win probability of a (rep, account) pair is the product-mix-weighted mean of
``sigmoid(base + product + skill + industry + size + region + home_bonus + difficulty)``;
``true_win_probability`` computes it from the truth files alone.

``write_export`` writes the same org as one CRM export file (HubSpot deals, Salesforce opportunity report)
with a known number of planted dirty rows of each kind, for the single-file loading path and its presets.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from repfit import schema as S
from repfit.errors import RepfitError
from repfit.io import write_table, write_text

INDUSTRIES = ("healthcare", "finance", "retail", "manufacturing", "technology", "energy", "education", "logistics")
REGIONS = ("north", "south", "east", "west", "central")
PRODUCTS = ("core", "analytics", "security", "cloud")
SIZE_BANDS = ("small", "mid", "large")
SIZE_EDGES = (250.0, 2000.0)  # employees: < 250 small, < 2000 mid, else large
DIMENSIONS = {"industry": INDUSTRIES, "size_band": SIZE_BANDS, "region": REGIONS, "product": PRODUCTS}


@dataclass(frozen=True)
class SynthParams:
    """Knobs of the generator; the defaults give a learnable but noisy org."""

    base_logit: float = -0.55
    skill_sd: float = 0.35
    industry_sd: float = 0.25
    industry_strong: float = 1.3
    industry_weak: float = -1.1
    size_sd: float = 0.45
    region_sd: float = 0.2
    product_sd: float = 0.45
    home_region_bonus: float = 0.35
    difficulty_sd: float = 0.5
    stated_matches_truth: float = 0.35
    owner_share: float = 0.65  # opportunities worked by the account's owner
    same_region_share: float = 0.25  # ... by another rep of the account's region; the rest: anyone
    opportunities_per_account: float = 4.3
    open_share: float = 0.05
    locked_share: float = 0.03
    start: str = "2023-01-01"
    years: float = 3.0


def size_band(employees: pd.Series | np.ndarray) -> np.ndarray:
    return np.asarray(SIZE_BANDS)[np.searchsorted(np.asarray(SIZE_EDGES), np.asarray(employees, float), side="right")]


def _sigmoid(x: np.ndarray) -> np.ndarray:  # the generator's own (not repfit.probability's): orgs stay byte-identical
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class _Reps:
    table: pd.DataFrame
    ids: np.ndarray
    region: np.ndarray
    skill: np.ndarray
    eff: dict[str, np.ndarray]


@dataclass(frozen=True)
class _Accounts:
    table: pd.DataFrame
    ids: np.ndarray
    industry: np.ndarray
    region: np.ndarray
    band: np.ndarray
    potential: np.ndarray
    difficulty: np.ndarray
    mix: np.ndarray
    owner: np.ndarray


def generate(n_reps: int, n_accounts: int, seed: int = 0, params: SynthParams | None = None) -> dict[str, pd.DataFrame]:
    """Generate an org. Returns the tables ``reps``, ``accounts``, ``opportunities`` and the truth
    tables ``truth_reps`` (long: rep_id, dimension, value, effect), ``truth_accounts``
    (account_id, difficulty, mix_<product>...) and ``truth_opportunities`` (opportunity_id, p_true).
    Deterministic for a seed (the steps draw from one generator in a fixed order)."""
    if n_reps < 1 or n_accounts < 1:
        raise RepfitError(f"synth: need at least 1 rep and 1 account (got {n_reps} reps, {n_accounts} accounts).")
    p = params or SynthParams()
    rng = np.random.default_rng(seed)
    reps = _make_reps(rng, p, n_reps, n_accounts)
    accounts = _make_accounts(rng, p, n_accounts, reps)
    opportunities, p_true = _make_opportunities(rng, p, reps, accounts)
    truth_reps = pd.concat(
        [pd.DataFrame({S.REP_ID: reps.ids, "dimension": "overall", "value": "", "effect": reps.skill})]
        + [pd.DataFrame({S.REP_ID: np.repeat(reps.ids, len(values)), "dimension": dim,
                         "value": np.tile(values, n_reps), "effect": reps.eff[dim].ravel()})
           for dim, values in DIMENSIONS.items()],
        ignore_index=True,
    )
    truth_accounts = pd.DataFrame({S.ACCOUNT_ID: accounts.ids, "difficulty": accounts.difficulty}).assign(
        **{f"mix_{prod}": accounts.mix[:, k] for k, prod in enumerate(PRODUCTS)}
    )
    truth_opps = pd.DataFrame({S.OPPORTUNITY_ID: opportunities[S.OPPORTUNITY_ID].to_numpy(), "p_true": p_true})
    return {
        "reps": reps.table, "accounts": accounts.table, "opportunities": opportunities,
        "truth_reps": truth_reps, "truth_accounts": truth_accounts, "truth_opportunities": truth_opps,
        "params": p,
    }


def _make_reps(rng: np.random.Generator, p: SynthParams, R: int, A: int) -> _Reps:
    """Reps and their hidden strengths."""
    rep_ids = np.array([f"R{i:0{max(3, len(str(R)))}d}" for i in range(1, R + 1)])
    rep_region = np.array(REGIONS)[np.arange(R) % len(REGIONS)]
    rng.shuffle(rep_region)
    skill = rng.normal(0, p.skill_sd, R)
    eff = {
        "industry": rng.normal(0, p.industry_sd, (R, len(INDUSTRIES))),
        "size_band": rng.normal(0, p.size_sd, (R, len(SIZE_BANDS))),
        "region": rng.normal(0, p.region_sd, (R, len(REGIONS))),
        "product": rng.normal(0, p.product_sd, (R, len(PRODUCTS))),
    }
    strong = rng.integers(0, len(INDUSTRIES), R)
    weak = (strong + rng.integers(1, len(INDUSTRIES), R)) % len(INDUSTRIES)
    eff["industry"][np.arange(R), strong] += p.industry_strong
    eff["industry"][np.arange(R), weak] += p.industry_weak
    stated = np.where(rng.random(R) < p.stated_matches_truth, strong, rng.integers(0, len(INDUSTRIES), R))
    table = pd.DataFrame({
        S.REP_ID: rep_ids,
        "name": [f"Rep {i}" for i in range(1, R + 1)],
        "region": rep_region,
        "stated_specialty": np.array(INDUSTRIES)[stated],
        "tenure_years": rng.integers(0, 15, R),
        S.CAPACITY: math.ceil(1.15 * A / R),
    })
    return _Reps(table, rep_ids, rep_region, skill, eff)


def _make_accounts(rng: np.random.Generator, p: SynthParams, A: int, reps: _Reps) -> _Accounts:
    """Accounts, owned by territory: each goes to a rep of its region, balanced by count."""
    R = len(reps.ids)
    acc_ids = np.array([f"A{i:0{max(5, len(str(A)))}d}" for i in range(1, A + 1)])
    industry = rng.integers(0, len(INDUSTRIES), A)
    region = rng.integers(0, len(REGIONS), A)
    employees = np.round(np.exp(rng.normal(6.2, 1.4, A))).astype(int) + 5
    band = np.searchsorted(np.asarray(SIZE_EDGES), employees, side="right")
    potential = np.round(2000 * np.sqrt(employees) * np.exp(rng.normal(0, 0.4, A)), -2)
    difficulty = rng.normal(0, p.difficulty_sd, A)
    mix = rng.dirichlet(np.full(len(PRODUCTS), 0.8), A)
    owner = np.empty(A, dtype=int)
    for r_i, reg in enumerate(REGIONS):
        in_region = np.flatnonzero(region == r_i)
        reps_here = np.flatnonzero(reps.region == reg)
        if len(reps_here) == 0:
            reps_here = np.arange(R)
        owner[in_region] = rng.permutation(np.resize(reps_here, len(in_region)))
    locked = rng.random(A) < p.locked_share
    table = pd.DataFrame({
        S.ACCOUNT_ID: acc_ids,
        "name": [f"Company {i}" for i in range(1, A + 1)],
        "industry": np.array(INDUSTRIES)[industry],
        "region": np.array(REGIONS)[region],
        "employees": employees,
        S.POTENTIAL: potential,
        S.CURRENT_REP_ID: reps.ids[owner],
        S.LOCKED: locked,
    })
    return _Accounts(table, acc_ids, industry, region, band, potential, difficulty, mix, owner)


def _deal_reps(rng: np.random.Generator, p: SynthParams, reps: _Reps, acc: _Accounts, o_acc: np.ndarray) -> np.ndarray:
    """Who worked each deal: territory-biased (the owner, another rep of the region, or anyone)."""
    u = rng.random(len(o_acc))
    o_rep = acc.owner[o_acc].copy()
    same = (u >= p.owner_share) & (u < p.owner_share + p.same_region_share)
    anyone = u >= p.owner_share + p.same_region_share
    if same.any():
        # another rep of the account's region, drawn uniformly among them
        for r_i, reg in enumerate(REGIONS):
            members = np.flatnonzero(reps.region == reg)
            rows = np.flatnonzero(same & (acc.region[o_acc] == r_i))
            if len(rows) and len(members):
                o_rep[rows] = members[rng.integers(0, len(members), len(rows))]
    o_rep[anyone] = rng.integers(0, len(reps.ids), int(anyone.sum()))
    return o_rep


def _make_opportunities(rng: np.random.Generator, p: SynthParams, reps: _Reps,
                        acc: _Accounts) -> tuple[pd.DataFrame, np.ndarray]:
    """The history of deals with their outcomes, drawn from the planted probabilities (also returned)."""
    n_opp = int(round(p.opportunities_per_account * len(acc.ids)))
    o_acc = rng.integers(0, len(acc.ids), n_opp)
    o_rep = _deal_reps(rng, p, reps, acc, o_acc)
    cum = np.cumsum(acc.mix, axis=1)
    o_prod = (rng.random(n_opp)[:, None] > cum[o_acc]).sum(axis=1).clip(max=len(PRODUCTS) - 1)
    logit = _pair_logit(p, reps.skill, reps.eff, reps.region, o_rep, o_acc, acc.industry, acc.band, acc.region,
                        o_prod, acc.difficulty)
    p_true = _sigmoid(logit)
    won = rng.random(n_opp) < p_true
    start = pd.Timestamp(p.start)
    span_days = p.years * 365.0
    created = start + pd.to_timedelta(np.sort(rng.random(n_opp)) * span_days, unit="D").round("D")
    duration = pd.to_timedelta(np.round(7 + rng.gamma(2.0, 20.0, n_opp)), unit="D")
    closed_at = created + duration
    is_open = closed_at > start + pd.Timedelta(days=span_days)
    is_open |= rng.random(n_opp) < p.open_share * 0.2
    outcome = np.where(is_open, S.OUTCOME_OPEN, np.where(won, S.OUTCOME_WON, S.OUTCOME_LOST))
    amount = np.where(outcome == S.OUTCOME_WON, np.round(acc.potential[o_acc] * rng.uniform(0.05, 0.2, n_opp), -1), np.nan)
    table = pd.DataFrame({
        S.OPPORTUNITY_ID: np.array([f"O{i:0{max(6, len(str(n_opp)))}d}" for i in range(1, n_opp + 1)]),
        S.REP_ID: reps.ids[o_rep],
        S.ACCOUNT_ID: acc.ids[o_acc],
        "product": np.array(PRODUCTS)[o_prod],
        S.CREATED_AT: created.strftime("%Y-%m-%d"),
        S.CLOSED_AT: np.where(is_open, "", pd.DatetimeIndex(closed_at).strftime("%Y-%m-%d")),
        S.OUTCOME: outcome,
        S.AMOUNT: amount,
    })
    return table, p_true


def _pair_logit(p, skill, eff, rep_region, r, a, industry, band, region, prod, difficulty) -> np.ndarray:
    home = (np.asarray(REGIONS)[region[a]] == rep_region[r]).astype(float)
    return (
        p.base_logit + skill[r] + eff["industry"][r, industry[a]] + eff["size_band"][r, band[a]]
        + eff["region"][r, region[a]] + eff["product"][r, prod] + p.home_region_bonus * home + difficulty[a]
    )


def write_org(out: str | Path, n_reps: int, n_accounts: int, seed: int = 0) -> dict[str, int]:
    """Generate an org and write it to ``out`` (three CSV tables) and ``out/truth/`` (the truth)."""
    out = Path(out)
    org = generate(n_reps, n_accounts, seed)
    for table in S.TABLES:
        write_table(org[table], out / f"{table}.csv")
    truth = out / "truth"
    write_table(org["truth_reps"], truth / "rep_strengths.csv")
    write_table(org["truth_accounts"], truth / "accounts.csv")
    write_table(org["truth_opportunities"], truth / "opportunities.csv")
    write_text(json.dumps(_truth_meta(org, seed, n_reps, n_accounts), indent=2), truth / "params.json")
    return {t: len(org[t]) for t in S.TABLES}


def _truth_meta(org: dict, seed: int, n_reps: int, n_accounts: int) -> dict:
    """What ``truth/params.json`` holds: the knobs and the formula ``true_win_probability`` evaluates."""
    return {
        "seed": seed, "n_reps": n_reps, "n_accounts": n_accounts, "params": asdict(org["params"]),
        "size_edges": list(SIZE_EDGES), "size_bands": list(SIZE_BANDS), "products": list(PRODUCTS),
        "formula": "p(rep, account) = sum_k mix_k * sigmoid(base_logit + overall + industry + size_band "
        "+ region + product_k + home_region_bonus * [rep.region == account.region] + difficulty)",
    }


def true_win_probability(data_dir: str | Path, rep_ids=None, account_ids=None, product: str | None = None) -> pd.DataFrame:
    """True win probability of every (rep, account) pair, from ``data_dir/truth`` and the tables.

    For a one-file CRM export (``write_export``) the tables are the org it loads into, ``truth/org/``,
    and the ids are names: rep_id the owner name, account_id the company name.

    Returns a DataFrame with columns ``rep_id``, ``account_id``, ``p_true`` (one row per pair of the
    given ids; all reps x all accounts by default). With ``product``, the probability for that
    product only, otherwise the account's product-mix-weighted mean.
    """
    data_dir = Path(data_dir)
    meta = json.loads((data_dir / "truth" / "params.json").read_text())
    prm = meta["params"]
    eff = pd.read_csv(data_dir / "truth" / "rep_strengths.csv", keep_default_na=False)
    tacc = pd.read_csv(data_dir / "truth" / "accounts.csv")
    tables = _org_tables_dir(data_dir)
    reps = pd.read_csv(tables / "reps.csv", dtype={S.REP_ID: str})
    accs = pd.read_csv(tables / "accounts.csv", dtype={S.ACCOUNT_ID: str}).merge(tacc, on=S.ACCOUNT_ID)
    if rep_ids is not None:
        reps = reps.set_index(S.REP_ID).loc[list(rep_ids)].reset_index()
    if account_ids is not None:
        accs = accs.set_index(S.ACCOUNT_ID).loc[list(account_ids)].reset_index()
    wide = {dim: eff[eff.dimension == dim].pivot(index=S.REP_ID, columns="value", values="effect").loc[reps[S.REP_ID]]
            for dim in ("industry", "size_band", "region", "product")}
    overall = eff[eff.dimension == "overall"].set_index(S.REP_ID)["effect"].loc[reps[S.REP_ID]].to_numpy()
    bands = np.asarray(meta["size_bands"])[np.searchsorted(np.asarray(meta["size_edges"]), accs["employees"].to_numpy(float), side="right")]
    base = (
        prm["base_logit"] + overall[:, None]
        + wide["industry"][accs["industry"]].to_numpy()
        + wide["size_band"][bands].to_numpy()
        + wide["region"][accs["region"]].to_numpy()
        + prm["home_region_bonus"] * (reps["region"].to_numpy()[:, None] == accs["region"].to_numpy()[None, :])
        + accs["difficulty"].to_numpy()[None, :]
    )
    prods = [product] if product else meta["products"]
    p = np.zeros_like(base)
    for prod in prods:
        w = 1.0 if product else accs[f"mix_{prod}"].to_numpy()[None, :]
        p += w * _sigmoid(base + wide["product"][prod].to_numpy()[:, None])
    return pd.DataFrame({
        S.REP_ID: np.repeat(reps[S.REP_ID].to_numpy(), len(accs)),
        S.ACCOUNT_ID: np.tile(accs[S.ACCOUNT_ID].to_numpy(), len(reps)),
        "p_true": p.ravel(),
    })


def true_win_matrix(data_dir: str | Path, reps, accounts) -> np.ndarray:
    """True P(win) as an (accounts, reps) matrix in the order of the given ``accounts`` and ``reps`` id lists."""
    long = true_win_probability(data_dir)
    return (long.pivot(index=S.ACCOUNT_ID, columns=S.REP_ID, values="p_true").loc[list(accounts), list(reps)].to_numpy())


def _org_tables_dir(data_dir: Path) -> Path:
    """Where the reps and accounts tables are: ``data_dir``, or ``truth/org/`` for a one-file CRM export."""
    org = data_dir / "truth" / "org"
    return org if not (data_dir / "reps.csv").is_file() and (org / "reps.csv").is_file() else data_dir


# ---- The same org as one CRM export file (issue 12): a single deals CSV shaped like HubSpot's or
# Salesforce's standard export, with planted dirty rows, loadable through the shipped presets alone.

FORMATS = ("contract", "hubspot", "salesforce")  # contract: the three tables (write_org)
EXPORT_FILES = {"hubspot": "deals.csv", "salesforce": "opportunity_report.csv"}
DIRTY_KINDS = ("close_before_create", "bad_date", "missing_rep", "missing_account", "duplicate_id")
DIRTY_COUNTS = (3, 8)  # each kind is planted a distinct number of times in [3, 8], drawn from the seed
# Open stages with their probabilities, as the CRMs ship them; HubSpot labels often carry a trailing space.
OPEN_STAGES = {
    "hubspot": (("Appointment Scheduled", 0.2), ("Qualified To Buy ", 0.4), ("Presentation Scheduled", 0.6),
                ("Decision Maker Bought-In ", 0.8), ("Contract Sent", 0.9)),
    "salesforce": (("Prospecting", 0.1), ("Qualification", 0.1), ("Needs Analysis", 0.2),
                   ("Value Proposition", 0.5), ("Negotiation/Review", 0.9)),
}
DEAL_TYPES = {"hubspot": ("newbusiness", "existingbusiness"), "salesforce": ("New Business", "Existing Business")}
LEAD_SOURCES = ("Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other")
# Dates no parser reads under the preset's [dates] format.
BAD_DATES = {"hubspot": ("not a date", "31/02/2024", "2024-13-45 10:00", "2024-02-30 09:15"),
             "salesforce": ("not a date", "31/02/2024", "13/45/2024", "2/30/2024")}
# The export's deal-level columns that are neither mapped, derived, excluded nor leaking: the loader keeps
# them as deal attributes under snake_case names (truth/org/opportunities.csv carries them so).
DEAL_COLUMNS = {"hubspot": ("Deal Type", "Pipeline", "Product"), "salesforce": ("Type", "Lead Source", "Product")}


def write_export(out: str | Path, n_reps: int, n_accounts: int, seed: int = 0, fmt: str = "hubspot") -> dict:
    """Write the org of ``generate(n_reps, n_accounts, seed)`` as one CRM export file with planted dirty rows.

    Parameters
    ----------
    fmt : {"hubspot", "salesforce"}
        ``OUT/deals.csv`` shaped like a HubSpot deals export, or ``OUT/opportunity_report.csv`` like a
        Salesforce opportunity report; the shipped preset of that name reads it unedited.

    Returns
    -------
    dict
        ``file`` (the path), ``rows`` (in the file), ``deals``, ``reps``, ``accounts`` (of the org it loads
        into, ``OUT/truth/org/``) and ``dirty`` ({reason code: planted rows}, also ``OUT/truth/dirty_rows.json``).

    The clean rows are exactly the org's deals, in its order; the dirty rows are extra rows at positions
    drawn from the seed. Same seed, same bytes. The truth files are those of ``write_org`` keyed by names
    (rep_id = owner name, account_id = company name), so ``true_win_probability(OUT)`` works.
    """
    if fmt not in EXPORT_FILES:
        raise RepfitError(f"synth: unknown export format {fmt!r}; formats: {', '.join(FORMATS)}.", option="format")
    out = Path(out)
    org = generate(n_reps, n_accounts, seed)
    rng = np.random.default_rng([seed, 12])  # its own stream: the org's draws stay those of the contract format
    deals = _export_deals(org, rng, with_time=fmt == "hubspot")
    deals, planted = _plant_dirty(deals, rng, BAD_DATES[fmt])
    rows = _hubspot_rows(deals) if fmt == "hubspot" else _salesforce_rows(deals)
    clean = (deals["reason"] == "").to_numpy()
    path = write_table(rows, out / EXPORT_FILES[fmt])
    tables = _truth_org(deals[clean], rows[clean], org, fmt)
    meta = _truth_meta(org, seed, n_reps, n_accounts) | {
        "format": fmt, "file": EXPORT_FILES[fmt], "ids": "rep_id = owner name, account_id = company name",
    }
    _write_export_truth(out / "truth", org, tables, planted, meta)
    return {"file": path, "rows": len(rows), "deals": int(clean.sum()), "reps": len(tables["reps"]),
            "accounts": len(tables["accounts"]), "dirty": planted}


def _export_deals(org: dict, rng: np.random.Generator, with_time: bool) -> pd.DataFrame:
    """The org's deals as one typed frame in the org's order, with what an export adds: owner and company
    names, a time of day, deal type, lead source, open stage, and the fields known only at or after closing."""
    o, p = org["opportunities"], org["params"]
    reps, accs = org["reps"].set_index(S.REP_ID), org["accounts"].set_index(S.ACCOUNT_ID)
    n = len(o)
    acc = accs.loc[o[S.ACCOUNT_ID].to_numpy()]
    minutes = rng.integers(8 * 60, 19 * 60, (2, n)) * int(with_time)  # a time of day in office hours
    created = pd.to_datetime(o[S.CREATED_AT].to_numpy(), format="%Y-%m-%d") + pd.to_timedelta(minutes[0], unit="min")
    closed = (pd.to_datetime(o[S.CLOSED_AT].to_numpy(), format="%Y-%m-%d", errors="coerce")
              + pd.to_timedelta(minutes[1], unit="min"))
    outcome = o[S.OUTCOME].to_numpy()
    is_open, won = outcome == S.OUTCOME_OPEN, outcome == S.OUTCOME_WON
    as_of = pd.Timestamp(p.start) + pd.Timedelta(days=p.years * 365.0)
    deal_type, lead = rng.integers(0, 2, n), rng.integers(0, len(LEAD_SOURCES), n)
    stage = rng.integers(0, len(OPEN_STAGES["hubspot"]), n)  # both CRMs list five open stages
    u = rng.random(n)
    modified = pd.DatetimeIndex(np.where(is_open, created + u * (as_of - created),
                                         closed + pd.to_timedelta(0.5 + 29.5 * u, unit="D"))).floor("min")
    start_after = pd.to_timedelta(rng.integers(1, 45, n), unit="D")
    contract_start = pd.DatetimeIndex(np.where(won, closed.normalize() + start_after, pd.NaT))
    acv = np.where(won, np.round(o[S.AMOUNT].to_numpy() * rng.uniform(0.8, 1.25, n), 2), np.nan)
    end = np.where(is_open, as_of.normalize(), closed.normalize())
    return pd.DataFrame({
        "id": o[S.OPPORTUNITY_ID].to_numpy(),
        "owner": reps.loc[o[S.REP_ID].to_numpy(), "name"].to_numpy(),
        "owner_region": reps.loc[o[S.REP_ID].to_numpy(), "region"].to_numpy(),
        "company": acc["name"].to_numpy(),
        "company_owner": reps.loc[acc[S.CURRENT_REP_ID].to_numpy(), "name"].to_numpy(),
        "industry": acc["industry"].to_numpy(), "employees": acc["employees"].to_numpy(float),
        "region": acc["region"].to_numpy(), "potential": acc[S.POTENTIAL].to_numpy(float),
        "outcome": outcome, "created": created, "closed": closed, "amount": o[S.AMOUNT].to_numpy(float),
        "product": o["product"].to_numpy(), "deal_type": deal_type, "lead_source": lead,
        "stage": np.where(is_open, stage, -1), "modified": modified, "contract_start": contract_start,
        "acv": acv, "age": (pd.DatetimeIndex(end) - created.normalize()).days.to_numpy(),
        "reason": "", "bad_field": "", "bad_value": "",
    })


def _plant_dirty(deals: pd.DataFrame, rng: np.random.Generator,
                 bad_dates: tuple[str, ...]) -> tuple[pd.DataFrame, dict[str, int]]:
    """Insert dirty rows of each kind after a clean row drawn from the seed; the clean rows keep their order.

    Each dirty row copies a clean closed deal (so it names an existing owner and company) and spoils one
    thing; a ``duplicate_id`` row is an exact copy of any earlier clean row, placed after it.
    """
    n = len(deals)
    closed = np.flatnonzero(deals["outcome"].to_numpy() != S.OUTCOME_OPEN)
    if len(closed) == 0:
        raise RepfitError("synth: the org has no closed deals to plant dirty rows on. Fix: ask for more accounts.",
                          option="accounts")
    sizes = rng.choice(np.arange(DIRTY_COUNTS[0], DIRTY_COUNTS[1] + 1), len(DIRTY_KINDS), replace=False)
    counts = {kind: int(k) for kind, k in zip(DIRTY_KINDS, sizes)}
    parts = []
    for kind, k in counts.items():
        pool = np.arange(n) if kind == "duplicate_id" else closed
        base = np.sort(rng.choice(pool, k, replace=len(pool) < k))
        pos = np.minimum(base + rng.integers(0, 30, k), n - 1) if kind == "duplicate_id" else base
        parts.append(_spoil(deals.iloc[base].assign(pos=pos, reason=kind), kind, rng, bad_dates))
    dirty = pd.concat(parts, ignore_index=True)
    dirty["sub"] = 1 + rng.permutation(len(dirty))  # the order of dirty rows sharing a position
    rows = pd.concat([deals.assign(pos=np.arange(n), sub=0), dirty], ignore_index=True)
    rows = rows.sort_values(["pos", "sub"], kind="stable").reset_index(drop=True)
    new = ((rows["reason"] != "") & (rows["reason"] != "duplicate_id")).to_numpy()
    width = max(6, len(str(n)))
    rows.loc[new, "id"] = [f"O{i:0{width}d}" for i in range(n + 1, n + 1 + int(new.sum()))]
    return rows.drop(columns=["pos", "sub"]), counts


def _spoil(rows: pd.DataFrame, kind: str, rng: np.random.Generator, bad_dates: tuple[str, ...]) -> pd.DataFrame:
    """Copies of clean deals with the one defect ``kind`` names."""
    k = len(rows)
    if kind == "close_before_create":
        return rows.assign(closed=rows["created"] - pd.to_timedelta(rng.integers(1, 60, k), unit="D"))
    if kind == "bad_date":
        return rows.assign(bad_field=rng.choice(["created", "closed"], k), bad_value=rng.choice(list(bad_dates), k))
    if kind == "missing_rep":
        return rows.assign(owner="", owner_region="")
    if kind == "missing_account":
        return rows.assign(company="", company_owner="", industry="", region="", employees=np.nan, potential=np.nan)
    return rows  # duplicate_id: an exact copy


def _stamps(ts, fmt: str) -> np.ndarray:
    """Timestamps as text, empty where missing."""
    ts = pd.DatetimeIndex(ts)
    return np.where(ts.isna(), "", ts.strftime(fmt).fillna(""))


def _us_dates(ts) -> np.ndarray:
    """9/12/2023: month/day/year without leading zeros (strftime's %-m is not portable)."""
    ts = pd.DatetimeIndex(ts)
    text = [f"{t.month}/{t.day}/{t.year}" if not pd.isna(t) else "" for t in ts]
    return np.asarray(text, dtype=object)


def _plain(values) -> list[str]:
    """Numbers as a CRM prints them without formatting: 2560, 2816.5 -> 2816.50, empty where missing."""
    return ["" if np.isnan(v) else f"{v:.0f}" if float(v).is_integer() else f"{v:.2f}"
            for v in np.asarray(values, float)]


def _money(values) -> list[str]:
    """69,245.09: a Salesforce report's currency format, empty where missing."""
    return ["" if np.isnan(v) else f"{v:,.2f}" for v in np.asarray(values, float)]


def _stage(d: pd.DataFrame, fmt: str) -> tuple[np.ndarray, np.ndarray]:
    """Each deal's stage label and its probability (1 won, 0 lost, the open stage's otherwise)."""
    names, probs = (np.asarray(x) for x in zip(*OPEN_STAGES[fmt]))
    won, lost = (d["outcome"] == S.OUTCOME_WON).to_numpy(), (d["outcome"] == S.OUTCOME_LOST).to_numpy()
    stage = d["stage"].to_numpy()
    label = np.where(won, "Closed Won", np.where(lost, "Closed Lost", names[stage]))
    return label, np.where(won, 1.0, np.where(lost, 0.0, probs[stage]))


def _deal_names(d: pd.DataFrame) -> np.ndarray:
    company = d["company"].to_numpy(object)
    return np.where(company == "", "New deal", company) + " - " + d["product"].to_numpy(object)


def _with_bad_dates(rows: pd.DataFrame, d: pd.DataFrame, created: str, closed: str) -> pd.DataFrame:
    """Write the planted unparseable dates over the formatted ones."""
    rows = rows.copy()
    for field, column in (("created", created), ("closed", closed)):
        m = (d["bad_field"] == field).to_numpy()
        rows.loc[m, column] = d["bad_value"].to_numpy()[m]
    return rows


def _hubspot_rows(d: pd.DataFrame) -> pd.DataFrame:
    """The deals as a HubSpot deals export (all properties, with associated company and owner properties)."""
    stage, prob = _stage(d, "hubspot")
    won = (d["outcome"] == S.OUTCOME_WON).to_numpy()
    rows = pd.DataFrame({
        "Record ID": d["id"].to_numpy(), "Deal Name": _deal_names(d), "Deal owner": d["owner"].to_numpy(),
        "Associated Company": d["company"].to_numpy(), "Deal Stage": stage,
        "Create Date": _stamps(d["created"], "%Y-%m-%d %H:%M"), "Close Date": _stamps(d["closed"], "%Y-%m-%d %H:%M"),
        "Amount": _plain(d["amount"]), "Deal Type": np.asarray(DEAL_TYPES["hubspot"])[d["deal_type"].to_numpy()],
        "Pipeline": "Sales Pipeline", "Product": d["product"].to_numpy(),
        "Industry": d["industry"].to_numpy(), "Number of Employees": _plain(d["employees"]),
        "Country/Region": d["region"].to_numpy(), "Potential": _plain(d["potential"]),
        "Company owner": d["company_owner"].to_numpy(), "Owner Region": d["owner_region"].to_numpy(),
        "Deal probability": [f"{x:g}" for x in prob], "Forecast amount": _plain(d["amount"].to_numpy() * prob),
        "Is Closed Won": np.where(won, "true", "false"), "Last Modified Date": _stamps(d["modified"], "%Y-%m-%d %H:%M"),
        "Contract Start Date": _stamps(d["contract_start"], "%Y-%m-%d"), "Annual Contract Value": _plain(d["acv"]),
    })
    return _with_bad_dates(rows, d, "Create Date", "Close Date")


def _salesforce_rows(d: pd.DataFrame) -> pd.DataFrame:
    """The deals as a Salesforce opportunity report ("Details Only" CSV) with account and owner fields."""
    stage, prob = _stage(d, "salesforce")
    won, is_open = (d["outcome"] == S.OUTCOME_WON).to_numpy(), (d["outcome"] == S.OUTCOME_OPEN).to_numpy()
    fiscal = ["" if pd.isna(t) else f"Q{t.quarter}-{t.year}" for t in pd.DatetimeIndex(d["closed"])]
    rows = pd.DataFrame({
        "Opportunity ID": d["id"].to_numpy(), "Opportunity Name": _deal_names(d),
        "Opportunity Owner": d["owner"].to_numpy(), "Account Name": d["company"].to_numpy(), "Stage": stage,
        "Created Date": _us_dates(d["created"]), "Close Date": _us_dates(d["closed"]), "Amount": _money(d["amount"]),
        "Type": np.asarray(DEAL_TYPES["salesforce"])[d["deal_type"].to_numpy()],
        "Lead Source": np.asarray(LEAD_SOURCES)[d["lead_source"].to_numpy()], "Product": d["product"].to_numpy(),
        "Industry": d["industry"].to_numpy(), "Employees": _plain(d["employees"]),
        "Billing Region": d["region"].to_numpy(), "Potential": _money(d["potential"]),
        "Account Owner": d["company_owner"].to_numpy(), "Owner Region": d["owner_region"].to_numpy(),
        "Probability (%)": [f"{100 * x:.0f}" for x in prob], "Age": d["age"].astype(str).to_numpy(),
        "Won": np.where(won, "1", "0"), "Closed": np.where(is_open, "0", "1"), "Fiscal Period": fiscal,
        "Contract Start Date": _us_dates(d["contract_start"]), "Annual Contract Value": _money(d["acv"]),
    })
    return _with_bad_dates(rows, d, "Created Date", "Close Date")


def _truth_org(deals: pd.DataFrame, rows: pd.DataFrame, org: dict, fmt: str) -> dict[str, pd.DataFrame]:
    """The three contract tables the export's clean rows should load into, keyed by names.

    Reps: every owner named on a clean row (deal owner or company owner); accounts: every company on one.
    """
    region = org["reps"].set_index("name")["region"]
    names = sorted(set(deals["owner"]) | set(deals["company_owner"]))
    reps = pd.DataFrame({S.REP_ID: names, "region": region.loc[names].to_numpy()})
    accounts = (deals.drop_duplicates("company").sort_values("company")
                .rename(columns={"company": S.ACCOUNT_ID, "company_owner": S.CURRENT_REP_ID})
                [[S.ACCOUNT_ID, S.CURRENT_REP_ID, "industry", "employees", "region", S.POTENTIAL]]
                .astype({"employees": int}).reset_index(drop=True))
    opps = pd.DataFrame({
        S.OPPORTUNITY_ID: deals["id"].to_numpy(), S.REP_ID: deals["owner"].to_numpy(),
        S.ACCOUNT_ID: deals["company"].to_numpy(), S.CREATED_AT: _stamps(deals["created"], "%Y-%m-%d %H:%M"),
        S.CLOSED_AT: _stamps(deals["closed"], "%Y-%m-%d %H:%M"), S.OUTCOME: deals["outcome"].to_numpy(),
        S.AMOUNT: deals["amount"].to_numpy(),
    }).assign(**{c.lower().replace(" ", "_"): rows[c].to_numpy() for c in DEAL_COLUMNS[fmt]})
    return {"reps": reps, "accounts": accounts, "opportunities": opps}


def _write_export_truth(truth: Path, org: dict, tables: dict[str, pd.DataFrame], planted: dict[str, int],
                        meta: dict) -> None:
    """``write_org``'s truth files keyed by names, the planted dirty-row counts, and the org under ``org/``."""
    rep_names = dict(zip(org["reps"][S.REP_ID], org["reps"]["name"]))
    companies = dict(zip(org["accounts"][S.ACCOUNT_ID], org["accounts"]["name"]))
    write_table(org["truth_reps"].assign(**{S.REP_ID: org["truth_reps"][S.REP_ID].map(rep_names)}),
                truth / "rep_strengths.csv")
    write_table(org["truth_accounts"].assign(**{S.ACCOUNT_ID: org["truth_accounts"][S.ACCOUNT_ID].map(companies)}),
                truth / "accounts.csv")
    write_table(org["truth_opportunities"], truth / "opportunities.csv")
    write_text(json.dumps(meta, indent=2), truth / "params.json")
    write_text(json.dumps(planted, indent=2), truth / "dirty_rows.json")
    for name, table in tables.items():
        write_table(table, truth / "org" / f"{name}.csv")
