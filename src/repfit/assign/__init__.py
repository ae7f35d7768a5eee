"""Exact, balanced, strength-based assignment of accounts to reps."""

from repfit.assign.problem import Problem, check_feasible
from repfit.assign.solvers import SOLVERS, Solution, choose_solver, solve, solve_milp

__all__ = ["Problem", "Solution", "SOLVERS", "check_feasible", "choose_solver", "solve", "solve_milp"]
