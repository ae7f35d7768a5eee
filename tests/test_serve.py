"""repfit serve, the ops workbench (issue 15): the API through FastAPI's test client, a real uvicorn server on
loopback (50 concurrent decisions, a restart), what-if re-solves against an independent solve, scenarios, the
CRM export and its MLflow run, the security rules, and the page in a real Chromium (Playwright)."""

from __future__ import annotations

import copy
import csv
import io
import json
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from repfit import schema as S
from repfit.assign.plan import plan_assignment
from repfit.config import AssignConfig
from repfit.jobs import DataSource, PairSource, Store
from repfit.serve.server import Prepared, make_app, prepare
from repfit.serve.store import WorkbenchStore
from repfit.serve.workbench import Settings, Workbench, suggestion_id

from conftest import run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


# --- fixtures: one prepared workbench per module; each test gets its own store over it ------------------------
@pytest.fixture(scope="module")
def prepared(small_org, trained_store, tmp_path_factory) -> Prepared:
    tmp = tmp_path_factory.mktemp("serve")
    uri = trained_store.copy_to(tmp)
    return prepare(data=DataSource(small_org), store=Store(uri, tmp), pairs=PairSource(), options=AssignConfig(),
                   store_path=tmp / "out" / "workbench.db")


def _with_store(prepared: Prepared, path: Path) -> Prepared:
    """The same prepared data, model and suggestions over another store (tests do not see each other's decisions)."""
    wb = copy.copy(prepared.workbench)
    wb.store = WorkbenchStore(path)
    return replace(prepared, workbench=wb, store_path=path, exports_dir=path.parent / "exports")


@pytest.fixture
def bench(prepared, tmp_path) -> Prepared:
    return _with_store(prepared, tmp_path / "wb.db")


@pytest.fixture
def client(bench):
    from fastapi.testclient import TestClient

    with TestClient(make_app(bench, data_dir="small_org")) as c:
        yield c


class Server:
    """A real uvicorn server on a free loopback port, in a thread."""

    def __init__(self, app):
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "server did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        assert not self.thread.is_alive()


@pytest.fixture(scope="module")
def live(prepared, tmp_path_factory):
    """A real server over the module's workbench, with a store of its own."""
    p = _with_store(prepared, tmp_path_factory.mktemp("live") / "wb.db")
    srv = Server(make_app(p, data_dir="small_org"))
    srv.prepared = p
    yield srv
    srv.stop()


def http(method: str, url: str, body: dict | None = None, timeout: float = 20) -> tuple[int, dict | str]:
    req = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw, code, ctype = r.read().decode(), r.status, r.headers.get("content-type", "")
    except urllib.error.HTTPError as e:
        raw, code, ctype = e.read().decode(), e.code, e.headers.get("content-type", "")
    return code, json.loads(raw) if "json" in ctype else raw


# --- the API -------------------------------------------------------------------------------------------------
def test_suggestions_are_the_plans_moves_ranked_with_stable_ids(client, bench):
    """Every move of the optimal plan is listed once, with the gain and P(win) the model gives, ranked by group;
    ids are a pure function of the data, the model and the move."""
    wb = bench.workbench
    got = client.get("/api/suggestions")
    assert got.status_code == 200
    rows = got.json()["suggestions"]
    plan = plan_assignment(wb.ctx.ds, wb.ctx.p_win, AssignConfig())  # an independent solve of the same problem
    cur, x = wb.ctx.current, plan.solution.assignment
    moved = {(wb.account_ids[a], wb.rep_ids[cur[a]], wb.rep_ids[x[a]]) for a in np.flatnonzero(x != cur)}
    assert {(r["account_id"], r["from_rep_id"], r["to_rep_id"]) for r in rows} == moved and len(rows) == len(moved) > 20
    ev = wb.ctx.ev()
    a_pos = {a: i for i, a in enumerate(wb.account_ids)}
    r_pos = {r: i for i, r in enumerate(wb.rep_ids)}
    for r in rows:
        a, f, t = a_pos[r["account_id"]], r_pos[r["from_rep_id"]], r_pos[r["to_rep_id"]]
        assert r["gain"] == pytest.approx(ev[a, t] - ev[a, f])
        assert (r["p_win_from"], r["p_win_to"]) == (pytest.approx(wb.ctx.p_win[a, f]), pytest.approx(wb.ctx.p_win[a, t]))
        assert r["id"] == suggestion_id(wb.basis, r["account_id"], r["from_rep_id"], r["to_rep_id"])
        assert r["confidence"] in ("confident", "within the model's uncertainty") and r["reasons"]
    groups = [r["group"] for r in rows]
    assert groups == sorted(groups) and groups[0] == 1
    gains = {r["group"]: r["group_gain"] for r in rows}
    assert sum(gains.values()) == pytest.approx(plan.summary.uplift, rel=1e-9)
    # filters: a rep at either end of the move, a tier, the confidence mark
    rep = rows[0]["to_rep_id"]
    some = client.get("/api/suggestions", params={"rep": rep}).json()["suggestions"]
    assert some and all(rep in (r["from_rep_id"], r["to_rep_id"]) for r in some)
    assert len(some) == sum(rep in (r["from_rep_id"], r["to_rep_id"]) for r in rows)
    tier_a = client.get("/api/suggestions", params={"tier": "A", "confidence": "confident"}).json()["suggestions"]
    assert len(tier_a) == sum(r["tier"] == "A" and r["confidence"] == "confident" for r in rows)


def test_decisions_are_kept_latest_first_with_the_user_and_move_the_totals(client):
    rows = client.get("/api/suggestions").json()["suggestions"]
    top, second = rows[0], rows[1]
    before = client.get("/api/totals").json()
    assert before["approved_uplift"] == 0 and before["pending"] == len(rows)
    r = client.post("/api/decisions", json={"suggestion_id": top["id"], "decision": "accept", "user": "dana"})
    assert r.status_code == 201 and r.json()["decision"] == "accept"
    client.post("/api/decisions", json={"suggestion_id": second["id"], "decision": "accept"},
                headers={"X-Repfit-User": "lee"})
    client.post("/api/decisions", json={"suggestion_id": second["id"], "decision": "reject", "user": "kim"})
    got = {d["suggestion_id"]: d for d in client.get("/api/decisions").json()["decisions"]}
    assert set(got) == {top["id"], second["id"]}
    assert (got[top["id"]]["decision"], got[top["id"]]["user"]) == ("accept", "dana")
    assert (got[second["id"]]["decision"], got[second["id"]]["user"]) == ("reject", "kim") and got[second["id"]]["at"]
    t = client.get("/api/totals").json()
    assert t["approved_uplift"] == pytest.approx(top["gain"]) and t["approved_moves"] == 1
    assert (t["accepted"], t["rejected"], t["pending"]) == (1, 1, len(rows) - 2)
    book = {r["rep_id"]: r for r in client.get("/api/book").json()["reps"]}
    assert book[top["to_rep_id"]]["load_approved"] == book[top["to_rep_id"]]["load_today"] + 1
    assert book[top["from_rep_id"]]["load_approved"] == book[top["from_rep_id"]]["load_today"] - 1
    audit = client.get("/api/audit").json()["audit"]
    assert [(a["user"], a["action"]) for a in audit[:3]] == [("kim", "reject"), ("lee", "accept"), ("dana", "accept")]


def test_bad_requests_get_a_4xx_with_a_message(client):
    sid = client.get("/api/suggestions").json()["suggestions"][0]["id"]
    r = client.post("/api/decisions", json={"suggestion_id": "nope", "decision": "accept"})
    assert r.status_code == 404 and "unknown suggestion id 'nope'" in r.json()["detail"]
    r = client.post("/api/decisions", json={"suggestion_id": sid, "decision": "maybe"})
    assert r.status_code == 422 and "decision" in r.json()["detail"]
    r = client.post("/api/decisions", json={"suggestion_id": sid, "decision": "accept", "path": "/etc/passwd"})
    assert r.status_code == 422 and "path" in r.json()["detail"]
    r = client.post("/api/decisions", json={"suggestion_id": sid, "decision": "accept", "user": "<script>"})
    assert r.status_code == 422 and "user" in r.json()["detail"]
    r = client.post("/api/decisions", content=b'{"suggestion_id": "' + b"x" * 100_000 + b'"}',
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "request body over" in r.json()["detail"]
    def chunked():  # no Content-Length: counted as it arrives
        yield b'{"suggestion_id": "'
        for _ in range(10):
            yield b"x" * 10_000
        yield b'", "decision": "accept"}'

    r = client.post("/api/decisions", content=chunked(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "request body over" in r.json()["detail"]
    r = client.post("/api/decisions", content=b"not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    r = client.post("/api/solve", json={"balance": ["potential=abc"]})
    assert r.status_code == 400 and "is not METRIC=TOL" in r.json()["detail"]
    r = client.post("/api/solve", json={"locks": {"A99999": True}})
    assert r.status_code == 404 and "A99999" in r.json()["detail"]
    r = client.post("/api/solve", json={"capacity": {"R001": -1}})
    assert r.status_code == 400 and "capacity" in r.json()["detail"]
    assert client.get("/api/jobs/abc").status_code == 404
    assert client.get("/api/scenarios/compare", params={"a": "x", "b": "y"}).status_code == 404
    assert client.get("/api/search", params={"account": "A99999"}).status_code == 400
    assert client.get("/api/decisions").json()["decisions"] == []  # nothing refused was recorded


def test_search_is_suggest_account_and_rep(client, bench):
    from repfit.suggest import for_account, for_rep

    wb = bench.workbench
    acc = client.get("/api/search", params={"account": "A00031", "top": 3}).json()["results"]
    want = for_account(wb.ctx, "A00031", 3)
    assert [r["rep_id"] for r in acc] == list(want.rep_id) and acc[0]["reasons"] == want.reasons.iloc[0]
    rep = client.get("/api/search", params={"rep": "R007"}).json()["results"]
    assert [(r["action"], r["account_id"]) for r in rep] == list(zip(for_rep(wb.ctx, "R007").action,
                                                                    for_rep(wb.ctx, "R007").account_id))


def test_export_is_the_approved_changes_formula_escaped_and_an_mlflow_run(client, bench):
    rows = client.get("/api/suggestions").json()["suggestions"]
    for r in rows[:3]:
        client.post("/api/decisions", json={"suggestion_id": r["id"], "decision": "accept", "user": "@ops"})
    client.post("/api/decisions", json={"suggestion_id": rows[3]["id"], "decision": "reject", "user": "@ops"})
    got = client.get("/api/export.csv", params={"user": "dana"})
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(got.text)))
    assert [t["account_id"] for t in table] == [r["account_id"] for r in rows[:3]]
    for t, r in zip(table, rows[:3]):
        assert (t["current_owner"], t["new_owner"], t["reasons"]) == (r["from_rep_id"], r["to_rep_id"], r["reasons"])
        assert float(t["gain"]) == pytest.approx(r["gain"])
        assert t["approved_by"] == "'@ops"  # a spreadsheet would run "@ops" as a formula
    files = list(bench.exports_dir.glob("approved-*.csv"))
    assert len(files) == 1 and files[0].read_text() == got.text
    from mlflow.tracking import MlflowClient

    tracker = bench.tracker
    mc = MlflowClient(tracker.uri)
    run_ = mc.get_run(got.headers["X-Repfit-Run-Id"])
    assert run_.data.tags["repfit.kind"] == "export" and run_.data.metrics["rows"] == 3
    assert [a.path for a in mc.list_artifacts(run_.info.run_id, "outputs")] == [f"outputs/{files[0].name}"]


def test_what_if_resolves_in_the_background(live):
    """A departure (capacity 0) and a lock, re-solved while the server keeps answering; the new plan is the one an
    independent solve of the changed data gives."""
    wb = live.prepared.workbench
    base = http("GET", live.url + "/api/settings")[1]
    leaver = "R007"
    lock = http("GET", live.url + "/api/suggestions")[1]["suggestions"][0]["account_id"]
    code, job = http("POST", live.url + "/api/solve", {"capacity": {leaver: 0}, "locks": {lock: True}, "user": "dana"})
    assert code == 202 and job["state"] in ("queued", "running", "done")
    answered = 0
    deadline = time.monotonic() + 60
    while job["state"] in ("queued", "running"):
        assert time.monotonic() < deadline
        assert http("GET", live.url + "/api/health", timeout=5)[0] == 200  # not blocked by the solve
        answered += 1
        job = http("GET", live.url + f"/api/jobs/{job['id']}")[1]
    assert job["state"] == "done" and job["progress"] == 1, job
    rows = http("GET", live.url + "/api/suggestions")[1]["suggestions"]
    ds = wb.ctx.ds
    changed = replace(ds, reps=ds.reps.assign(capacity=np.where(ds.reps.rep_id == leaver, 0, ds.reps.capacity)),
                      accounts=ds.accounts.assign(locked=ds.accounts.locked | (ds.accounts.account_id == lock)))
    truth = plan_assignment(changed, wb.ctx.p_win, AssignConfig())
    x, cur = truth.solution.assignment, wb.ctx.current
    want = {(wb.account_ids[a], wb.rep_ids[x[a]]) for a in np.flatnonzero(x != cur)}
    assert {(r["account_id"], r["to_rep_id"]) for r in rows} == want
    owned = set(wb.account_ids[cur == list(wb.rep_ids).index(leaver)])
    assert owned and owned <= {r["account_id"] for r in rows if r["from_rep_id"] == leaver}  # all of them leave
    assert lock not in {r["account_id"] for r in rows}
    book = {r["rep_id"]: r for r in http("GET", live.url + "/api/book")[1]["reps"]}
    assert book[leaver]["load_plan"] == 0 and book[leaver]["capacity"] == 0
    # back to the settings it started with
    code, job = http("POST", live.url + "/api/solve", {"reset": True})
    while job["state"] in ("queued", "running"):
        time.sleep(0.05)
        job = http("GET", live.url + f"/api/jobs/{job['id']}")[1]
    assert job["state"] == "done" and http("GET", live.url + "/api/settings")[1] == base
    print(f"health answered {answered} times during the re-solve")


def test_a_failed_resolve_is_reported_and_the_plan_stays(client):
    before = client.get("/api/suggestions").json()["suggestions"]
    r = client.post("/api/solve", json={"capacity": {f"R{i:03d}": 0 for i in range(1, 13)}})
    assert r.status_code == 202
    job = r.json()
    while job["state"] in ("queued", "running"):
        time.sleep(0.05)
        job = client.get(f"/api/jobs/{job['id']}").json()
    assert job["state"] == "failed" and "capacity" in job["error"]
    assert client.get("/api/suggestions").json()["suggestions"] == before


def test_scenarios_save_and_compare(client, bench):
    rows = client.get("/api/suggestions").json()["suggestions"]
    client.post("/api/decisions", json={"suggestion_id": rows[0]["id"], "decision": "accept"})
    assert client.post("/api/scenarios", json={"name": "base", "user": "dana"}).status_code == 201
    job = client.post("/api/solve", json={"max_moves": 5}).json()
    while job["state"] in ("queued", "running"):
        time.sleep(0.05)
        job = client.get(f"/api/jobs/{job['id']}").json()
    assert job["state"] == "done"
    assert client.post("/api/scenarios", json={"name": "budget 5", "user": "dana"}).status_code == 201
    assert client.post("/api/scenarios", json={"name": "../etc"}).status_code == 422
    c = client.get("/api/scenarios/compare", params={"a": "base", "b": "budget 5"}).json()
    assert (c["a"]["plan_moves"], c["b"]["plan_moves"]) == (len(rows), 5)
    assert c["b"]["plan_uplift"] < c["a"]["plan_uplift"]
    assert c["a"]["approved_uplift"] == c["b"]["approved_uplift"] == pytest.approx(rows[0]["gain"])
    changed = {r["rep_id"] for r in c["per_rep_changes"]}
    a_plan = {r["rep_id"]: r["load_plan_a"] for r in c["per_rep_changes"]}
    assert changed and all(r["load_plan_a"] != r["load_plan_b"] for r in c["per_rep_changes"])
    assert sum(a_plan.values()) - sum(r["load_plan_b"] for r in c["per_rep_changes"]) == 0  # accounts are conserved
    assert [s["name"] for s in client.get("/api/scenarios").json()["scenarios"]] == ["base", "budget 5"]
    bench.workbench.result = bench.workbench._solve(Settings.from_config(AssignConfig()))  # restore for later tests


# --- security --------------------------------------------------------------------------------------------------
def test_another_host_without_a_token_refuses_to_start(small_org, tmp_path, monkeypatch):
    monkeypatch.delenv("REPFIT_TOKEN", raising=False)
    res = run("serve", "--data", small_org, "--host", "0.0.0.0", "--store", tmp_path / "wb.db")
    assert res.exit_code != 0
    assert "error: --host: serving on 0.0.0.0" in res.output and "--token SECRET (or set REPFIT_TOKEN)" in res.output
    assert not (tmp_path / "wb.db").exists()  # refused before anything was opened
    res = run("serve", "--data", small_org, "--host", "0.0.0.0", "--token", "short")
    assert res.exit_code != 0 and "at least 16" in res.output
    res = run("serve", "--data", small_org, "--store", small_org / "decisions.db")
    assert res.exit_code != 0 and "inside the input data directory" in res.output
    assert not (small_org / "decisions.db").exists()


def test_a_token_is_checked_on_every_request(bench):
    from fastapi.testclient import TestClient

    token = "s3cret-token-0123456789"
    with TestClient(make_app(bench, token=token)) as c:
        for path in ("/api/health", "/api/suggestions", "/", "/docs", "/openapi.json", "/static/workbench.js"):
            assert c.get(path).status_code == 401, path
        assert c.get("/api/health", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/health", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert c.get("/", params={"token": token}).status_code == 200  # the page: once in the address, then a cookie
        assert c.get("/api/totals").status_code == 200


def test_page_and_docs_load_nothing_from_the_internet_and_escape_text(client):
    import re

    page = client.get("/", params={"q": "<script>alert(1)</script>"}).text
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    for html in (page, client.get("/docs").text):
        assert not re.search(r"""(src|href)\s*=\s*["'](https?:)?//""", html), html[:400]
        for ref in re.findall(r"""(?:src|href)\s*=\s*["'](/[^"']+)""", html):
            assert client.get(ref).status_code == 200, ref
    assert client.get("/openapi.json").json()["paths"]["/api/decisions"]
    assert "A00031" in client.get("/", params={"q": "A00031"}).text  # the search shows the account's best reps


# --- a real server: concurrency, restart ----------------------------------------------------------------------
def test_50_concurrent_decisions_lose_none(live):
    rows = http("GET", live.url + "/api/suggestions")[1]["suggestions"]
    store = live.prepared.workbench.store
    before = store.decision_count()
    jobs = [(rows[i % len(rows)]["id"], "accept" if i % 3 else "reject", f"user{i}") for i in range(50)]
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=50) as pool:
        codes = list(pool.map(lambda j: http("POST", live.url + "/api/decisions",
                                             {"suggestion_id": j[0], "decision": j[1], "user": j[2]}, timeout=30)[0], jobs))
    seconds = time.monotonic() - t0
    assert codes == [201] * 50, codes
    assert store.decision_count() == before + 50
    latest = {d["suggestion_id"]: d for d in http("GET", live.url + "/api/decisions")[1]["decisions"]}
    assert {j[0] for j in jobs} <= set(latest)
    print(f"50 concurrent decisions in {seconds:.2f} s")


def test_a_restart_keeps_every_decision(prepared, tmp_path):
    """Decisions made through one server are all there after it stops and a new workbench (new solve, ids computed
    again) serves the same store."""
    path = tmp_path / "wb.db"
    first = Server(make_app(_with_store(prepared, path)))
    rows = http("GET", first.url + "/api/suggestions")[1]["suggestions"]
    made = {}
    for i, r in enumerate(rows[:10]):
        decision = "accept" if i % 2 == 0 else "reject"
        assert http("POST", first.url + "/api/decisions", {"suggestion_id": r["id"], "decision": decision})[0] == 201
        made[r["id"]] = decision
    # and one on a move that only a what-if proposes (R007 leaves): it counts after the restart too
    job = http("POST", first.url + "/api/solve", {"capacity": {"R007": 0}})[1]
    while job["state"] in ("queued", "running"):
        time.sleep(0.05)
        job = http("GET", first.url + f"/api/jobs/{job['id']}")[1]
    base_ids = {r["id"] for r in rows}
    only = next(r for r in http("GET", first.url + "/api/suggestions")[1]["suggestions"] if r["id"] not in base_ids)
    assert http("POST", first.url + "/api/decisions", {"suggestion_id": only["id"], "decision": "accept"})[0] == 201
    made[only["id"]] = "accept"
    first.stop()
    wb = prepared.workbench
    again = Workbench(wb.ctx, AssignConfig(), WorkbenchStore(path), model_uri=wb.model_uri,
                      model_version=wb.model_version)
    second = Server(make_app(Prepared(again, path, tmp_path / "exports", prepared.tracker)))
    try:
        got = {d["suggestion_id"]: d["decision"] for d in http("GET", second.url + "/api/decisions")[1]["decisions"]}
        assert got == made
        now = {r["id"]: r["decision"] for r in http("GET", second.url + "/api/suggestions")[1]["suggestions"]}
        assert all(now[k] == v for k, v in made.items() if k != only["id"])  # same ids: decisions show on their moves
        exported = http("GET", second.url + "/api/export.csv")[1]
        assert f"{only['account_id']},{only['from_rep_id']},{only['to_rep_id']}," in exported
    finally:
        second.stop()


# --- the page in a real browser ---------------------------------------------------------------------------------
def test_page_in_chromium_accept_the_top_suggestion_and_export(live, tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (`make test` installs Debian's chromium when it can)")
    from playwright.sync_api import expect, sync_playwright

    top = http("GET", live.url + "/api/suggestions")[1]["suggestions"]
    group = [r for r in top if r["group"] == 1]
    before = http("GET", live.url + "/api/totals")[1]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(accept_downloads=True)
            errors, requests = [], []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(live.url + "/")
            page.fill("#user", "dana")
            page.dispatch_event("#user", "change")
            first = page.locator("tbody.group").first
            assert first.get_attribute("data-group") == "1"
            first.locator("button.accept").click()
            want = before["approved_uplift"] + sum(r["gain"] for r in group)
            expect(page.locator('[data-total="approved_uplift"]')).to_have_text(f"+{want:,.0f}")
            expect(first.locator("td.state").first).to_have_text("accept by dana")
            with page.expect_download() as dl:
                page.click("#export")
            path = tmp_path / "export.csv"
            dl.value.save_as(path)
            # what-if from the page: a departure, re-solved with progress shown, then saved and compared
            page.fill("#scenario-form input[name=name]", "as is")
            with page.expect_navigation():
                page.click("#scenario-form button")
            page.fill("#whatif-form input[name=capacity]", "R007=0")
            with page.expect_navigation(timeout=60_000):
                page.click("#whatif-form button")
            expect(page.locator("#whatif")).to_contain_text("capacities changed: R007 0")
            expect(page.locator('#book-table tr[data-rep="R007"] td').nth(2)).to_contain_text("/ 0")  # load in the plan
            page.fill("#scenario-form input[name=name]", "R007 leaves")
            with page.expect_navigation():
                page.click("#scenario-form button")
            page.select_option("#compare-form select[name=a]", "as is")
            page.select_option("#compare-form select[name=b]", "R007 leaves")
            page.click("#compare-form button")
            expect(page.locator("#compare")).to_contain_text("Reps whose book differs")
            row = page.locator("#compare tr", has_text="R007")
            assert row.locator("td").nth(3).inner_text() == "0"  # its capacity in the second scenario
            page.goto(live.url + "/docs")
            page.wait_for_selector(".swagger-ui .opblock")  # Swagger UI drew the API from the package's own files
            assert not errors, errors
            elsewhere = [u for u in requests if not u.startswith(live.url + "/")]
            assert not elsewhere, elsewhere  # nothing fetched from anywhere but the workbench
        finally:
            browser.close()
            code, job = http("POST", live.url + "/api/solve", {"reset": True})
            while job["state"] in ("queued", "running"):
                time.sleep(0.05)
                job = http("GET", live.url + f"/api/jobs/{job['id']}")[1]
    table = list(csv.DictReader(path.open()))
    assert {r["account_id"] for r in group} <= {t["account_id"] for t in table}
    mine = [t for t in table if t["account_id"] == group[0]["account_id"]]
    assert mine[0]["new_owner"] == group[0]["to_rep_id"] and mine[0]["approved_by"] == "dana"
    assert float(mine[0]["gain"]) == pytest.approx(group[0]["gain"])


# --- the command as a user runs it ------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args, cwd, env) -> tuple:
    import subprocess
    import sys

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "repfit.cli", "serve", *map(str, args), "--port", str(port)],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "repfit serve did not answer within 120 s"
        try:
            if http("GET", url + "/api/health", timeout=2)[0] == 200:
                return proc, url
        except OSError:
            time.sleep(0.2)


@pytest.mark.slow
def test_repfit_serve_stops_on_ctrl_c_and_a_restart_keeps_every_decision(trained, tmp_path):
    """The command end to end, twice: progress while it prepares, decisions, Ctrl-C (exit 0, a clean message), the
    same store served again with every decision and the same ids."""
    import os
    import signal

    org, uri, tmp = trained
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    args = ["--data", org, "--tracking-uri", uri, "--store", tmp / "out" / "wb.db"]
    proc, url = _start(args, tmp, env)
    rows = http("GET", url + "/api/suggestions")[1]["suggestions"]
    made = {r["id"]: "accept" if i % 2 else "reject" for i, r in enumerate(rows[:6])}
    for sid, d in made.items():
        assert http("POST", url + "/api/decisions", {"suggestion_id": sid, "decision": d, "user": "dana"})[0] == 201
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert ".. loading the data and the model" in err and ".. solving the assignment" in err
    assert "serving the workbench at http://127.0.0.1:" in err and "stopped; every acknowledged decision" in err
    assert "Traceback" not in err
    proc, url = _start(args, tmp, env)
    try:
        got = {d["suggestion_id"]: d["decision"] for d in http("GET", url + "/api/decisions")[1]["decisions"]}
        assert got == made
        assert [r["id"] for r in http("GET", url + "/api/suggestions")[1]["suggestions"]] == [r["id"] for r in rows]
    finally:
        proc.send_signal(signal.SIGTERM)  # as a service manager stops it
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "stopped; every acknowledged decision" in err, err


def test_page_filters_and_lists_groups_with_their_moves(client):
    import re

    rows = client.get("/api/suggestions", params={"tier": "A"}).json()["suggestions"]
    page = client.get("/", params={"tier": "A", "all": "true"}).text
    shown = re.findall(r'<tr class="move [a-z]+" data-id="([0-9a-f]+)">', page)
    assert shown == [r["id"] for r in rows] and rows
    groups = re.findall(r'<tbody class="group" data-group="(\d+)" data-ids="([0-9a-f ]+)">', page)
    assert [int(g) for g, _ in groups] == sorted({r["group"] for r in rows})
    assert all(ids.split() == [r["id"] for r in rows if r["group"] == int(g)] for g, ids in groups)


def test_make_demo_ends_by_printing_a_serve_command_that_parses():
    """The Makefile's demo target prints (never runs) `repfit serve`; its options are the command's."""
    import shlex

    from repfit.cli import app

    lines = (Path(__file__).resolve().parents[1] / "Makefile").read_text().split("\ndemo:")[1].split("\n\n")[0].splitlines()
    assert not any("repfit serve" in ln and not ln.strip().startswith("@echo") for ln in lines)
    echoed = [ln for ln in lines if "repfit serve" in ln]
    assert echoed and lines.index(echoed[0]) >= len(lines) - 3  # at the end
    args = shlex.split(echoed[0].strip()[len("@echo "):].strip('"').replace("$(BIN)/", "").replace("$(DEMO)", "demo"))
    assert args[:2] == ["repfit", "serve"]
    ctx = app.commands["serve"].make_context("serve", args[2:])
    assert ctx.params["scores"] == Path("demo/scores.parquet") and ctx.params["max_moves"] == 200
