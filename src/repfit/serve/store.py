"""The workbench's SQLite store: decisions, saved scenarios and an audit log.

One connection per call (threads of the server never share one); ``busy_timeout`` is set *before* WAL is
switched on, so concurrent writers wait for each other instead of failing with "database is locked" (measured:
0 failures in 16 runs of 50 concurrent writers; see ../shared/FIELD-NOTES.md). Every write commits before the
call returns, so a decision the API acknowledged survives a crash or a restart.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from repfit.errors import RepfitError

BUSY_TIMEOUT_MS = 10_000
SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    suggestion_id TEXT NOT NULL,
    basis TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('accept', 'reject')),
    user TEXT NOT NULL,
    at TEXT NOT NULL,
    account_id TEXT NOT NULL,
    from_rep_id TEXT NOT NULL,
    to_rep_id TEXT NOT NULL,
    gain REAL NOT NULL,
    reasons TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_by_basis ON decisions (basis, suggestion_id, seq);
CREATE TABLE IF NOT EXISTS scenarios (
    name TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    at TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    user TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Move:
    """What a decision is about (kept with it, so the export never depends on the suggestions of the moment)."""

    suggestion_id: str
    account_id: str
    from_rep_id: str
    to_rep_id: str
    gain: float
    reasons: str


class WorkbenchStore:
    """Decisions (every one kept; the latest per suggestion counts), scenarios and the audit log in one SQLite file."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as con:
                con.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise RepfitError(f"{self.path}: cannot open the workbench store ({exc}). Fix: give --store a writable "
                              "SQLite file path.", option="store") from None

    @contextmanager
    def _connect(self):
        con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            con.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")  # before WAL: switching the mode may itself wait
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=FULL")  # an acknowledged decision is on disk
            con.row_factory = sqlite3.Row
            yield con
        finally:
            con.close()

    @contextmanager
    def _write(self):
        """One write transaction, taken at once (BEGIN IMMEDIATE) so it never has to upgrade a read lock."""
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    # --- decisions -----------------------------------------------------------------------------------
    def decide(self, move: Move, decision: str, user: str, basis: str) -> dict:
        """Record ``decision`` on ``move`` (of the data and model ``basis``) and its audit line in one transaction;
        returns the decision as stored."""
        at = now()
        with self._write() as con:
            con.execute("INSERT INTO decisions (suggestion_id, basis, decision, user, at, account_id, from_rep_id, "
                        "to_rep_id, gain, reasons) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (move.suggestion_id, basis, decision, user, at, move.account_id, move.from_rep_id,
                         move.to_rep_id, float(move.gain), move.reasons))
            self._audit(con, at, user, decision, {"suggestion_id": move.suggestion_id, "account_id": move.account_id,
                                                  "from_rep_id": move.from_rep_id, "to_rep_id": move.to_rep_id})
        return {"suggestion_id": move.suggestion_id, "decision": decision, "user": user, "at": at}

    def latest_decisions(self, basis: str) -> list[dict]:
        """The latest decision per suggestion of the data and model ``basis``, oldest first: suggestion_id,
        decision, user, at and the move."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT d.* FROM decisions d JOIN (SELECT MAX(seq) AS seq FROM decisions WHERE basis = ? "
                "GROUP BY suggestion_id) m ON d.seq = m.seq ORDER BY d.seq", (basis,)).fetchall()
        return [dict(r) for r in rows]

    def decision_count(self) -> int:
        with self._connect() as con:
            return int(con.execute("SELECT COUNT(*) FROM decisions").fetchone()[0])

    # --- scenarios -----------------------------------------------------------------------------------
    def save_scenario(self, name: str, body: dict, user: str) -> None:
        at = now()
        with self._write() as con:
            con.execute("INSERT INTO scenarios (name, user, at, body) VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE "
                        "SET user = excluded.user, at = excluded.at, body = excluded.body",
                        (name, user, at, json.dumps(body)))
            self._audit(con, at, user, "save scenario", {"name": name})

    def scenarios(self) -> list[dict]:
        with self._connect() as con:
            rows = con.execute("SELECT name, user, at, body FROM scenarios ORDER BY at").fetchall()
        return [{"name": r["name"], "user": r["user"], "at": r["at"], **json.loads(r["body"])} for r in rows]

    def scenario(self, name: str) -> dict | None:
        with self._connect() as con:
            r = con.execute("SELECT name, user, at, body FROM scenarios WHERE name = ?", (name,)).fetchone()
        return None if r is None else {"name": r["name"], "user": r["user"], "at": r["at"], **json.loads(r["body"])}

    # --- audit ---------------------------------------------------------------------------------------
    def audit(self, action: str, detail: dict, user: str) -> None:
        with self._write() as con:
            self._audit(con, now(), user, action, detail)

    @staticmethod
    def _audit(con, at: str, user: str, action: str, detail: dict) -> None:
        con.execute("INSERT INTO audit (at, user, action, detail) VALUES (?, ?, ?, ?)",
                    (at, user, action, json.dumps(detail, default=str)))

    def audit_log(self, limit: int = 200) -> list[dict]:
        with self._connect() as con:
            rows = con.execute("SELECT at, user, action, detail FROM audit ORDER BY seq DESC LIMIT ?", (limit,)).fetchall()
        return [{"at": r["at"], "user": r["user"], "action": r["action"], "detail": json.loads(r["detail"])} for r in rows]
