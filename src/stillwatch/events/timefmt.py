"""RFC 3339 timestamps as the spec writes them, and epoch seconds as the code computes with."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def parse_ts(value: str) -> float:
    """Epoch seconds of an RFC 3339 time; a time without an offset is taken as UTC."""
    try:
        dt = datetime.fromisoformat(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not an RFC 3339 time: {value!r}") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


_last_second: list[object] = [None, ""]


def format_ts(epoch: float) -> str:
    """`2026-02-12T10:00:00.123Z`: millisecond precision, always UTC.

    Called for every request event, so the formatted second is reused while it lasts.
    """
    millis = int(epoch * 1000)
    second, ms = divmod(millis, 1000)
    if _last_second[0] != second:
        _last_second[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _last_second[0] = second
    return f"{_last_second[1]}.{ms:03d}Z"
