"""Turns a scenario into a labelled traffic log, streamed to disk in time order.

Every account is a lazy stream of requests with its own seeded random generator; a heap merges
the streams, so memory grows with the number of accounts, never with the number of events.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stillwatch.events import (
    Account,
    Label,
    RecordWriter,
    RequestEvent,
    Response,
    format_ts,
    write_records,
)
from stillwatch.simulate.attacks import STRATEGIES, hydra_infrastructure
from stillwatch.simulate.base import (
    DAY,
    HOUR,
    Draft,
    Identity,
    SimContext,
    new_identity,
    subnet_ips,
)
from stillwatch.simulate.corpora import Corpora
from stillwatch.simulate.personas import PERSONAS, TIER, app_backend
from stillwatch.simulate.scenario import AttackSpec, Scenario


@dataclass
class Member:
    identity: Identity
    label: Label
    stream: Any  # Callable[[SimContext], Iterator[Draft]]
    extra: dict[str, Any]


def _rng(seed: int, *parts: object) -> random.Random:
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "little"))


def _reseller(ctx: SimContext) -> Iterator[Draft]:
    """Real customers' traffic with a campaign's harvesting mixed in under end-user ids."""
    attack = dataclasses.replace(
        ctx, rng=random.Random(ctx.rng.getrandbits(64)), extra={**ctx.extra, "per_hour": 40}
    )
    mixed = (
        Draft(
            d.ts,
            d.body,
            d.conversation_id,
            d.ip,
            f"user-{attack.rng.getrandbits(40):010x}",
            d.model,
        )
        for d in STRATEGIES["hydra"](attack)
    )
    yield from heapq.merge(app_backend(ctx), mixed, key=lambda d: d.ts)


def _campaign(scenario: Scenario, spec: AttackSpec, rng: random.Random) -> list[Member]:
    cid = f"camp_{rng.getrandbits(40):010x}"
    infra = hydra_infrastructure(rng, spec.accounts) if spec.proxies else {}
    payments = [f"pf_{rng.getrandbits(64):016x}" for _ in range(3)]
    throwaway = f"mail{rng.getrandbits(24):06x}.com"
    burst_at = scenario.start_ts - rng.uniform(1, 30) * DAY
    wave_seed = rng.getrandbits(64) if spec.synchronised else None
    members = []
    n = spec.accounts + (1 if spec.reseller else 0)
    for k in range(n):
        ident = new_identity(rng, scenario.start_ts)
        if infra:
            ident.ips = rng.sample(infra["proxy_ips"], min(20, len(infra["proxy_ips"])))
        if spec.signup_burst_hours:
            ident.created_at = burst_at + rng.uniform(0, spec.signup_burst_hours) * HOUR
        if rng.random() < spec.shared_payment:
            ident.payment_fingerprint = rng.choice(payments)
        if rng.random() < spec.shared_email_domain:
            ident.email_domain = throwaway
        reseller = spec.reseller and k == spec.accounts
        if reseller:
            ident.tier = "enterprise"
            ident.ips = [ident.ips[0]]
        extra = {"member": k, "members": spec.accounts}
        if wave_seed is not None and not reseller:
            extra["wave_seed"] = wave_seed
        if spec.per_hour:
            extra["per_hour"] = spec.per_hour
        persona = f"{spec.strategy}_reseller" if reseller else spec.strategy
        members.append(
            Member(
                ident,
                Label(
                    account_id=ident.account_id, label="attacker", campaign_id=cid, persona=persona
                ),
                _reseller if reseller else STRATEGIES[spec.strategy],
                extra,
            )
        )
    return members


def plan(scenario: Scenario) -> list[Member]:
    """Every account of the scenario, in a seeded order."""
    rng = _rng(scenario.seed, "plan")
    members: list[Member] = []
    for persona, count in scenario.benign.items():
        for _ in range(count):
            ident = new_identity(rng, scenario.start_ts, tier=TIER.get(persona, "default"))
            if persona in ("app_backend", "enterprise_batch"):
                ident.ips = subnet_ips(rng, rng.randint(2, 4))
                ident.org_id = f"org_{rng.getrandbits(32):08x}"
            members.append(
                Member(
                    ident,
                    Label(account_id=ident.account_id, label="benign", persona=persona),
                    PERSONAS[persona],
                    {},
                )
            )
    for spec in scenario.attacks:
        for _ in range(spec.campaigns):
            members += _campaign(scenario, spec, rng)
    rng.shuffle(members)  # attackers are not grouped at the end of the account list
    return members


def _stream(scenario: Scenario, corpora: Corpora, member: Member, index: int) -> Iterator[Draft]:
    ctx = SimContext(
        rng=_rng(scenario.seed, "account", index),
        corpora=corpora,
        start=scenario.start_ts,
        end=scenario.end_ts,
        identity=member.identity,
        models=list(scenario.models),
        new_model=scenario.new_model,
        new_model_at=scenario.start_ts + scenario.new_model_day * DAY,
        extra=member.extra,
    )
    last = scenario.start_ts
    for draft in member.stream(ctx):
        # the merge needs each account in time order; personas keep to it, this makes sure
        draft.ts = max(draft.ts, last)
        if draft.ts >= scenario.end_ts:
            continue
        last = draft.ts
        yield draft


def generate(
    scenario: Scenario,
    corpora: Corpora,
    out: str | Path,
    *,
    suffix: str = ".jsonl.gz",
    progress: Any = None,
) -> dict[str, Any]:
    """Write events, accounts and labels into `out`; returns counts."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    members = plan(scenario)
    heap: list[tuple[float, int, Draft, Iterator[Draft]]] = []
    for i, member in enumerate(members):
        stream = _stream(scenario, corpora, member, i)
        first = next(stream, None)
        if first is not None:
            heap.append((first.ts, i, first, stream))
    heapq.heapify(heap)
    per_persona: Counter[str] = Counter()
    span = scenario.end_ts - scenario.start_ts
    n = 0
    with RecordWriter(out / f"events{suffix}", RequestEvent) as writer:
        while heap:
            ts, i, draft, stream = heap[0]
            member = members[i]
            n += 1
            writer.write(
                RequestEvent(
                    id=f"evt_{n:010d}",
                    ts=format_ts(ts),
                    account_id=member.identity.account_id,
                    ip=draft.ip,
                    request=draft.body,
                    user_agent=member.identity.user_agent,
                    endpoint="/v1/chat/completions",
                    model=draft.model,
                    conversation_id=draft.conversation_id,
                    end_user=draft.end_user,
                    response=Response(status=200),
                    action="allow",
                )
            )
            per_persona[member.label.persona or ""] += 1
            nxt = next(stream, None)
            if nxt is None:
                heapq.heappop(heap)
            else:
                heapq.heapreplace(heap, (nxt.ts, i, nxt, stream))
            if progress is not None and n % 5000 == 0:
                progress((ts - scenario.start_ts) / span, n)
    if progress is not None:
        progress(1.0, n)
    write_records(
        out / f"accounts{suffix}",
        Account,
        [
            Account(
                account_id=m.identity.account_id,
                created_at=format_ts(m.identity.created_at),
                email_domain=m.identity.email_domain,
                payment_fingerprint=m.identity.payment_fingerprint,
                signup_route=m.identity.signup_route,
                country=m.identity.country,
                tier=m.identity.tier,
                org_id=m.identity.org_id,
            )
            for m in members
        ],
    )
    write_records(out / f"labels{suffix}", Label, [m.label for m in members])
    return {
        "events": n,
        "accounts": len(members),
        "attackers": sum(m.label.label == "attacker" for m in members),
        "events_by_persona": dict(sorted(per_persona.items())),
    }
