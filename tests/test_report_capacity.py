"""repfit report (rendered in a real headless Chromium) and repfit capacity (against independent exact solves)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linear_sum_assignment

from repfit.assign import Problem, budget_curve, solve_milp

from conftest import run


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def render_dom(html_path, tmp_path) -> str:
    """The DOM of ``html_path`` after Chromium laid it out and ran its scripts (flags from the machine notes)."""
    exe = _chromium()
    if exe is None:
        pytest.skip("chromium is not installed (`make test` installs Debian's chromium when it can)")
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1200,900", "--virtual-time-budget=5000",
           "--dump-dom", html_path.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_report_renders_in_headless_chromium_with_every_plot(trained):
    org, uri, tmp = trained
    out = tmp / "report.html"
    title = "Q3 plan <script>alert('x')</script>"
    res = run("report", "--data", org, "--tracking-uri", uri, "--out", out, "--balance-tiers", "--title", title, "--top", "5")
    assert res.exit_code == 0, res.output
    page = out.read_text()
    # self-contained: nothing fetched from anywhere
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:)?//""", page) and "<link" not in page
    assert "<script>alert" not in page and "Q3 plan &lt;script&gt;" in page
    assert page.count('<figure data-plot="') == 6
    dom = render_dom(out, tmp)
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert 'data-plots-expected="6"' in body and 'data-plots-drawn="6"' in body, body
    assert dom.count('data-drawn="yes"') == 6 and 'data-drawn="no"' not in dom
    for name in ("calibration", "quality", "rep_value", "tier_mix", "band_accounts", "budget"):  # the default band
        assert f'data-plot="{name}"' in dom

    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("repfit").experiment_id], "tags.`repfit.kind` = 'report'")
    assert len(runs) == 1
    assert {a.path for a in client.list_artifacts(runs[0].info.run_id, "outputs")} == {"outputs/report.html"}


def test_a_page_with_a_broken_plot_is_caught(tmp_path):
    """The in-page check can fail: a plot with axes, ticks and title but no data is reported as not drawn,
    next to a real plot that is."""
    from repfit.report import CHECK_JS, budget_svg

    empty = pd.DataFrame({"moves": [], "uplift": []})
    real = pd.DataFrame({"moves": [0, 10, 30], "uplift": [0.0, 5.0, 7.0]})
    page = ('<!DOCTYPE html><html><body>'
            f'<figure data-plot="empty">{budget_svg(empty, None, "EV")}</figure>'
            f'<figure data-plot="real">{budget_svg(real, 10, "EV")}</figure>'
            f'<script>{CHECK_JS}</script></body></html>')
    f = tmp_path / "broken.html"
    f.write_text(page)
    dom = render_dom(f, tmp_path)
    assert 'data-plots-expected="2"' in dom and 'data-plots-drawn="1"' in dom
    assert re.search(r'data-plot="empty"[^>]*data-drawn="no"', dom) and re.search(r'data-plot="real"[^>]*data-drawn="yes"', dom)


def test_plot_labels_are_text_not_tex():
    from repfit.report import rep_value_svg

    per_rep = pd.DataFrame({"rep_id": ["R$2$", "Ann$\\foo$"], "ev_before": [1.0, 2.0], "ev_after": [2.0, 1.0]})
    assert rep_value_svg(per_rep).startswith("<svg")  # TeX parsing would fail on "\\foo"


def test_output_to_an_impossible_path_is_a_clear_error(trained):
    org, uri, tmp = trained
    res = run("report", "--data", org, "--tracking-uri", uri, "--out", org / "reps.csv" / "report.html")
    assert res.exit_code == 2 and "cannot write there" in res.output and "Traceback" not in res.output


def _instance(seed, A=40, R=5):
    rng = np.random.default_rng(seed)
    values = rng.gamma(2.0, 1.0, (A, 1)) * rng.beta(2, 3, (A, R))
    cap = np.full(R, int(np.ceil(1.2 * A / R)))
    current = rng.permutation(np.resize(np.arange(R), A))
    return Problem(values=values, capacity=cap, current=current, locked=rng.random(A) < 0.05)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_budget_curve_points_are_the_best_for_their_move_count(seed):
    p = _instance(seed)
    curve = budget_curve(p)
    assert len(curve) >= 4 and curve.moves.is_monotonic_increasing and curve.uplift.is_monotonic_increasing
    now = float(p.values[np.arange(len(p.current)), p.current].sum())
    for row in curve.itertuples():
        best = solve_milp(replace(p, max_moves=int(row.moves)))
        x = best.assignment
        assert float(p.values[np.arange(len(x)), x].sum()) - now == pytest.approx(row.uplift, rel=1e-9, abs=1e-6)
    assert curve.moves.iloc[0] == 0 and curve.uplift.iloc[0] == 0  # today's owners fit: keeping all is feasible
    x = _slot_owner(p)  # the free optimum, found independently, is the curve's last point
    assert curve.uplift.iloc[-1] == pytest.approx(float(p.values[np.arange(len(x)), x].sum()) - now, rel=1e-9)


def _slot_owner(p):
    """The free optimum's assignment via the Hungarian method on capacity slots, honouring locks."""
    V = p.values.copy()
    lk = np.flatnonzero(p.locked)
    V[lk] = -1e9
    V[lk, p.current[lk]] = p.values[lk, p.current[lk]]
    owner = np.repeat(np.arange(p.shape[1]), p.capacity)
    rows, cols = linear_sum_assignment(-V[:, owner])
    x = np.empty(p.shape[0], int)
    x[rows] = owner[cols]
    return x


def _best_value(values, cap, allowed=None):
    """Independent optimum: Hungarian method on capacity slots (scipy), -inf for forbidden pairs."""
    V = values if allowed is None else np.where(allowed, values, -1e9)
    owner = np.repeat(np.arange(values.shape[1]), cap)
    if len(owner) < values.shape[0]:
        return float("nan")
    rows, cols = linear_sum_assignment(-V[:, owner])
    return float(V[rows, owner[cols]].sum())


def test_capacity_figures_match_independent_solves(trained):
    org, uri, tmp = trained
    out = tmp / "capacity.csv"
    res = run("capacity", "--data", org, "--tracking-uri", uri, "--add", "4", "--out", out, "--balance", "none")
    assert res.exit_code == 0, res.output
    assert "covered (" in res.output and "adding reps like" in res.output
    summary = json.loads((tmp / "capacity_summary.json").read_text())
    values = pd.read_csv(out, dtype={"rep_id": str})
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    added = pd.read_csv(tmp / "capacity_added.csv")
    assert summary["shortfall"] == 0 and len(values) == 12 and values.value_lost_if_gone.is_monotonic_decreasing

    # rebuild the problem from the same scores and check every figure with scipy's Hungarian method
    from repfit.jobs import DataSource, Store, suggestion_context

    ctx = suggestion_context(data=DataSource(org), store=Store(uri, tmp))
    ev = ctx.ev()
    lk = ctx.ds.accounts.locked.to_numpy(bool)
    cur = ctx.current
    allowed = np.ones_like(ev, bool)
    allowed[lk] = False
    allowed[np.flatnonzero(lk), cur[lk]] = True
    cap = ctx.ds.reps.capacity.to_numpy()
    base = _best_value(ev, cap, allowed)
    assert summary["base_value"] == pytest.approx(base, rel=1e-9)
    rep_ids = ctx.ds.reps.rep_id.to_numpy()
    for row in values.head(3).itertuples():
        r = int(np.flatnonzero(rep_ids == row.rep_id)[0])
        keep = np.arange(len(rep_ids)) != r
        alw = allowed[:, keep] | (lk & (cur == r))[:, None]  # its locked accounts are free to go
        assert row.value_lost_if_gone == pytest.approx(base - _best_value(ev[:, keep], cap[keep], alw), rel=1e-9)
    like = int(np.flatnonzero(rep_ids == summary["like"])[0])
    for row in added.itertuples():
        n = int(row.reps_added)
        v = _best_value(np.hstack([ev, np.repeat(ev[:, [like]], n, axis=1)]), np.concatenate([cap, np.full(n, cap[like])]),
                        np.hstack([allowed, np.repeat(allowed[:, [like]], n, axis=1)]))
        assert row.total_value == pytest.approx(v, rel=1e-9)
    # diminishing returns: the optimum is concave in the capacity of a rep type, so marginal gains never rise
    assert (np.diff(added.marginal_gain) <= 1e-6 * base).all() and (added.marginal_gain >= -1e-6).all()
    assert (tmp / "capacity_added.svg").read_text().startswith("<svg")

    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("repfit").experiment_id], "tags.`repfit.kind` = 'capacity'")
    assert len(runs) == 1 and runs[0].data.metrics["shortfall"] == 0


def test_capacity_reports_a_shortfall_and_the_reps_that_cover_it(trained, tmp_path):
    org, uri, tmp = trained
    short = tmp_path / "org"
    shutil.copytree(org, short)
    reps = pd.read_csv(short / "reps.csv", dtype=str)
    reps["capacity"] = "10"  # 12 reps x 10 = 120 < 150 accounts
    reps.to_csv(short / "reps.csv", index=False)
    acc = pd.read_csv(short / "accounts.csv", dtype=str)
    acc["locked"] = "false"
    acc.to_csv(short / "accounts.csv", index=False)
    res = run("capacity", "--data", short, "--tracking-uri", uri, "--add", "2", "--like", "R001", "--out", tmp_path / "c.csv")
    assert res.exit_code == 0, res.output
    assert "SHORTFALL of 30 accounts: 3 more reps like R001 (capacity 10) needed to cover them" in res.output
    added = pd.read_csv(tmp_path / "c_added.csv")
    assert list(added.reps_added) == [3, 4, 5] and np.isfinite(added.total_value).all()

    def no_nan(token):
        raise AssertionError(f"non-JSON constant {token}")

    summary = json.loads((tmp_path / "c_summary.json").read_text(), parse_constant=no_nan)
    assert summary["base_value"] is None and summary["shortfall"] == 30
    res = run("capacity", "--data", short, "--tracking-uri", uri, "--like", "R999", "--out", tmp_path / "c.csv")
    assert res.exit_code == 2 and "--like: rep_id 'R999' is not in" in res.output and "Traceback" not in res.output


def test_capacity_stops_on_constraints_that_cannot_hold(trained, tmp_path):
    """Infeasible for a reason other than total capacity: the same message as `repfit assign`, exit 2, no files."""
    org, uri, _ = trained
    bad = tmp_path / "org"
    shutil.copytree(org, bad)
    acc = pd.read_csv(bad / "accounts.csv", dtype=str)
    holder = acc.current_rep_id.iloc[0]
    acc.loc[acc.current_rep_id == holder, "locked"] = "true"
    acc.to_csv(bad / "accounts.csv", index=False)
    reps = pd.read_csv(bad / "reps.csv", dtype=str)
    reps.loc[reps.rep_id == holder, "capacity"] = "2"
    reps.to_csv(bad / "reps.csv", index=False)
    res = run("capacity", "--data", bad, "--tracking-uri", uri, "--out", tmp_path / "c.csv")
    assert res.exit_code == 2 and f"locked accounts exceed capacity: '{holder} has" in res.output
    assert not (tmp_path / "c.csv").exists() and "Traceback" not in res.output


def test_every_command_has_an_example_in_its_help():
    for cmd in ("synth", "validate", "train", "score", "assign", "suggest", "report", "capacity"):
        res = run(cmd, "--help")
        assert res.exit_code == 0 and "Example:" in res.output and f"repfit {cmd} " in res.output, cmd



def test_a_negative_marginal_under_bands_is_explained():
    """Adding a rep under a band can lower the best total (it must take its share): the output says why."""
    from repfit.capacity import Coverage, Headcount, format_headcount

    cov = Coverage(accounts=100, reps=4, capacity=120, shortfall=0, reps_needed=0, like="R1", like_capacity=30)
    added = pd.DataFrame({"reps_added": [1, 2], "total_value": [99.0, 97.0], "marginal_gain": [-1.0, -2.0],
                          "gain_vs_today": [-1.0, -3.0]})
    rep_value = pd.DataFrame(columns=["rep_id", "value_lost_if_gone", "share_of_total", "covered_without"])
    text = format_headcount(Headcount(cov, 100.0, rep_value, added, ("accounts +-20%",)))
    assert "negative marginal is the bands' doing (accounts +-20%)" in text and "--balance none" in text
    assert "bands' doing" not in format_headcount(Headcount(cov, 100.0, rep_value, added))
    rising = added.assign(marginal_gain=[1.0, 2.0])
    assert "bands' doing" not in format_headcount(Headcount(cov, 100.0, rep_value, rising, ("accounts +-20%",)))
