"""What the ops workbench computes: the suggestions of the current settings, the book against its bands, the
totals of the decisions taken, what-if re-solves in the background, scenarios and the CRM export.

Pure library code: no HTTP here (``repfit.serve.app`` wraps it) and no file paths from requests.

Suggestion ids are ``sha256(basis | account | from rep | to rep)``, where the basis hashes the data (the
fingerprint ``repfit score`` records) and the model (uri and version). A move is the same move whatever the
settings that proposed it, so a decision follows it through what-if re-solves, and the ids are the same after a
restart on the same data and model; new data or a new champion gives new ids (old decisions stay in the store
and the audit log, but no longer count).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd

from repfit import schema as S
from repfit.assign.bands import parse_balance
from repfit.assign.plan import Plan, band_key, plan_assignment
from repfit.config import AssignConfig
from repfit.errors import ConfigError, RepfitError
from repfit.progress import NO_PROGRESS, Progress
from repfit.serve.store import Move, WorkbenchStore
from repfit.suggest import Context, for_account, for_rep, for_all

UNCERTAIN = "within the model's uncertainty"
CONFIDENCE_FILTERS = {"confident": "confident", "uncertain": UNCERTAIN}


class UnknownId(RepfitError):
    """An id a request named is not known (a suggestion, account, rep, scenario or job)."""


@dataclass(frozen=True)
class Settings:
    """What a what-if may change: the move budget, the bands, locks and capacities (the rest of ``AssignConfig``
    comes from the command line)."""

    max_moves: int | None = None
    balance: tuple[str, ...] = AssignConfig().balance
    balance_tiers: bool = False
    continuity: float = 0.0
    locks: tuple[tuple[str, bool], ...] = ()  # account_id -> locked (overrides the accounts table)
    capacity: tuple[tuple[str, int], ...] = ()  # rep_id -> capacity (a leave: lower; a departure: 0)

    @classmethod
    def from_config(cls, cfg: AssignConfig) -> Settings:
        return cls(cfg.max_moves, tuple(cfg.balance), cfg.balance_tiers, cfg.continuity)

    @classmethod
    def from_dict(cls, d: dict) -> Settings:
        return cls(d.get("max_moves"), tuple(d.get("balance", ())), bool(d.get("balance_tiers", False)),
                   float(d.get("continuity", 0.0)),
                   tuple(sorted((str(k), bool(v)) for k, v in dict(d.get("locks", {})).items())),
                   tuple(sorted((str(k), int(v)) for k, v in dict(d.get("capacity", {})).items())))

    def to_dict(self) -> dict:
        return {"max_moves": self.max_moves, "balance": list(self.balance), "balance_tiers": self.balance_tiers,
                "continuity": self.continuity, "locks": dict(self.locks), "capacity": dict(self.capacity)}

    def config(self, base: AssignConfig) -> AssignConfig:
        return replace(base, max_moves=self.max_moves, balance=tuple(self.balance), balance_tiers=self.balance_tiers,
                       continuity=self.continuity)


def suggestion_id(basis: str, account_id: str, from_rep_id: str, to_rep_id: str) -> str:
    return hashlib.sha256("\x1f".join((basis, account_id, from_rep_id, to_rep_id)).encode()).hexdigest()[:16]


def _num(x) -> float | None:
    """JSON-ready number: NaN / inf become None."""
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass(frozen=True, eq=False)
class Result:
    """The suggestions of one set of settings."""

    settings: Settings
    ctx: Context  # with the settings' locks and capacities applied to the data
    plan: Plan
    table: pd.DataFrame  # one row per move: id, rank, kind, group_gain, account_id, ... (suggest --all's columns)
    seconds: float


@dataclass
class Job:
    """A re-solve running in the background."""

    id: str
    settings: Settings
    user: str
    state: str = "queued"  # queued, running, done, failed
    stage: str = "queued"
    step: int = 0
    steps: int = 3
    started: float = field(default_factory=time.time)
    finished: float | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        end = self.finished or time.time()
        return {"id": self.id, "state": self.state, "stage": self.stage, "progress": self.step / self.steps,
                "seconds": round(end - self.started, 2), "error": self.error, "settings": self.settings.to_dict()}


class Workbench:
    """The data, model and P(win) of every pair (a ``suggest.Context``), the suggestions of the current settings,
    and the store of decisions. Thread-safe: the current ``Result`` is swapped whole under a lock."""

    def __init__(self, ctx: Context, base: AssignConfig, store: WorkbenchStore, *, model_uri: str | None,
                 model_version: str | None, progress: Progress = NO_PROGRESS):
        from repfit.scoring import data_fingerprint

        self.ctx, self.base, self.store = ctx, base, store
        self.model_uri, self.model_version = model_uri, model_version
        self.basis = hashlib.sha256(json.dumps([data_fingerprint(ctx.ds), model_uri, model_version],
                                               sort_keys=True).encode()).hexdigest()
        acc = ctx.ds.accounts
        self.account_ids = acc[S.ACCOUNT_ID].astype(str).to_numpy()
        self.rep_ids = ctx.ds.reps[S.REP_ID].astype(str).to_numpy()
        self.owner = dict(zip(self.account_ids, acc[S.CURRENT_REP_ID].astype("string").fillna("").to_numpy(str)))
        self.region = acc["region"].astype(str).to_numpy() if "region" in acc.columns else None
        self.tier = acc[S.TIER].astype(str).to_numpy()
        self._lock = threading.Lock()
        self._known: dict[str, Move] = {}  # every move any solve proposed in this process
        self._jobs: dict[str, Job] = {}
        self._solving = threading.Lock()  # one re-solve at a time; the others queue behind it
        self.result = self._solve(Settings.from_config(base), progress=progress)

    # --- solving ------------------------------------------------------------------------------------
    def check(self, settings: Settings) -> None:
        """Refuse settings that cannot be right before any solve starts: ConfigError / UnknownId."""
        parse_balance(tuple(settings.balance))
        known_acc, known_rep = set(self.account_ids), set(self.rep_ids)
        bad = [a for a, _ in settings.locks if a not in known_acc]
        if bad:
            raise UnknownId(f"unknown account_id {', '.join(map(repr, bad[:5]))} in locks. Fix: use account ids of "
                            f"{self.ctx.ds.paths['accounts']}.", option="locks")
        bad = [r for r, _ in settings.capacity if r not in known_rep]
        if bad:
            raise UnknownId(f"unknown rep_id {', '.join(map(repr, bad[:5]))} in capacity. Fix: use rep ids of "
                            f"{self.ctx.ds.paths['reps']}.", option="capacity")
        if any(c < 0 for _, c in settings.capacity):
            raise ConfigError("a capacity must be 0 or more (0: the rep leaves).", option="capacity")

    def _context(self, settings: Settings) -> Context:
        ds = self.ctx.ds
        accs, reps = ds.accounts, ds.reps
        if settings.locks:
            lock = dict(settings.locks)
            accs = accs.assign(**{S.LOCKED: [lock.get(a, l) for a, l in zip(self.account_ids, accs[S.LOCKED])]})
        if settings.capacity:
            cap = dict(settings.capacity)
            reps = reps.assign(**{S.CAPACITY: [cap.get(r, c) for r, c in zip(self.rep_ids, reps[S.CAPACITY])]})
        return Context(replace(ds, accounts=accs, reps=reps), self.ctx.scorer, self.ctx.p_win, self.ctx.signal)

    def _solve(self, settings: Settings, job: Job | None = None, progress: Progress = NO_PROGRESS) -> Result:
        def stage(i: int, name: str) -> None:
            progress.stage(name)
            if job is not None:
                job.step, job.stage = i, name

        t0 = time.perf_counter()
        self.check(settings)
        ctx = self._context(settings)
        cfg = settings.config(self.base)
        stage(0, "solving the assignment")
        plan = plan_assignment(ctx.ds, ctx.p_win, cfg)
        stage(1, "grouping the moves and writing their reasons")
        table, _ = for_all(ctx, cfg, plan)
        stage(2, "ranking")
        if len(table):
            ids = [suggestion_id(self.basis, a, f, t) for a, f, t in
                   zip(table[S.ACCOUNT_ID], table["from_rep_id"], table["to_rep_id"])]
            pos = pd.Index(self.account_ids).get_indexer(table[S.ACCOUNT_ID])
            table = table.rename(columns={"group": "kind"}).assign(
                id=ids, region=self.region[pos] if self.region is not None else "", tier=self.tier[pos])
        with self._lock:
            for r in table.itertuples() if len(table) else ():
                self._known[r.id] = Move(r.id, r.account_id, r.from_rep_id, r.to_rep_id, float(r.gain), r.reasons)
        return Result(settings, ctx, plan, table, time.perf_counter() - t0)

    def start_solve(self, settings: Settings, user: str) -> Job:
        """Check ``settings`` now (a bad one is refused at once), then re-solve in the background."""
        self.check(settings)
        job = Job(uuid.uuid4().hex[:12], settings, user)
        with self._lock:
            self._jobs[job.id] = job
        self.store.audit("what-if", {"job": job.id, "settings": settings.to_dict()}, user)
        # a daemon thread: stopping the server does not wait for a solve nobody will see
        threading.Thread(target=self._run, args=(job,), name=f"repfit-solve-{job.id}", daemon=True).start()
        return job

    def _run(self, job: Job) -> None:
        with self._solving:
            self._run_now(job)

    def _run_now(self, job: Job) -> None:
        job.state, job.started = "running", time.time()
        try:
            res = self._solve(job.settings, job)
        except RepfitError as exc:
            job.state, job.error = "failed", str(exc)
        except Exception as exc:  # noqa: BLE001 - a failed solve is shown on the page, the server goes on
            job.state, job.error = "failed", f"{type(exc).__name__}: {exc}"
        else:
            with self._lock:
                self.result = res
            job.state, job.step, job.stage = "done", job.steps, "done"
        job.finished = time.time()

    def job(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise UnknownId(f"unknown job id {job_id!r}. Fix: use the id POST /api/solve returned.")
        return job

    # --- suggestions --------------------------------------------------------------------------------
    def move(self, sid: str) -> Move:
        with self._lock:
            m = self._known.get(sid)
        if m is None:
            raise UnknownId(f"unknown suggestion id {sid!r}: not among the suggestions of this data and model. "
                            "Fix: take an id from GET /api/suggestions.")
        return m

    def decide(self, sid: str, decision: str, user: str) -> dict:
        if decision not in ("accept", "reject"):
            raise ConfigError(f"decision {decision!r} is not accept or reject.", option="decision")
        return self.store.decide(self.move(sid), decision, user, self.basis)

    def decisions(self) -> list[dict]:
        """The latest decision per suggestion of this data and model (also on moves that the settings in force do
        not propose: a decision taken under another what-if, before a restart, still counts)."""
        return self.store.latest_decisions(self.basis)

    def suggestions(self, *, rep: str | None = None, region: str | None = None, tier: str | None = None,
                    confidence: str | None = None) -> list[dict]:
        """The ranked moves of the current settings, with their latest decision; filters match a move (rep: either
        end of it)."""
        t = self.result.table
        if not len(t):
            return []
        keep = np.ones(len(t), bool)
        if rep:
            keep &= ((t["from_rep_id"] == rep) | (t["to_rep_id"] == rep)).to_numpy()
        if region:
            keep &= (t["region"] == region).to_numpy()
        if tier:
            keep &= (t["tier"] == tier).to_numpy()
        if confidence:
            if confidence not in CONFIDENCE_FILTERS:
                raise ConfigError(f"confidence {confidence!r} is not one of {', '.join(CONFIDENCE_FILTERS)}.",
                                  option="confidence")
            keep &= (t["confidence"] == CONFIDENCE_FILTERS[confidence]).to_numpy()
        latest = {d["suggestion_id"]: d for d in self.decisions()}
        out = []
        for r in t[keep].itertuples():
            d = latest.get(r.id)
            out.append({"id": r.id, "group": int(r.rank), "kind": r.kind, "group_gain": _num(r.group_gain),
                        "account_id": r.account_id, "from_rep_id": r.from_rep_id, "to_rep_id": r.to_rep_id,
                        "gain": _num(r.gain), "p_win_from": _num(r.p_win_from), "p_win_to": _num(r.p_win_to),
                        "confidence": r.confidence, "reasons": r.reasons, "region": r.region, "tier": r.tier,
                        "decision": d["decision"] if d else None, "decided_by": d["user"] if d else None})
        return out

    def search(self, *, account: str | None = None, rep: str | None = None, top: int = 5) -> list[dict]:
        """``suggest --account`` / ``--rep`` under the current settings' locks and capacities."""
        ctx = self.result.ctx
        if account:
            t = for_account(ctx, account, top)
        elif rep:
            t = for_rep(ctx, rep, top)
        else:
            raise ConfigError("give an account or a rep to search for.", option="search")
        return [{k: (_num(v) if isinstance(v, (float, np.floating)) else v.item() if isinstance(v, np.generic) else v)
                 for k, v in row.items()} for row in t.to_dict("records")]

    # --- decisions applied --------------------------------------------------------------------------
    def approved(self) -> pd.DataFrame:
        """The approved changes: the latest accept per account among the latest decisions, whose current owner is
        still the one in the data. Columns: account_id, current_owner, new_owner, gain, reasons, approved_by,
        approved_at, suggestion_id."""
        rows = {}
        for d in self.decisions():  # oldest first: a later accept for the same account replaces an earlier one
            if d["decision"] == "accept" and self.owner.get(d["account_id"], "") == d["from_rep_id"]:
                rows[d["account_id"]] = d
            elif d["decision"] == "reject" and rows.get(d["account_id"], {}).get("suggestion_id") == d["suggestion_id"]:
                del rows[d["account_id"]]
        cols = ["account_id", "current_owner", "new_owner", "gain", "reasons", "approved_by", "approved_at",
                "suggestion_id"]
        return pd.DataFrame([{"account_id": d["account_id"], "current_owner": d["from_rep_id"],
                              "new_owner": d["to_rep_id"], "gain": d["gain"], "reasons": d["reasons"],
                              "approved_by": d["user"], "approved_at": d["at"], "suggestion_id": d["suggestion_id"]}
                             for d in rows.values()], columns=cols)

    def _approved_owner(self, approved: pd.DataFrame) -> np.ndarray:
        """(A,) each account's rep position once the approved changes are made (-1: none)."""
        x = self.ctx.current.copy()
        if len(approved):
            pos = pd.Index(self.account_ids).get_indexer(approved["account_id"])
            x[pos] = pd.Index(self.rep_ids).get_indexer(approved["new_owner"])
        return x

    def book(self) -> pd.DataFrame:
        """Per rep: capacity, load, expected value and tier mix today, with the approved changes, and in the plan;
        per band of the plan: each rep's total today / approved / in the plan, its bounds, and whether it is outside."""
        res = self.result
        x_now, x_ok, x_plan = self.ctx.current, self._approved_owner(self.approved()), res.plan.solution.assignment
        ev = self.ctx.ev()
        R = len(self.rep_ids)
        cap = res.ctx.ds.reps[S.CAPACITY].to_numpy()

        def per_rep(x, w=None):
            has = x >= 0
            return np.bincount(x[has], weights=None if w is None else w[has], minlength=R)

        def ev_of(x):
            has = x >= 0
            return np.bincount(x[has], weights=ev[np.flatnonzero(has), x[has]], minlength=R)

        out = pd.DataFrame({"rep_id": self.rep_ids, "capacity": cap, "load_today": per_rep(x_now),
                            "load_approved": per_rep(x_ok), "load_plan": per_rep(x_plan),
                            "value_today": ev_of(x_now), "value_approved": ev_of(x_ok), "value_plan": ev_of(x_plan)})
        for t in sorted(set(self.tier)):
            w = (self.tier == t).astype(float)
            out[f"tier_{t}_today"], out[f"tier_{t}_approved"] = per_rep(x_now, w), per_rep(x_ok, w)
        for band in res.plan.problem.bands:
            k = band_key(band)
            for when, x in (("today", x_now), ("approved", x_ok), ("plan", x_plan)):
                has = x >= 0
                w = band.weights[has] if band.weights.ndim == 1 else band.weights[np.flatnonzero(has), x[has]]
                out[f"band_{k}_{when}"] = np.bincount(x[has], weights=w, minlength=R)
            out[f"band_{k}_lower"], out[f"band_{k}_upper"] = band.lower, band.upper
        return out

    def bands(self) -> list[dict]:
        return [{"key": band_key(b), "metric": b.metric, "tolerance": b.tolerance} for b in self.result.plan.problem.bands]

    def totals(self) -> dict:
        """The figures the page's header shows: the plan's, and those of the decisions taken so far."""
        res, s = self.result, self.result.plan.summary
        ok = self.approved()
        book = self.book()
        latest = {d["suggestion_id"]: d["decision"] for d in self.decisions()}
        ids = list(res.table["id"]) if len(res.table) else []
        decided = [latest.get(i) for i in ids]

        def spread(col):
            v = book[col].to_numpy(float)
            mean = float(v.mean()) if len(v) else 0.0
            return {"min": float(v.min()), "max": float(v.max()), "cv": float(v.std() / mean) if mean else 0.0}

        outside = 0
        for b in self.bands():
            k = b["key"]
            tot, lo, hi = (book[f"band_{k}_{w}"].to_numpy(float) for w in ("approved", "lower", "upper"))
            outside += int(((tot < lo - 1e-9 * np.abs(lo) - 1e-9) | (tot > hi + 1e-9 * np.abs(hi) + 1e-9)).sum())
        return {
            "value_today": _num(s.expected_value_current), "plan_uplift": _num(s.uplift), "plan_moves": int(s.moves),
            "plan_uplift_pct": _num(s.uplift_pct), "suggestions": len(ids), "groups": int(res.table["rank"].nunique())
            if len(res.table) else 0,
            "accepted": decided.count("accept"), "rejected": decided.count("reject"), "pending": decided.count(None),
            "approved_moves": len(ok), "approved_uplift": float(ok["gain"].sum()) if len(ok) else 0.0,
            "spread_today": {"load": spread("load_today"), "value": spread("value_today")},
            "spread_approved": {"load": spread("load_approved"), "value": spread("value_approved")},
            "spread_plan": {"load": spread("load_plan"), "value": spread("value_plan")},
            "reps_over_capacity_approved": int((book["load_approved"] > np.maximum(book["capacity"], book["load_today"])).sum()),
            "rep_band_breaches_approved": outside,
            "solver": s.solver, "certified_optimal": bool(s.certified_optimal), "solve_seconds": round(res.seconds, 2),
            "signal": bool(self.ctx.signal), "settings": res.settings.to_dict(),
        }

    # --- scenarios ----------------------------------------------------------------------------------
    def save_scenario(self, name: str, user: str) -> dict:
        """The current settings and decisions, with the figures a comparison needs."""
        t, book = self.totals(), self.book()
        body = {"settings": self.result.settings.to_dict(),
                "decisions": [{"suggestion_id": d["suggestion_id"], "decision": d["decision"]} for d in self.decisions()],
                "figures": {k: t[k] for k in ("plan_uplift", "plan_moves", "approved_uplift", "approved_moves",
                                              "accepted", "rejected", "pending", "spread_plan", "spread_approved")},
                "per_rep": {r.rep_id: {"capacity": int(r.capacity), "load_today": int(r.load_today),
                                       "load_plan": int(r.load_plan), "load_approved": int(r.load_approved),
                                       "value_today": float(r.value_today), "value_plan": float(r.value_plan),
                                       "value_approved": float(r.value_approved)} for r in book.itertuples()}}
        self.store.save_scenario(name, body, user)
        return {"name": name, **body}

    def compare(self, a: str, b: str) -> dict:
        sa, sb = (self.store.scenario(n) for n in (a, b))
        for name, s in ((a, sa), (b, sb)):
            if s is None:
                raise UnknownId(f"unknown scenario {name!r}. Fix: save it first (POST /api/scenarios).")
        reps = sorted(set(sa["per_rep"]) | set(sb["per_rep"]))
        per_rep = []
        for r in reps:
            x, y = sa["per_rep"].get(r, {}), sb["per_rep"].get(r, {})
            row = {"rep_id": r, "load_today": x.get("load_today", y.get("load_today"))}
            for key in ("capacity", "load_plan", "load_approved", "value_plan", "value_approved"):
                row[f"{key}_a"], row[f"{key}_b"] = x.get(key), y.get(key)
            if row["load_plan_a"] != row["load_plan_b"] or row["capacity_a"] != row["capacity_b"] \
                    or row["load_approved_a"] != row["load_approved_b"]:
                per_rep.append(row)
        fig = ("plan_uplift", "plan_moves", "approved_uplift", "approved_moves", "accepted", "rejected")
        return {"a": {"name": a, "settings": sa["settings"], **{k: sa["figures"][k] for k in fig}},
                "b": {"name": b, "settings": sb["settings"], **{k: sb["figures"][k] for k in fig}},
                "per_rep_changes": per_rep}


SCENARIO_NAME = re.compile(r"^[\w .:+-]{1,60}$")
USER_NAME = re.compile(r"^[\w .@+-]{1,60}$")
