"""The mock model: deterministic, OpenAI-shaped, with reasoning, usage and faults."""

from __future__ import annotations

import httpx
import orjson
import pytest

from stillwatch.gateway.sse import assemble_stream


def post(mock, body: dict, **kw) -> httpx.Response:
    return httpx.post(mock.url + "/v1/chat/completions", json=body, **kw)


def test_same_request_same_answer(mock_upstream) -> None:
    body = {"model": "mock-small", "messages": [{"role": "user", "content": "abc"}]}
    a, b = post(mock_upstream, body).json(), post(mock_upstream, body).json()
    assert a["choices"] == b["choices"] and a["usage"] == b["usage"]
    other = post(mock_upstream, {**body, "messages": [{"role": "user", "content": "abd"}]}).json()
    assert other["choices"][0]["message"]["content"] != a["choices"][0]["message"]["content"]


def test_reasoning_formats_and_limits(mock_upstream) -> None:
    msgs = [{"role": "user", "content": "why"}]
    reason = post(mock_upstream, {"model": "mock-reason", "messages": msgs}).json()
    assert reason["choices"][0]["message"]["reasoning_content"]
    assert reason["usage"]["completion_tokens_details"]["reasoning_tokens"] > 0
    think = post(mock_upstream, {"model": "mock-think", "messages": msgs}).json()
    assert think["choices"][0]["message"]["content"].startswith("<think>")
    short = post(mock_upstream, {"model": "mock-small", "messages": msgs, "max_tokens": 3}).json()
    assert short["usage"]["completion_tokens"] == 3
    assert short["choices"][0]["finish_reason"] == "length"
    n3 = post(mock_upstream, {"model": "mock-small", "messages": msgs, "n": 3}).json()
    assert [c["index"] for c in n3["choices"]] == [0, 1, 2]


@pytest.mark.parametrize("include_usage", [True, False])
def test_stream_matches_the_json_answer(mock_upstream, include_usage: bool) -> None:
    body = {"model": "mock-reason", "messages": [{"role": "user", "content": "stream me"}]}
    whole = post(mock_upstream, body).json()
    streamed = post(
        mock_upstream,
        {**body, "stream": True, "stream_options": {"include_usage": include_usage}},
    )
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = [e for e in streamed.content.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    response, usage, _ = assemble_stream(events)
    assert response["content"].strip() == whole["choices"][0]["message"]["content"]
    assert response["reasoning"].strip() == whole["choices"][0]["message"]["reasoning_content"]
    assert (usage == whole["usage"]) if include_usage else usage is None


def test_completions_tools_models_and_faults(mock_upstream) -> None:
    out = httpx.post(
        mock_upstream.url + "/v1/completions", json={"model": "mock-small", "prompt": "Once"}
    ).json()
    assert out["object"] == "text_completion" and out["choices"][0]["text"]
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    called = post(
        mock_upstream,
        {
            "model": "mock-small",
            "messages": [{"role": "user", "content": "x"}],
            "tools": tools,
            "tool_choice": "required",
        },
    ).json()
    assert called["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "lookup"
    models = httpx.get(mock_upstream.url + "/v1/models").json()
    assert {m["id"] for m in models["data"]} >= {"mock-small", "mock-reason"}
    err = post(
        mock_upstream,
        {"model": "m", "messages": [{"role": "user", "content": "x"}]},
        headers={"x-mock-fault": "error"},
    )
    assert err.status_code == 500 and orjson.loads(err.content)["error"]["type"] == "server_error"
