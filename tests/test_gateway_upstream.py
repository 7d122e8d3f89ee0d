"""Upstream failures: 502/504 in OpenAI's shape, and an event for every exchange."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from helpers import free_port, mock_faults, start_gateway

MSGS = [{"role": "user", "content": "hi"}]


def post(gw, key: str) -> httpx.Response:
    return httpx.post(
        gw.url + "/v1/chat/completions",
        json={"model": "m", "messages": MSGS},
        headers={"Authorization": f"Bearer {key}"},
    )


def test_upstream_down_gives_502_and_is_recorded(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path, f"http://127.0.0.1:{free_port()}")
    try:
        key = gw.account("acct-down")
        c = openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)
        with pytest.raises(openai.APIStatusError) as info:
            c.chat.completions.create(model="m", messages=MSGS)
        assert info.value.status_code == 502
        assert info.value.response.json()["error"]["code"] == "upstream_unavailable"
        (event,) = gw.flush()
        assert event.action == "allow" and event.response.status == 502
        assert event.error.type == "upstream_error"
    finally:
        gw.stop()


def test_upstream_timeout_gives_504(tmp_path: Path, mock_upstream) -> None:
    gw = start_gateway(tmp_path, mock_upstream.url, upstream_read_timeout_s=0.3)
    try:
        key = gw.account("acct-slow")
        with mock_faults(mock_upstream, timeout_rate=1.0):
            r = post(gw, key)
        assert r.status_code == 504 and r.json()["error"]["code"] == "upstream_timeout"
        (event,) = gw.flush()
        assert event.response.status == 504
    finally:
        gw.stop()


def test_upstream_error_status_is_passed_on_and_recorded(tmp_path: Path, mock_upstream) -> None:
    gw = start_gateway(tmp_path, mock_upstream.url)
    try:
        key = gw.account("acct-500")
        # the gateway forwards no client headers, so ask the mock for errors through its rate
        with mock_faults(mock_upstream, error_rate=1.0):
            r = post(gw, key)
        assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
        (event,) = gw.flush()
        assert event.response.status == 500 and event.error.type == "upstream_error"
    finally:
        gw.stop()


def test_cut_stream_ends_cleanly_and_is_recorded(tmp_path: Path, mock_upstream) -> None:
    gw = start_gateway(tmp_path, mock_upstream.url)
    try:
        key = gw.account("acct-cut")
        with (
            mock_faults(mock_upstream, cut_rate=1.0),
            httpx.stream(
                "POST",
                gw.url + "/v1/chat/completions",
                json={"model": "m", "messages": MSGS, "stream": True},
                headers={"Authorization": f"Bearer {key}"},
            ) as r,
        ):
            body = b"".join(r.iter_bytes())
        assert r.status_code == 200
        assert b"upstream_stream_cut" in body
        (event,) = gw.flush()
        assert event.error is not None and "ended early" in event.error.message
        assert event.response.content  # what was served before the cut is kept
    finally:
        gw.stop()
