"""Exact, balanced, strength-based assignment of accounts to reps."""

from repfit.assign.families import collapse
from repfit.assign.problem import Band, Problem, check_feasible
from repfit.assign.solvers import (
    MILP_BANDS_MAX_PAIRS,
    MILP_TIME_LIMIT,
    SOLVERS,
    KeepBonusPoint,
    Solution,
    budget_curve,
    choose_solver,
    resolve_solver,
    solve,
    solve_flow,
    solve_hungarian,
    solve_max_moves,
    solve_milp,
    solve_pruned,
    solve_with_keep_bonus,
)

__all__ = [
    "Band", "Problem", "Solution", "KeepBonusPoint", "MILP_BANDS_MAX_PAIRS", "MILP_TIME_LIMIT", "SOLVERS",
    "budget_curve", "check_feasible", "choose_solver", "collapse", "resolve_solver", "solve", "solve_flow",
    "solve_hungarian", "solve_max_moves", "solve_milp", "solve_pruned", "solve_with_keep_bonus",
]
