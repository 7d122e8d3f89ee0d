"""Bad input: a 4xx in OpenAI's error shape, recorded as `rejected`, never sent upstream."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from helpers import start_gateway


@pytest.fixture
def gw(tmp_path: Path, mock_upstream):
    handle = start_gateway(
        tmp_path, mock_upstream.url, max_body_bytes=10_000, max_tokens_cap=4096, max_n=4
    )
    yield handle
    handle.stop()


OK_MSGS = [{"role": "user", "content": "hi"}]


def bad_cases(key: str) -> list[tuple[str, dict, bytes | None, dict | None, int, str]]:
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    return [
        ("malformed json", auth, b'{"model": "m", "messages": [', None, 400, "invalid_json"),
        ("not an object", auth, b"[1, 2, 3]", None, 400, "invalid_type"),
        ("empty body", auth, b"", None, 400, "invalid_json"),
        (
            "invalid utf-8",
            auth,
            b'{"model": "m", "messages": [{"role": "user", "content": "\xff"}]}',
            None,
            400,
            "invalid_json",
        ),
        (
            "lone surrogate",
            auth,
            b'{"model":"m","messages":[{"role":"user","content":"\\ud800"}]}',
            None,
            400,
            "invalid_json",
        ),
        ("missing messages", auth, None, {"model": "m"}, 400, "missing_required_parameter"),
        (
            "empty messages",
            auth,
            None,
            {"model": "m", "messages": []},
            400,
            "missing_required_parameter",
        ),
        ("missing model", auth, None, {"messages": OK_MSGS}, 400, "missing_required_parameter"),
        (
            "bad role",
            auth,
            None,
            {"model": "m", "messages": [{"role": "wizard", "content": "x"}]},
            400,
            "invalid_value",
        ),
        (
            "content a number",
            auth,
            None,
            {"model": "m", "messages": [{"role": "user", "content": 5}]},
            400,
            "invalid_type",
        ),
        (
            "max_tokens a string",
            auth,
            None,
            {"model": "m", "messages": OK_MSGS, "max_tokens": "lots"},
            400,
            "invalid_type",
        ),
        (
            "absurd max_tokens",
            auth,
            None,
            {"model": "m", "messages": OK_MSGS, "max_tokens": 10**12},
            400,
            "invalid_value",
        ),
        (
            "bool max_tokens",
            auth,
            None,
            {"model": "m", "messages": OK_MSGS, "max_tokens": True},
            400,
            "invalid_type",
        ),
        (
            "absurd n",
            auth,
            None,
            {"model": "m", "messages": OK_MSGS, "n": 500},
            400,
            "invalid_value",
        ),
        (
            "temperature out of range",
            auth,
            None,
            {"model": "m", "messages": OK_MSGS, "temperature": 9},
            400,
            "invalid_value",
        ),
        (
            "stream not bool",
            auth,
            None,
            {"model": "m", "messages": OK_MSGS, "stream": "yes"},
            400,
            "invalid_type",
        ),
        (
            "oversized body",
            auth,
            None,
            {"model": "m", "messages": [{"role": "user", "content": "x" * 20_000}]},
            413,
            "request_too_large",
        ),
        (
            "no key",
            {"Content-Type": "application/json"},
            None,
            {"model": "m", "messages": OK_MSGS},
            401,
            "invalid_api_key",
        ),
        (
            "unknown key",
            {"Authorization": "Bearer sw-nope"},
            None,
            {"model": "m", "messages": OK_MSGS},
            401,
            "invalid_api_key",
        ),
        (
            "wrong scheme",
            {"Authorization": f"Basic {key}"},
            None,
            {"model": "m", "messages": OK_MSGS},
            401,
            "invalid_api_key",
        ),
        (
            "completions without prompt",
            auth,
            None,
            {"model": "m"},
            400,
            "missing_required_parameter",
        ),
    ]


def test_bad_input_is_refused_recorded_and_never_forwarded(gw, mock_upstream) -> None:
    key = gw.account("acct-bad")
    served_before = mock_upstream.app.state.model.served
    cases = bad_cases(key)
    for name, headers, raw, body, status, code in cases:
        path = "/v1/completions" if name.startswith("completions") else "/v1/chat/completions"
        r = httpx.post(
            gw.url + path, headers=headers, content=raw, json=body if raw is None else None
        )
        assert r.status_code == status, name
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"}, name
        assert err["code"] == code, (name, err)
        assert err["message"], name
        assert r.headers["x-request-id"].startswith("req_")
    # the process still serves normally
    ok = httpx.post(
        gw.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "m", "messages": OK_MSGS},
    )
    assert ok.status_code == 200
    assert mock_upstream.app.state.model.served == served_before + 1
    events = gw.flush()
    assert len(events) == len(cases) + 1
    rejected = [e for e in events if e.action == "rejected"]
    assert len(rejected) == len(cases)
    unauthenticated = [e for e in rejected if e.error.type == "invalid_api_key"]
    assert len(unauthenticated) == 3 and all(e.account_id is None for e in unauthenticated)
    assert all(e.request == {} for e in rejected if e.error.type == "invalid_json")


def test_revoked_key_is_refused(gw) -> None:
    key = gw.account("acct-revoke")
    (info,) = gw.store.list_keys("acct-revoke")
    body = {"model": "m", "messages": OK_MSGS}
    headers = {"Authorization": f"Bearer {key}"}
    assert (
        httpx.post(gw.url + "/v1/chat/completions", headers=headers, json=body).status_code == 200
    )
    gw.store.revoke_key(info.key_id)
    gw.app.keyring.load()
    r = httpx.post(gw.url + "/v1/chat/completions", headers=headers, json=body)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_unknown_route_and_method(gw) -> None:
    r = httpx.get(gw.url + "/v1/chat/completions")
    assert r.status_code == 405 and "error" in r.json()
    r = httpx.post(gw.url + "/v2/nothing", json={})
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url"


def test_failed_authentication_is_limited_by_address(tmp_path: Path, mock_upstream) -> None:
    gw = start_gateway(
        tmp_path, mock_upstream.url, tiers={"default": {"ip": {"requests": "3/min"}}}
    )
    try:
        statuses = [
            httpx.post(
                gw.url + "/v1/chat/completions",
                headers={"Authorization": "Bearer sw-bad"},
                json={"model": "m", "messages": OK_MSGS},
            ).status_code
            for _ in range(5)
        ]
        assert statuses == [401, 401, 401, 429, 429]
        events = gw.flush()
        assert [e.action for e in events].count("rate_limited") == 2
        assert all(e.account_id is None for e in events)
    finally:
        gw.stop()
