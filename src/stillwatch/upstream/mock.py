"""A deterministic OpenAI-compatible model for demos and tests.

The same request always gets the same answer (words drawn by a generator seeded from the
request). Latency, tokens per second and faults are configurable; a fault can also be asked
for per request with the `x-mock-fault` header (`error`, `timeout`, `cut`), which tests use.

Models: a name containing `reason` answers with a separate `reasoning_content`; one containing
`think` puts its reasoning in `<think>…</think>` at the head of the answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from stillwatch.upstream.openai_app import error_response, openai_app

MODELS = ("mock-small", "mock-reason", "mock-think")
_TEXT = (
    "the model answers each question with care and a short list of steps that lead from what "
    "is given to what is asked so first we read the problem then we name the quantities and "
    "write the relation between them next we solve for the unknown and check the result "
    "against the question finally the answer is stated plainly with its units code follows "
    "the same path define a function test it on small cases and handle the edge cases"
)
_WORDS = _TEXT.split()


@dataclass
class MockSettings:
    latency_ms: float = 0.0  # before the first token
    tokens_per_second: float = 0.0  # 0: as fast as possible
    min_tokens: int = 16
    max_tokens: int = 96
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    cut_rate: float = 0.0
    seed: int = 0


class Fault(Exception):
    """Raised inside a stream to cut the connection mid-answer."""


_ANSWER_FIELDS = ("model", "messages", "prompt", "tools", "tool_choice", "seed", "temperature")


def _seed(body: dict[str, Any], salt: int) -> int:
    """From what shapes an answer only: streaming or not, the same question gets the same
    words."""
    body = {k: body.get(k) for k in _ANSWER_FIELDS}
    digest = hashlib.blake2b(
        orjson.dumps(body, option=orjson.OPT_SORT_KEYS),
        digest_size=8,
        salt=salt.to_bytes(8, "little", signed=False),
    ).digest()
    return int.from_bytes(digest, "little")


def _prompt_words(body: dict[str, Any]) -> int:
    total = 0
    for m in body.get("messages") or []:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, str):
            total += len(content.split()) + 4
        elif isinstance(content, list):
            total += sum(
                len(str(p.get("text", "")).split()) for p in content if isinstance(p, dict)
            )
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        total += len(prompt.split())
    elif isinstance(prompt, list):
        total += sum(len(str(p).split()) for p in prompt)
    return max(total, 1)


class MockModel:
    def __init__(self, settings: MockSettings | None = None) -> None:
        self.s = settings or MockSettings()
        self.served = 0

    def _fault(self, request: Request, rng: random.Random) -> str | None:
        asked = request.headers.get("x-mock-fault")
        if asked:
            return asked
        roll = rng.random()
        if roll < self.s.error_rate:
            return "error"
        if roll < self.s.error_rate + self.s.timeout_rate:
            return "timeout"
        if roll < self.s.error_rate + self.s.timeout_rate + self.s.cut_rate:
            return "cut"
        return None

    def _answer(self, body: dict[str, Any], index: int) -> tuple[list[str], list[str], str]:
        rng = random.Random(_seed(body, self.s.seed + index))
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or 10_000
        want = rng.randint(self.s.min_tokens, self.s.max_tokens)
        n = min(want, int(limit))
        words = [rng.choice(_WORDS) + " " for _ in range(n)]
        model = str(body.get("model", ""))
        reasoning: list[str] = []
        if "reason" in model or "think" in model:
            reasoning = [rng.choice(_WORDS) + " " for _ in range(rng.randint(8, 24))]
        finish = "length" if want > n else "stop"
        return words, reasoning, finish

    async def chat(self, request: Request) -> Response:
        return await self._complete(request, chat=True)

    async def completions(self, request: Request) -> Response:
        return await self._complete(request, chat=False)

    async def _complete(self, request: Request, chat: bool) -> Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return error_response(400, "invalid JSON")
        if not isinstance(body, dict):
            return error_response(400, "body must be an object")
        rng = random.Random(_seed(body, self.s.seed + 7919))
        fault = self._fault(request, rng)
        self.served += 1
        if fault == "error":
            return error_response(500, "the mock model failed (injected)", "server_error")
        if self.s.latency_ms:
            await asyncio.sleep(self.s.latency_ms / 1000)
        if fault == "timeout":
            # hang until the caller gives up (and then stop, so shutdown is not held up)
            for _ in range(36_000):
                if await request.is_disconnected():
                    return Response(status_code=499)
                await asyncio.sleep(0.1)
        n = int(body.get("n") or 1)
        answers = [self._answer(body, i) for i in range(n)]
        model = str(body.get("model", MODELS[0]))
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{_seed(body, 1) & 0xFFFFFFFFFFFF:012x}"
        created = int(time.time())
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                self._stream(
                    body, answers, model, rid, created, chat, include_usage, cut=fault == "cut"
                ),
                media_type="text/event-stream",
            )
        if self.s.tokens_per_second:
            longest = max(len(w) + len(r) for w, r, _ in answers)
            await asyncio.sleep(longest / self.s.tokens_per_second)
        choices = []
        for i, (words, reasoning, finish) in enumerate(answers):
            text = "".join(words).strip()
            if chat:
                message: dict[str, Any] = {"role": "assistant", "content": text}
                self._add_reasoning(message, model, reasoning)
                tool = _tool_call(body, i)
                if tool:
                    message = {"role": "assistant", "content": None, "tool_calls": [tool]}
                    finish = "tool_calls"
                choices.append(
                    {"index": i, "message": message, "finish_reason": finish, "logprobs": None}
                )
            else:
                choices.append(
                    {"index": i, "text": text, "finish_reason": finish, "logprobs": None}
                )
        return Response(
            orjson.dumps(
                {
                    "id": rid,
                    "object": "chat.completion" if chat else "text_completion",
                    "created": created,
                    "model": model,
                    "choices": choices,
                    "usage": _usage(body, answers),
                }
            ),
            media_type="application/json",
        )

    @staticmethod
    def _add_reasoning(message: dict[str, Any], model: str, reasoning: list[str]) -> None:
        if not reasoning:
            return
        if "think" in model:
            message["content"] = f"<think>{''.join(reasoning).strip()}</think>" + message["content"]
        else:
            message["reasoning_content"] = "".join(reasoning).strip()

    async def _stream(
        self,
        body: dict[str, Any],
        answers: list[Any],
        model: str,
        rid: str,
        created: int,
        chat: bool,
        include_usage: bool,
        cut: bool,
    ) -> AsyncIterator[bytes]:
        obj = "chat.completion.chunk" if chat else "text_completion"
        delay = 1.0 / self.s.tokens_per_second if self.s.tokens_per_second else 0.0

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            payload = {
                "id": rid,
                "object": obj,
                "created": created,
                "model": model,
                "choices": choices,
                **extra,
            }
            return b"data: " + orjson.dumps(payload) + b"\n\n"

        if chat:
            yield chunk(
                [
                    {
                        "index": i,
                        "delta": {"role": "assistant", "content": ""},
                        "finish_reason": None,
                    }
                    for i in range(len(answers))
                ]
            )
        steps: list[tuple[int, str, str]] = []  # (choice, field, text)
        for i, (words, reasoning, _) in enumerate(answers):
            if reasoning and "think" in model:
                steps.append((i, "content", "<think>"))
                steps += [(i, "content", w) for w in reasoning]
                steps.append((i, "content", "</think>"))
            elif reasoning:
                steps += [(i, "reasoning_content", w) for w in reasoning]
            steps += [(i, "content", w) for w in words]
        for count, (i, field, text) in enumerate(steps):
            if cut and count >= min(5, len(steps) // 2):
                raise Fault("stream cut (injected)")
            if delay:
                await asyncio.sleep(delay)
            if chat:
                yield chunk([{"index": i, "delta": {field: text}, "finish_reason": None}])
            else:
                yield chunk([{"index": i, "text": text, "finish_reason": None}])
        for i, (_, _, finish) in enumerate(answers):
            tool = _tool_call(body, i) if chat else None
            if tool:
                yield chunk(
                    [
                        {
                            "index": i,
                            "delta": {"tool_calls": [{**tool, "index": 0}]},
                            "finish_reason": None,
                        }
                    ]
                )
                finish = "tool_calls"
            yield chunk(
                [{"index": i, "delta": {} if chat else None, "finish_reason": finish}]
                if chat
                else [{"index": i, "text": "", "finish_reason": finish}]
            )
        if include_usage:
            yield chunk([], usage=_usage(body, answers))
        yield b"data: [DONE]\n\n"

    async def models(self, request: Request) -> Response:
        return Response(
            orjson.dumps(
                {
                    "object": "list",
                    "data": [
                        {
                            "id": m,
                            "object": "model",
                            "created": 1700000000,
                            "owned_by": "stillwatch-mock",
                        }
                        for m in MODELS
                    ],
                }
            ),
            media_type="application/json",
        )

    async def health(self, request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")


def _tool_call(body: dict[str, Any], index: int) -> dict[str, Any] | None:
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not tools or choice == "none" or choice in (None, "auto"):
        return None
    fn = tools[0].get("function", {}) if isinstance(tools[0], dict) else {}
    name = fn.get("name", "tool")
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name", name)
    return {
        "id": f"call_{index:04d}",
        "type": "function",
        "function": {"name": name, "arguments": "{}"},
    }


def _usage(body: dict[str, Any], answers: list[Any]) -> dict[str, Any]:
    completion = sum(len(w) + len(r) for w, r, _ in answers)
    reasoning = sum(len(r) for _, r, _ in answers)
    prompt = _prompt_words(body)
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if reasoning:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return usage


def build_mock_app(settings: MockSettings | None = None) -> Starlette:
    model = MockModel(settings)
    app = openai_app(model)
    app.state.model = model
    return app
