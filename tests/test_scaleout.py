"""Several gateway replicas against the real Redis and PostgreSQL, and the faults that must
lose no event: a database restart, an upstream killed mid-stream, SIGTERM under load."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from stillwatch.events import Account
from stillwatch.gateway.server import GatewaySettings, build_gateway
from stillwatch.policy import load_policy
from stillwatch.store.accounts import AccountStore
from stillwatch.store.db import make_engine
from stillwatch.store.telemetry import count_events, iter_stored_events

from helpers import ServerThread, export_events, free_port, spawn, start_gateway, until, wait_http

MSGS = [{"role": "user", "content": "hello there"}]


def _policy(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def _store(url: str, accounts: list[str]) -> tuple[AccountStore, dict[str, str]]:
    store = AccountStore(make_engine(url))
    store.upsert_accounts([Account(account_id=a) for a in accounts])
    return store, {a: store.create_key(a).secret for a in accounts}


async def _fire(
    urls: list[str], key: str, n: int, concurrency: int, stream: bool = False
) -> Counter[str]:
    """n requests spread over the gateways; counts HTTP statuses and connection failures."""
    out: Counter[str] = Counter()
    sem = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one(i: int) -> None:
            async with sem:
                try:
                    async with http.post(
                        f"{urls[i % len(urls)]}/v1/chat/completions",
                        headers={"Authorization": f"Bearer {key}"},
                        json={
                            "model": "mock-small",
                            "messages": MSGS,
                            "stream": stream,
                            "max_tokens": 64,
                        },
                    ) as r:
                        await r.read()
                        out[str(r.status)] += 1
                except (aiohttp.ClientError, OSError):
                    out["conn_error"] += 1

        await asyncio.gather(*(one(i) for i in range(n)))
    return out


def _serve(
    tmp_path: Path, name: str, upstream: str, database: str, policy: Path | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    args = [
        "serve",
        "--port",
        str(port),
        "--upstream",
        upstream,
        "--database",
        database,
        "--data-dir",
        str(tmp_path / name),
        "--replica",
        name,
    ]
    if policy:
        args += ["--policy", str(policy)]
    proc = spawn(args)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/healthz", proc=proc)
    return proc, url


def _stop(*procs: subprocess.Popen[bytes]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()


@pytest.mark.redis
def test_two_gateways_sharing_redis_admit_exactly_n(
    tmp_path: Path, redis_url: str, mock_upstream: ServerThread
) -> None:
    n_limit = 37
    policy = _policy(
        tmp_path,
        f"""
limits_backend: redis
redis_url: {redis_url}
tiers:
  default:
    key: {{requests: {n_limit}/hour}}
""",
    )
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    _, keys = _store(db, ["acct-r"])
    a, url_a = _serve(tmp_path, "a", mock_upstream.url, db, policy)
    b, url_b = _serve(tmp_path, "b", mock_upstream.url, db, policy)
    try:
        counts = asyncio.run(_fire([url_a, url_b], keys["acct-r"], 200, concurrency=200))
    finally:
        _stop(a, b)
    assert counts["200"] == n_limit
    assert counts["429"] == 200 - n_limit


@pytest.mark.redis
def test_redis_unreachable_fails_as_the_policy_says(tmp_path: Path, mock_upstream) -> None:
    for failure, status in (("open", 200), ("closed", 503)):
        gw = start_gateway(
            tmp_path / failure,
            mock_upstream.url,
            limits_backend="redis",
            redis_url="redis://127.0.0.1:1/0",
            redis_failure=failure,
        )
        try:
            key = gw.account("acct-x")
            counts = asyncio.run(_fire([gw.url], key, 3, 3))
            assert counts[str(status)] == 3
            events = gw.flush()
            assert len(events) == 3
        finally:
            gw.stop()


@pytest.mark.postgres
def test_replicas_write_telemetry_to_one_database(
    tmp_path: Path, pg_url: str, mock_upstream: ServerThread
) -> None:
    _, keys = _store(pg_url, ["acct-p"])
    a, url_a = _serve(tmp_path, "replica-a", mock_upstream.url, pg_url)
    b, url_b = _serve(tmp_path, "replica-b", mock_upstream.url, pg_url)
    try:
        counts = asyncio.run(_fire([url_a, url_b], keys["acct-p"], 300, concurrency=30))
    finally:
        _stop(a, b)
    assert counts["200"] == 300
    engine = make_engine(pg_url)
    assert count_events(engine) == 300
    with engine.connect() as conn:
        replicas = {r[0] for r in conn.exec_driver_sql("SELECT DISTINCT replica FROM sw_events")}
    assert replicas == {"replica-a", "replica-b"}
    exported = tmp_path / "all.jsonl.gz"
    export_events(exported, "--database", pg_url)
    from stillwatch.events import RequestEvent, read_records

    assert sum(1 for _ in read_records(exported, RequestEvent)) == 300


def _restart_postgres() -> None:
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        capture_output=True,
        timeout=120,
    )


@pytest.mark.postgres
def test_no_event_lost_when_postgres_restarts_under_load(
    tmp_path: Path, pg_url: str, mock_upstream: ServerThread
) -> None:
    if shutil.which("pg_ctlcluster") is None:
        pytest.skip("pg_ctlcluster not available to restart PostgreSQL")
    settings = GatewaySettings(
        upstream=mock_upstream.url, database=pg_url, data_dir=str(tmp_path), key_poll_seconds=0.5
    )
    app = build_gateway(settings, policy=load_policy(None, tiers={"default": {}}))
    server = ServerThread(app).start()
    try:
        store = app.keyring.store
        store.upsert_accounts([Account(account_id="acct-pg")])
        key = store.create_key("acct-pg").secret
        app.keyring.load()
        total = 5000

        async def run() -> Counter[str]:
            load = asyncio.create_task(_fire([server.url], key, total, concurrency=40))
            await asyncio.sleep(0)
            while app.telemetry.submitted < total // 4:
                await asyncio.sleep(0.05)
            await asyncio.to_thread(_restart_postgres)
            return await load

        counts = asyncio.run(run())
        assert counts["200"] == total
        assert app.telemetry.failures > 0, "the restart was not noticed by the writer"
        assert app.telemetry.flush(120)
    finally:
        server.stop()
    engine = make_engine(pg_url)
    assert until(lambda: count_events(engine) == total, 60), count_events(engine)
    ids = {e.id for e in iter_stored_events(engine)}
    assert len(ids) == total


@pytest.mark.postgres
def test_no_event_lost_when_upstream_dies_mid_stream(tmp_path: Path, pg_url: str) -> None:
    port = free_port()
    upstream = spawn(["upstream", "--port", str(port), "--tokens-per-second", "20"])
    wait_http(f"http://127.0.0.1:{port}/healthz", proc=upstream)
    _, keys = _store(pg_url, ["acct-s"])
    gw, url = _serve(tmp_path, "g", f"http://127.0.0.1:{port}", pg_url)
    try:

        async def run() -> Counter[str]:
            load = asyncio.create_task(_fire([url], keys["acct-s"], 40, 40, stream=True))
            await asyncio.sleep(1.0)  # streams are under way (20 tokens/s, 16+ tokens each)
            upstream.kill()
            first = await load
            after = await _fire([url], keys["acct-s"], 10, 10)  # upstream now gone
            return first + after

        counts = asyncio.run(run())
    finally:
        upstream.kill()
        _stop(gw)
    assert counts["200"] == 40 and counts["502"] == 10
    events = list(iter_stored_events(make_engine(pg_url)))
    assert len(events) == 50
    cut = [e for e in events if e.error and "ended early" in e.error.message]
    assert len(cut) == 40
    assert sum(1 for e in events if e.response.status == 502) == 10


@pytest.mark.postgres
def test_no_event_lost_when_gateway_gets_sigterm_under_load(
    tmp_path: Path, pg_url: str, mock_upstream: ServerThread
) -> None:
    _, keys = _store(pg_url, ["acct-t"])
    unlimited = _policy(tmp_path, "tiers:\n  default: {}\n")
    gw, url = _serve(tmp_path, "g", mock_upstream.url, pg_url, unlimited)

    async def run() -> Counter[str]:
        load = asyncio.create_task(_fire([url], keys["acct-t"], 20_000, concurrency=40))
        await asyncio.sleep(1.5)
        gw.send_signal(signal.SIGTERM)
        return await load

    try:
        counts = asyncio.run(run())
        # uvicorn shuts down gracefully, then re-raises the signal it caught
        assert gw.wait(60) in (0, -signal.SIGTERM)
    finally:
        _stop(gw)
    answered = sum(v for k, v in counts.items() if k != "conn_error")
    assert answered > 100 and counts["conn_error"] > 0, counts  # SIGTERM landed mid-load
    stored = count_events(make_engine(pg_url))
    # every answered request has its event; a request refused at the socket never reached us
    assert stored >= answered
    assert stored <= answered + counts["conn_error"]
