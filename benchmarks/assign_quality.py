"""How much of the truth-optimal uplift does repfit's assignment capture? (issue 4 acceptance)

For synthetic orgs of 40 reps x 2,000 accounts: train on the history, score all pairs with the trained model,
solve the assignment (same capacities, locks), then value it with the *planted* win probabilities. Baselines in
the same run: the current (territory) assignment, and the truth-optimal assignment under the same constraints.

    OMP_WAIT_POLICY=passive .venv/bin/python benchmarks/assign_quality.py [--seeds 7 8 9] [--variants] [--out FILE]

``--variants`` also records what was tried to close the gap to the 70% target: scores lowered by k standard
errors of P(win) (``repfit.suggest.pair_uncertainty``) before solving, and the mean of 4 LightGBM seeds.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import numpy as np

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
            "captured": (model - now) / (opt - now), "predicted_ev_model": plan.summary["expected_value_proposed"],
            "moves": plan.summary["moves"], "solver": plan.summary["solver"], "scorer": scorer}


def variants(data_dir: Path, scorer, cfg: AssignConfig = AssignConfig()) -> dict[str, float]:
    """Captured share for scores lowered by k standard errors, and for the mean of 4 LightGBM seeds."""
    from repfit.suggest import Context, pair_uncertainty

    ds = load_dataset(data_dir)
    ev, now, opt = _valuer(data_dir, ds, cfg)

    def captured(P):
        return (ev(plan_assignment(ds, P, cfg).solution.assignment) - now) / (opt - now)

    P = score_matrix(scorer, ds)
    A, R = P.shape
    se = pair_uncertainty(Context(ds, scorer, P, True), np.repeat(np.arange(A), R), np.tile(np.arange(R), A)).reshape(A, R)
    out = {f"P - {k} SE": captured(np.clip(P - k * se, 1e-6, 1.0)) for k in (0.5, 1.0, 2.0)}
    bag = [P] + [score_matrix(train(ds, FeatureConfig(), TrainConfig(seed=s)).scorer, ds) for s in (1, 2, 3)]
    out["mean of 4 seeds"] = captured(np.mean(bag, axis=0))
    return out


READING = """Reading: the issue-4 target is 70% of the truth-optimal uplift. The solver is exact (certified), so the
gap is the model's: the largest losses come from reps whose strength on one industry is over-estimated from a
few owned, easy accounts (territory history confounds account ease with rep strength) and whom the optimiser
then fills to capacity. Earlier sessions tried stronger shrinkage (prior_deals 20-50), smaller trees, finer
size bands and residualised strengths: none raised the figure on both weak seeds (best single change: +3
points on one seed, -4 on the other)."""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9])
    ap.add_argument("--variants", action="store_true", help="also record the attempts to raise the share")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "assign_quality.md"))
    args = ap.parse_args()
    lines = ["# Assignment quality against the planted truth (issue 4)", "",
             f"Command: `OMP_WAIT_POLICY=passive .venv/bin/python benchmarks/assign_quality.py --seeds {' '.join(map(str, args.seeds))}{' --variants' if args.variants else ''}` "
             f"(Python {platform.python_version()}, {platform.machine()}).", "",
             "40 reps x 2,000 accounts, capacity = ceil(1.15 x accounts / reps), 3% locked, objective expected value. "
             "Every assignment is valued with the planted win probabilities. captured = (model - current) / (optimal - current).", "",
             "| seed | true EV current | true EV repfit | true EV truth-optimal | captured | repfit's own estimate | moves | solver |",
             "|---|---|---|---|---|---|---|---|"]
    tried = {}
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as d:
            write_org(d, 40, 2000, seed)
            r = captured_share(Path(d))
            if args.variants:
                tried[seed] = {"as shipped": r["captured"], **variants(Path(d), r["scorer"])}
        print(seed, round(r["captured"], 4), tried.get(seed, ""), flush=True)
        lines.append(f"| {seed} | {r['true_ev_current']:,.0f} | {r['true_ev_model']:,.0f} | {r['true_ev_optimal']:,.0f} | "
                     f"{r['captured']:.1%} | {r['predicted_ev_model']:,.0f} | {r['moves']:,} | {r['solver']} |")
    if tried:
        names = list(next(iter(tried.values())))
        lines += ["", "Attempts to raise the share (same orgs, same run): scores lowered by k standard errors of P(win) "
                  "before solving (against the optimiser's curse), and the mean P(win) of LightGBM seeds 42, 1, 2, 3.", "",
                  "| seed | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        lines += [f"| {seed} | " + " | ".join(f"{v[n]:.1%}" for n in names) + " |" for seed, v in tried.items()]
    lines += ["", READING]
    Path(args.out).parent.mkdir(exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
