"""Are the top-1 suggestions right, by the planted truth? (issue 5 acceptance)

For synthetic orgs of 40 reps x 2,000 accounts: train, score every pair, and for each account whose
truth-optimal rep is not its current rep, take the top-1 suggested rep (`repfit suggest --account`: the best
other rep by expected value). Count how often its *true* P(win) beats the current rep's. Baselines in the
same run: the rep with the best overall win rate in history (the "star rep" rule), and a random other rep.
Also: how many of the top-1 suggestions are marked confident, and how often confident / uncertain ones are
right.

    OMP_WAIT_POLICY=passive .venv/bin/python benchmarks/suggest_quality.py [--seeds 7 8 9] [--out FILE]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import numpy as np

from repfit.config import FeatureConfig, TrainConfig
from repfit.schema import load_dataset
from repfit.scoring import score_matrix
from repfit.suggest import Context, confidence
from repfit.synth import true_win_matrix, write_org
from repfit.training.train import train


def top1_quality(data_dir: Path, seed: int) -> dict:
    ds = load_dataset(data_dir)
    scorer = train(ds, FeatureConfig(), TrainConfig()).scorer
    P = score_matrix(scorer, ds)
    ctx = Context(ds, scorer, P, scorer.card.signal.detected)
    truth = true_win_matrix(data_dir, ds.reps.rep_id, ds.accounts.account_id)
    cur = ctx.current
    A, R = P.shape
    differ = np.flatnonzero(truth.argmax(axis=1) != cur)
    masked = np.where(np.arange(R)[None, :] == cur[:, None], -np.inf, P)
    top1 = masked.argmax(axis=1)
    right = truth[differ, top1[differ]] > truth[differ, cur[differ]]
    star = int(np.argmax(scorer.history.w_r / np.maximum(scorer.history.n_r, 1)))
    star_rep = np.where(cur[differ] == star, np.argsort(-scorer.history.w_r / np.maximum(scorer.history.n_r, 1))[1], star)
    rng = np.random.default_rng(seed)
    rand = (cur[differ] + rng.integers(1, R, len(differ))) % R
    conf, _ = confidence(ctx, differ, top1[differ], cur[differ])
    return {"accounts": len(differ), "repfit": right.mean(),
            "star": np.mean(truth[differ, star_rep] > truth[differ, cur[differ]]),
            "random": np.mean(truth[differ, rand] > truth[differ, cur[differ]]),
            "confident_share": conf.mean(), "right_if_confident": right[conf].mean() if conf.any() else np.nan,
            "right_if_uncertain": right[~conf].mean() if (~conf).any() else np.nan}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9])
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "suggest_quality.md"))
    args = ap.parse_args()
    lines = ["# Top-1 suggestions against the planted truth (issue 5)", "",
             f"Command: `OMP_WAIT_POLICY=passive .venv/bin/python benchmarks/suggest_quality.py --seeds {' '.join(map(str, args.seeds))}` "
             f"(Python {platform.python_version()}, {platform.machine()}).", "",
             "40 reps x 2,000 accounts. Accounts: those whose truth-optimal rep is not the current one. Share of them where the "
             "suggested rep's true P(win) beats the current rep's; baselines in the same run: the rep with the best overall "
             "historical win rate (\"star rep\"), a random other rep. Target: >= 80%.", "",
             "| seed | accounts | repfit top-1 | star rep | random rep | marked confident | right when confident | right when uncertain |",
             "|---|---|---|---|---|---|---|---|"]
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            write_org(tmp, 40, 2000, seed)
            r = top1_quality(Path(tmp), seed)
        lines.append(f"| {seed} | {r['accounts']:,} | {100 * r['repfit']:.1f}% | {100 * r['star']:.1f}% | {100 * r['random']:.1f}% | "
                     f"{100 * r['confident_share']:.1f}% | {100 * r['right_if_confident']:.1f}% | {100 * r['right_if_uncertain']:.1f}% |")
        print(lines[-1], flush=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
