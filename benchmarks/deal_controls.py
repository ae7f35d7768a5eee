"""Deal-level attributes as controls (issue 12, item 5): are rep strengths recovered net of deal type and lead source?

On orgs of ``tests/worlds.py`` (not ``repfit synth``: renewals +1.5 and inbound leads +0.8 log-odds, routed to a
renewal desk and an inbound desk of a third of the reps each, independently of skill), runs what a user runs, in a
subprocess each:

    repfit train --data ORG --tracking-uri sqlite:///.../mlflow.db --models-dir ...
    repfit score --data ORG --out scores.parquet --tracking-uri ...

in two arms on the very same org: ``with`` (opportunities.csv carries deal_type and lead_source) and ``without``
(those two columns dropped), and compares the scores with the planted truth (``worlds.rep_recovery``).

    OMP_WAIT_POLICY=passive PYTHONPATH=src .venv/bin/python benchmarks/deal_controls.py   # writes benchmarks/results/deal_controls.md
    OMP_WAIT_POLICY=passive PYTHONPATH=src .venv/bin/python benchmarks/deal_controls.py --append \
        --features benchmarks/configs/no_joint.toml   # adds a section: the joint model off, the shrunk rates alone

Options: ``--seeds 0 1 2 3 4 --reps 60 --accounts 3000 --out PATH``; ``--features TOML`` is passed to ``repfit
train``; ``--append`` adds a section (titled ``--title``) to ``--out``. The CLI runs with the interpreter and the
``PYTHONPATH`` of this script, so pointing ``PYTHONPATH`` at another checkout measures that code.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from worlds import generate, rep_recovery, write_deal_world  # noqa: E402

ARMS = ("with", "without")
SHOWN = ("within_account", "all_pairs", "mae", "rep_skill", "rep_true_mean", "renewal_coef", "inbound_coef",
         "renewal_desk_lift", "inbound_desk_lift", "test_auc")


def repfit(*args, cwd: Path) -> float:
    """Run ``repfit ARGS`` as a user would (``python -m repfit.cli``); return its wall time in seconds."""
    env = {**os.environ, "OMP_WAIT_POLICY": "passive"}
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "repfit.cli", *map(str, args)], cwd=cwd, env=env,
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"repfit {' '.join(map(str, args))} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return time.perf_counter() - t0


def run_arm(folder: Path, seed: int, reps: int, accounts: int, controls: bool, features: Path | None) -> dict[str, float]:
    """Write the org (with or without its deal-level columns), train, score, and measure against the truth."""
    from repfit.winprob import PairScorer

    org = folder / "org"
    world = write_deal_world(org, reps, accounts, seed, controls=controls)
    uri = f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"
    (folder / "mlruns").mkdir()
    extra = ("--features", features.resolve()) if features else ()
    t_train = repfit("train", "--data", org, "--tracking-uri", uri, "--models-dir", folder / "models", *extra, cwd=folder)
    t_score = repfit("score", "--data", org, "--out", folder / "scores.parquet", "--tracking-uri", uri, cwd=folder)
    scores = pd.read_parquet(folder / "scores.parquet")
    bundle = folder / "models" / "repfit-winprob-v1.joblib"  # the first (and only) version of this store
    card = PairScorer.load(bundle).card
    closed = int((world.opportunities["outcome"] != "open").sum())
    return {**rep_recovery(scores, world), "test_auc": card.test_metrics["repfit.test.auc"],
            "closed": closed, "train_s": t_train, "score_s": t_score}


def table(rows: list[dict]) -> list[str]:
    head = ["seed", "arm", "closed"] + list(SHOWN) + ["train s", "score s"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["seed"]), r["arm"], f"{r['closed']:,}"] + [f"{r[k]:.3f}" for k in SHOWN]
        out.append("| " + " | ".join(cells + [f"{r['train_s']:.1f}", f"{r['score_s']:.1f}"]) + " |")
    return out


def differences(rows: list[dict]) -> list[str]:
    """With minus without, per seed (same org, same run), and the mean over seeds."""
    df = pd.DataFrame(rows).set_index(["seed", "arm"])
    keys = ("within_account", "rep_skill", "renewal_coef", "inbound_coef", "renewal_desk_lift", "inbound_desk_lift", "mae")
    out = ["| seed | " + " | ".join(f"Δ {k}" for k in keys) + " |", "|" + "---|" * (len(keys) + 1)]
    diffs = []
    for seed in df.index.get_level_values(0).unique():
        d = {k: df.loc[(seed, "with"), k] - df.loc[(seed, "without"), k] for k in keys}
        diffs.append(d)
        out.append(f"| {seed} | " + " | ".join(f"{d[k]:+.3f}" for k in keys) + " |")
    mean = pd.DataFrame(diffs).mean()
    out.append("| mean | " + " | ".join(f"{mean[k]:+.3f}" for k in keys) + " |")
    return out


INTRO = [
    "# Deal-level attributes as controls (issue 12, item 5)", "",
    "Orgs from `tests/worlds.py` (not `repfit synth`): renewal +1.5 and inbound +0.8 log-odds; a renewal desk (a third "
    "of the reps) works ~75% renewals, the others ~15%; an independent inbound desk ~70% inbound leads, the others "
    "~20%; desks drawn independently of skill; lognormal potentials. Arm `with`: opportunities.csv carries deal_type "
    "and lead_source; `without`: the same org with those columns dropped. Each arm is `repfit train` then `repfit "
    "score` in a subprocess (`python -m repfit.cli`, a store of its own); the scores file is compared with the planted "
    "truth (P(win) averaged over the account's own deal mix). Row `truth`: the planted P(win) itself scored as if it "
    "were a model (what the rep-level measures give with no bias: their chance level).", "",
    "Columns: `within_account` mean within-account Spearman of p_win with p_true; `all_pairs` Spearman over all pairs; "
    "`mae` mean |p_win - p_true|; `rep_skill` Spearman of a rep's mean score over all accounts with its planted skill "
    "(`rep_true_mean`: with its mean p_true); `renewal_coef` / `inbound_coef` least-squares coefficient of the rep's "
    "realised renewal / inbound share in logit(rep's mean score) ~ skill + shares (0 = no deal ease credited to the "
    "rep; the planted deal effects are 1.5 and 0.8); `*_desk_lift` mean (rank by score - rank by skill) of the desk's "
    "reps (negative: ranked above their skill); `test_auc` the model card's test-period AUC.", "",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--reps", type=int, default=60)
    ap.add_argument("--accounts", type=int, default=3000)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "deal_controls.md")
    ap.add_argument("--features", type=Path, default=None, help="Feature spec passed to `repfit train`.")
    ap.add_argument("--title", default="", help="The section's title (default: the feature spec).")
    ap.add_argument("--append", action="store_true", help="Add a section to --out instead of rewriting it.")
    a = ap.parse_args()
    rows = []
    t0 = time.perf_counter()
    for seed in a.seeds:
        world = generate(a.reps, a.accounts, seed)  # the planted truth scored as if it were a model: the floor of
        truth = world.true_win_probability().rename(columns={"p_true": "p_win"})  # chance in the rep-level measures
        rows.append({"seed": seed, "arm": "truth", **rep_recovery(truth, world), "test_auc": float("nan"),
                     "closed": int((world.opportunities["outcome"] != "open").sum()), "train_s": 0.0, "score_s": 0.0})
        for arm in ARMS:
            with tempfile.TemporaryDirectory() as d:
                m = run_arm(Path(d), seed, a.reps, a.accounts, controls=arm == "with", features=a.features)
            rows.append({"seed": seed, "arm": arm, **m})
            print(seed, arm, {k: round(m[k], 3) for k in SHOWN}, flush=True)
    features = f" --features {a.features}" if a.features else ""
    lines = [f"## {a.title or ('features ' + str(a.features) if a.features else 'default configs')}", "",
             f"Command: `OMP_WAIT_POLICY=passive PYTHONPATH=src .venv/bin/python benchmarks/deal_controls.py --seeds "
             f"{' '.join(map(str, a.seeds))} --reps {a.reps} --accounts {a.accounts}{features}` (Python "
             f"{platform.python_version()}, {platform.machine()}, {os.cpu_count()} cores, 2 LightGBM threads; "
             f"{time.perf_counter() - t0:.0f} s in all). {a.reps} reps x {a.accounts:,} accounts.", ""]
    lines += table(rows) + ["", "With minus without (same org, same run):", ""] + differences(rows) + [""]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    old = a.out.read_text() if a.append and a.out.is_file() else "\n".join(INTRO) + "\n"
    a.out.write_text(old + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
