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


def _word_bytes() -> bytes:
    """A byte table: ASCII word characters kept (digits as '0'), other ASCII as a space, the
    bytes of non-ASCII characters kept for the regex to read."""
    table = bytearray(range(256))
    for b in range(128):
        c = chr(b)
        if c.isdigit():
            table[b] = ord("0")
        elif not (c.isalnum() or c == "_"):
            table[b] = ord(" ")
    return bytes(table)


_WORD_BYTES = _word_bytes()
_ZEROS = re.compile(rb"00+")  # starts with a literal: the regex engine skips ahead to it


def skeleton_words(text: str, limit: int = 400) -> list[str]:
    """Lower-case words (`\\w+`) with every number masked as '0': slot-filled numbers look
    alike.

    The regex reads about 20 ns a character; a byte table splits the ASCII part at memory
    speed instead, and the regex reads only the runs that hold other characters (so its
    answer is the same: no word crosses an ASCII character that is not a word character)."""
    low = text[:MAX_CHARS].lower()
    raw = low.encode("utf-8", "surrogatepass").translate(_WORD_BYTES)
    raw = _ZEROS.sub(b"0", raw)  # a run of digits is one '0'
    if raw.isascii():
        words = raw.decode("ascii").split(None, limit)
        del words[limit:]
        return words
    return _mixed_words(raw.decode("utf-8", "surrogatepass"), limit)


def _mixed_words(runs_text: str, limit: int) -> list[str]:
    """The words of the translated text's runs: an ASCII run is one word; a run of letters
    is one word; only the others (non-ASCII digits or marks) go through the regex."""
    words: list[str] = []
    while runs_text and len(words) < limit:
        runs = runs_text.split(None, limit - len(words))
        runs_text = runs.pop() if len(runs) > limit - len(words) else ""
        start = 0
        for i in [i for i, run in enumerate(runs) if not run.isascii()]:
            words.extend(runs[start:i])
            start = i + 1
            run = runs[i]
            if run.isalpha():
                words.append(run)
            else:
                words.extend(
                    w if w.isalpha() else _DIGITS.sub("0", w) for w in _WORD.findall(run)
                )
        words.extend(runs[start:])
    del words[limit:]
    return words
