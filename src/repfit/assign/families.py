"""Account families: accounts that go to one rep together, solved as one unit each.

``collapse`` turns a problem over accounts into one over units (a family, or an account of no family) and
returns the map back. The collapsed problem is exact for the original with "each family to one rep":

- values: the sum of the members' objective values (their continuity bonus included; the collapsed problem
  has ``continuity`` 0);
- allowed: a rep every member may have (required match); locked: any member locked, to that member's rep;
- bands: the members' weights summed ((A,) and (A, R) alike), the bounds unchanged; tier balance becomes one
  band per tier, with the bounds of the original problem, weighted by how many members are in that tier;
- capacity counts accounts, not units: a unit of k accounts uses k. This is a band ``accounts`` (hard limit,
  weights = family sizes, upper = capacity), so the collapsed problem needs the MILP (or the large-scale balance
  solver); ``capacity`` itself stays as given (it counts units there, never fewer than the accounts band
  allows, so it never binds first). A count band (``accounts``) likewise becomes family sizes;
- move budget: ``max_moves`` still counts accounts: ``kept[u, r]`` is how many of unit u's members stay with
  their current rep if u goes to rep r.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix

from repfit.assign.problem import Band, Problem
from repfit.errors import InfeasibleAssignment
from repfit.messages import listed


def collapse(p: Problem, family: np.ndarray) -> tuple[Problem, Callable[[np.ndarray], np.ndarray]]:
    """One unit per family: the problem over units, and the expansion of a unit assignment to accounts.

    Parameters
    ----------
    p : the problem over accounts.
    family : (A,) int family code of each account; -1 (any negative code) = no family, the account is its own
        unit. E.g. ``pd.factorize(accounts.parent_account_id)[0]`` (missing ids give -1).

    Returns
    -------
    (Problem, expand) : the problem over U units (in the order of each unit's first account), and a function
    taking a (U,) rep index per unit to the (A,) rep index per account. ``p`` itself (and the identity) when
    no family has two or more accounts.

    Raises
    ------
    InfeasibleAssignment
        Members of one family locked to different reps (``option="split_families"``).

    Examples
    --------
    >>> q, expand = collapse(p, family)
    >>> x = expand(solve(q).assignment)  # (A,) every family with one rep
    """
    family = np.asarray(family).astype(np.int64)
    A, R = p.shape
    if family.shape != (A,):
        raise ValueError(f"family must have one code per account ({A}), got shape {family.shape}.")
    unit, sizes = _units(family)
    if sizes.max(initial=1) == 1:  # no family of two or more: the problem itself (tiers stay for the flow solver)
        return p, lambda x: np.asarray(x)
    U = len(sizes)
    S = csr_matrix((np.ones(A), (unit, np.arange(A))), shape=(U, A))
    current, locked, kept = _owners(p, unit, U, family)
    allowed = None if p.allowed is None else np.asarray(S @ (~p.allowed).astype(np.float64)) == 0
    bands = tuple(Band(b.metric, np.asarray(S @ b.weights), b.lower, b.upper, b.tolerance, b.target)
                  for b in (*p.tier_bands(), *p.bands))
    bands += (Band("accounts", sizes.astype(float), np.full(R, -np.inf), p.capacity.astype(float)),)
    q = Problem(values=np.asarray(S @ p.objective_values()), capacity=p.capacity, current=current, locked=locked,
                allowed=allowed, continuity=0.0, max_moves=p.max_moves, rep_names=p.rep_names,
                account_names=_unit_names(p, unit, family, sizes), bands=bands, kept=kept)
    return q, lambda x: np.asarray(x)[unit]


def _units(family: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(A,) unit of each account (units in order of first appearance) and (U,) accounts per unit."""
    key = np.where(family >= 0, family, -1 - np.arange(len(family)))  # each account of no family: its own key
    unit = pd.factorize(key)[0].astype(np.int64)
    return unit, np.bincount(unit)


def _owners(p: Problem, unit: np.ndarray, U: int, family: np.ndarray):
    """(U,) current rep and locked flag of each unit, and ``kept`` (U, R) (None when each unit has at most one
    member with a current rep: then the current rep alone says what a move is).

    A unit's current rep: the rep a member is locked to; else the rep most of its members have today (the
    lowest rep index among equals); -1 when none has one."""
    R = p.shape[1]
    has = np.flatnonzero(p.current >= 0)
    counts = pd.Series(1, index=pd.MultiIndex.from_arrays([unit[has], p.current[has]], names=["u", "r"]))
    counts = counts.groupby(level=[0, 1]).sum().reset_index(name="n").sort_values(["u", "n", "r"],
                                                                                   ascending=[True, False, True])
    current = np.full(U, -1, np.int64)
    top = counts.drop_duplicates("u")
    current[top.u.to_numpy()] = top.r.to_numpy()
    lk = np.flatnonzero(p.locked)
    pins = pd.DataFrame({"u": unit[lk], "r": p.current[lk]}).drop_duplicates()
    clash = pins[pins.u.duplicated(keep=False)]
    if len(clash):
        _raise_clash(p, unit, family, int(clash.u.iloc[0]))
    current[pins.u.to_numpy()] = pins.r.to_numpy()
    locked = np.zeros(U, bool)
    locked[pins.u.to_numpy()] = True
    kept = None
    if np.bincount(unit[has], minlength=U).max(initial=0) > 1:
        kept = np.zeros((U, R), np.int64)
        kept[counts.u.to_numpy(), counts.r.to_numpy()] = counts.n.to_numpy()
    return current, locked, kept


def _raise_clash(p: Problem, unit: np.ndarray, family: np.ndarray, u: int) -> None:
    members = np.flatnonzero((unit == u) & p.locked)
    parts = [f"{_account_name(p, a)} to {p.name_rep(p.current[a])}" for a in members]
    raise InfeasibleAssignment(
        f"family {family[members[0]]} cannot go to one rep: its members are locked to different reps "
        f"({listed(parts)}). Fix: unlock all but one rep's accounts, or split the family.", option="split_families")


def _account_name(p: Problem, a: int) -> str:
    return str(p.account_names[a]) if p.account_names is not None else f"account #{a}"


def _unit_names(p: Problem, unit: np.ndarray, family: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """A unit's name in messages: its account's name, or "family F (first member and k more)"."""
    first = np.unique(unit, return_index=True)[1]
    more = [f" and {k - 1} more" if k > 1 else "" for k in sizes]
    return np.array([_account_name(p, a) if family[a] < 0 else f"family {family[a]} ({_account_name(p, a)}{more[u]})"
                     for u, a in enumerate(first)])
