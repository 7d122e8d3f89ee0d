"""Which buckets a request must fit in, from the policy's tier, and the headers that say so."""

from __future__ import annotations

import math

from stillwatch.gateway.clientip import subnet_of
from stillwatch.limits import Check, Outcome
from stillwatch.policy import Policy, Rate
from stillwatch.store.accounts import KeyInfo


def _check(dim: str, ident: str, kind: str, rate: Rate, cost: float) -> Check:
    return Check(
        f"{dim}:{ident}:{kind[0]}", rate.interval, rate.capacity, cost, dim, kind, rate.limit
    )


class LimitPlan:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def checks(self, key: KeyInfo, ip: str, end_user: str | None, tokens: int) -> list[Check]:
        tier = self.policy.tier(key.tier)
        idents = {
            "key": key.key_id,
            "account": key.account_id,
            "org": key.org_id,
            "end_user": f"{key.account_id}/{end_user}" if end_user else None,
            "ip": ip,
            "subnet": subnet_of(ip),
        }
        out: list[Check] = []
        for dim, ident in idents.items():
            if ident is None:
                continue
            limits = getattr(tier, dim)
            if limits.requests is not None:
                out.append(_check(dim, ident, "requests", limits.requests, 1))
            if limits.tokens is not None:
                out.append(_check(dim, ident, "tokens", limits.tokens, tokens))
        return out

    def anonymous_checks(self, ip: str) -> list[Check]:
        """The default tier's IP and subnet request buckets, for requests that failed to
        authenticate: a flood of bad keys is limited like any other traffic from its address."""
        tier = self.policy.tier(None)
        out = []
        for dim, ident in (("ip", ip), ("subnet", subnet_of(ip))):
            rate = getattr(tier, dim).requests
            if rate is not None:
                out.append(_check(dim, ident, "requests", rate, 1))
        return out

    def throttle_checks(self, key: KeyInfo, tokens: int) -> list[Check]:
        """Tighter buckets for an account detection throttles: a share of its own limits."""
        limits = self.policy.tier(key.tier).account
        factor = self.policy.throttle_factor
        out = []
        if limits.requests is not None:
            out.append(
                _check("throttle", key.account_id, "requests", limits.requests.scaled(factor), 1)
            )
        if limits.tokens is not None:
            out.append(
                _check("throttle", key.account_id, "tokens", limits.tokens.scaled(factor), tokens)
            )
        if not out:
            out.append(
                _check(
                    "throttle",
                    key.account_id,
                    "requests",
                    Rate(limit=60, period=60).scaled(factor),
                    1,
                )
            )
        return out


def duration(seconds: float) -> str:
    """OpenAI's reset format: `20ms`, `1s`, `6m0s`, `1h2m3s`."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    seconds = round(seconds, 3)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    s_text = f"{s:.3f}".rstrip("0").rstrip(".") + "s"
    if h:
        return f"{int(h)}h{int(m)}m{s_text}"
    if m:
        return f"{int(m)}m{s_text}"
    return s_text


def rate_headers(checks: list[Check], outcome: Outcome) -> list[tuple[bytes, bytes]]:
    """x-ratelimit-* for the tightest request bucket and the tightest token bucket."""
    best: dict[str, tuple[Check, int, float]] = {}
    for check, state in zip(checks, outcome.states, strict=True):
        cur = best.get(check.kind)
        if cur is None or state.remaining < cur[1]:
            best[check.kind] = (check, state.remaining, state.reset_after)
    headers = []
    for kind in ("requests", "tokens"):
        if kind in best:
            check, remaining, reset = best[kind]
            headers += [
                (f"x-ratelimit-limit-{kind}".encode(), str(check.limit).encode()),
                (f"x-ratelimit-remaining-{kind}".encode(), str(remaining).encode()),
                (f"x-ratelimit-reset-{kind}".encode(), duration(reset).encode()),
            ]
    return headers


def retry_after(outcome: Outcome) -> float:
    """Seconds until every refused bucket has room (inf if the request can never fit)."""
    return max((s.retry_after for s in outcome.states if s.retry_after > 0), default=0.0)
