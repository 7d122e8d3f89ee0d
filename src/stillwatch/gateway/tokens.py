"""Token estimates for reserving a request's cost before it is served.

No tokenizer is downloaded: the estimate counts UTF-8 bytes (about 4 per token in English,
fewer for other scripts, so dividing by 3.5 leans high) plus the chat format's per-message
overhead. Real usage from the upstream replaces the estimate once the exchange completes.
"""

from __future__ import annotations

from typing import Any

import orjson

PER_MESSAGE = 4
PER_REQUEST = 3


def text_tokens(text: str) -> int:
    if not text:
        return 0
    return int(len(text.encode("utf-8", "surrogatepass")) / 3.5) + 1


def _content_tokens(content: Any) -> int:
    if isinstance(content, str):
        return text_tokens(content)
    if isinstance(content, list):
        total = 0
        for part in content:
            if isinstance(part, dict):
                text = part.get("text")
                total += text_tokens(text) if isinstance(text, str) else 85  # an image tile
            elif isinstance(part, str):
                total += text_tokens(part)
            elif isinstance(part, int):
                total += 1
        return total
    return 0


def prompt_tokens(body: dict[str, Any]) -> int:
    total = PER_REQUEST
    messages = body.get("messages")
    if isinstance(messages, list):
        for m in messages:
            if isinstance(m, dict):
                total += PER_MESSAGE + _content_tokens(m.get("content"))
                if m.get("tool_calls"):
                    total += text_tokens(orjson.dumps(m["tool_calls"]).decode())
    else:
        total += _content_tokens(body.get("prompt"))
    if body.get("tools"):
        total += text_tokens(orjson.dumps(body["tools"]).decode())
    return total


def completion_budget(body: dict[str, Any], default: int) -> int:
    """Most tokens the request may generate, across all `n` choices."""
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or default
    return int(limit) * int(body.get("n") or 1)
