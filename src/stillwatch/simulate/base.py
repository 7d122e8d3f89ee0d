"""What every simulated account shares: its identity, its random stream, and how a request is
drafted. Benign and attacker accounts are drawn from the same pools here; a strategy changes
only what it defines (its IPs, sign-up burst, shared payment method or e-mail pattern)."""

from __future__ import annotations

import random
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from stillwatch.simulate.corpora import Corpora

DAY = 86_400.0
HOUR = 3_600.0

USER_AGENTS = (
    "OpenAI/Python 1.54.4",
    "OpenAI/Python 1.40.8",
    "OpenAI/NodeJS 4.67.3",
    "curl/8.5.0",
    "python-requests/2.32.3",
    "Python/3.11 aiohttp/3.10.5",
    "langchain-openai/0.2.9",
    "OpenAI/Python 2.3.0",
    "axios/1.7.7",
    "Go-http-client/2.0",
)
EMAIL_DOMAINS = (
    "gmail.com",
    "gmail.com",
    "gmail.com",
    "outlook.com",
    "yahoo.com",
    "proton.me",
    "icloud.com",
    "hotmail.com",
    "qq.com",
    "163.com",
    "mail.ru",
    "gmx.de",
    "example-labs.io",
    "acme-corp.com",
    "univ-research.edu",
    "startup.ai",
    "bigco.com",
    "studio.dev",
)
SIGNUP_ROUTES = ("self_serve",) * 6 + ("education", "startup_program", "enterprise")
COUNTRIES = ("US",) * 5 + ("GB", "DE", "FR", "IN", "BR", "CN", "SG", "JP", "KR", "CA", "NL")
UTC_OFFSET = {
    "US": -6,
    "GB": 0,
    "DE": 1,
    "FR": 1,
    "IN": 5,
    "BR": -3,
    "CN": 8,
    "SG": 8,
    "JP": 9,
    "KR": 9,
    "CA": -5,
    "NL": 1,
}


@dataclass
class Identity:
    account_id: str
    created_at: float
    email_domain: str
    payment_fingerprint: str
    signup_route: str
    country: str
    tier: str
    org_id: str | None
    ips: list[str]
    user_agent: str


@dataclass
class Draft:
    """One request before it becomes a request event."""

    ts: float
    body: dict[str, Any]
    conversation_id: str
    ip: str
    end_user: str | None = None
    model: str | None = None


@dataclass
class SimContext:
    """Everything a persona or strategy may use: its own seeded random stream, the corpora,
    the scenario's window and models."""

    rng: random.Random
    corpora: Corpora
    start: float
    end: float
    identity: Identity
    models: list[str]
    new_model: str | None = None
    new_model_at: float | None = None
    switch_at: float | None = None  # when this account moves to the new model, if it does
    extra: dict[str, Any] = field(default_factory=dict)

    def gap(self) -> float:
        """A human's pause between two messages, resampled from the timestamped chat log."""
        return max(0.0, self.rng.choice(self.corpora.gaps))

    def local_hour_start(self, day: int, hour: float) -> float:
        """Epoch of `hour` o'clock local time on scenario day `day`."""
        offset = UTC_OFFSET.get(self.identity.country, 0)
        return self.start + day * DAY + (hour - offset) * HOUR

    def conversation_id(self) -> str:
        return f"conv_{self.rng.getrandbits(64):016x}"

    def model(self, ts: float) -> str:
        if self.switch_at is not None and ts >= self.switch_at and self.new_model:
            return self.new_model
        return self.models[0]


def residential_ip(rng: random.Random) -> str:
    return (
        f"{rng.randint(24, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    )


def subnet_ips(rng: random.Random, n: int) -> list[str]:
    """n addresses in one /24 (a data centre or an office)."""
    a, b, c = rng.randint(24, 223), rng.randint(0, 255), rng.randint(0, 255)
    return [f"{a}.{b}.{c}.{h}" for h in rng.sample(range(2, 254), n)]


def new_identity(
    rng: random.Random,
    start: float,
    *,
    tier: str = "default",
    org_id: str | None = None,
    ips: list[str] | None = None,
) -> Identity:
    """An account as any sign-up looks: the same pools for everyone."""
    country = rng.choice(COUNTRIES)
    return Identity(
        account_id=f"acct_{rng.getrandbits(48):012x}",
        created_at=start - rng.uniform(1, 720) * DAY,
        email_domain=rng.choice(EMAIL_DOMAINS),
        payment_fingerprint=f"pf_{rng.getrandbits(64):016x}",
        signup_route=rng.choice(SIGNUP_ROUTES),
        country=country,
        tier=tier,
        org_id=org_id,
        ips=ips or [residential_ip(rng) for _ in range(rng.randint(1, 3))],
        user_agent=rng.choice(USER_AGENTS),
    )


def chat_body(ctx: SimContext, turns: list[str], ts: float, **params: Any) -> dict[str, Any]:
    """A chat request whose history holds the earlier turns with short assistant replies."""
    messages: list[dict[str, Any]] = []
    for i, turn in enumerate(turns):
        if i:
            messages.append({"role": "assistant", "content": "(earlier answer)"})
        messages.append({"role": "user", "content": turn})
    body: dict[str, Any] = {"model": ctx.model(ts), "messages": messages}
    body.update(params)
    return body


def conversation(
    ctx: SimContext, t: float, turns: list[str], ip: str, end_user: str | None = None, **params: Any
) -> Generator[Draft, None, float]:
    """A multi-turn conversation at human pace, each request carrying the history so far.

    Returns when it ended, so that whoever chains conversations starts the next one after it.
    """
    cid = ctx.conversation_id()
    last = t
    for i in range(len(turns)):
        if t >= ctx.end:
            break
        body = chat_body(ctx, turns[: i + 1], t, **params)
        yield Draft(t, body, cid, ip, end_user, body["model"])
        last = t
        t += ctx.gap()
    return last
