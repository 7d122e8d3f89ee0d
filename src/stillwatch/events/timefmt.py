"""RFC 3339 timestamps as the spec writes them, and epoch seconds as the code computes with."""

from __future__ import annotations

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


def format_ts(epoch: float) -> str:
    """`2026-02-12T10:00:00.123Z`: millisecond precision, always UTC."""
    dt = datetime.fromtimestamp(epoch, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
