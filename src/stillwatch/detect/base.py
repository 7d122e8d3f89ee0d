"""The detector interface the gateway and offline `detect` share.

`decide` runs before an exchange and may use only what was recorded before it; `record` runs
after it with the spec's request event. A detector may also have `observe(request)`, which
the gateway calls once the request is sent on (offline: right after `decide`), to do off the
request's latency what needs the request but not its answer. The detector knows nothing of
HTTP.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol

from stillwatch.events import RequestEvent


@dataclass(slots=True)
class RequestContext:
    """A request as the detector sees it before it is served."""

    id: str
    ts: float
    account_id: str
    ip: str
    endpoint: str
    body: dict[str, Any]
    api_key_id: str | None = None
    org_id: str | None = None
    tier: str | None = None
    end_user: str | None = None
    user_agent: str | None = None
    model: str | None = None
    conversation_id: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """What detection would do. `reason_code` is the only part a client may ever see."""

    action: str = "allow"
    risk: float = 0.0
    rule: str | None = None
    reason_code: str | None = None
    reasons: tuple[str, ...] = field(default_factory=tuple)
    watermark_key_id: str | None = None
    # "account": a verdict on the account; "request" or "end_user": a response to this request
    # or to one end user of the account, which does not flag the account
    scope: str = "account"


ALLOW = Decision()


class Detector(Protocol):
    def decide(self, request: RequestContext) -> Decision | Awaitable[Decision]: ...

    def record(self, event: RequestEvent) -> None: ...


class AllowAllDetector:
    """Stands in until a real detector is configured: allows everything, remembers nothing."""

    def decide(self, request: RequestContext) -> Decision:
        return ALLOW

    def record(self, event: RequestEvent) -> None:
        return None
