"""Replay mode's event time, health and readiness, metrics."""

from __future__ import annotations

from pathlib import Path

import httpx

from stillwatch.events import parse_ts

from helpers import start_gateway

MSGS = [{"role": "user", "content": "hi"}]


def test_replay_mode_keeps_original_time_and_windows(tmp_path: Path, mock_upstream) -> None:
    gw = start_gateway(
        tmp_path,
        mock_upstream.url,
        replay=True,
        trusted_proxies=["127.0.0.1/32"],
        tiers={"default": {"account": {"requests": "1/hour"}}},
    )
    try:
        key = gw.account("acct-replay")

        def call(event_time: str | None) -> int:
            headers = {"Authorization": f"Bearer {key}", "X-Forwarded-For": "198.51.100.3"}
            if event_time:
                headers["X-Stillwatch-Event-Time"] = event_time
            r = httpx.post(
                gw.url + "/v1/chat/completions",
                headers=headers,
                json={"model": "m", "messages": MSGS},
            )
            return r.status_code

        # replayed much faster than real time: hours apart in event time, so all pass
        times = ["2026-02-12T10:00:00Z", "2026-02-12T11:30:00Z", "2026-02-12T13:00:00.250Z"]
        assert [call(t) for t in times] == [200, 200, 200]
        # within the same event-time hour the limit holds
        assert call("2026-02-12T13:10:00Z") == 429
        assert call("not a time") == 400
        events = sorted(gw.flush(), key=lambda e: parse_ts(e.ts))
        assert [e.ts for e in events[:3]] == [
            "2026-02-12T10:00:00.000Z",
            "2026-02-12T11:30:00.000Z",
            "2026-02-12T13:00:00.250Z",
        ]
        assert all(e.ip == "198.51.100.3" for e in events)
    finally:
        gw.stop()


def test_event_time_ignored_unless_replay_mode_and_trusted(tmp_path: Path, mock_upstream) -> None:
    for overrides in ({"replay": False, "trusted_proxies": ["127.0.0.1/32"]}, {"replay": True}):
        gw = start_gateway(tmp_path / str(len(overrides)), mock_upstream.url, **overrides)
        try:
            key = gw.account("acct")
            r = httpx.post(
                gw.url + "/v1/chat/completions",
                json={"model": "m", "messages": MSGS},
                headers={
                    "Authorization": f"Bearer {key}",
                    "X-Stillwatch-Event-Time": "2001-01-01T00:00:00Z",
                },
            )
            assert r.status_code == 200
            (event,) = gw.flush()
            assert not event.ts.startswith("2001")
        finally:
            gw.stop()


def test_health_readiness_and_metrics(gateway) -> None:
    assert httpx.get(gateway.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(gateway.url + "/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    key = gateway.account("acct-m")
    httpx.post(
        gateway.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "m", "messages": MSGS},
    )
    gateway.flush()
    text = httpx.get(gateway.url + "/metrics").text
    assert 'stillwatch_requests_total{action="allow",endpoint="/v1/chat/completions"} 1.0' in text
    assert "stillwatch_telemetry_written 1.0" in text
    assert "acct-m" not in text and "127.0.0.1" not in text  # no high-cardinality labels


def test_readiness_fails_when_limits_storage_is_down(tmp_path: Path, mock_upstream) -> None:
    gw = start_gateway(
        tmp_path, mock_upstream.url, limits_backend="redis", redis_url="redis://127.0.0.1:1/0"
    )
    try:
        r = httpx.get(gw.url + "/readyz")
        assert r.status_code == 503 and r.json()["limiter"] is False
    finally:
        gw.stop()
