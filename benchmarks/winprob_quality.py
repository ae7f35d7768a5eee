"""Win-probability model quality on synthetic orgs of ~40 reps x 2,000 accounts (~8,000 closed deals).

Reports, per seed, the test-period AUC of repfit and of every baseline (computed in the same run), and
recovery of the planted truth over all rep x account pairs. Also runs the generator with the weaker
industry strengths it had before (+1.1 / -0.9 log-odds), so the effect of that choice is on record.

    OMP_WAIT_POLICY=passive .venv/bin/python benchmarks/winprob_quality.py   # writes benchmarks/results/winprob_quality.md
"""

from __future__ import annotations

import platform
import sys
import tempfile
import time
from pathlib import Path

from repfit.config import FeatureConfig, TrainConfig
from repfit.schema import load_dataset
from repfit.synth import SynthParams, write_org
from repfit.training.evaluate import recovery_of
from repfit.training.train import train
import repfit.synth as synth

SETTINGS = {"default (+1.3/-1.1)": SynthParams(), "weaker (+1.1/-0.9)": SynthParams(industry_strong=1.1, industry_weak=-0.9)}
SEEDS = (7, 8, 9)


def main() -> None:
    rows = []
    for label, params in SETTINGS.items():
        for seed in SEEDS:
            with tempfile.TemporaryDirectory() as d:
                original = synth.generate
                synth.generate = lambda r, a, s, p=None, _p=params: original(r, a, s, _p)
                try:
                    write_org(d, 40, 2000, seed)
                finally:
                    synth.generate = original
                ds = load_dataset(d)
                t0 = time.perf_counter()
                r = train(ds, FeatureConfig(), TrainConfig())
                secs = time.perf_counter() - t0
                m = {**r.metrics, **recovery_of(r.scorer, synth.true_win_probability(d))}
            rows.append((label, seed, len(ds.closed), m, secs))
            print(label, seed, round(m["truth_spearman_within_account"], 3), flush=True)
    out = ["# Win-probability quality (issue 3)", "",
           f"Command: `OMP_WAIT_POLICY=passive .venv/bin/python benchmarks/winprob_quality.py` "
           f"(Python {platform.python_version()}, {platform.machine()}, 2 LightGBM threads).", "",
           "40 reps x 2,000 accounts per org. AUC, log loss: test period (latest 15% of closed deals by created_at); "
           "baselines fitted in the same run. Spearman / MAE: all 80,000 rep x account pairs against the planted "
           "truth (mean within-account Spearman; mean absolute P(win) error).", "",
           "| planted industry strength | seed | closed | repfit AUC | logistic AUC | rep-rate AUC | global AUC | repfit log loss | logistic log loss | Spearman (repfit) | Spearman (rep rate) | MAE | train s |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, seed, n, m, secs in rows:
        out.append(f"| {label} | {seed} | {n:,} | {m['repfit.test.auc']:.4f} | {m['logistic.test.auc']:.4f} | "
                   f"{m['rep_rate.test.auc']:.4f} | {m['global_rate.test.auc']:.4f} | {m['repfit.test.log_loss']:.4f} | "
                   f"{m['logistic.test.log_loss']:.4f} | {m['truth_spearman_within_account']:.3f} | "
                   f"{m['rep_rate.truth_spearman_within_account']:.3f} | {m['truth_mae']:.3f} | {secs:.1f} |")
    Path(__file__).with_name("results").mkdir(exist_ok=True)
    Path(__file__).with_name("results").joinpath("winprob_quality.md").write_text("\n".join(out) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    sys.exit(main())
