"""Builds a gateway from settings and runs it under uvicorn."""

from __future__ import annotations

import logging
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from stillwatch.detect import Detector
from stillwatch.events import Account
from stillwatch.gateway.admin import build_admin_app
from stillwatch.gateway.app import Gateway
from stillwatch.gateway.auth import KeyRing
from stillwatch.limits import Limiter, MemoryLimiter
from stillwatch.policy import Policy, load_policy
from stillwatch.store.accounts import AccountStore
from stillwatch.store.db import database_url, make_engine
from stillwatch.store.telemetry import TelemetryWriter

DEFAULT_DATA_DIR = "stillwatch-data"


@dataclass
class GatewaySettings:
    upstream: str = "http://127.0.0.1:8700"
    policy: str | None = None
    database: str | None = None
    data_dir: str = DEFAULT_DATA_DIR
    host: str = "127.0.0.1"
    port: int = 8780
    admin_token: str | None = None
    replica: str | None = None
    upstream_token: str | None = None
    key_poll_seconds: float = 2.0


def make_limiter(policy: Policy) -> Limiter:
    if policy.limits_backend == "redis":
        from stillwatch.limits.redis import RedisLimiter

        return RedisLimiter(policy.redis_url, use_server_time=True)
    return MemoryLimiter()


class StoreAccounts:
    """Account metadata for the detector, read from the store once per account and kept."""

    def __init__(self, store: AccountStore, limit: int = 200_000) -> None:
        self.store = store
        self.limit = limit
        self._cache: dict[str, Account | None] = {}

    def get(self, account_id: str, default: Account | None = None) -> Account | None:
        if account_id not in self._cache:
            if len(self._cache) >= self.limit:
                self._cache.clear()
            self._cache[account_id] = self.store.get_account(account_id)
        return self._cache[account_id] or default


def build_gateway(
    settings: GatewaySettings, *, policy: Policy | None = None, detector: Detector | None = None
) -> Gateway:
    policy = policy or load_policy(settings.policy)
    engine = make_engine(database_url(settings.database, settings.data_dir))
    store = AccountStore(engine)
    keyring = KeyRing(store, poll_interval=settings.key_poll_seconds)
    telemetry = TelemetryWriter(
        engine,
        spool_dir=Path(settings.data_dir) / "spool",
        privacy=policy.privacy,
        replica=settings.replica or "",
        retention_days=policy.retention_days,
    )
    if detector is None:
        from stillwatch.detect.factory import build_detector

        share = None
        if policy.detection_state == "redis":
            from stillwatch.detect.shared import RedisShare

            share = RedisShare(
                policy.redis_url, settings.replica or f"{socket.gethostname()}-{os.getpid()}"
            )
        detector = build_detector(
            policy.detector,
            model=policy.detection_model,
            accounts=StoreAccounts(store),
            corpora=policy.corpora,
            share=share,
            background_clustering=True,
            coercion_encoder=policy.coercion_encoder,
        )
    admin_token = settings.admin_token or os.environ.get("STILLWATCH_ADMIN_TOKEN")
    admin = build_admin_app(store, keyring, admin_token)
    return Gateway(
        policy=policy,
        upstream_url=settings.upstream,
        keyring=keyring,
        telemetry=telemetry,
        limiter=make_limiter(policy),
        detector=detector,
        admin_app=admin,
        upstream_token=settings.upstream_token,
    )


def run_gateway(settings: GatewaySettings, *, log_level: str = "warning") -> None:
    import uvicorn

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    # The telemetry and key-ring threads hold the GIL in short bursts; hand it back to the
    # event loop within half a millisecond instead of the default five.
    sys.setswitchinterval(0.0005)
    app = build_gateway(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=30,
        timeout_keep_alive=75,
        backlog=4096,
        proxy_headers=False,  # the gateway trusts forwarded headers only from its own list
    )
