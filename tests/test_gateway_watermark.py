"""The gateway's hand-off: the deployment key by default, an account's own key for tiers the
policy names and, from its first flag on, for a flagged account; the key id is in telemetry."""

from __future__ import annotations

from pathlib import Path

import httpx

from stillwatch.detect.base import ALLOW, Decision, RequestContext
from stillwatch.events import RequestEvent
from stillwatch.gateway.watermark import WatermarkHandoff
from stillwatch.policy import WatermarkPolicy
from stillwatch.upstream.local import LocalModelServer, build_local_app
from stillwatch.watermark.keys import MasterKeys
from test_upstream_local import EchoEngine

from helpers import ServerThread, start_gateway

KEYS = MasterKeys({1: b"s" * 32})


class FlagsOne:
    """Reviews one named account, allows the rest."""

    def __init__(self, account: str) -> None:
        self.account = account

    def decide(self, request: RequestContext) -> Decision:
        if request.account_id == self.account:
            return Decision(action="review", risk=0.7, rule="test:flag")
        return ALLOW

    def record(self, event: RequestEvent) -> None:
        return None


def test_handoff_rules() -> None:
    h = WatermarkHandoff(WatermarkPolicy(key_version=3, account_key_tiers=["free"]))
    assert h.key_id("a", "default", "allow") == "v3"
    assert h.key_id("b", "free", "allow") == "v3:b"
    assert h.key_id("a", "default", "review") == "v3:a"
    assert h.key_id("a", "default", "allow") == "v3:a"  # sticky once flagged
    assert WatermarkHandoff(WatermarkPolicy(account_keys="never")).key_id("a", None, "block") == (
        "v1"
    )
    assert WatermarkHandoff(WatermarkPolicy(account_keys="always")).key_id("a", None, "allow") == (
        "v1:a"
    )
    assert WatermarkHandoff(WatermarkPolicy(enabled=False)).key_id("a", None, "allow") == "off"
    bounded = WatermarkHandoff(WatermarkPolicy(remember_accounts=2))
    for acct in ("x", "y", "z"):
        bounded.key_id(acct, None, "throttle")
    assert bounded.flagged == 2 and bounded.key_id("x", None, "allow") == "v1"


def test_gateway_names_keys_and_records_them(tmp_path: Path) -> None:
    engine = EchoEngine()
    up = ServerThread(
        build_local_app(LocalModelServer(engine, KEYS, token="tok-123"))
    ).start()
    gw = start_gateway(
        tmp_path / "gw", up.url, detector=FlagsOne("harvester"), upstream_token="tok-123",
        mode="shadow", watermark={"account_key_tiers": ["partner"]},
    )
    try:
        secrets = {
            "plain": gw.account("plain"),
            "partner": gw.account("partner", tier="partner"),
            "harvester": gw.account("harvester"),
        }
        for name in ("plain", "partner", "harvester", "plain"):
            r = httpx.post(
                f"{gw.url}/v1/chat/completions",
                headers={"Authorization": f"Bearer {secrets[name]}"},
                json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
                timeout=30,
            )
            assert r.status_code == 200, r.text  # shadow mode: the flagged account is served
        assert engine.keys == [
            KEYS.derive("v1"), KEYS.derive("v1:partner"), KEYS.derive("v1:harvester"),
            KEYS.derive("v1"),
        ]
        events = sorted(gw.flush(), key=lambda e: e.ts)
        assert [e.watermark_key_id for e in events] == ["v1", "v1:partner", "v1:harvester", "v1"]
    finally:
        gw.stop()
        up.stop()
