"""HiGHS (``scipy.optimize.milp``) under a time limit it cannot overrun.

HiGHS checks its ``time_limit`` only at some points of its search, and some of its procedures run far past it:
``milp`` with ``time_limit=60`` ran over 44 minutes on a 12 x 150 assignment with potential and accounts bands
+-10% (repfit issue 13), and HiGHS's tracker holds open reports of the same (ERGO-Code/HiGHS #885, #2226). So
with a time limit, HiGHS runs in a child process: it gets the limit as its own option (and then normally stops
there with its best assignment and bound), and the child is killed ``grace_seconds(time_limit)`` later if it has
not answered. Without a time limit it runs in this process (the caller asked for the proven optimum, however
long it takes).
"""

from __future__ import annotations

import multiprocessing
import time

from scipy.optimize import OptimizeResult

from repfit.errors import SolverError

GRACE_SECONDS = 10.0  # past the time limit before the child is stopped: starting it, building the model, answering
GRACE_SHARE = 0.1  # ... plus this share of the limit (HiGHS overshoots a little in proportion to long runs)
START_METHOD = "forkserver"  # a fresh process, no copy of this one's threads (fork with threads can deadlock)


class HighsOverran(SolverError):
    """HiGHS did not stop at its time limit and was stopped; no assignment or bound came back."""


def grace_seconds(time_limit: float) -> float:
    """Seconds past ``time_limit`` after which the HiGHS child is stopped."""
    return GRACE_SECONDS + GRACE_SHARE * time_limit


def milp(c, constraints, integrality, bounds, options: dict, time_limit: float | None) -> OptimizeResult:
    """``scipy.optimize.milp(c, constraints=..., integrality=..., bounds=..., options=...)`` with ``time_limit``
    (seconds; None: none) enforced from outside HiGHS.

    Returns
    -------
    OptimizeResult with ``x``, ``status``, ``message`` and ``mip_dual_bound`` (as ``scipy.optimize.milp``).

    Raises
    ------
    HighsOverran
        HiGHS did not answer within ``time_limit + grace_seconds(time_limit)``; its child was stopped.
    SolverError
        The child failed (e.g. out of memory).
    """
    from scipy.optimize import milp as scipy_milp

    if not time_limit:
        return scipy_milp(c, constraints=constraints, integrality=integrality, bounds=bounds, options=options)
    options = {**options, "time_limit": float(time_limit)}
    ctx = multiprocessing.get_context(START_METHOD if START_METHOD in multiprocessing.get_all_start_methods()
                                      else "spawn")
    if ctx.get_start_method() == "forkserver":  # its server imports scipy once; each child then starts at once
        ctx.set_forkserver_preload(["repfit.assign.highs"])
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, c, constraints, integrality, bounds, options), daemon=True)
    t0 = time.perf_counter()
    proc.start()
    send.close()
    wait = time_limit + grace_seconds(time_limit)
    try:
        if not receive.poll(wait):
            raise HighsOverran(
                f"HiGHS did not stop at its time limit of {time_limit:g} s and was stopped after "
                f"{time.perf_counter() - t0:.0f} s, with no assignment (a known HiGHS weakness on some banded "
                "problems). Fix: use --solver balance, or widen the bands.")
        try:
            kind, payload = receive.recv()
        except EOFError:
            kind, payload = "error", f"the HiGHS process ended with exit code {proc.exitcode} (out of memory?)"
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()
        receive.close()
    if kind == "error":
        raise SolverError(f"HiGHS failed: {payload} (this is not a proof of infeasibility).")
    return OptimizeResult(payload)


def _child(send, c, constraints, integrality, bounds, options) -> None:
    """In the child: run HiGHS and send back ("ok", result fields) or ("error", what went wrong)."""
    from scipy.optimize import milp as scipy_milp

    try:
        res = scipy_milp(c, constraints=constraints, integrality=integrality, bounds=bounds, options=options)
        send.send(("ok", {"x": res.x, "status": int(res.status), "message": str(res.message),
                          "success": bool(res.success), "fun": res.get("fun"),
                          "mip_dual_bound": res.get("mip_dual_bound"), "mip_gap": res.get("mip_gap")}))
    except BaseException as exc:  # noqa: BLE001 - whatever stops HiGHS must reach the parent as a message
        send.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        send.close()
