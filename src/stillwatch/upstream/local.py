"""A local model served over the OpenAI API, watermarking every answer.

`stillwatch upstream --backend smollm2` runs SmolLM2-135M-Instruct on the CPU: the real model of
the demo and the teacher of the attribution experiments. Every answer is generated under a
watermark key. Which key is the gateway's call (`x-stillwatch-watermark-key`: `v<N>` for the
deployment key, `v<N>:<account>` for an account's, `off` for none), and the header is honoured
only on a request that carries the upstream token the gateway was given: a client that reaches
this server some other way cannot choose its key or switch the watermark off. With a token set,
requests without it are refused outright.

One worker thread runs the model; requests queue for it. Streaming (n = 1) sends text as it is
generated; n > 1 is one batch of n rows.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from stillwatch.upstream.openai_app import error_response, openai_app
from stillwatch.watermark.keys import KeyError_, KeyId, MasterKeys
from stillwatch.watermark.schemes import Scheme, scheme_from

log = logging.getLogger("stillwatch.upstream")

WATERMARK_HEADER = "x-stillwatch-watermark-key"
MAX_TOKENS_CAP = 2048
DEFAULT_MAX_TOKENS = 256


class BadRequest(ValueError):
    pass


class Engine(Protocol):
    """What the server needs of a model: chat-template tokenisation, batched generation with a
    key per row (a token callback when streaming one row), and decoding."""

    name: str

    def chat_ids(self, messages: list[dict[str, Any]]) -> list[int]: ...

    def text_ids(self, prompt: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...

    def generate(
        self,
        prompts: list[list[int]],
        keys: list[int | None],
        params: GenParams,
        on_token: Callable[[int], None] | None = None,
    ) -> list[list[int]]: ...


@dataclass(frozen=True)
class GenParams:
    max_tokens: int = DEFAULT_MAX_TOKENS
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    n: int = 1


class TransformersEngine:
    """A loaded transformers model under one watermark scheme."""

    def __init__(self, lm: Any, scheme: Scheme, context_limit: int = 1536) -> None:
        self.lm = lm
        self.scheme = scheme
        self.name = lm.name
        self.context_limit = context_limit

    def chat_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        from stillwatch.watermark.model import chat_ids

        return chat_ids(self.lm.tokenizer, messages)[-self.context_limit :]

    def text_ids(self, prompt: str) -> list[int]:
        ids = self.lm.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        return list(ids)[-self.context_limit :]

    def decode(self, ids: list[int]) -> str:
        return str(self.lm.tokenizer.decode(ids, skip_special_tokens=True))

    def generate(
        self,
        prompts: list[list[int]],
        keys: list[int | None],
        params: GenParams,
        on_token: Callable[[int], None] | None = None,
    ) -> list[list[int]]:
        from stillwatch.watermark import teacher

        return teacher.generate(
            self.lm,
            prompts,
            scheme=self.scheme,
            keys=keys,
            max_new_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            seed=params.seed,
            streamer=_Streamer(on_token) if on_token else None,
        )


class _Streamer:
    """transformers' streamer interface: the prompt first, then each new token."""

    def __init__(self, on_token: Callable[[int], None]) -> None:
        self.on_token = on_token
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        for t in value.reshape(-1).tolist():
            self.on_token(int(t))

    def end(self) -> None:
        return None


def _number(body: dict[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
        raise BadRequest(f"'{name}' must be a number between {lo} and {hi}")
    return float(v)


def parse_params(body: dict[str, Any]) -> GenParams:
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if limit is None:
        limit = DEFAULT_MAX_TOKENS
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise BadRequest("'max_tokens' must be a positive integer")
    n = body.get("n", 1)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 8:
        raise BadRequest("'n' must be an integer from 1 to 8")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise BadRequest("'seed' must be an integer")
    return GenParams(
        max_tokens=min(limit, MAX_TOKENS_CAP),
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0) or 1.0,
        seed=seed,
        n=n,
    )


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BadRequest("'messages' must be a non-empty array")
    out = []
    for m in msgs:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise BadRequest("each message needs a 'role'")
        content = m.get("content")
        if isinstance(content, list):
            content = "".join(
                str(p.get("text", "")) for p in content if isinstance(p, dict)
            )
        out.append({"role": m["role"], "content": content if isinstance(content, str) else ""})
    return out


def _cut_at_stop(text: str, stop: Any) -> tuple[str, bool]:
    stops = [stop] if isinstance(stop, str) else [s for s in (stop or []) if isinstance(s, str)]
    cut = min((i for s in stops if s and (i := text.find(s)) >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


class LocalModelServer:
    def __init__(
        self,
        engine: Engine,
        keys: MasterKeys,
        *,
        token: str | None = None,
        scheme_name: str = "greenlist",
    ) -> None:
        self.engine = engine
        self.keys = keys
        self.token = token
        self.scheme_name = scheme_name
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self.served = 0
        self._lock = threading.Lock()
        if not token:
            log.warning("no upstream token: every answer uses the deployment key")

    # --- who asks, and under which key ---------------------------------------------------

    def _authorised(self, request: Request) -> bool:
        if not self.token:
            return False
        auth = request.headers.get("authorization", "")
        scheme, _, given = auth.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), self.token.encode()
        )

    def key_for(self, request: Request) -> tuple[str | None, int | None]:
        """(key id, key) of this request; (None, None) for no watermark."""
        asked = request.headers.get(WATERMARK_HEADER)
        if asked and self._authorised(request):
            if asked.strip().lower() == "off":
                return None, None
            kid = KeyId.parse(asked.strip())
            return str(kid), self.keys.derive(kid)
        kid = self.keys.key_id()
        return str(kid), self.keys.derive(kid)

    # --- endpoints -----------------------------------------------------------------------

    async def chat(self, request: Request) -> Response:
        return await self._complete(request, chat=True)

    async def completions(self, request: Request) -> Response:
        return await self._complete(request, chat=False)

    async def _complete(self, request: Request, chat: bool) -> Response:
        if self.token and not self._authorised(request):
            return error_response(401, "missing or wrong upstream token", code="invalid_api_key")
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return error_response(400, "the body is not valid JSON")
        if not isinstance(body, dict):
            return error_response(400, "the body must be a JSON object")
        try:
            params = parse_params(body)
            if chat:
                prompt = self.engine.chat_ids(_messages(body))
            else:
                text = body.get("prompt")
                if not isinstance(text, str) or not text:
                    raise BadRequest("'prompt' must be a non-empty string")
                prompt = self.engine.text_ids(text)
            key_id, key = self.key_for(request)
        except (BadRequest, KeyError_) as exc:
            return error_response(400, str(exc))
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        meta = _Meta(rid, int(time.time()), str(body.get("model") or self.engine.name), chat,
                     len(prompt), key_id)
        headers = {WATERMARK_HEADER: key_id or "off"}
        with self._lock:
            self.served += 1
        if body.get("stream") and params.n == 1:
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                self._stream(prompt, key, params, meta, body.get("stop"), usage),
                media_type="text/event-stream",
                headers=headers,
            )
        loop = asyncio.get_running_loop()
        try:
            outs = await loop.run_in_executor(
                self.pool,
                self.engine.generate,
                [prompt] * params.n,
                [key] * params.n,
                params,
            )
        except Exception as exc:  # the model failed: say so in the API's shape
            log.exception("generation failed")
            return error_response(500, f"generation failed: {type(exc).__name__}", "server_error")
        choices, completion = [], 0
        for i, ids in enumerate(outs):
            text, stopped = _cut_at_stop(self.engine.decode(ids), body.get("stop"))
            finish = "stop" if stopped or len(ids) < params.max_tokens else "length"
            completion += len(ids)
            if chat:
                choices.append({"index": i, "finish_reason": finish, "logprobs": None,
                                "message": {"role": "assistant", "content": text}})
            else:
                choices.append({"index": i, "text": text, "finish_reason": finish,
                                "logprobs": None})
        payload = {**meta.head(final=True), "choices": choices,
                   "usage": meta.usage(completion)}
        if body.get("stream"):  # n > 1 streamed: the whole answers as one chunk each
            return StreamingResponse(
                _replay_as_stream(payload, chat), media_type="text/event-stream", headers=headers
            )
        return Response(orjson.dumps(payload), media_type="application/json", headers=headers)

    async def _stream(
        self, prompt: list[int], key: int | None, params: GenParams, meta: _Meta,
        stop: Any, include_usage: bool,
    ) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[int | None] = asyncio.Queue()

        def on_token(t: int) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, t)

        def run() -> list[list[int]]:
            try:
                return self.engine.generate([prompt], [key], params, on_token)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        job = loop.run_in_executor(self.pool, run)
        if meta.chat:
            yield meta.chunk({"role": "assistant", "content": ""})
        ids: list[int] = []
        sent = ""
        stopped = False
        while (t := await queue.get()) is not None:
            if stopped:
                continue
            ids.append(t)
            text = self.engine.decode(ids)
            if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
                continue
            text, stopped = _cut_at_stop(text, stop)
            if len(text) > len(sent):
                yield meta.chunk({"content": text[len(sent):]})
                sent = text
        try:
            outs = await job
        except Exception as exc:
            log.exception("generation failed mid-stream")
            yield b"data: " + orjson.dumps(
                {"error": {"message": f"generation failed: {type(exc).__name__}",
                           "type": "server_error", "param": None, "code": None}}
            ) + b"\n\n"
            return
        n_out = len(outs[0]) if outs else len(ids)
        finish = "stop" if stopped or n_out < params.max_tokens else "length"
        yield meta.chunk(None, finish)
        if include_usage:
            yield b"data: " + orjson.dumps(
                {**meta.head(), "choices": [], "usage": meta.usage(n_out)}
            ) + b"\n\n"
        yield b"data: [DONE]\n\n"

    async def models(self, request: Request) -> Response:
        data = [{"id": self.engine.name, "object": "model", "created": 1700000000,
                 "owned_by": "stillwatch-local"}]
        return Response(orjson.dumps({"object": "list", "data": data}),
                        media_type="application/json")

    async def health(self, request: Request) -> Response:
        return Response(
            orjson.dumps({"status": "ok", "model": self.engine.name,
                          "watermark": self.scheme_name, "key_version": self.keys.current}),
            media_type="application/json",
        )


@dataclass
class _Meta:
    rid: str
    created: int
    model: str
    chat: bool
    prompt_tokens: int
    key_id: str | None

    def head(self, final: bool = False) -> dict[str, Any]:
        if self.chat:
            obj = "chat.completion" if final else "chat.completion.chunk"
        else:
            obj = "text_completion"
        return {"id": self.rid, "object": obj, "created": self.created, "model": self.model,
                "system_fingerprint": f"wm-{self.key_id or 'off'}"}

    def usage(self, completion: int) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": completion,
                "total_tokens": self.prompt_tokens + completion}

    def chunk(self, delta: dict[str, Any] | None, finish: str | None = None) -> bytes:
        if self.chat:
            choice: dict[str, Any] = {"index": 0, "delta": delta or {}, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": (delta or {}).get("content", ""),
                      "finish_reason": finish}
        return b"data: " + orjson.dumps({**self.head(), "choices": [choice]}) + b"\n\n"


async def _replay_as_stream(payload: dict[str, Any], chat: bool) -> AsyncIterator[bytes]:
    head = {k: v for k, v in payload.items() if k not in ("choices", "usage")}
    if chat:
        head["object"] = "chat.completion.chunk"
    for c in payload["choices"]:
        if chat:
            choice = {"index": c["index"], "finish_reason": c["finish_reason"],
                      "delta": {"role": "assistant", "content": c["message"]["content"]}}
        else:
            choice = c
        yield b"data: " + orjson.dumps({**head, "choices": [choice]}) + b"\n\n"
    yield b"data: [DONE]\n\n"


def build_local_app(server: LocalModelServer) -> Starlette:
    app = openai_app(server)
    app.state.server = server
    return app


def build_smollm2_app(
    *, token: str | None, keys: MasterKeys | None = None,
    scheme: str | dict[str, Any] = "greenlist", threads: int | None = None,
) -> Starlette:
    from stillwatch.watermark.model import load_smollm2

    chosen = scheme_from(scheme)  # a bad scheme fails before the model is loaded
    lm = load_smollm2(threads=threads)
    name = scheme if isinstance(scheme, str) else str(scheme.get("name", "greenlist"))
    return build_local_app(
        LocalModelServer(
            TransformersEngine(lm, chosen), keys or MasterKeys.load(), token=token,
            scheme_name=name,
        )
    )
