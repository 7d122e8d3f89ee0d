"""Detector state shared by replicas through Redis: an account served half by one replica and
half by another is judged on its whole traffic, and a campaign's links seen by different
replicas end up in every replica's graph."""

from __future__ import annotations

import math

import pytest

from stillwatch.detect.account import AccountState
from stillwatch.detect.base import RequestContext
from stillwatch.detect.detector import DistillationDetector
from stillwatch.detect.shared import RedisShare
from stillwatch.detect.signals import SignalExtractor
from stillwatch.events import RequestEvent, format_ts

pytestmark = pytest.mark.redis
T0 = 1_790_000_000.0
HARVEST = (
    "Solve the following.\n\nNatalia sold clips to {n} of her friends in April, and then she "
    "sold half as many clips in May. How many clips did Natalia sell altogether?"
)


def _request(i: int, account: str, ip: str) -> tuple[RequestContext, RequestEvent]:
    body = {"messages": [{"role": "user", "content": HARVEST.format(n=i)}], "max_tokens": 4096}
    ctx = RequestContext(id=f"{account}-{i}", ts=T0 + 600 * i, account_id=account, ip=ip,
                         endpoint="/v1/chat/completions", body=body, conversation_id=f"c{i}")
    ev = RequestEvent(id=ctx.id, ts=format_ts(ctx.ts), account_id=account, ip=ip, request=body,
                      conversation_id=ctx.conversation_id)
    return ctx, ev


def _serve(d: DistillationDetector, ctx: RequestContext, ev: RequestEvent) -> float:
    decision = d.decide(ctx)
    d.observe(ctx)
    d.record(ev)
    return decision.risk


def test_account_state_merges_exactly() -> None:
    extract = SignalExtractor()
    whole, a, b = AccountState(), AccountState(), AccountState()
    for i in range(40):
        sig = extract({"messages": [{"role": "user", "content": f"tell me about topic {i}"}]})
        ts = T0 + 37 * i * i
        whole.update(ts, sig, f"c{i}", None, "m", None)
        (a if i % 3 else b).update(ts, sig, f"c{i}", None, "m", None)
    m = a.merged(b)
    assert m.n == whole.n and m.categories == whole.categories
    assert m.first_ts == whole.first_ts and m.last_ts == whole.last_ts
    assert sum(c for _, c in m.hours) == sum(c for _, c in whole.hours)
    again = AccountState.from_wire(a.to_wire())
    assert again.to_wire() == a.to_wire()
    # gap moments combine exactly over each part's own gaps
    parts = [a, b]
    n = sum(p.gap_n for p in parts)
    mean = sum(p.gap_mean * p.gap_n for p in parts) / n
    assert math.isclose(m.gap_mean, mean)


def test_two_replicas_judge_the_whole_account(redis_url: str) -> None:
    shares = [RedisShare(redis_url, r, interval=None) for r in ("gw-a", "gw-b")]
    replicas = [DistillationDetector(signals=SignalExtractor(), share=s) for s in shares]
    alone = DistillationDetector(signals=SignalExtractor())
    for i in range(30):
        ctx, ev = _request(i, "acct-h", "198.51.100.7")
        _serve(alone, ctx, ev)
        _serve(replicas[i % 2], ctx, ev)
        for s in shares:
            s.sync()
    for s in shares:  # a second round: each has read the other's last part
        s.sync()
    ctx, ev = _request(30, "acct-h", "198.51.100.7")
    expected = alone.decide(ctx).risk
    for d in replicas:
        got = d.decide(ctx)
        view, _ = d._view("acct-h", d._accounts["acct-h"].state)
        assert view.n == 30  # both halves; this request is observed once it is sent on
        assert got.risk == pytest.approx(expected, abs=0.05)
        d.observe(ctx)
        assert d._view("acct-h", d._accounts["acct-h"].state)[0].n == 31
    # a replica alone sees half the traffic and a different account
    solo = DistillationDetector(signals=SignalExtractor())
    for i in range(0, 30, 2):
        _serve(solo, *_request(i, "acct-h", "198.51.100.7"))
    assert solo._accounts["acct-h"].state.n == 15


def test_links_seen_by_one_replica_reach_the_other(redis_url: str) -> None:
    shares = [RedisShare(redis_url, r, interval=None) for r in ("gw-a", "gw-b")]
    a, b = (DistillationDetector(signals=SignalExtractor(), share=s) for s in shares)
    for k in range(6):  # six accounts behind one proxy address, served by replica a
        _serve(a, *_request(k, f"acct-{k}", "203.0.113.50"))
    shares[0].sync()
    shares[1].sync()
    _serve(b, *_request(99, "acct-x", "192.0.2.1"))  # b applies what it read
    holders = b.graph.accounts_of[("ip", "203.0.113.50")]
    assert holders == {f"acct-{k}" for k in range(6)}


def test_redis_away_keeps_the_parts_for_later(redis_url: str) -> None:
    share = RedisShare("redis://127.0.0.1:1/0", "gw-a", interval=None)
    d = DistillationDetector(signals=SignalExtractor(), share=share)
    _serve(d, *_request(1, "acct-q", "198.51.100.9"))
    with pytest.raises(Exception):  # noqa: B017 - any connection error
        share.sync()
    assert "acct-q" in share._outbox and share._links_out  # nothing lost; retried next round


@pytest.mark.postgres
def test_two_gateway_replicas_judge_an_account_together(
    tmp_path, pg_url: str, redis_url: str, mock_upstream
) -> None:
    import time

    import httpx

    from stillwatch.events import Account
    from stillwatch.gateway.server import GatewaySettings, build_gateway
    from stillwatch.policy import load_policy
    from stillwatch.simulate.corpora import load_fixtures

    from helpers import GatewayHandle, ServerThread

    def replica(name: str) -> GatewayHandle:
        policy = load_policy(
            None,
            detection_state="redis",
            redis_url=redis_url,
            tiers={"default": {"account": {"requests": "100000/min"}}},
        )
        settings = GatewaySettings(
            upstream=mock_upstream.url, database=pg_url, data_dir=str(tmp_path / name),
            replica=name, admin_token="admin-secret-token", key_poll_seconds=0.2,
        )
        app = build_gateway(settings, policy=policy)
        return GatewayHandle(app, ServerThread(app).start())

    gws = [replica("gw-a"), replica("gw-b")]
    try:
        gws[0].store.upsert_accounts([Account(account_id="acct-r")])
        key = gws[0].store.create_key("acct-r").secret
        for gw in gws:
            gw.app.keyring.load()
        math = load_fixtures().math
        for i in range(8):
            gw = gws[i % 2]
            r = httpx.post(
                f"{gw.url}/v1/chat/completions",
                headers={"Authorization": f"Bearer {key}"},
                json={"model": "m", "max_tokens": 4096,
                      "messages": [{"role": "user", "content": f"Solve:\n\n{math[i]}"}]},
                timeout=10,
            )
            assert r.status_code in (200, 429, 403), r.text
            time.sleep(0.1)
            for g in gws:
                g.app.detector.share.sync()
            for g in gws:
                g.app.detector.share.sync()
        events = sorted(
            (e for g in gws for e in g.flush() if e.account_id == "acct-r"), key=lambda e: e.ts
        )
        actions = [e.action for e in {e.id: e for e in events}.values()]
        views = [
            g.app.detector._view("acct-r", g.app.detector._accounts["acct-r"].state)[0].n
            for g in gws
        ]
    finally:
        for g in gws:
            g.stop()
    assert len(actions) == 8
    assert views == [8, 8]  # each replica saw four requests and judges all eight
    # the fifth request (the account's, not the replica's) is already judged: throttled
    assert "throttle" in actions[4:], actions
