"""Reasoning protection: withhold a model's reasoning from an answer, whole or streamed."""

from __future__ import annotations

from typing import Any

OPEN, CLOSE = "<think>", "</think>"
REASONING_FIELDS = ("reasoning_content", "reasoning")


def strip_think(text: str) -> str:
    """Remove every `<think>…</think>` span (an unclosed one runs to the end)."""
    stripper = ThinkStripper()
    return stripper.feed(text)


class ThinkStripper:
    """Streams text through, dropping `<think>` spans even when tags are split across chunks."""

    def __init__(self) -> None:
        self._inside = False
        self._held = ""

    def feed(self, text: str) -> str:
        buf = self._held + text
        self._held = ""
        out: list[str] = []
        while buf:
            tag = CLOSE if self._inside else OPEN
            idx = buf.find(tag)
            if idx >= 0:
                if not self._inside:
                    out.append(buf[:idx])
                buf = buf[idx + len(tag) :]
                self._inside = not self._inside
                continue
            keep = _partial_suffix(buf, tag)
            if not self._inside:
                out.append(buf[: len(buf) - keep])
            self._held = buf[len(buf) - keep :] if keep else ""
            break
        return "".join(out)


def _partial_suffix(buf: str, tag: str) -> int:
    for n in range(min(len(tag) - 1, len(buf)), 0, -1):
        if buf.endswith(tag[:n]):
            return n
    return 0


def withhold_reasoning_message(message: dict[str, Any]) -> None:
    """In place, on a chat message or a streamed delta."""
    for field in REASONING_FIELDS:
        message.pop(field, None)
    content = message.get("content")
    if isinstance(content, str) and OPEN in content:
        message["content"] = strip_think(content)
