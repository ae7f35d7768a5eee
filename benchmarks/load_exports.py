"""Loading a CRM export through `repfit validate`, against the same org as three tables (issue 12).

For each size, `repfit synth --format hubspot` writes one export file (``deals.csv``: the org's deals plus a few
planted dirty rows) and, in ``truth/org/``, the three tables its clean rows load into. Measured, each as its own
child process, the command a user runs:

  export:    python -m repfit.cli validate --data DIR/deals.csv --mapping hubspot --on-bad-rows quarantine --rejected R
  baseline:  python -m repfit.cli validate --data DIR/truth/org

reported as ratios export / baseline (wall time, CPU time, peak RSS), the two interleaved in the same run. At the largest
size the same for ``--format salesforce`` (``opportunity_report.csv``, ``--mapping salesforce``) against its own
``truth/org`` (whose deal attributes differ from HubSpot's). A reference row times ``validate --help`` (interpreter
start and imports, no data). Each run is checked: exit 0, the export and the baseline report the same reps,
accounts and closed / open deals, and the rejected file holds exactly the planted dirty rows.

Peak RSS and CPU time (user + system): ``/usr/bin/time -v`` around the child if present; else ``os.wait4`` on the
child, which returns that child's own rusage (``getrusage(RUSAGE_CHILDREN)`` would give the largest peak of all
children so far). Wall time: ``time.perf_counter`` around the child. CPU time is reported beside wall time because
on a shared machine wall time also measures the other jobs. Generating the orgs is not timed.

``--steps`` also times the steps of loading the largest HubSpot export and its baseline (each step's function in
``repfit.schema`` wrapped with a timer in a child process; no profiler, whose per-call overhead inflates the
per-value Python work of some steps several times over).

    OMP_WAIT_POLICY=passive .venv/bin/python benchmarks/load_exports.py --steps --repeats 5   # writes benchmarks/results/load_exports.md
    [--workdir DIR: keep the generated orgs there and reuse them] [--out FILE]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = [(40, 2_000), (200, 20_000), (500, 100_000)]
SALESFORCE_SIZES = [(500, 100_000)]
SEED = 7
EXPORT_FILE = {"hubspot": "deals.csv", "salesforce": "opportunity_report.csv"}
TIME = "/usr/bin/time"
COUNTS = ("reps", "accounts", "closed opportunities", "open opportunities")
# (step, the repfit.schema names whose time it sums); "- of which" steps are inside the one above them
STEPS = [
    ("read the file(s) (pandas read_csv)", ["_read_file"]),
    ("thousands separators (plain_numbers)", ["plain_numbers"]),
    ("rename / exclude / split columns", ["select_columns", "split_derived", "snake_attributes"]),
    ("row checks (ids, outcome, rep / account, dates; bad rows)", ["_check_rows"]),
    ("- of which ids (missing, repeated)", ["_opportunity_ids"]),
    ("- of which outcome labels", ["_normalise_outcome"]),
    ("- of which dates (created, closed)", ["_dates"]),
    ("derive reps and accounts from the deals", ["derive_table"]),
    ("validate reps and accounts", ["_validate_reps", "_validate_accounts"]),
    ("references (rep, account of each deal)", ["_check_references"]),
    ("finish opportunities", ["_finish_opportunities"]),
    ("leakage guard", ["guard_leakage"]),
    ("findings", ["_findings", "_zone_findings", "_source_notes"]),
]


def python_cmd() -> list[str]:
    return [sys.executable, "-m", "repfit.cli"]


def measure(args: list[str], cwd: Path) -> dict:
    """Run one child; its wall time and CPU time (user + system, s), peak RSS (MB), exit code and output."""
    env = {**os.environ, "OMP_WAIT_POLICY": "passive"}
    if os.path.exists(TIME):
        t0 = time.perf_counter()
        p = subprocess.run([TIME, "-v", *args], cwd=cwd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0

        def field(name):
            m = re.search(rf"{re.escape(name)}: ([\d.]+)", p.stderr)
            return float(m.group(1)) if m else float("nan")

        return {"wall": wall, "cpu": field("User time (seconds)") + field("System time (seconds)"),
                "rss_mb": field("Maximum resident set size (kbytes)") / 1024, "rc": p.returncode,
                "out": p.stdout, "err": p.stderr}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        child = subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - t0
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024,
                "rc": child.returncode, "out": out.read(), "err": err.read()}


def counts(stdout: str) -> dict[str, str]:
    found = {}
    for line in stdout.splitlines():
        for name in COUNTS:
            if re.match(rf"{name}\s+[\d,]+$", line):
                found[name] = line.split()[-1]
    return found


def generate(workdir: Path, fmt: str, R: int, A: int) -> Path:
    d = workdir / f"{fmt}_{R}x{A}_seed{SEED}"
    if not (d / EXPORT_FILE[fmt]).is_file():
        shutil.rmtree(d, ignore_errors=True)
        subprocess.run([*python_cmd(), "synth", "--out", str(d), "--reps", str(R), "--accounts", str(A),
                        "--seed", str(SEED), "--format", fmt], check=True, capture_output=True)
    return d


def commands(d: Path, fmt: str) -> dict[str, list[str]]:
    return {"baseline": [*python_cmd(), "validate", "--data", str(d / "truth" / "org")],
            "export": [*python_cmd(), "validate", "--data", str(d / EXPORT_FILE[fmt]), "--mapping", fmt,
                       "--on-bad-rows", "quarantine", "--rejected", str(d / "rejected.csv")]}


def run_case(d: Path, fmt: str, repeats: int) -> dict:
    cmds = commands(d, fmt)
    runs: dict[str, list[dict]] = {"baseline": [], "export": []}
    for i in range(repeats):
        for arm in (("baseline", "export") if i % 2 == 0 else ("export", "baseline")):
            r = measure(cmds[arm], d)
            if r["rc"] != 0:
                raise SystemExit(f"{' '.join(cmds[arm])} exited {r['rc']}:\n{r['err'][-2000:]}")
            runs[arm].append(r)
    seen = {arm: counts(rs[0]["out"]) for arm, rs in runs.items()}
    if seen["export"] != seen["baseline"] or len(seen["export"]) != len(COUNTS):
        raise SystemExit(f"{d}: the export and the three tables load different orgs: {seen}")
    planted = sum(json.loads((d / "truth" / "dirty_rows.json").read_text()).values())
    with open(d / "rejected.csv", newline="") as f:
        rejected = sum(1 for _ in csv.reader(f)) - 1
    if rejected != planted:
        raise SystemExit(f"{d}: {rejected} rows set aside, {planted} planted")
    med = {arm: {k: statistics.median(r[k] for r in rs) for k in ("wall", "cpu", "rss_mb")} for arm, rs in runs.items()}
    spread = {arm: (min(r["wall"] for r in rs), max(r["wall"] for r in rs)) for arm, rs in runs.items()}
    rows = _export_rows(d / EXPORT_FILE[fmt])
    return {"med": med, "spread": spread, "counts": seen["export"], "rejected": rejected, "rows": rows,
            "mb": (d / EXPORT_FILE[fmt]).stat().st_size / 1e6,
            "baseline_mb": sum(p.stat().st_size for p in (d / "truth" / "org").iterdir()) / 1e6}


def _export_rows(path: Path) -> int:
    with open(path, newline="") as f:
        return sum(1 for _ in csv.reader(f)) - 1


CHILD_STEPS = r"""
import json, sys, time
from collections import defaultdict
t_start, c_start = time.perf_counter(), time.process_time()
import repfit.schema as S
spent, cpu = defaultdict(float), defaultdict(float)
def timed(name, fn):
    def run(*a, **k):
        t, c = time.perf_counter(), time.process_time()
        try:
            return fn(*a, **k)
        finally:
            spent[name] += time.perf_counter() - t
            cpu[name] += time.process_time() - c
    return run
for name in NAMES + ["load_dataset"]:
    setattr(S, name, timed(name, getattr(S, name)))
import repfit.jobs as J
J.load_dataset = S.load_dataset
from repfit import cli
t_imported, c_imported = time.perf_counter(), time.process_time()
sys.argv = ["repfit"] + ARGS
code = 0
try:
    cli.main()
except SystemExit as e:
    code = e.code
spent["imports"], cpu["imports"] = t_imported - t_start, c_imported - c_start
spent["command"], cpu["command"] = time.perf_counter() - t_imported, time.process_time() - c_imported
sys.stderr.write("STEPS " + json.dumps({"wall": spent, "cpu": cpu}) + "\n")
sys.exit(code)
"""


IMPORTS, REST_LOAD, REST_COMMAND, TOTAL = (
    "imports (repfit.schema, the CLI)", "rest of load_dataset",
    "rest of the command (option parsing, lazy imports, rejected rows written, summary printed)",
    "**imports + command**")


def _rows(r: dict[str, float]) -> dict[str, float]:
    """One run's timings (per timed name) as the table's rows."""
    out = {IMPORTS: r["imports"]}
    out.update({label: sum(r.get(n, 0.0) for n in names) for label, names in STEPS})
    out[REST_LOAD] = r["load_dataset"] - sum(out[label] for label, _ in STEPS if not label.startswith("-"))
    out[REST_COMMAND] = r["command"] - r["load_dataset"]
    out[TOTAL] = r["imports"] + r["command"]
    return out


def steps(d: Path, fmt: str, repeats: int) -> dict[str, dict[str, dict[str, float]]]:
    """Per arm, per clock (wall, cpu), per row of the table: the median seconds over ``repeats`` unprofiled loads,
    each in a fresh child, export and baseline interleaved."""
    names = [n for _, ns in STEPS for n in ns]
    runs: dict[str, list[dict]] = {"baseline": [], "export": []}
    cmds = commands(d, fmt)
    for i in range(repeats):
        for arm in (("baseline", "export") if i % 2 == 0 else ("export", "baseline")):
            code = CHILD_STEPS.replace("NAMES", repr(names)).replace("ARGS", repr(cmds[arm][3:]))
            p = subprocess.run([sys.executable, "-c", code], cwd=d, capture_output=True, text=True,
                               env={**os.environ, "OMP_WAIT_POLICY": "passive"})
            line = [x for x in p.stderr.splitlines() if x.startswith("STEPS ")]
            if p.returncode != 0 or not line:
                raise SystemExit(f"step timing of {arm} failed:\n{p.stderr[-2000:]}")
            runs[arm].append(json.loads(line[0][6:]))
    out = {}
    for arm, rs in runs.items():
        out[arm] = {}
        for clock in ("wall", "cpu"):
            rows = [_rows(r[clock]) for r in rs]
            out[arm][clock] = {k: statistics.median(x[k] for x in rows) for k in rows[0]}
    return out


def machine() -> str:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = ""
    try:
        kb = int(next(line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal")))
        mem = f", {kb / 1024 ** 2:.0f} GB RAM"
    except (OSError, StopIteration):
        pass
    import pandas as pd
    import pyarrow

    return (f"{cpu or platform.processor()}, {os.cpu_count()} cores{mem}, {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}, pandas {pd.__version__}, pyarrow {pyarrow.__version__}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", action="store_true", help="also time the steps of the largest HubSpot load")
    ap.add_argument("--workdir", default=None, help="keep the generated orgs here (reused when present)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "load_exports.md"))
    args = ap.parse_args()
    tmp = None if args.workdir else tempfile.TemporaryDirectory()
    workdir = Path(args.workdir or tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    cases = [("hubspot", R, A) for R, A in SIZES] + [("salesforce", R, A) for R, A in SALESFORCE_SIZES]
    dirs = {c: generate(workdir, *c) for c in cases}

    load_before = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    help_runs = [measure([*python_cmd(), "validate", "--help"], workdir) for _ in range(args.repeats)]
    floor = {k: statistics.median(r[k] for r in help_runs) for k in ("wall", "cpu", "rss_mb")}
    results = {}
    for c in cases:
        results[c] = run_case(dirs[c], c[0], args.repeats)
        m = results[c]["med"]
        print(c, f"export {m['export']['wall']:.2f} s (CPU {m['export']['cpu']:.2f}) {m['export']['rss_mb']:.0f} MB, "
                 f"baseline {m['baseline']['wall']:.2f} s (CPU {m['baseline']['cpu']:.2f}) {m['baseline']['rss_mb']:.0f} MB",
              flush=True)
    big = ("hubspot", *SIZES[-1])
    st = steps(dirs[big], "hubspot", args.repeats) if args.steps else None
    load_after = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []

    rss_how = "/usr/bin/time -v" if os.path.exists(TIME) else "os.wait4 rusage"
    cmd = ("OMP_WAIT_POLICY=passive .venv/bin/python benchmarks/load_exports.py" + (" --steps" if args.steps else "")
           + f" --repeats {args.repeats}")
    lines = ["# Loading a CRM export vs the same org as three tables (issue 12)", "",
             f"Command: `{cmd}`.", "", f"Machine: {machine()}. Load average (1, 5, 15 min) at the start "
             f"{' '.join(load_before) or '?'}, at the end {' '.join(load_after) or '?'} (this benchmark's own child counts about 1; more "
             "means other jobs shared the cores, and wall times are then noisy; CPU time, user + system, is less so).", "",
             "Each figure: `python -m repfit.cli validate ...` as a child process, the median of "
             f"{args.repeats} runs (export and baseline interleaved); wall time by `time.perf_counter` around the child, "
             f"CPU time and peak RSS by {rss_how}. Orgs from `repfit synth --seed {SEED}`. Export: "
             "`validate --data DIR/deals.csv --mapping hubspot --on-bad-rows quarantine --rejected DIR/rejected.csv` "
             "(Salesforce: `opportunity_report.csv`, `--mapping salesforce`); baseline: `validate --data DIR/truth/org`, "
             "the three tables the export's clean rows load into (checked: same reps, accounts, closed and open deals; "
             "the rows set aside are exactly the planted ones).", "",
             f"Reference, no data (`validate --help`: interpreter start and imports): {floor['wall']:.2f} s wall, "
             f"{floor['cpu']:.2f} s CPU, {floor['rss_mb']:.0f} MB.", "",
             "| format | reps x accounts | export rows (set aside) | export MB / tables MB | export s | baseline s | "
             "wall ratio | export CPU s | baseline CPU s | CPU ratio | export peak MB | baseline peak MB | memory ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (fmt, R, A), r in results.items():
        e, b = r["med"]["export"], r["med"]["baseline"]
        lines.append(f"| {fmt} | {R:,} x {A:,} | {r['rows']:,} ({r['rejected']}) | {r['mb']:.1f} / {r['baseline_mb']:.1f} | "
                     f"{e['wall']:.2f} | {b['wall']:.2f} | **{e['wall'] / b['wall']:.2f}** | {e['cpu']:.2f} | {b['cpu']:.2f} | "
                     f"**{e['cpu'] / b['cpu']:.2f}** | {e['rss_mb']:,.0f} | {b['rss_mb']:,.0f} | **{e['rss_mb'] / b['rss_mb']:.2f}** |")
    lines += ["", "Wall time range over the runs (min .. max, s): " + "; ".join(
        f"{fmt} {R}x{A}: export {r['spread']['export'][0]:.2f} .. {r['spread']['export'][1]:.2f}, baseline "
        f"{r['spread']['baseline'][0]:.2f} .. {r['spread']['baseline'][1]:.2f}" for (fmt, R, A), r in results.items()) + "."]

    if st:
        lines += ["", f"## Where the time goes: hubspot {big[1]:,} x {big[2]:,}", "",
                  f"Unprofiled loads in fresh children, each step's `repfit.schema` function wrapped with a timer; per "
                  f"row the median of {args.repeats} runs of each (seconds; a step's calls summed: the baseline reads "
                  "three files; medians per row, so the rows need not add up to the total exactly). "
                  "CPU: `time.process_time` (all threads of the child).", "",
                  "| step | export s | baseline s | export - baseline s | export CPU s | baseline CPU s | "
                  "export - baseline CPU s |", "|---|---|---|---|---|---|---|"]

        def diff(label):
            return tuple(st["export"][c][label] - st["baseline"][c][label] for c in ("wall", "cpu"))

        for label in st["export"]["wall"]:
            (ew, ec), (bw, bc) = ([st[arm][c][label] for c in ("wall", "cpu")] for arm in ("export", "baseline"))
            lines.append(f"| {label} | {ew:.2f} | {bw:.2f} | {ew - bw:+.2f} | {ec:.2f} | {bc:.2f} | {ec - bc:+.2f} |")
        # CPU time: on a shared machine the wall-time differences of the steps both commands run are mostly noise
        total = diff(TOTAL)[1]
        extra = sorted(((diff(label)[1], label) for label, _ in STEPS if not label.startswith("-")), reverse=True)
        if total > 0:
            lines += ["", f"Of the export's extra {total:.2f} s of CPU time, the largest steps: " + "; ".join(
                f"{label} {d:+.2f} s ({d / total:.0%})" for d, label in extra[:4]) + "."]
    if READING:
        lines += ["", READING]
    Path(args.out).parent.mkdir(exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if tmp:
        tmp.cleanup()


READING = """Reading: at 2,000 accounts both commands are mostly interpreter start and imports (the reference row),
so the ratio is near 1; it grows with the data. No single step dominates the export's extra cost. Largest first:
`plain_numbers` tests every text column of the raw file (all 23 HubSpot columns, including those the mapping then
excludes) against the thousands-separator patterns, and these contain `\\s`, which pandas 3.1 does not hand to
pyarrow's RE2 (whose `\\s` differs), so `str.match` runs Python's `re` once per cell (cProfile counts one
`re.Pattern.match` call per cell; its per-call overhead makes this step look several times costlier under the
profiler than unprofiled). Reading the file: it has nearly twice the bytes of the three tables (each deal row
repeats its company's and owner's attributes and carries the fields the mapping excludes). Deriving the reps and
accounts from the deal rows (the latest value per company and per owner). The row checks: the export has bad rows to
set aside, so each filtering step copies the deal frame (in pandas a boolean mask that keeps every row costs
nothing, one dropped row costs a copy of every column), which the clean baseline never pays. The steps both commands
run (leakage guard, findings) are about as large as all of that together and dilute the ratio: `findings` is mostly
two `Series.isin` calls against the 430k deals' ids, in which pandas converts every value passed (duplicates
included) one by one."""

if __name__ == "__main__":
    main()
