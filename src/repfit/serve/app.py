"""The ops workbench over HTTP: a JSON API (OpenAPI at /openapi.json, Swagger UI at /docs served from the
package's own copy of its files) and one server-rendered page.

Nothing is fetched from the internet: the page's script and style are package data, and Swagger UI's files come
from the ``fastapi-offline`` package. No request names a file: exports are written under the server's own
exports folder with names it makes.
"""

from __future__ import annotations

import hmac
import sqlite3
from collections.abc import Callable
from datetime import datetime, timezone
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from repfit.errors import RepfitError
from repfit.serve.workbench import SCENARIO_NAME, USER_NAME, Busy, Settings, UnknownId, Workbench

MAX_BODY_BYTES = 64 * 1024  # the largest request body accepted (a what-if with many locks fits easily)
ANONYMOUS = "anonymous"
TOKEN_COOKIE = "repfit_token"

_Id = Field(min_length=1, max_length=64)
_User = Field(default=None, max_length=60, pattern=USER_NAME.pattern)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DecisionIn(_In):
    suggestion_id: str = _Id
    decision: Literal["accept", "reject"]
    user: str | None = _User


class SolveIn(_In):
    """A what-if: the settings to re-solve with (omitted fields keep the current settings' values)."""

    max_moves: int | None = Field(default=None, ge=0, le=10**7)
    balance: list[str] | None = Field(default=None, max_length=20)
    balance_tiers: bool | None = None
    continuity: float | None = Field(default=None, ge=0, le=10)
    locks: dict[str, bool] | None = Field(default=None, max_length=10_000)
    capacity: dict[str, Annotated[int, Field(ge=0, le=10**7)]] | None = Field(default=None, max_length=10_000)
    unlimited_moves: bool = False  # max_moves null means "keep"; this lifts the budget
    reset: bool = False  # start from the command line's settings and the data's locks and capacities
    user: str | None = _User


class ScenarioIn(_In):
    name: str = Field(min_length=1, max_length=60, pattern=SCENARIO_NAME.pattern)
    user: str | None = _User


def _user(body_user: str | None, request: Request) -> str:
    u = body_user or request.headers.get("x-repfit-user") or ANONYMOUS
    if not USER_NAME.match(u):
        raise RepfitError(f"user name {u[:60]!r} is not allowed: letters, digits, space and . @ + - ' only, at most 60.",
                          option="user")
    return u


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


class _BodyLimit:
    """Refuse a request body over ``MAX_BODY_BYTES`` with 413, whether it declares its length or streams it (then
    the app is told the client left, and whatever it answers is dropped)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = _error(413, f"request body over {MAX_BODY_BYTES:,} bytes")
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return await too_large(scope, receive, send)
        seen, refused = 0, False

        async def limited():
            nonlocal seen, refused
            msg = await receive()
            if msg["type"] == "http.request" and not refused:
                seen += len(msg.get("body", b""))
                if seen > MAX_BODY_BYTES:
                    refused = True
                    await too_large(scope, receive, send)
                    return {"type": "http.disconnect"}
            return msg

        async def guarded(message):
            if not refused:
                await send(message)

        await self.app(scope, limited, guarded)


def create_app(wb: Workbench, *, exports_dir: Path, token: str | None = None,
               log_export: Callable[[Path, dict], str | None] | None = None, title: str = "repfit workbench",
               allowed_hosts: frozenset[str] | None = None) -> FastAPI:
    """The FastAPI app over a prepared ``Workbench``.

    Parameters
    ----------
    wb : the workbench (data, model, suggestions, store).
    exports_dir : where CRM exports are written (each one also goes to ``log_export``).
    token : when set, every request must carry it (header ``Authorization: Bearer``, ``X-Repfit-Token``, the cookie
        the page sets, or ``?token=`` once in the page's address).
    log_export : called with each export file and its figures; returns the MLflow run id.
    allowed_hosts : when set, a request whose Host header names another host is refused (421): a web page the
        user visits cannot reach a loopback server through a domain it re-points to 127.0.0.1 (DNS rebinding).
    """
    app = FastAPI(title=title, docs_url=None, redoc_url=None, version="1",
                  description="Review, adjust and approve reassignment suggestions. See the README's 'The ops workbench'.")
    app.state.wb = wb
    app.mount("/static", StaticFiles(directory=str(files("repfit.serve") / "static")), name="static")
    _docs(app, title)
    _errors(app)
    app.include_router(_review(wb))
    app.include_router(_what_if(wb))
    app.include_router(_export(wb, Path(exports_dir), log_export))
    app.include_router(_page(wb))
    if token is not None:
        app.middleware("http")(_token_check(token))
    if allowed_hosts is not None:
        app.middleware("http")(_host_check(allowed_hosts))
    app.add_middleware(_BodyLimit)  # outermost: before anything reads the body
    return app


def _docs(app: FastAPI, title: str) -> None:
    swagger = _swagger_dir()
    if swagger is None:
        return
    app.mount("/docs-static", StaticFiles(directory=str(swagger)), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{title} API",
                                   swagger_js_url="/docs-static/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-static/swagger-ui.css",
                                   swagger_favicon_url="/docs-static/favicon.png",
                                   swagger_ui_parameters={"validatorUrl": None})  # no call to the online validator


def _host_check(allowed: frozenset[str]):
    async def check_host(request: Request, call_next):
        if (request.url.hostname or "").lower() not in allowed:
            return _error(421, f"this workbench answers only requests addressed to {', '.join(sorted(allowed))}; "
                               f"got Host {request.headers.get('host', '')[:80]!r}. Fix: open it at one of those.")
        return await call_next(request)

    return check_host


def _token_check(token: str):
    async def check_token(request: Request, call_next):
        given = request.query_params.get("token") or request.headers.get("x-repfit-token") \
            or request.cookies.get(TOKEN_COOKIE) or ""
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:]
        if not hmac.compare_digest(given.encode(), token.encode()):
            return _error(401, "a valid token is required (header 'Authorization: Bearer TOKEN', or ?token=TOKEN in "
                               "the page's address)")
        response = await call_next(request)
        if request.query_params.get("token"):
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return response

    return check_token


def _errors(app: FastAPI) -> None:
    """Every refusal is a 4xx with a one-line ``detail``; a busy store a 503 (never a reset connection)."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        parts = []
        for e in exc.errors()[:5]:
            where = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
            parts.append(f"{where or 'body'}: {e.get('msg')}")
        return _error(422, "invalid request: " + "; ".join(parts))

    @app.exception_handler(UnknownId)
    async def unknown(request: Request, exc: UnknownId):
        return _error(404, str(exc))

    @app.exception_handler(Busy)
    async def busy_solving(request: Request, exc: Busy):
        return _error(409, str(exc))

    @app.exception_handler(RepfitError)
    async def refused(request: Request, exc: RepfitError):
        return _error(400, str(exc))

    @app.exception_handler(sqlite3.OperationalError)
    async def busy(request: Request, exc: sqlite3.OperationalError):
        return _error(503, f"the store is busy ({exc}); try again")


def _review(wb: Workbench) -> APIRouter:
    api = APIRouter(prefix="/api")

    @api.get("/health")
    def health() -> dict:
        """200 once the server is ready (it listens only after preparing)."""
        return {"status": "ok", "suggestions": len(wb.result.table), "model_version": wb.model_version}

    @api.get("/suggestions")
    def suggestions(rep: str | None = Query(None, max_length=64), region: str | None = Query(None, max_length=64),
                    tier: str | None = Query(None, max_length=64),
                    confidence: Literal["confident", "uncertain"] | None = None) -> dict:
        """The ranked moves of the current settings; ``group`` numbers the group of moves that go together (its
        rank), ``kind`` says what it is (move, chain, exchange, first owner)."""
        return {"suggestions": wb.suggestions(rep=rep, region=region, tier=tier, confidence=confidence)}

    @api.post("/decisions", status_code=201)
    def decide(body: DecisionIn, request: Request) -> dict:
        """Accept or reject one suggestion; committed to the store before the answer."""
        return wb.decide(body.suggestion_id, body.decision, _user(body.user, request))

    @api.get("/decisions")
    def decisions() -> dict:
        """The latest decision per suggestion."""
        return {"decisions": [{k: d[k] for k in ("suggestion_id", "decision", "user", "at")} for d in wb.decisions()]}

    @api.get("/totals")
    def totals() -> dict:
        return wb.totals()

    @api.get("/book")
    def book() -> dict:
        return {"bands": wb.bands(), "reps": wb.book().to_dict("records")}

    @api.get("/search")
    def search(account: str | None = Query(None, max_length=64), rep: str | None = Query(None, max_length=64),
               top: int = Query(5, ge=1, le=50)) -> dict:
        """``suggest --account ID`` or ``suggest --rep ID`` under the current locks and capacities."""
        return {"results": wb.search(account=account, rep=rep, top=top)}

    @api.get("/audit")
    def audit(limit: int = Query(100, ge=1, le=1000)) -> dict:
        return {"audit": wb.store.audit_log(limit)}

    return api


def _what_if(wb: Workbench) -> APIRouter:
    api = APIRouter(prefix="/api")

    @api.get("/settings")
    def settings() -> dict:
        return wb.result.settings.to_dict()

    @api.post("/solve", status_code=202)
    def solve(body: SolveIn, request: Request) -> dict:
        """Re-solve with changed settings in the background; poll ``/api/jobs/{id}``. Omitted fields keep their
        current values; ``locks`` and ``capacity`` add to (or override) the changes in force; ``reset`` starts
        from the command line's settings and the data's own locks and capacities."""
        cur = (Settings.from_config(wb.base) if body.reset else wb.result.settings).to_dict()
        new = {k: v for k, v in body.model_dump(exclude={"user", "unlimited_moves", "reset"}).items() if v is not None}
        merged = {**cur, **new, "locks": {**cur["locks"], **(body.locks or {})},
                  "capacity": {**cur["capacity"], **(body.capacity or {})}}
        if body.unlimited_moves:
            merged["max_moves"] = None
        return wb.start_solve(Settings.from_dict(merged), _user(body.user, request)).to_dict()

    @api.get("/jobs/{job_id}")
    def job(job_id: str) -> dict:
        return wb.job(job_id).to_dict()

    @api.post("/scenarios", status_code=201)
    def save_scenario(body: ScenarioIn, request: Request) -> dict:
        """Save the current settings and decisions under a name (a name used before is replaced)."""
        out = wb.save_scenario(body.name, _user(body.user, request))
        return {"name": out["name"], "settings": out["settings"], "figures": out["figures"]}

    @api.get("/scenarios")
    def scenarios() -> dict:
        return {"scenarios": [{"name": s["name"], "user": s["user"], "at": s["at"], "settings": s["settings"],
                               "figures": s["figures"]} for s in wb.store.scenarios()]}

    @api.post("/scenarios/{name}/apply", status_code=202)
    def apply_scenario(name: str, request: Request, user: str | None = Query(None, max_length=60)) -> dict:
        """Re-solve with a saved scenario's settings (a background job, as ``/api/solve``). Decisions are not
        touched: they belong to the moves, whichever scenario shows them."""
        s = wb.store.scenario(name)
        if s is None:
            raise UnknownId(f"unknown scenario {name!r}. Fix: save it first (POST /api/scenarios).")
        return wb.start_solve(Settings.from_dict(s["settings"]), _user(user, request)).to_dict()

    @api.get("/scenarios/compare")
    def compare(a: str = Query(..., max_length=60), b: str = Query(..., max_length=60)) -> dict:
        """Two saved scenarios side by side: uplift and moves (planned and approved), and the reps whose book differs."""
        return wb.compare(a, b)

    return api


def _export(wb: Workbench, exports_dir: Path, log_export) -> APIRouter:
    api = APIRouter(prefix="/api")

    @api.get("/export.csv")
    def export(request: Request, user: str | None = Query(None, max_length=60)) -> Response:
        """The approved changes as CSV for a CRM import (text that a spreadsheet would run as a formula is escaped);
        each export is also written under the exports folder and logged as an MLflow run."""
        from repfit.io import write_table

        who = _user(user, request)
        table = wb.approved()
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        path = write_table(table, exports_dir / f"approved-{stamp}.csv")
        run_id = log_export(path, {"rows": len(table), "gain": float(table["gain"].sum()) if len(table) else 0.0,
                                   "user": who}) if log_export else None
        wb.store.audit("export", {"rows": len(table), "file": path.name, "run_id": run_id}, who)
        headers = {"Content-Disposition": f'attachment; filename="{path.name}"'}
        if run_id:
            headers["X-Repfit-Run-Id"] = run_id
        # the bytes written and logged, not a second serialisation of the table
        return Response(path.read_bytes(), media_type="text/csv; charset=utf-8", headers=headers)

    return api


def _page(wb: Workbench) -> APIRouter:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("repfit.serve", "templates"), autoescape=select_autoescape(default=True))
    env.filters.update(money=_money, p=_p, num=_numfmt)
    router = APIRouter()

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page(rep: str | None = Query(None, max_length=64), region: str | None = Query(None, max_length=64),
             tier: str | None = Query(None, max_length=64), confidence: str | None = Query(None, max_length=20),
             q: str | None = Query(None, max_length=64), all: bool = False) -> HTMLResponse:
        from repfit.serve.page import render

        return HTMLResponse(render(env, wb, rep=rep, region=region, tier=tier, confidence=confidence, q=q,
                                   all_groups=all))

    return router


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and x == x and abs(x) != float("inf")


def _money(x) -> str:
    return format(x, "+,.0f") if _finite(x) else ""


def _numfmt(x) -> str:
    return format(x, ",.0f") if _finite(x) else ""


def _p(x) -> str:
    return format(x, ".2f") if _finite(x) else "-"


def _swagger_dir() -> Path | None:
    """Swagger UI's files as the ``fastapi-offline`` package ships them (None if it is not installed: /docs is then
    absent and /openapi.json remains)."""
    try:
        import fastapi_offline
    except ImportError:
        return None
    d = Path(fastapi_offline.__file__).parent / "static"
    return d if (d / "swagger-ui-bundle.js").is_file() else None
