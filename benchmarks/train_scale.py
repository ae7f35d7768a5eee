"""Training at planner scale (issue 14, point 6): `repfit train` on fresh synthetic orgs, through the CLI.

Each run is a child process doing what a user does: `repfit synth --reps R --accounts A` (a fresh org, files out),
then `repfit train --data ORG` (files in, an MLflow store and a model bundle out). Per run it records wall time,
CPU time (user + system, of the child), peak memory (the child's max RSS) and each stage: the `  .. stage` lines the
CLI prints on stderr, stamped as they arrive, with the child's CPU time read from /proc at the same moment.

Runs (the baseline in the same run, on the same orgs):
- baseline: repfit at commit BASE (before this change: every band-edge trial on all training deals, the signal check
  on every test deal x every rep), its `src/` taken with `git archive`, at the mid size where it finishes;
- this code at the mid size (ratio against the baseline) and at 1,000 reps x 100,000 accounts (~400k closed deals):
  the bar is under 15 minutes on 2 cores.

    OMP_WAIT_POLICY=passive .venv/bin/python benchmarks/train_scale.py   # writes benchmarks/results/train_scale.md

The machine these ran on is shared with other jobs: wall time depends on the load (recorded as the load average at
the start and end of each run); CPU time much less so.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import signal
import subprocess
import sys
import tarfile
import io
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASE = "11c8eab"  # main before issue 14, point 6
BAR_SECONDS = 15 * 60
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    label: str
    size: tuple[int, int]
    wall: float = float("nan")
    cpu: float = float("nan")
    max_rss_gb: float = float("nan")
    stages: list[tuple[str, float, float]] = field(default_factory=list)  # (stage, wall s, cpu s)
    load: tuple[float, float] = (float("nan"), float("nan"))
    finished: bool = False
    note: str = ""
    stdout: str = ""

    def metric(self, model: str, column: int) -> float:
        m = re.search(rf"^{model}\s+([-\d.]+)\s+([-\d.]+)", self.stdout, re.M)
        return float(m.group(column)) if m else float("nan")


def _proc_cpu(pid: int) -> float:
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / TICKS  # utime, stime of the process (all its threads)
    except (OSError, IndexError):
        return float("nan")


def run_cli(label: str, size: tuple[int, int], src: Path, args: list[str], cwd: Path, timeout: float) -> Run:
    """One `repfit` command in a child process: wall, CPU, max RSS and the stage lines it prints."""
    run = Run(label, size, load=(os.getloadavg()[0], float("nan")))
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_WAIT_POLICY": "passive"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "repfit.cli", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    marks = [("start", 0.0, 0.0)]
    deadline = t0 + timeout
    import threading

    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)
    reader.start()
    killed = False

    def watchdog():
        nonlocal killed
        while proc.poll() is None:
            if time.perf_counter() > deadline:
                killed = True
                os.killpg(proc.pid, signal.SIGKILL)  # the child's own process group only
                return
            time.sleep(1)

    threading.Thread(target=watchdog, daemon=True).start()
    for line in proc.stderr:
        m = re.match(r"\s+\.\. (.+)$", line.rstrip())
        if m:
            marks.append((m.group(1), time.perf_counter() - t0, _proc_cpu(proc.pid)))
    _, status, usage = os.wait4(proc.pid, 0)
    run.wall = time.perf_counter() - t0
    reader.join()
    run.stdout = "".join(out)
    run.cpu = usage.ru_utime + usage.ru_stime
    run.max_rss_gb = usage.ru_maxrss / 1e6
    run.finished = os.waitstatus_to_exitcode(status) == 0 and not killed
    if killed:
        run.note = f"stopped after {timeout / 60:.0f} min"
    elif not run.finished:
        run.note = f"exit {os.waitstatus_to_exitcode(status)}"
    marks.append(("end", run.wall, run.cpu))
    names = ["load + split"] + [m[0] for m in marks[1:-1]]
    run.stages = [(n, b[1] - a[1], b[2] - a[2]) for n, a, b in zip(names, marks, marks[1:])]
    run.load = (run.load[0], os.getloadavg()[0])
    return run


def baseline_src(work: Path) -> Path:
    """``src/`` of repfit at ``BASE``, unpacked under ``work``."""
    blob = subprocess.run(["git", "-C", str(ROOT), "archive", BASE, "src"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(work / "base", filter="data")
    return work / "base" / "src"


def train(label: str, size: tuple[int, int], src: Path, org: Path, work: Path, timeout: float) -> Run:
    out = work / f"{label}-{size[0]}x{size[1]}"
    out.mkdir()
    run = run_cli(label, size, src, ["train", "--data", str(org), "--tracking-uri", f"sqlite:///{out}/mlflow.db",
                                     "--models-dir", str(out / "models")], out, timeout)
    print(f"{label} {size}: wall {run.wall:.0f}s cpu {run.cpu:.0f}s rss {run.max_rss_gb:.1f}GB "
          f"{'ok' if run.finished else run.note}", flush=True)
    return run


def _fmt_stages(run: Run) -> str:
    return "; ".join(f"{n} {w:.0f} s ({c:.0f} cpu)" for n, w, c in run.stages)


def report(runs: list[Run], synths: list[Run], closed: dict, args) -> str:
    lines = ["# Training at planner scale (issue 14, point 6)", "",
             f"Command: `OMP_WAIT_POLICY=passive .venv/bin/python benchmarks/train_scale.py` (Python "
             f"{platform.python_version()}, {platform.machine()}, {os.cpu_count()} cores, LightGBM n_jobs=2 as in "
             "training/default.toml). Each run: `repfit train --data ORG` on a fresh `repfit synth --reps R --accounts A` "
             "org, as a child process. Baseline: repfit at commit "
             f"`{BASE}` (before this change), same orgs, same run. **The machine was shared with other jobs** (load "
             "average at each run's start/end below): wall times are inflated by the load; CPU time (user + system, "
             "all threads of the child) is the steadier measure.", "",
             f"Bar: under {BAR_SECONDS // 60} minutes on 2 cores at 1,000 reps x 100,000 accounts.", "",
             "| run | reps x accounts | closed deals | finished | wall s | CPU s | peak RSS GB | load start/end | test AUC | test log loss |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r.label} | {r.size[0]:,} x {r.size[1]:,} | {closed.get(r.size, '?')} | "
                     f"{'yes' if r.finished else 'no: ' + r.note} | {r.wall:.0f} | {r.cpu:.0f} | {r.max_rss_gb:.2f} | "
                     f"{r.load[0]:.1f} / {r.load[1]:.1f} | {r.metric('repfit', 1):.4f} | {r.metric('repfit', 2):.4f} |")
    lines += ["", "Ratios (baseline / this code, same org):", ""]
    for size in sorted({r.size for r in runs}):
        base = next((r for r in runs if r.size == size and r.label == "baseline" and r.finished), None)
        new = next((r for r in runs if r.size == size and r.label == "this code" and r.finished), None)
        if base and new:
            lines.append(f"- {size[0]:,} x {size[1]:,}: wall {base.wall / new.wall:.2f}x, CPU {base.cpu / new.cpu:.2f}x")
    lines += ["", "Stages (wall s, CPU s of the child while the stage ran), as the CLI names them. The baseline's "
              "`features` holds its band-edge search, prior sds and point-in-time features (this code names the two "
              "apart), its `snapshot` its signal check and the history snapshot; `mlflow` is logging, the bundle and "
              "the champion/challenger decision:", ""]
    for r in runs:
        lines.append(f"- {r.label}, {r.size[0]:,} x {r.size[1]:,}: {_fmt_stages(r)}")
    lines += ["", "`repfit synth` (not part of the bar): " + "; ".join(
        f"{s.size[0]:,} x {s.size[1]:,} {s.wall:.0f} s wall" for s in synths), ""]
    full = next((r for r in runs if r.label == "this code" and r.size == tuple(args.full)), None)
    if full is not None:
        verdict = "meets" if full.finished and full.wall < BAR_SECONDS else "does NOT meet"
        lines.append(f"At {full.size[0]:,} x {full.size[1]:,} this code {verdict} the bar: {full.wall / 60:.1f} min wall "
                     f"({full.cpu / 60:.1f} min CPU) on a shared machine.")
    for r in runs:
        sig = re.search(r"rep strengths: (.*?)(?:\n\n|\Z)", r.stdout, re.S)
        if sig:
            lines.append(f"\n{r.label}, {r.size[0]:,} x {r.size[1]:,}: " + " ".join(sig.group(1).split()))
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mid", type=int, nargs=2, default=(200, 20_000), metavar=("REPS", "ACCOUNTS"))
    ap.add_argument("--full", type=int, nargs=2, default=(1_000, 100_000), metavar=("REPS", "ACCOUNTS"))
    ap.add_argument("--baseline-full", action="store_true", help="also run the baseline at the full size")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds before a run is stopped")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results") / "train_scale.md")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="repfit_train_scale_") as tmp:
        work = Path(tmp)
        base, new = baseline_src(work), ROOT / "src"
        orgs, synths, closed = {}, [], {}
        for size in (tuple(args.mid), tuple(args.full)):
            org = work / f"org_{size[0]}x{size[1]}"
            synths.append(run_cli("synth", size, new, ["synth", "--out", str(org), "--reps", str(size[0]),
                                                       "--accounts", str(size[1])], work, args.timeout))
            orgs[size] = org
            import pandas as pd

            outcome = pd.read_csv(org / "opportunities.csv", usecols=["outcome"])["outcome"]
            closed[size] = f"{int(outcome.isin(['won', 'lost']).sum()):,}"
        runs = [train("baseline", tuple(args.mid), base, orgs[tuple(args.mid)], work, args.timeout),
                train("this code", tuple(args.mid), new, orgs[tuple(args.mid)], work, args.timeout),
                train("this code", tuple(args.full), new, orgs[tuple(args.full)], work, args.timeout)]
        if args.baseline_full:
            runs.append(train("baseline", tuple(args.full), base, orgs[tuple(args.full)], work, args.timeout))
        text = report(runs, synths, closed, args)
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
