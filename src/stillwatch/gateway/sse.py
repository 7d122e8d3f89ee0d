"""Server-sent events passing through the gateway: forwarded event by event, and read back
afterwards into the spec's `response` and `usage`."""

from __future__ import annotations

from typing import Any

import orjson

from stillwatch.respond.reasoning import REASONING_FIELDS, ThinkStripper

DONE = b"[DONE]"


class SseRelay:
    """Splits upstream bytes into whole events; each is forwarded as soon as it is complete.

    `hide_usage` drops the usage-only chunk the gateway asked for on the client's behalf;
    `withhold_reasoning` drops reasoning from every delta (the `degrade` action).
    """

    def __init__(self, *, hide_usage: bool, withhold_reasoning: bool) -> None:
        self.hide_usage = hide_usage
        self.withhold_reasoning = withhold_reasoning
        self.events: list[bytes] = []  # as the upstream sent them, for telemetry
        self._buf = b""
        self._strippers: dict[int, ThinkStripper] = {}

    def feed(self, chunk: bytes) -> bytes:
        buf = self._buf + chunk
        if b"\r\n" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        out: list[bytes] = []
        while True:
            idx = buf.find(b"\n\n")
            if idx < 0:
                break
            event, buf = buf[:idx], buf[idx + 2 :]
            self.events.append(event)
            forwarded = self._transform(event)
            if forwarded is not None:
                out.append(forwarded + b"\n\n")
        self._buf = buf
        return b"".join(out)

    def flush(self) -> bytes:
        rest, self._buf = self._buf, b""
        if rest.strip():
            self.events.append(rest)
            return rest
        return b""

    def _transform(self, event: bytes) -> bytes | None:
        if not (self.hide_usage or self.withhold_reasoning):
            return event
        payload = _data(event)
        if payload is None or payload == DONE:
            return event
        if self.hide_usage and b'"usage"' in payload and b"choices" in payload:
            try:
                obj = orjson.loads(payload)
            except orjson.JSONDecodeError:
                return event
            if obj.get("usage") and not obj.get("choices"):
                return None
            if not self.withhold_reasoning:
                return event
        if not self.withhold_reasoning:
            return event
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return event
        for choice in obj.get("choices") or []:
            delta = choice.get("delta") or {}
            for field in REASONING_FIELDS:
                delta.pop(field, None)
            if isinstance(delta.get("content"), str):
                stripper = self._strippers.setdefault(choice.get("index", 0), ThinkStripper())
                delta["content"] = stripper.feed(delta["content"])
        return b"data: " + orjson.dumps(obj)


def _data(event: bytes) -> bytes | None:
    lines = [ln[5:].lstrip() for ln in event.split(b"\n") if ln.startswith(b"data:")]
    if not lines:
        return None
    return b"\n".join(lines)


def assemble_stream(
    events: list[bytes],
) -> tuple[dict[str, Any], dict[str, Any] | None, dict | None]:
    """(response fields, usage, upstream error) from a finished chat or completion stream."""
    content: list[str] = []
    reasoning: list[str] = []
    finish: str | None = None
    tool_calls: dict[int, dict[str, Any]] = {}
    usage = None
    error = None
    for event in events:
        payload = _data(event)
        if payload is None or payload == DONE:
            continue
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(obj, dict):
            continue
        if obj.get("error"):
            error = obj["error"]
        if obj.get("usage"):
            usage = obj["usage"]
        for choice in obj.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
            if "text" in choice and isinstance(choice["text"], str):
                content.append(choice["text"])
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                content.append(delta["content"])
            for field in REASONING_FIELDS:
                if isinstance(delta.get(field), str):
                    reasoning.append(delta[field])
            for call in delta.get("tool_calls") or []:
                slot = tool_calls.setdefault(call.get("index", 0), {"function": {"arguments": ""}})
                if call.get("id"):
                    slot["id"] = call["id"]
                    slot["type"] = call.get("type", "function")
                fn = call.get("function") or {}
                if fn.get("name"):
                    slot["function"]["name"] = fn["name"]
                if fn.get("arguments"):
                    slot["function"]["arguments"] += fn["arguments"]
    response: dict[str, Any] = {
        "content": "".join(content) if content else None,
        "finish_reason": finish,
    }
    if reasoning:
        response["reasoning"] = "".join(reasoning)
    if tool_calls:
        response["tool_calls"] = [tool_calls[i] for i in sorted(tool_calls)]
    return response, usage, error


def read_json_response(data: bytes) -> tuple[dict[str, Any], dict[str, Any] | None, dict | None]:
    """The same three things from a non-streamed answer."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return {"content": None}, None, {"type": "upstream_error", "message": "unparseable answer"}
    if not isinstance(obj, dict):
        return {"content": None}, None, None
    if obj.get("error"):
        err = obj["error"]
        return {"content": None}, None, err if isinstance(err, dict) else {"message": str(err)}
    response: dict[str, Any] = {"content": None}
    choices = obj.get("choices") or []
    if choices and isinstance(choices[0], dict):
        first = choices[0]
        response["finish_reason"] = first.get("finish_reason")
        message = first.get("message")
        if isinstance(message, dict):
            response["content"] = message.get("content")
            for field in REASONING_FIELDS:
                if isinstance(message.get(field), str):
                    response["reasoning"] = message[field]
            if message.get("tool_calls"):
                response["tool_calls"] = message["tool_calls"]
        elif isinstance(first.get("text"), str):
            response["content"] = first["text"]
    return response, obj.get("usage"), None
