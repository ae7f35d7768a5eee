"""How much of the truth-optimal uplift does repfit's assignment capture? (issue 4 acceptance)

For synthetic orgs of 40 reps x 2,000 accounts: train on the history, score all pairs with the trained model,
solve the assignment (same capacities, locks), then value it with the *planted* win probabilities. Baselines in
the same run: the current (territory) assignment, and the truth-optimal assignment under the same constraints.

    OMP_WAIT_POLICY=passive .venv/bin/python benchmarks/assign_quality.py [--seeds 7 8 9] [--variants] [--out FILE]

``--variants`` also records, on the same orgs: the model before the joint strengths (per-dimension rates only,
quantile size bands: what shipped until then), LightGBM with the joint features but not boosting from them, and
the joint model alone (no LightGBM).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import numpy as np

from repfit import schema as S
from repfit.assign import solve
from repfit.assign.plan import AssignConfig, build_problem, plan_assignment
from repfit.config import FeatureConfig, TrainConfig
from repfit.schema import load_dataset
from repfit.scoring import score_matrix
from repfit.synth import true_win_matrix, write_org
from repfit.training.train import train


def _valuer(data_dir: Path, ds, cfg: AssignConfig):
    """(value of an assignment under the planted truth, current value, truth-optimal value)."""
    truth = true_win_matrix(data_dir, ds.reps.rep_id, ds.accounts.account_id)
    prob, _ = build_problem(ds, truth, cfg)
    pot = ds.accounts.potential.to_numpy()
    rows = np.arange(len(pot))

    def ev(x):
        return float((truth[rows, x] * pot).sum())

    return ev, ev(prob.current), ev(solve(prob).assignment)


def captured_share(data_dir: Path, cfg: AssignConfig = AssignConfig(), tcfg: TrainConfig = TrainConfig(),
                   scorer=None) -> dict:
    """Train on ``data_dir`` (unless a ``scorer`` trained on it is given), assign, and value against the truth."""
    ds = load_dataset(data_dir)
    scorer = scorer or train(ds, FeatureConfig(), tcfg).scorer
    plan = plan_assignment(ds, score_matrix(scorer, ds), cfg)
    ev, now, opt = _valuer(data_dir, ds, cfg)
    model = ev(plan.solution.assignment)
    return {"true_ev_current": now, "true_ev_model": model, "true_ev_optimal": opt,
            "captured": (model - now) / (opt - now), "predicted_ev_model": plan.summary.expected_value_proposed,
            "moves": plan.summary.moves, "solver": plan.summary.solver, "scorer": scorer}


def variants(data_dir: Path) -> dict[str, float]:
    """Captured share of the alternatives recorded with ``--variants``."""
    ds = load_dataset(data_dir)
    cfg = AssignConfig()
    ev, now, opt = _valuer(data_dir, ds, cfg)

    def captured(P):
        return (ev(plan_assignment(ds, P, cfg).solution.assignment) - now) / (opt - now)

    before = train(ds, FeatureConfig(joint_prior_sd=0.0, band_edges="quantile"), TrainConfig(boost_from="")).scorer
    side = train(ds, FeatureConfig(), TrainConfig(boost_from="")).scorer
    A, R = len(ds.accounts), len(ds.reps)
    X = side.features(np.tile(ds.reps[S.REP_ID], A), np.repeat(ds.accounts[S.ACCOUNT_ID], R))
    joint = 1.0 / (1.0 + np.exp(-X["joint_logit"].to_numpy().reshape(A, R)))
    return {"before joint strengths": captured(score_matrix(before, ds)),
            "joint as features only": captured(score_matrix(side, ds)),
            "joint model alone": captured(joint)}


READING = """Reading: the issue-4 target is 70% of the truth-optimal uplift. The solver is exact (certified), so the
gap is the model's. Per-dimension win rates credit a rep with the ease of the accounts it happened to work
(history is territory-biased), and fixed quantile size bands blur size strengths whose real cut points lie
elsewhere. The joint model fits every effect at once with an effect per account, learns each block's prior
from the data and picks the size-band edges by the same evidence; LightGBM then corrects its log-odds."""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9])
    ap.add_argument("--variants", action="store_true", help="also record the model before the joint strengths, joint as features only, and the joint model alone")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "assign_quality.md"))
    args = ap.parse_args()
    lines = ["# Assignment quality against the planted truth (issue 4)", "",
             f"Command: `OMP_WAIT_POLICY=passive .venv/bin/python benchmarks/assign_quality.py --seeds {' '.join(map(str, args.seeds))}{' --variants' if args.variants else ''}` "
             f"(Python {platform.python_version()}, {platform.machine()}).", "",
             "40 reps x 2,000 accounts, capacity = ceil(1.15 x accounts / reps), 3% locked, objective expected value. "
             "Every assignment is valued with the planted win probabilities. captured = (model - current) / (optimal - current).", "",
             "Model as shipped: joint rep strengths (features/joint.py: learned size bands, per-block priors), "
             "LightGBM boosting from their log-odds.", "",
             "| seed | true EV current | true EV repfit | true EV truth-optimal | captured | repfit's own estimate | moves | solver |",
             "|---|---|---|---|---|---|---|---|"]
    tried, shares = {}, {}
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as d:
            write_org(d, 40, 2000, seed)
            r = captured_share(Path(d))
            if args.variants:
                tried[seed] = {"as shipped": r["captured"], **variants(Path(d))}
        shares[seed] = r["captured"]
        print(seed, round(r["captured"], 4), tried.get(seed, ""), flush=True)
        lines.append(f"| {seed} | {r['true_ev_current']:,.0f} | {r['true_ev_model']:,.0f} | {r['true_ev_optimal']:,.0f} | "
                     f"{r['captured']:.1%} | {r['predicted_ev_model']:,.0f} | {r['moves']:,} | {r['solver']} |")
    low = min(shares, key=shares.get)
    lines += ["", f"Summary: mean {np.mean(list(shares.values())):.1%} over {len(shares)} orgs; lowest {shares[low]:.1%} "
              f"(seed {low}); {sum(v >= 0.70 for v in shares.values())} of {len(shares)} at or above 70%."]
    if tried:
        names = list(next(iter(tried.values())))
        lines += ["", "Variants on the same orgs: the model before the joint strengths (per-dimension rates, quantile size "
                  "bands, LightGBM from a constant), LightGBM with the joint features but starting from a constant, and "
                  "the joint model alone.", "",
                  "| seed | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        lines += [f"| {seed} | " + " | ".join(f"{v[n]:.1%}" for n in names) + " |" for seed, v in tried.items()]
    lines += ["", READING]
    Path(args.out).parent.mkdir(exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
