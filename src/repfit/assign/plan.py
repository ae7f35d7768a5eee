"""From a data set and a P(win) matrix to a proposed assignment with its summary. Pure functions."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from repfit import schema as S
from repfit.assign.problem import Problem, check_feasible
from repfit.assign.solvers import Solution, solve
from repfit.errors import ConfigError

OBJECTIVES = ("expected_value", "p_win")


@dataclass(frozen=True)
class AssignConfig:
    """Options of ``repfit assign`` (see its --help)."""

    objective: str = "expected_value"
    require_match: tuple[str, ...] = ()
    balance_tiers: bool = False
    continuity: float = 0.0
    max_moves: int | None = None
    solver: str = "auto"


@dataclass(frozen=True, eq=False)
class Plan:
    """A solved assignment: its tables, its summary, and the problem and solution it came from."""

    assignment: pd.DataFrame  # account_id, rep_id, previous_rep_id, p_win, expected_value, moved, tier
    reps: pd.DataFrame  # per rep: capacity, load / expected value before and after, tier mix after
    summary: dict
    solution: Solution = field(repr=False)
    problem: Problem = field(repr=False)  # as built from the data and options (for further solves on it)


def build_problem(ds: S.Dataset, p_win: np.ndarray, cfg: AssignConfig) -> tuple[Problem, dict]:
    if cfg.objective not in OBJECTIVES:
        raise ConfigError(f"objective {cfg.objective!r} is not one of {', '.join(OBJECTIVES)}.", option="objective")
    if cfg.continuity < 0:
        raise ConfigError(f"the continuity bonus must be 0 or more (got {cfg.continuity}).", option="continuity")
    reps, accs = ds.reps, ds.accounts
    potential = accs[S.POTENTIAL].to_numpy(float)
    values = p_win * (potential[:, None] if cfg.objective == "expected_value" else 1.0)
    rep_pos = pd.Index(reps[S.REP_ID])
    current = rep_pos.get_indexer(accs[S.CURRENT_REP_ID].fillna("\0"))
    allowed, match = None, {}
    for attr in cfg.require_match:
        for table, df in (("reps", reps), ("accounts", accs)):
            if attr not in df.columns:
                raise ConfigError(
                    f"{ds.paths[table]} has no column '{attr}' (found: {', '.join(c for c in df.columns)}). "
                    "Fix: name an attribute both tables carry.", option="require_match"
                )
        rv, av = reps[attr].astype(str).to_numpy(), accs[attr].astype(str).to_numpy()
        ok = av[:, None] == rv[None, :]
        allowed = ok if allowed is None else allowed & ok
        match[attr] = (rv, av)
    tiers = tier_names = None
    if cfg.balance_tiers:
        tier_names, tiers = np.unique(accs[S.TIER].astype(str).to_numpy(), return_inverse=True)
    prob = Problem(
        values=values, capacity=reps[S.CAPACITY].to_numpy(np.int64), current=current,
        locked=accs[S.LOCKED].to_numpy(bool), allowed=allowed, tiers=tiers, continuity=cfg.continuity,
        max_moves=cfg.max_moves, rep_names=reps[S.REP_ID].to_numpy(str), account_names=accs[S.ACCOUNT_ID].to_numpy(str),
        tier_names=tier_names,
    )
    return prob, match


def _spread(x: np.ndarray) -> dict[str, float]:
    mean = float(np.mean(x)) if len(x) else 0.0
    return {"min": float(np.min(x)), "max": float(np.max(x)), "cv": float(np.std(x) / mean) if mean else 0.0}


def _spreads(per_rep: pd.DataFrame, tiers: list[str], when: str) -> dict[str, dict[str, float]]:
    """Spread across reps of load, expected value and each tier's count, ``when`` = "before" or "after"."""
    cols = {"load": f"load_{when}", "expected_value": f"ev_{when}", **{f"tier_{t}": f"tier_{t}_{when}" for t in tiers}}
    return {name: _spread(per_rep[col].to_numpy()) for name, col in cols.items()}


def plan_assignment(ds: S.Dataset, p_win: np.ndarray, cfg: AssignConfig) -> Plan:
    """Solve the assignment for ``ds`` given P(win) per (account, rep) (``ds`` order) and summarise it.

    Raises ``InfeasibleAssignment`` before solving when the constraints cannot all hold.
    """
    prob, match = build_problem(ds, p_win, cfg)
    check_feasible(prob, match)
    t0 = time.perf_counter()
    sol = solve(prob, cfg.solver)
    seconds = time.perf_counter() - t0
    x = sol.assignment
    reps, accs = ds.reps, ds.accounts
    A = len(accs)
    potential = accs[S.POTENTIAL].to_numpy(float)
    rep_ids = reps[S.REP_ID].to_numpy(str)
    cur = prob.current
    has = cur >= 0
    p_new = p_win[np.arange(A), x]
    p_cur = np.where(has, p_win[np.arange(A), np.maximum(cur, 0)], np.nan)
    moved = has & (x != cur)
    assignment = pd.DataFrame({
        S.ACCOUNT_ID: accs[S.ACCOUNT_ID].to_numpy(str), S.REP_ID: rep_ids[x],
        "previous_rep_id": accs[S.CURRENT_REP_ID].to_numpy(object),
        "p_win": p_new, "expected_value": p_new * potential, "previous_p_win": p_cur,
        "previous_expected_value": p_cur * potential, "moved": moved, S.TIER: accs[S.TIER].to_numpy(str),
    })
    ev_now = np.nan_to_num(p_cur * potential)
    ev_new = p_new * potential
    R = len(reps)
    tiers = sorted(accs[S.TIER].astype(str).unique())
    per_rep = pd.DataFrame({
        S.REP_ID: rep_ids, S.CAPACITY: reps[S.CAPACITY].to_numpy(),
        "load_before": np.bincount(cur[has], minlength=R), "load_after": np.bincount(x, minlength=R),
        "ev_before": np.bincount(cur[has], weights=ev_now[has], minlength=R),
        "ev_after": np.bincount(x, weights=ev_new, minlength=R),
    })
    for t in tiers:
        in_t = accs[S.TIER].astype(str).to_numpy() == t
        per_rep[f"tier_{t}_before"] = np.bincount(cur[has & in_t], minlength=R)
        per_rep[f"tier_{t}_after"] = np.bincount(x[in_t], minlength=R)
    total_now, total_new = float(ev_now.sum()), float(ev_new.sum())
    summary = {
        "objective": cfg.objective, "solver": sol.solver, "certified_optimal": sol.certified,
        "solver_notes": sol.notes, "solve_seconds": seconds,
        "accounts": A, "reps": R, "accounts_with_current_rep": int(has.sum()),
        "expected_value_current": total_now, "expected_value_proposed": total_new,
        "uplift": total_new - total_now, "uplift_pct": (total_new / total_now - 1) * 100 if total_now else float("nan"),
        "expected_wins_current": float(np.nansum(p_cur)), "expected_wins_proposed": float(p_new.sum()),
        "moves": int(moved.sum()),
        "constraints": {"require_match": list(cfg.require_match), "balance_tiers": cfg.balance_tiers,
                        "continuity": cfg.continuity, "max_moves": cfg.max_moves,
                        "locked": int(prob.locked.sum())},
        "spread_after": _spreads(per_rep, tiers, "after"),
        "spread_before": _spreads(per_rep, tiers, "before"),
    }
    return Plan(assignment, per_rep, summary, sol, prob)


def format_plan(summary: dict) -> str:
    s = summary
    lines = [
        f"solver: {s['solver']} ({'certified optimal' if s['certified_optimal'] else 'NOT certified'}; {s['solve_seconds']:.2f} s)",
    ] + [f"  {n}" for n in s["solver_notes"]] + [
        f"objective: {s['objective']}",
        f"expected value   current {s['expected_value_current']:>16,.2f}   proposed {s['expected_value_proposed']:>16,.2f}   "
        f"uplift {s['uplift']:+,.2f} ({s['uplift_pct']:+.2f}%)",
        f"expected wins    current {s['expected_wins_current']:>16,.2f}   proposed {s['expected_wins_proposed']:>16,.2f}",
        f"moves: {s['moves']:,} of {s['accounts_with_current_rep']:,} accounts with a current rep",
        "per-rep spread     before: min / max / CV          after: min / max / CV",
    ]
    for key in s["spread_after"]:
        b, a = s["spread_before"][key], s["spread_after"][key]
        lines.append(f"  {key:<16} {b['min']:>12,.1f} {b['max']:>12,.1f} {b['cv']:>6.3f}    "
                     f"{a['min']:>12,.1f} {a['max']:>12,.1f} {a['cv']:>6.3f}")
    return "\n".join(lines)
