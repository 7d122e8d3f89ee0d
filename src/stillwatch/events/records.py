"""The records of the traffic-log spec (docs/traffic-log.md), validated on decode.

Field names and types follow the spec exactly; optional fields are omitted when unset so that
files written here stay as small as the spec allows.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import msgspec

from stillwatch.events.timefmt import parse_ts

ACTIONS: tuple[str, ...] = (
    "allow",
    "rate_limited",
    "rejected",
    "throttle",
    "degrade",
    "challenge",
    "review",
    "block",
)
_ACTION_SET = frozenset(ACTIONS)
LABELS = ("benign", "attacker")


def _check_action(action: str | None, field: str = "action") -> None:
    if action is not None and action not in _ACTION_SET:
        raise ValueError(f"{field} must be one of {', '.join(ACTIONS)}; got {action!r}")


def _check_ts(value: str | None, field: str) -> None:
    if value is not None:
        try:
            parse_ts(value)
        except ValueError as exc:
            raise ValueError(f"{field}: {exc}") from None


_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
# dotted-quad IPv4 as `ipaddress` accepts it (no leading zeros, ASCII digits): the common case
# checked by one regex, not by the module's Python parser
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def _check_ip(value: str) -> None:
    if _IPV4.fullmatch(value):
        return
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"ip is not an IPv4 or IPv6 address: {value!r}") from None


class Usage(msgspec.Struct, omit_defaults=True):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None


class Response(msgspec.Struct, omit_defaults=True):
    status: int | None = None
    content: str | None = None
    reasoning: str | None = None
    finish_reason: str | None = None
    tool_calls: list[Any] | None = None


class ErrorInfo(msgspec.Struct):
    type: str
    message: str


class RequestEvent(msgspec.Struct, omit_defaults=True, kw_only=True):
    """One API exchange (spec section 1)."""

    id: str
    ts: str
    account_id: str | None
    ip: str
    request: dict[str, Any]
    api_key_id: str | None = None
    end_user: str | None = None
    user_agent: str | None = None
    endpoint: str | None = None
    model: str | None = None
    conversation_id: str | None = None
    response: Response | None = None
    usage: Usage | None = None
    latency_ms: float | None = None
    action: str | None = None
    rule: str | None = None
    risk: float | None = None
    watermark_key_id: str | None = None
    error: ErrorInfo | None = None

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("id must not be empty")
        _check_ts(self.ts, "ts")
        _check_ip(self.ip)
        _check_action(self.action)


class Account(msgspec.Struct, omit_defaults=True, kw_only=True):
    """A billing account (spec section 2)."""

    account_id: str
    created_at: str | None = None
    email_domain: str | None = None
    payment_fingerprint: str | None = None
    signup_route: str | None = None
    country: str | None = None
    tier: str | None = None
    org_id: str | None = None

    def __post_init__(self) -> None:
        if not self.account_id:
            raise ValueError("account_id must not be empty")
        _check_ts(self.created_at, "created_at")


class Label(msgspec.Struct, omit_defaults=True, kw_only=True):
    """Ground truth for simulated or hand-labelled data (spec section 3)."""

    account_id: str
    label: str
    campaign_id: str | None = None
    persona: str | None = None

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise ValueError(f"label must be 'benign' or 'attacker'; got {self.label!r}")


class Verdict(msgspec.Struct, kw_only=True):
    """What detection concluded about one account (spec section 4)."""

    account_id: str
    risk: float
    flagged: bool
    action: str
    campaign_id: str | None = None
    reasons: list[str] = msgspec.field(default_factory=list)
    first_flagged_at: str | None = None
    requests_before_flag: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.risk <= 1.0:
            raise ValueError(f"risk must lie in [0, 1]; got {self.risk}")
        _check_action(self.action)
        _check_ts(self.first_flagged_at, "first_flagged_at")


class Campaign(msgspec.Struct, kw_only=True):
    """A coordinated cluster of accounts (spec section 5)."""

    campaign_id: str
    accounts: list[str]
    first_seen: str
    detected_at: str
    evidence: list[str] = msgspec.field(default_factory=list)
    indicators: dict[str, Any] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_ts(self.first_seen, "first_seen")
        _check_ts(self.detected_at, "detected_at")


RECORD_TYPES: dict[str, type[msgspec.Struct]] = {
    "events": RequestEvent,
    "accounts": Account,
    "labels": Label,
    "verdicts": Verdict,
    "campaigns": Campaign,
}
