"""What telemetry keeps of prompt and answer texts: all of it, redacted text, or fingerprints."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import msgspec

from stillwatch.events import RequestEvent

_REDACTIONS = [
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "[EMAIL]"),
    (re.compile(r"\b(?:sk|sw|pk|rk)-[A-Za-z0-9_\-]{16,}\b"), "[SECRET]"),
    (re.compile(r"\b(?:eyJ[\w-]+\.[\w-]+\.[\w-]+)\b"), "[TOKEN]"),
    (re.compile(r"\b(?:\d[ -]?){13,19}\b"), "[NUMBER]"),
    (re.compile(r"(?<![\w.])\+?\d[\d ().-]{7,}\d\b"), "[PHONE]"),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"), "[IP]"),
]


def redact_text(text: str) -> str:
    for pattern, repl in _REDACTIONS:
        text = pattern.sub(repl, text)
    return text


def fingerprint_text(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"sha256:{digest} len:{len(text)}"


def _map_content(content: Any, fn: Any) -> Any:
    if isinstance(content, str):
        return fn(content)
    if isinstance(content, list):
        out = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                part = {**part, "text": fn(part["text"])}
            out.append(part)
        return out
    return content


def apply_privacy(event: RequestEvent, mode: str) -> RequestEvent:
    if mode == "full":
        return event
    fn = redact_text if mode == "redacted" else fingerprint_text
    request = dict(event.request)
    if isinstance(request.get("messages"), list):
        request["messages"] = [
            {**m, "content": _map_content(m.get("content"), fn)} if isinstance(m, dict) else m
            for m in request["messages"]
        ]
    if "prompt" in request:
        request["prompt"] = _map_content(request["prompt"], fn)
    response = event.response
    if response is not None:
        response = msgspec.structs.replace(
            response,
            content=None if response.content is None else fn(response.content),
            reasoning=None if response.reasoning is None else fn(response.reasoning),
        )
    return msgspec.structs.replace(event, request=request, response=response)
