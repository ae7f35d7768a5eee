"""Top-K candidates at planner scale (issue 14, points 4 and 7): `repfit assign` from candidates at 1,000 and
10,000 reps x 250,000 and 1,000,000 accounts, in two passes, with the all-pairs plan beside it at 1,000 x 100,000.

Per size, in one run:
1. an org: reps.csv, accounts.csv (heavy-tailed potential: lognormal sigma 1), a token opportunities.csv;
2. pass 1: candidates as `repfit score --top-k K` writes them: rep prices from a sample of accounts scored in full
   (`repfit.candidates.sample_prices`), then each block of every rep's P(win) through `repfit.candidates.top_k`,
   streamed to Parquet by `repfit.scoring.write_scores`. The P(win) are structured (rep skill, a rep x segment
   effect, account difficulty, pair noise), not a model's: scoring speed is `score_speed.py`'s;
3. `repfit assign --scores candidates.parquet --balance none` as a child process under /usr/bin/time;
4. pass 2: the same P(win) ranked by the pass-1 plan's own rep prices, keeping its reps (`repfit score --top-k K
   --plan plan.csv`), and `repfit assign` on them again. Both passes without bands, and with the default
   accounts band (its own chain: the band changes the prices) three passes.

Baseline, in the same run: at 1,000 x 100,000, `repfit assign` on every pair (`scores.parquet`) gives the optimum
the candidates' plans are held against. The 10,000 x 1,000,000 row is measured, not projected; the projection of
the whole pipeline there adds scoring from `score_speed.md`.

Usage: OMP_WAIT_POLICY=passive .venv/bin/python benchmarks/topk_scale.py --work /tmp/topk [--sizes 1000x250000,...]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from assign_e2e import assign_cmd, summary, timed  # noqa: E402 - the benchmarks' shared child runner

ROOT = Path(__file__).resolve().parents[1]
SEGMENTS = 40  # industry x region cells the rep effects vary over


class World:
    """The structured P(win) of an org: computed block by block, each pair the same in any block and on every pass."""

    def __init__(self, R: int, A: int, seed: int):
        rng = np.random.default_rng(seed)
        self.R, self.A, self.seed = R, A, seed
        self.skill, self.effect = rng.normal(0, 0.5, R), rng.normal(0, 0.5, (R, SEGMENTS))
        self.segment, self.difficulty = rng.integers(0, SEGMENTS, A), rng.normal(0, 0.5, A)
        self.potential = np.round(rng.lognormal(0.0, 1.0, A) * 50_000, -2).clip(100)
        self.reps = np.array([f"R{i:05d}" for i in range(R)])
        self.accounts = np.array([f"A{i:07d}" for i in range(A)])

    def block(self, rows: np.ndarray) -> pd.DataFrame:
        """Every rep's P(win) for accounts ``rows``, as `score_blocks` yields them (categorical ids, rep fastest)."""
        cell = rows.astype(np.uint64)[:, None] * np.uint64(self.R) + np.arange(self.R, dtype=np.uint64)[None, :]
        u1, u2 = _uniform(cell, self.seed), _uniform(cell, self.seed + 1)
        noise = 0.2 * np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2 * np.pi * u2)  # the same for a pair in any block
        z = -1.0 + self.skill[None, :] + self.effect[:, self.segment[rows]].T - self.difficulty[rows, None] + noise
        p = (1 / (1 + np.exp(-z))).ravel()
        n = len(rows)
        return pd.DataFrame({
            "rep_id": pd.Categorical.from_codes(np.tile(np.arange(self.R), n), self.reps),
            "account_id": pd.Categorical.from_codes(np.repeat(np.arange(n), self.R), self.accounts[rows]),
            "p_win": p, "expected_value": p * np.repeat(self.potential[rows], self.R), "cold": False})

    def blocks(self, rows: np.ndarray, pairs: int = 2_000_000):
        per = max(1, pairs // self.R)
        for lo in range(0, len(rows), per):
            yield self.block(rows[lo:lo + per])


def _uniform(x: np.ndarray, seed: int) -> np.ndarray:
    """A uniform [0, 1) number per uint64 in ``x`` (splitmix64): pair noise that does not depend on the blocking."""
    z = x + np.uint64(0x9E3779B97F4A7C15 * (seed + 1) % 2**64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return ((z ^ (z >> np.uint64(31))) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def make_org(org: Path, w: World) -> None:
    if (org / "accounts.csv").exists():
        return
    org.mkdir(parents=True, exist_ok=True)
    R, A = w.R, w.A
    rng = np.random.default_rng(w.seed + 7)
    regions = np.array(["north", "south", "east", "west", "central"])
    pd.DataFrame({"rep_id": w.reps, "name": [f"Rep {i}" for i in range(R)], "region": regions[np.arange(R) % 5],
                  "stated_specialty": "retail", "tenure_years": 3, "capacity": math.ceil(1.15 * A / R)}
                 ).to_csv(org / "reps.csv", index=False)
    pd.DataFrame({"account_id": w.accounts, "name": w.accounts, "industry": "retail",
                  "region": regions[w.segment % 5], "employees": 500, "potential": w.potential,
                  "current_rep_id": w.reps[rng.integers(0, R, A)], "locked": False}).to_csv(org / "accounts.csv", index=False)
    deals = min(R, A)
    pd.DataFrame({"opportunity_id": [f"O{i:07d}" for i in range(deals)], "rep_id": w.reps[:deals],
                  "account_id": w.accounts[:deals], "product": "core", "created_at": "2024-01-01",
                  "closed_at": "2024-02-01", "outcome": np.where(np.arange(deals) % 2, "won", "lost"),
                  "amount": np.where(np.arange(deals) % 2, 1000.0, np.nan)}).to_csv(org / "opportunities.csv", index=False)


def write_candidates(org: Path, w: World, k: int, out: Path, plan: Path | None) -> dict:
    """The candidates file `repfit score --top-k k [--plan PLAN]` would write for these P(win)."""
    from repfit import schema as S
    from repfit.candidates import read_plan, sample_prices, sample_size, top_k
    from repfit.io import write_json
    from repfit.schema import load_dataset
    from repfit.scoring import data_fingerprint, write_scores

    t0 = time.perf_counter()
    ds = load_dataset(org)
    capacity = ds.reps.set_index(S.REP_ID)[S.CAPACITY]
    planned = None
    if plan is None:
        sample = np.sort(np.random.default_rng(0).choice(w.A, size=sample_size(w.A, w.R), replace=False))
        prices = sample_prices(w.blocks(sample), capacity, w.A)
    else:
        prices, planned = read_plan(plan, ds)
    t_prices = time.perf_counter() - t0
    owners = ds.accounts.set_index(S.ACCOUNT_ID)[S.CURRENT_REP_ID]
    rows = write_scores((top_k(b, k, owners, prices, planned) for b in w.blocks(np.arange(w.A))), out)
    write_json({"model_uri": "synthetic: benchmarks/topk_scale.py (structured P(win))", "model_version": None,
                "data_dir": str(org), "pairs": w.A * w.R, "rows": rows, "top_k": k,
                "prices": {str(r): float(v) for r, v in prices.items()}, "fingerprint": data_fingerprint(ds)},
               out.with_name(out.name + ".json"))
    return {"rows": rows, "seconds": time.perf_counter() - t0, "prices_seconds": t_prices}


def write_all_pairs(org: Path, w: World) -> Path:
    from repfit.io import write_json
    from repfit.schema import load_dataset
    from repfit.scoring import data_fingerprint, write_scores

    out = org / "scores.parquet"
    if not out.exists():
        rows = write_scores(w.blocks(np.arange(w.A)), out)
        write_json({"model_uri": "synthetic", "model_version": None, "data_dir": str(org), "pairs": rows, "top_k": None,
                    "fingerprint": data_fingerprint(load_dataset(org))}, out.with_name(out.name + ".json"))
    return out


def open_accounts(notes: list[str]) -> str:
    import re

    m = next((re.search(r"([\d,]+) accounts' left-out", n) for n in notes if "accounts' left-out" in n), None)
    return m[1] if m else "0"


CHAINS = {"none": ("--balance", "none"), "band": ()}  # --balance none, and the default band accounts=20%
PASSES = {"none": 2, "band": 3}  # the band's floors make the first plan's prices far off: one pass more


def run_size(work: Path, label: str, k: int, uri: str, baseline: bool, chains=tuple(CHAINS)) -> list[dict]:
    """The runs of one size: per chain (no band, the default band), pass 1 on sample prices and pass 2 on the
    pass-1 plan's prices; with ``baseline``, every pair first."""
    R, A = map(int, label.split("x"))
    w = World(R, A, seed=14)
    org = work / f"org_{label}"
    make_org(org, w)
    rows, best = [], {}
    if baseline:
        scores = write_all_pairs(org, w)
        for chain, flags in CHAINS.items():
            out = work / f"full_{chain}_{label}.csv"
            r = timed(*assign_cmd(ROOT / "src", org, scores, out, uri, *flags))
            r.update(summary(out))
            best[chain] = r["value"]
            rows.append({"size": label, "what": f"all pairs (baseline){_band(chain)}", "pairs": A * R, **r})
    first = work / f"cand1_{label}.parquet"
    made_first = write_candidates(org, w, k, first, None)
    for chain in chains:
        flags, cand, made = CHAINS[chain], first, made_first
        for p in range(1, PASSES[chain] + 1):
            if p > 1:
                cand = work / f"cand{p}_{chain}_{label}.parquet"
                made = write_candidates(org, w, k, cand, out)
            out = work / f"plan{p}_{chain}_{label}.csv"
            r = timed(*assign_cmd(ROOT / "src", org, cand, out, uri, *flags))
            if r["code"] == 0:
                r.update(summary(out))
            what = f"pass {p}: " + ("sample prices" if p == 1 else f"--plan: the pass-{p - 1} plan's prices and reps") \
                + _band(chain)
            rows.append({"size": label, "what": what, "pairs": made["rows"], "write_s": made["seconds"] if p > 1 or
                         chain == chains[0] else None, "prices_s": made["prices_seconds"], "best": best.get(chain), **r})
            print(label, what, {x: rows[-1].get(x) for x in ("wall", "gib", "certified", "gap")}, flush=True)
            if r["code"] != 0:
                break
    return rows


def _band(chain: str) -> str:
    return ", default band accounts=20%" if chain == "band" else ", --balance none"


def table(rows: list[dict], k: int) -> list[str]:
    lines = ["| reps x accounts | run | rows written | writing s (prices s) | assign wall s | CPU s | peak GiB | "
             "certified over all pairs | stated gap | open accounts | value / all-pairs optimum |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("code") != 0:
            lines.append(f"| {r['size']} | {r['what']} | | | {r['wall']:.1f} | | | failed: {r['err'][-200:]} | | | |")
            continue
        write = "" if r.get("write_s") is None else f"{r['write_s']:.0f} ({r['prices_s']:.0f})"
        ratio = "" if not r.get("best") else f"{r['value'] / r['best']:.7f}"
        lines.append(f"| {r['size'].replace('x', ' x ')} | {r['what']} | {r['pairs'] or 0:,} | {write} | "
                     f"{r['wall']:.1f} | {r['cpu']:.1f} | {r['gib']:.2f} | {r['certified']} | "
                     f"{'-' if r.get('gap') is None else format(r['gap'], '.4%')} | {open_accounts(r['notes'])} | {ratio} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True, help="Instances and outputs (several GiB at the largest size).")
    ap.add_argument("--sizes", default="1000x100000,1000x250000,1000x1000000,10000x250000,10000x1000000")
    ap.add_argument("--baseline", default="1000x100000", help="The size also planned on every pair.")
    ap.add_argument("--top-k", type=int, default=15)
    ap.add_argument("--band-up-to", type=int, default=10**9,
                    help="Run the default-band chain only up to this many pairs (each chain writes the candidates again).")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "topk_scale.md"))
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{work / 'mlflow.db'}"
    rows = []
    for label in args.sizes.split(","):
        R, A = map(int, label.split("x"))
        chains = tuple(CHAINS) if R * A <= args.band_up_to else ("none",)
        rows += run_size(work, label, args.top_k, uri, baseline=label == args.baseline, chains=chains)
        Path(args.out).write_text("\n".join(report(rows, args)) + "\n")
    print("\n".join(report(rows, args)))


def report(rows: list[dict], args) -> list[str]:
    import os

    return [f"# `repfit assign` from top-{args.top_k} candidates at planner scale (issue 14, points 4 and 7)", "",
            f"Command: `OMP_WAIT_POLICY=passive .venv/bin/python benchmarks/topk_scale.py --work DIR --sizes "
            f"{args.sizes}`; {platform.machine()}, {os.cpu_count()} cores, load average at the end "
            f"{os.getloadavg()[0]:.1f}. Each assign is a child process under /usr/bin/time (reading the data and the "
            "candidates, solving, the relaxed bound, writing). Writing: candidates from structured P(win) through "
            "the same `top_k` and `sample_prices` `repfit score --top-k` runs (model scoring excluded: see "
            "`score_speed.md`). Baseline: every pair at the baseline size, in the same run.", "",
            *table(rows, args.top_k)]


if __name__ == "__main__":
    main()
