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
    meta = {
        "seed": seed, "n_reps": n_reps, "n_accounts": n_accounts, "params": asdict(org["params"]),
        "size_edges": list(SIZE_EDGES), "size_bands": list(SIZE_BANDS), "products": list(PRODUCTS),
        "formula": "p(rep, account) = sum_k mix_k * sigmoid(base_logit + overall + industry + size_band "
        "+ region + product_k + home_region_bonus * [rep.region == account.region] + difficulty)",
    }
    write_text(json.dumps(meta, indent=2), truth / "params.json")
    return {t: len(org[t]) for t in S.TABLES}


def true_win_probability(data_dir: str | Path, rep_ids=None, account_ids=None, product: str | None = None) -> pd.DataFrame:
    """True win probability of every (rep, account) pair, from ``data_dir/truth`` and the tables.

    Returns a DataFrame with columns ``rep_id``, ``account_id``, ``p_true`` (one row per pair of the
    given ids; all reps x all accounts by default). With ``product``, the probability for that
    product only, otherwise the account's product-mix-weighted mean.
    """
    data_dir = Path(data_dir)
    meta = json.loads((data_dir / "truth" / "params.json").read_text())
    prm = meta["params"]
    eff = pd.read_csv(data_dir / "truth" / "rep_strengths.csv", keep_default_na=False)
    tacc = pd.read_csv(data_dir / "truth" / "accounts.csv")
    reps = pd.read_csv(data_dir / "reps.csv", dtype={S.REP_ID: str})
    accs = pd.read_csv(data_dir / "accounts.csv", dtype={S.ACCOUNT_ID: str}).merge(tacc, on=S.ACCOUNT_ID)
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
