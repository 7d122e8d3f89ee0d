"""The part of a request the signals read: the newest user turn, normalised once.

Only the newest turn is fingerprinted; the history was judged when it was new, and reading it
again would make the cost of a request grow with the length of its conversation.
"""

from __future__ import annotations

import re
from typing import Any

_WORD = re.compile(r"\w+")
_DIGITS = re.compile(r"\d+")
MAX_CHARS = 8000


def newest_user_text(body: dict[str, Any]) -> str:
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                return content_text(message.get("content"))
        return ""
    prompt = body.get("prompt")  # /v1/completions
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and isinstance(prompt[-1], str):
        return prompt[-1]
    return ""


def content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def user_turns(body: dict[str, Any]) -> int:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return 1
    return sum(1 for m in messages if isinstance(m, dict) and m.get("role") == "user")


def skeleton_words(text: str, limit: int = 400) -> list[str]:
    """Lower-case words with every number masked as '0': slot-filled numbers look alike."""
    words = _WORD.findall(text[:MAX_CHARS].lower())
    del words[limit:]
    return [w if w.isalpha() else _DIGITS.sub("0", w) for w in words]
