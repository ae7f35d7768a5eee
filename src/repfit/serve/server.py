"""Preparing and running the workbench server (``repfit serve``)."""

from __future__ import annotations

import hashlib
import ipaddress
import threading
from dataclasses import dataclass
from pathlib import Path

from repfit.config import AssignConfig
from repfit.errors import ConfigError
from repfit.progress import NO_PROGRESS, Progress

MIN_TOKEN_CHARS = 16


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_host(host: str, token: str | None) -> None:
    """Serving beyond this machine needs a token; a token must be long enough to guess at no better than chance."""
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(f"the token has {len(token)} characters; it needs at least {MIN_TOKEN_CHARS}. Fix: e.g. "
                          "--token $(python -c 'import secrets; print(secrets.token_urlsafe(24))').", option="token")
    if not is_loopback(host) and token is None:
        raise ConfigError(f"serving on {host} makes the workbench reachable from other machines, so every request must "
                          "carry a token, and none was given. Fix: --token SECRET (or set REPFIT_TOKEN), or serve on "
                          "127.0.0.1 (the default).", option="host")


def default_store(data_path: Path, root: Path) -> Path:
    """``<root>/workbench/<data name>-<hash of its path>.db``: among the outputs (beside ``mlruns/``), one per data set."""
    resolved = Path(data_path).resolve()
    tag = hashlib.sha256(str(resolved).encode()).hexdigest()[:8]
    return root / "workbench" / f"{resolved.stem or 'data'}-{tag}.db"


def check_store(store: Path, data_path: Path) -> None:
    """The store is an output: never inside the input data directory (nor one of its files)."""
    data = Path(data_path).resolve()
    inputs = data if data.is_dir() else data.parent
    s = Path(store).resolve()
    if s == data or s.is_relative_to(inputs):
        raise ConfigError(f"{store}: the workbench store would be written inside the input data directory {inputs}. "
                          "Fix: give --store a path outside it (e.g. workbench/decisions.db).", option="store")
    if s.is_dir():
        raise ConfigError(f"{store}: is a directory. Fix: give --store a file name, e.g. workbench/decisions.db.",
                          option="store")


@dataclass(frozen=True)
class Prepared:
    workbench: "Workbench"  # noqa: F821
    store_path: Path
    exports_dir: Path
    tracker: object


def prepare(*, data, store, pairs, options: AssignConfig, store_path: Path | None,
            progress: Progress = NO_PROGRESS) -> Prepared:
    """Load the data, the champion model (or ``pairs``), P(win) of every pair, solve under ``options``, open the
    workbench store. ``data`` / ``store`` / ``pairs``: ``repfit.jobs`` DataSource / Store / PairSource."""
    from repfit.jobs import _context, scored
    from repfit.serve.store import WorkbenchStore
    from repfit.serve.workbench import Workbench
    from repfit.tracking import find_root

    path = Path(store_path) if store_path is not None else default_store(data.path, find_root(store.cwd))
    check_store(path, data.path)
    db = WorkbenchStore(path)
    progress.stage("loading the data and the model")
    tracker = store.open()
    s = scored(data=data, pairs=pairs, tracker=tracker, progress=progress, need_scorer=True)
    wb = Workbench(_context(s), options, db, model_uri=s.model_uri, model_version=s.model_version, progress=progress)
    return Prepared(wb, path, path.parent / "exports", tracker)


def make_app(prepared: Prepared, *, token: str | None = None, data_dir: str = ""):
    from repfit.serve.app import create_app

    lock = threading.Lock()  # one MLflow run at a time

    def log_export(path: Path, figures: dict) -> str:
        wb = prepared.workbench
        with lock:
            return prepared.tracker.log_job(
                "export", params={"data_dir": data_dir, "user": figures["user"], **wb.result.settings.to_dict()},
                metrics={"rows": figures["rows"], "gain": figures["gain"]},
                tags={"repfit.model_uri": wb.model_uri, "repfit.model_version": wb.model_version,
                      "repfit.store": str(prepared.store_path)},
                artifacts=[path])

    return create_app(prepared.workbench, exports_dir=prepared.exports_dir, token=token, log_export=log_export)


def run(app, host: str, port: int, on_ready=None) -> None:
    """Serve until Ctrl-C / SIGTERM; uvicorn finishes the requests in flight before it returns."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                           timeout_graceful_shutdown=5))
    if on_ready is not None:
        original = server.startup

        async def startup(sockets=None):
            await original(sockets)
            if server.started:
                on_ready()

        server.startup = startup
    server.run()


def check_port(host: str, port: int) -> None:
    """Fail early, in one line, when the port is taken (uvicorn would log it and exit after the preparation)."""
    import socket

    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host.strip("[]"), port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}). Fix: another --port, or stop what "
                              "uses it.", option="port") from None
