"""Offline detection: a log replayed through a detector in time order, as the gateway would.

For each event: `decide` on what came before, `observe` the request (as the gateway does once
it has sent it on), then `record` the event. The first decision that is not `allow` flags the
account, and so does the account's standing once a request of its is observed (the decision
its next request would get: an account that stops right after the request that gave it away
is still flagged, with that request counted as served). Verdicts say when, after how many of
the account's requests, and why. Nothing later can change an earlier decision, so the output
is causal by construction.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from stillwatch.detect.base import Decision, Detector, RequestContext
from stillwatch.detect.parallel import presignalled
from stillwatch.detect.signals import SignalExtractor
from stillwatch.events import (
    ACTIONS,
    Campaign,
    RequestEvent,
    Verdict,
    parse_ts,
    read_events_in_order,
    write_records,
)

_STRENGTH = {
    a: i for i, a in enumerate(("allow", "review", "throttle", "degrade", "challenge", "block"))
}


MAX_REASONS = 5


def context_of(event: RequestEvent) -> RequestContext:
    return RequestContext(
        id=event.id,
        ts=parse_ts(event.ts),
        account_id=event.account_id or "",
        ip=event.ip,
        endpoint=event.endpoint or "/v1/chat/completions",
        body=event.request,
        api_key_id=event.api_key_id,
        end_user=event.end_user,
        user_agent=event.user_agent,
        model=event.model,
        conversation_id=event.conversation_id,
    )


@dataclass
class _AccountState:
    requests: int = 0
    risk: float = 0.0
    action: str = "allow"
    reasons: tuple[str, ...] = ()
    first_flagged_at: str | None = None
    requests_before_flag: int | None = None
    seen_reasons: list[str] = field(default_factory=list)


def run_detection(
    events: Iterable[RequestEvent], detector: Detector, workers: int = 0
) -> list[Verdict]:
    """`workers` processes compute the request signals ahead (the verdicts do not change)."""
    accounts: dict[str, _AccountState] = {}
    campaign_of = getattr(detector, "campaign_of", None)
    extractor = getattr(detector, "signals", None)
    if workers and isinstance(extractor, SignalExtractor):
        events = presignalled(events, extractor, workers)
    observe = getattr(detector, "observe", None)
    standing = getattr(detector, "standing", None)
    for event in events:
        account = event.account_id
        if account is None or event.action == "rejected":
            continue  # refused before it was an exchange of the account's
        state = accounts.setdefault(account, _AccountState())
        context = context_of(event)
        decision = detector.decide(context)
        assert not hasattr(decision, "__await__"), "offline detection needs a synchronous decide"
        _update(state, decision, event)
        state.requests += 1
        if observe is not None:
            observe(context)  # as the gateway does once the request is sent on
            if standing is not None and state.first_flagged_at is None:
                # this request, now observed, may put the account over the bar: flagged now,
                # with this request counted as served (its decision came before it)
                _update(state, standing(account), event)
        detector.record(event)
    return [
        Verdict(
            account_id=account,
            risk=round(min(1.0, max(0.0, s.risk)), 6),
            flagged=s.first_flagged_at is not None,
            action=s.action,
            campaign_id=campaign_of(account) if campaign_of else None,
            reasons=list(s.seen_reasons),
            first_flagged_at=s.first_flagged_at,
            requests_before_flag=s.requests_before_flag,
        )
        for account, s in sorted(accounts.items())
    ]


def _update(state: _AccountState, decision: Decision, event: RequestEvent) -> None:
    state.risk = max(state.risk, decision.risk)
    if decision.action == "allow" or decision.scope != "account":
        return  # a response to one request or one end user is no verdict on the account
    if decision.action not in ACTIONS:
        raise ValueError(f"detector returned an unknown action {decision.action!r}")
    if state.first_flagged_at is None:
        state.first_flagged_at = event.ts
        state.requests_before_flag = state.requests
    if _STRENGTH.get(decision.action, 0) > _STRENGTH.get(state.action, 0):
        state.action = decision.action
    for reason in decision.reasons:  # the first few distinct reasons: bounded per account
        if len(state.seen_reasons) < MAX_REASONS and reason not in state.seen_reasons:
            state.seen_reasons.append(reason)


def detect_file(
    events_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    detector: Detector,
    campaigns_out: str | os.PathLike[str] | None = None,
    workers: int = 0,
) -> list[Verdict]:
    verdicts = run_detection(read_events_in_order(events_path), detector, workers)
    write_records(out, Verdict, verdicts)
    if campaigns_out is not None:
        records = getattr(detector, "campaign_records", list)()
        write_records(campaigns_out, Campaign, records)
    return verdicts
