"""Synthetic orgs built independently of ``repfit.synth``, for checks that must generalise beyond that generator.

``write_deal_world`` plants an org whose win signal sits largely in the deal itself (issue 12, item 5):

    logit P(win | rep r, account a, deal) = base + skill[r] + segment[a] + rep_segment[r, segment[a]]
                                            + difficulty[a] + renewal * [deal_type = renewal]
                                            + inbound * [lead_source = inbound]

and routes the easy deals to some reps (a *confounded* history):

- a third of the reps (the renewal desk) work ~75% renewals, the others ~15%; an independent third (the inbound
  desk) get ~70% inbound leads, the others ~20%. Desk membership is drawn independently of skill, so a rep's
  renewal or inbound share says nothing about its skill: any link between them in a model's scores is bias;
- each account has its own propensity to generate renewals and inbound leads (``p_renewal``, ``p_inbound``):
  a renewal deal lands on accounts in proportion to ``p_renewal`` (existing customers renew), a new-business deal
  in proportion to ``1 - p_renewal``; half of a rep's deals come from its own book (``current_rep_id``), the rest
  from any account;
- potentials are lognormal (heavy-tailed), larger in bigger segments.

The truth of a (rep, account) pair averages over the *account's* planted deal mix (``p_renewal`` x
``p_inbound``), not the mix of the rep who happened to work it: which deals an account brings (renewals come from
its contracts, inbound leads from its own interest) does not change with its owner, and the pair score is what a
reassignment would get. No rep x deal-type interaction is planted, so the within-account order of reps, and every
rep-level ranking, is the same under any rep-independent mix (org-wide shares would rank identically); the
choice moves only the level of P(win) (and so the MAE).

Run as a script to write an org: ``python tests/worlds.py OUT [--reps 60 --accounts 3000 --seed 0]``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

SEGMENTS = ("smb", "mid", "enterprise")
CONTROLS = ("deal_type", "lead_source")  # the deal-level columns of opportunities.csv
RENEWAL, NEW_BUSINESS, INBOUND, OUTBOUND = "renewal", "new_business", "inbound", "outbound"


@dataclass(frozen=True)
class WorldParams:
    """Knobs of the deal-level world (log-odds unless said otherwise)."""

    base_logit: float = -1.2
    skill_sd: float = 0.5
    rep_segment_sd: float = 0.3  # rep x segment effects: centred per rep, so skill stays the rep's main effect
    segment_effect: tuple[float, ...] = (0.3, 0.0, -0.4)  # smb, mid, enterprise
    segment_share: tuple[float, ...] = (0.5, 0.35, 0.15)
    log_potential: tuple[float, ...] = (9.5, 10.5, 11.8)  # mean log potential per segment; sd below
    log_potential_sd: float = 1.0
    difficulty_sd: float = 0.5
    renewal_effect: float = 1.5
    inbound_effect: float = 0.8
    desk_share: float = 1 / 3  # of reps on the renewal desk, and (independently) on the inbound desk
    renewal_share: tuple[float, float] = (0.75, 0.15)  # renewal share of deals: renewal desk, others
    inbound_share: tuple[float, float] = (0.70, 0.20)  # inbound share: inbound desk, others
    book_share: float = 0.5  # of a rep's deals on accounts it owns
    deals_per_account: float = 4.0
    open_share: float = 0.04
    start: str = "2022-01-01"
    years: float = 3.0


@dataclass(frozen=True)
class World:
    """The three tables (repfit's data contract) and the planted truth."""

    reps: pd.DataFrame
    accounts: pd.DataFrame
    opportunities: pd.DataFrame
    truth_reps: pd.DataFrame  # rep_id, skill, renewal_desk, inbound_desk, rep_segment_<segment>
    truth_accounts: pd.DataFrame  # account_id, segment, difficulty, p_renewal, p_inbound
    params: WorldParams

    def true_win_probability(self) -> pd.DataFrame:
        """rep_id, account_id, p_true for every rep x account pair (reps outer, accounts inner): the planted
        P(win) averaged over the account's own deal mix (see the module docstring for why that mix)."""
        return true_win_probability(self.truth_reps, self.truth_accounts, self.params)


def _logit(p, x) -> np.ndarray:
    return np.log(p / (1 - p)) + x


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _reps(rng: np.random.Generator, p: WorldParams, n: int) -> pd.DataFrame:
    ids = np.array([f"rep{i:03d}" for i in range(n)])
    k = max(1, round(n * p.desk_share))
    renewal_desk = np.isin(np.arange(n), rng.choice(n, k, replace=False))
    inbound_desk = np.isin(np.arange(n), rng.choice(n, k, replace=False))
    rs = rng.normal(0.0, p.rep_segment_sd, (n, len(SEGMENTS)))
    rs -= (rs * np.asarray(p.segment_share)).sum(axis=1, keepdims=True)  # centred: mean 0 over the org's segments
    return pd.DataFrame({"rep_id": ids, "skill": rng.normal(0.0, p.skill_sd, n), "renewal_desk": renewal_desk,
                         "inbound_desk": inbound_desk, **{f"rep_segment_{s}": rs[:, j] for j, s in enumerate(SEGMENTS)}})


def _accounts(rng: np.random.Generator, p: WorldParams, n: int, n_reps: int) -> pd.DataFrame:
    seg = rng.choice(len(SEGMENTS), n, p=np.asarray(p.segment_share) / sum(p.segment_share))
    potential = np.round(np.exp(rng.normal(np.asarray(p.log_potential)[seg], p.log_potential_sd)), 2)
    return pd.DataFrame({
        "account_id": np.array([f"acct{i:05d}" for i in range(n)]), "segment": np.asarray(SEGMENTS)[seg],
        "segment_code": seg, "potential": potential, "owner": rng.integers(0, n_reps, n),
        "difficulty": rng.normal(0.0, p.difficulty_sd, n),
        "p_renewal": rng.beta(2.0, 3.5, n), "p_inbound": rng.beta(2.0, 3.5, n),
    })


def _pick_accounts(rng: np.random.Generator, p: WorldParams, acc: pd.DataFrame, rep: np.ndarray,
                   kind: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """An account for each deal worked by ``rep``: from the rep's own book with probability ``book_share`` (when
    it has one), else from all accounts; in either pool drawn with ``weights[kind]`` (deal kind x account: a
    renewal favours accounts likely to renew, an inbound lead accounts likely to enquire)."""
    out = np.empty(len(rep), np.int64)
    owner = acc["owner"].to_numpy()
    book = rng.random(len(rep)) < p.book_share
    everyone = np.arange(len(acc))
    for r in np.unique(rep):
        mine = np.flatnonzero(owner == r)
        for use_book in (True, False):
            pool = mine if use_book and len(mine) else everyone
            for k in range(len(weights)):
                sel = np.flatnonzero((rep == r) & (book == use_book) & (kind == k))
                if len(sel):
                    w = weights[k][pool]
                    out[sel] = rng.choice(pool, len(sel), p=w / w.sum())
    return out


def _opportunities(rng: np.random.Generator, p: WorldParams, reps: pd.DataFrame, acc: pd.DataFrame):
    n = int(round(p.deals_per_account * len(acc)))
    rep = np.sort(rng.integers(0, len(reps), n))
    ren_p = np.where(reps["renewal_desk"].to_numpy(), *p.renewal_share)[rep]
    inb_p = np.where(reps["inbound_desk"].to_numpy(), *p.inbound_share)[rep]
    renewal, inbound = rng.random(n) < ren_p, rng.random(n) < inb_p
    pr, pi = acc["p_renewal"].to_numpy(), acc["p_inbound"].to_numpy()
    weights = np.array([(pr if t else 1 - pr) * (pi if i else 1 - pi) for t in (0, 1) for i in (0, 1)])
    a = _pick_accounts(rng, p, acc, rep, 2 * renewal + inbound, weights)
    z = _pair_logit(p, reps, acc, rep, a) + p.renewal_effect * renewal + p.inbound_effect * inbound
    won = rng.random(n) < _sigmoid(z)
    created = pd.Timestamp(p.start) + pd.to_timedelta(rng.random(n) * p.years * 365.0, unit="D").round("D")
    closed = created + pd.to_timedelta(np.round(5 + rng.gamma(2.0, 18.0, n)), unit="D")
    is_open = (closed > pd.Timestamp(p.start) + pd.Timedelta(days=p.years * 365.0)) | (rng.random(n) < p.open_share / 4)
    order = np.argsort(created.to_numpy(), kind="stable")
    table = pd.DataFrame({
        "opportunity_id": [f"opp{i:06d}" for i in range(n)], "rep_id": reps["rep_id"].to_numpy()[rep],
        "account_id": acc["account_id"].to_numpy()[a], "created_at": created.strftime("%Y-%m-%d"),
        "closed_at": np.where(is_open, "", pd.DatetimeIndex(closed).strftime("%Y-%m-%d")),
        "outcome": np.where(is_open, "open", np.where(won, "won", "lost")),
        "amount": np.where(won & ~is_open, np.round(acc["potential"].to_numpy()[a] * rng.uniform(0.05, 0.25, n), 2), np.nan),
        "deal_type": np.where(renewal, RENEWAL, NEW_BUSINESS), "lead_source": np.where(inbound, INBOUND, OUTBOUND),
    }).iloc[order]
    table["opportunity_id"] = [f"opp{i:06d}" for i in range(n)]  # ids in time order, as a CRM numbers them
    return table.reset_index(drop=True)


def _pair_logit(p: WorldParams, reps: pd.DataFrame, acc: pd.DataFrame, r: np.ndarray, a: np.ndarray) -> np.ndarray:
    """The planted log-odds of rep r on account a for a new-business, outbound deal (the deal terms add to it)."""
    seg = acc["segment_code"].to_numpy()[a]
    rs = reps[[f"rep_segment_{s}" for s in SEGMENTS]].to_numpy()
    return (p.base_logit + reps["skill"].to_numpy()[r] + np.asarray(p.segment_effect)[seg] + rs[r, seg]
            + acc["difficulty"].to_numpy()[a])


def generate(n_reps: int = 60, n_accounts: int = 3000, seed: int = 0, params: WorldParams | None = None) -> World:
    """A deal-level world (deterministic by ``seed``)."""
    p = params or WorldParams()
    rng = np.random.default_rng(seed)
    reps = _reps(rng, p, n_reps)
    acc = _accounts(rng, p, n_accounts, n_reps)
    opps = _opportunities(rng, p, reps, acc)
    capacity = np.bincount(acc["owner"], minlength=n_reps) + 10
    return World(
        reps=pd.DataFrame({"rep_id": reps["rep_id"], "capacity": capacity}),
        accounts=pd.DataFrame({"account_id": acc["account_id"], "current_rep_id": reps["rep_id"].to_numpy()[acc["owner"]],
                               "potential": acc["potential"], "segment": acc["segment"]}),
        opportunities=opps, truth_reps=reps,
        truth_accounts=acc[["account_id", "segment", "segment_code", "difficulty", "p_renewal", "p_inbound"]],
        params=p)


def true_win_probability(truth_reps: pd.DataFrame, truth_accounts: pd.DataFrame, p: WorldParams) -> pd.DataFrame:
    """See ``World.true_win_probability``."""
    R, A = len(truth_reps), len(truth_accounts)
    r, a = np.repeat(np.arange(R), A), np.tile(np.arange(A), R)
    z = _pair_logit(p, truth_reps, truth_accounts, r, a)
    pr, pi = truth_accounts["p_renewal"].to_numpy()[a], truth_accounts["p_inbound"].to_numpy()[a]
    prob = sum(wt * wi * _sigmoid(z + p.renewal_effect * t + p.inbound_effect * i)
               for t, wt in ((1, pr), (0, 1 - pr)) for i, wi in ((1, pi), (0, 1 - pi)))
    return pd.DataFrame({"rep_id": truth_reps["rep_id"].to_numpy()[r],
                         "account_id": truth_accounts["account_id"].to_numpy()[a], "p_true": prob})


def write_deal_world(out: str | Path, n_reps: int = 60, n_accounts: int = 3000, seed: int = 0,
                     params: WorldParams | None = None, controls: bool = True) -> World:
    """Write ``generate(...)`` to ``out``: reps.csv, accounts.csv, opportunities.csv (without the deal-level
    columns when ``controls`` is false) and ``truth/`` (reps.csv, accounts.csv, params.json). Returns the world."""
    out = Path(out)
    w = generate(n_reps, n_accounts, seed, params)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    w.reps.to_csv(out / "reps.csv", index=False)
    w.accounts.to_csv(out / "accounts.csv", index=False)
    w.opportunities.drop(columns=[] if controls else list(CONTROLS)).to_csv(out / "opportunities.csv", index=False)
    w.truth_reps.to_csv(out / "truth" / "reps.csv", index=False)
    w.truth_accounts.to_csv(out / "truth" / "accounts.csv", index=False)
    (out / "truth" / "params.json").write_text(json.dumps({"seed": seed, **asdict(w.params)}, indent=2))
    return w


def deal_shares(w: World) -> pd.DataFrame:
    """rep_id, renewal_share, inbound_share, deals: each rep's realised deal mix in the history."""
    o = w.opportunities
    g = o.assign(ren=o["deal_type"] == RENEWAL, inb=o["lead_source"] == INBOUND).groupby("rep_id")
    return pd.DataFrame({"renewal_share": g["ren"].mean(), "inbound_share": g["inb"].mean(),
                         "deals": g.size()}).reindex(w.reps["rep_id"]).reset_index()



def rep_recovery(scores: pd.DataFrame, w: World) -> dict[str, float]:
    """How well scores (rep_id, account_id, p_win for every pair, as ``repfit score`` writes them) recover the
    planted truth of ``w``, and how much of the deal-level effects they credit to the reps who got the easy deals.

    - ``within_account``, ``all_pairs``, ``mae``: ``truth_recovery`` against ``w.true_win_probability()``;
    - ``rep_skill``: Spearman of each rep's mean score over all accounts with its planted skill;
    - ``renewal_coef``, ``inbound_coef``: least squares of logit(rep's mean score) on its skill and its realised
      renewal and inbound shares; the coefficient of a share (log-odds per unit share) is 0 for a model that
      credits no deal-level ease to the rep (the planted deal effects are ``params.renewal_effect`` etc.);
    - ``renewal_desk_lift``, ``inbound_desk_lift``: mean of (rank by score - rank by skill) over the desk's reps,
      in rank positions (rank 0 = best): negative means the desk is ranked above its true skill.
    """
    from scipy.stats import spearmanr

    from repfit.training.evaluate import truth_recovery

    truth = w.true_win_probability()
    rec = truth_recovery(scores[["rep_id", "account_id", "p_win"]], truth)
    tr = w.truth_reps.merge(deal_shares(w), on="rep_id")
    mean = scores.groupby("rep_id")["p_win"].mean().reindex(tr["rep_id"]).to_numpy()
    true_mean = truth.groupby("rep_id")["p_true"].mean().reindex(tr["rep_id"]).to_numpy()
    X = np.column_stack([np.ones(len(tr)), tr["skill"], tr["renewal_share"], tr["inbound_share"]])
    coef = np.linalg.lstsq(X, np.log(mean / (1 - mean)), rcond=None)[0]
    rank_score = (-mean).argsort().argsort()
    rank_skill = (-tr["skill"].to_numpy()).argsort().argsort()
    return {
        "within_account": rec["truth_spearman_within_account"], "all_pairs": rec["truth_spearman_all_pairs"],
        "mae": rec["truth_mae"], "rep_skill": float(spearmanr(mean, tr["skill"]).statistic),
        "rep_true_mean": float(spearmanr(mean, true_mean).statistic),
        "renewal_coef": float(coef[2]), "inbound_coef": float(coef[3]),
        "renewal_desk_lift": float((rank_score - rank_skill)[tr["renewal_desk"].to_numpy()].mean()),
        "inbound_desk_lift": float((rank_score - rank_skill)[tr["inbound_desk"].to_numpy()].mean()),
    }

if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--reps", type=int, default=60)
    ap.add_argument("--accounts", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-controls", action="store_true")
    a = ap.parse_args()
    write_deal_world(a.out, a.reps, a.accounts, a.seed, controls=not a.no_controls)
