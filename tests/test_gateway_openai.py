"""The gateway with the official `openai` client: JSON, streaming, limits, Retry-After."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx
import openai
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from stillwatch.events import RequestEvent
from stillwatch.store.telemetry import iter_stored_events

from helpers import ServerThread, start_gateway


def client(gw, key: str, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, **kw)


def test_json_completion_through_gateway(gateway) -> None:
    key = gateway.account("acct-json")
    out = client(gateway, key).chat.completions.create(
        model="mock-small", messages=[{"role": "user", "content": "Say something."}], max_tokens=50
    )
    assert out.choices[0].message.content
    assert out.usage.completion_tokens > 0
    assert gateway.events(1) == 1
    (event,) = list(iter_stored_events(gateway.app.telemetry.engine))
    assert event.account_id == "acct-json" and event.action == "allow"
    assert event.response.content == out.choices[0].message.content
    assert event.usage.completion_tokens == out.usage.completion_tokens
    assert event.request["messages"][0]["content"] == "Say something."


def test_legacy_completions_and_models(gateway) -> None:
    key = gateway.account("acct-legacy")
    c = client(gateway, key)
    out = c.completions.create(model="mock-small", prompt="Once upon a time", max_tokens=20)
    assert out.choices[0].text
    assert {m.id for m in c.models.list()} >= {"mock-small"}
    chunks = list(c.completions.create(model="mock-small", prompt="Hi", stream=True))
    assert "".join(ch.choices[0].text for ch in chunks if ch.choices)


def test_streaming_completion_and_usage(gateway) -> None:
    key = gateway.account("acct-stream")
    c = client(gateway, key)
    stream = c.chat.completions.create(
        model="mock-reason", messages=[{"role": "user", "content": "Stream please."}], stream=True
    )
    chunks = list(stream)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text.strip()
    # the client did not ask for usage, so the gateway's own usage chunk is not shown to it
    assert all(ch.choices for ch in chunks)
    with_usage = list(
        c.chat.completions.create(
            model="mock-small",
            messages=[{"role": "user", "content": "Stream please."}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert with_usage[-1].usage is not None and with_usage[-1].usage.completion_tokens > 0
    assert gateway.events(2) == 2
    events = {e.model: e for e in iter_stored_events(gateway.app.telemetry.engine)}
    reason = events["mock-reason"]
    assert reason.response.content.strip() == text.strip()
    assert reason.response.reasoning  # the model's reasoning is kept in telemetry
    assert reason.usage.completion_tokens > 0  # settled from the usage the gateway asked for
    assert reason.usage.reasoning_tokens > 0


def test_first_chunk_reaches_client_while_upstream_still_generating(tmp_path: Path) -> None:
    """The upstream sends one chunk, then waits until the client has seen it. If the gateway
    buffered the stream, the client would never see it and the upstream would time out."""
    client_saw_first = threading.Event()
    upstream_waited = []

    async def chat(request: Request) -> StreamingResponse:
        async def gen():
            first = {
                "id": "x",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "m",
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": "first"},
                        "finish_reason": None,
                    }
                ],
            }
            yield b"data: " + orjson.dumps(first) + b"\n\n"
            ok = await asyncio.to_thread(client_saw_first.wait, 10)
            upstream_waited.append(ok)
            last = {
                **first,
                "choices": [{"index": 0, "delta": {"content": " second"}, "finish_reason": "stop"}],
            }
            yield b"data: " + orjson.dumps(last) + b"\n\n"
            yield b"data: [DONE]\n\n"

        return StreamingResponse(gen(), media_type="text/event-stream")

    upstream = ServerThread(
        Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    ).start()
    gw = start_gateway(tmp_path, upstream.url)
    try:
        key = gw.account("acct-first")
        stream = client(gw, key).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "go"}], stream=True
        )
        pieces = []
        for chunk in stream:
            pieces.append(chunk.choices[0].delta.content)
            client_saw_first.set()
        assert pieces == ["first", " second"]
        assert upstream_waited == [True]
    finally:
        gw.stop()
        upstream.stop()


def test_rate_limit_429_headers_and_retry_after(tmp_path: Path, mock_upstream) -> None:
    gw = start_gateway(
        tmp_path,
        mock_upstream.url,
        tiers={"default": {"key": {"requests": "3/2s", "tokens": "100000/min"}}},
    )
    try:
        key = gw.account("acct-limited")
        c = client(gw, key, max_retries=0)
        msgs = [{"role": "user", "content": "hello"}]
        for _ in range(3):
            raw = c.chat.completions.with_raw_response.create(
                model="mock-small", messages=msgs, max_tokens=16
            )
            assert raw.headers["x-ratelimit-limit-requests"] == "3"
            assert int(raw.headers["x-ratelimit-remaining-requests"]) >= 0
            assert raw.headers["x-ratelimit-limit-tokens"] == "100000"
        with pytest.raises(openai.RateLimitError) as info:
            c.chat.completions.create(model="mock-small", messages=msgs, max_tokens=16)
        resp = info.value.response
        assert resp.status_code == 429
        body = resp.json()["error"]
        assert body["type"] == "requests" and body["code"] == "rate_limit_exceeded"
        retry_after = int(resp.headers["retry-after"])
        assert 1 <= retry_after <= 2
        assert resp.headers["x-ratelimit-remaining-requests"] == "0"
        assert resp.headers["x-ratelimit-reset-requests"].endswith("s")
        # a client that waits Retry-After then succeeds
        time.sleep(retry_after)
        out = c.chat.completions.create(model="mock-small", messages=msgs, max_tokens=16)
        assert out.choices[0].message.content
        # the openai client's own retry honours Retry-After as well
        for _ in range(3):
            try:
                c.chat.completions.create(model="mock-small", messages=msgs, max_tokens=16)
            except openai.RateLimitError:
                break
        patient = client(gw, key, max_retries=3)
        assert patient.chat.completions.create(model="mock-small", messages=msgs, max_tokens=16)
        actions = [e.action for e in gw.flush()]
        assert actions.count("rate_limited") >= 2
    finally:
        gw.stop()


def test_token_reservation_is_settled_with_real_usage(tmp_path: Path, mock_upstream) -> None:
    gw = start_gateway(
        tmp_path, mock_upstream.url, tiers={"default": {"account": {"tokens": "3000/hour"}}}
    )
    try:
        key = gw.account("acct-tokens")
        c = client(gw, key, max_retries=0)
        msgs = [{"role": "user", "content": "hi"}]
        # each request reserves ~1000 tokens but uses ~100: settling frees the difference,
        # so far more than three requests fit in the hour
        for _ in range(8):
            c.chat.completions.create(model="mock-small", messages=msgs, max_tokens=1000)
        with pytest.raises(openai.RateLimitError) as info:
            c.chat.completions.create(model="mock-small", messages=msgs, max_tokens=5000)
        assert info.value.response.json()["error"]["code"] == "request_too_large"
        assert "retry-after" not in info.value.response.headers
    finally:
        gw.stop()


def test_per_dimension_limits_end_user_and_subnet(tmp_path: Path, mock_upstream) -> None:
    gw = start_gateway(
        tmp_path,
        mock_upstream.url,
        trusted_proxies=["127.0.0.0/8"],
        tiers={"default": {"end_user": {"requests": "2/min"}, "subnet": {"requests": "5/min"}}},
    )
    try:
        key = gw.account("acct-app")
        msgs = [{"role": "user", "content": "hi"}]

        def call(user: str, ip: str) -> int:
            r = httpx.post(
                gw.url + "/v1/chat/completions",
                headers={"Authorization": f"Bearer {key}", "X-Forwarded-For": ip},
                json={"model": "mock-small", "messages": msgs, "user": user},
            )
            return r.status_code

        assert [call("alice", "203.0.113.1") for _ in range(3)] == [200, 200, 429]
        assert call("bob", "203.0.113.2") == 200  # another end user is not held back by alice
        assert [call(f"u{i}", "203.0.113.9") for i in range(3)] == [200, 200, 429]  # subnet full
        assert call("carol", "198.51.100.7") == 200  # another /24
        events = gw.flush()
        assert len(events) == 8
        assert {e.ip for e in events} >= {"203.0.113.1", "198.51.100.7"}
        rules = {e.rule for e in events if e.action == "rate_limited"}
        assert rules == {"rate_limited:end_user:requests", "rate_limited:subnet:requests"}
    finally:
        gw.stop()


def test_event_records_are_valid_spec_records(gateway) -> None:
    key = gateway.account("acct-valid")
    client(gateway, key).chat.completions.create(
        model="mock-small", messages=[{"role": "user", "content": "x"}]
    )
    gateway.events(1)
    for event in iter_stored_events(gateway.app.telemetry.engine):
        assert isinstance(event, RequestEvent)
        assert event.endpoint == "/v1/chat/completions" and event.conversation_id
