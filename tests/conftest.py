from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from stillwatch.upstream.mock import MockSettings, build_mock_app

from helpers import GatewayHandle, ServerThread, start_gateway

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/9"


@pytest.fixture(scope="session")
def mock_upstream() -> Iterator[ServerThread]:
    server = ServerThread(build_mock_app(MockSettings())).start()
    yield server
    server.stop()


@pytest.fixture
def gateway(tmp_path: Path, mock_upstream: ServerThread) -> Iterator[GatewayHandle]:
    handle = start_gateway(tmp_path, mock_upstream.url)
    yield handle
    handle.stop()


def _postgres_available() -> str | None:
    try:
        import psycopg

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", connect_timeout=2):
            return None
    except Exception as exc:  # the reason is shown in the skip message
        return f"PostgreSQL not reachable on 127.0.0.1:5432 ({type(exc).__name__}: {exc})"


def _redis_available() -> str | None:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
        return None
    except Exception as exc:
        return f"Redis not reachable on 127.0.0.1:6379 ({type(exc).__name__}: {exc})"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh schema in the real PostgreSQL, dropped afterwards."""
    reason = _postgres_available()
    if reason:
        pytest.skip(reason)
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture
def redis_url() -> str:
    reason = _redis_available()
    if reason:
        pytest.skip(reason)
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    return REDIS_URL
