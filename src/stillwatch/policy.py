"""The gateway's policy: limits per tier, enforcement mode, trust, privacy. Loaded from YAML.

Rates are written `600/min`, `2000000/day`, `10/s`, optionally with a burst:
`600/min burst 100`. Without a burst, a bucket holds one period's worth (GCRA with
tolerance equal to the period).
"""

from __future__ import annotations

import ipaddress
import re
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

_PERIODS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}
_RATE_RE = re.compile(
    r"^\s*(?P<limit>\d+)\s*/\s*(?P<n>\d+)?\s*(?P<unit>[a-z]+)\s*(?:burst\s+(?P<burst>\d+))?\s*$"
)


class PolicyError(ValueError):
    """A policy file that cannot be used; says which setting and why."""


class Rate(BaseModel):
    """`limit` units per `period` seconds; up to `burst` units at once."""

    model_config = ConfigDict(frozen=True)
    limit: int = Field(gt=0)
    period: float = Field(gt=0)
    burst: int | None = Field(default=None, gt=0)

    @property
    def capacity(self) -> int:
        return self.burst if self.burst is not None else self.limit

    @property
    def interval(self) -> float:
        """Seconds one unit takes to replenish (GCRA's emission interval)."""
        return self.period / self.limit

    def scaled(self, factor: float) -> Rate:
        limit = max(1, int(self.limit * factor))
        burst = None if self.burst is None else max(1, int(self.burst * factor))
        return Rate(limit=limit, period=self.period, burst=burst)


def _parse_rate(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    m = _RATE_RE.match(value.lower())
    if not m or m["unit"] not in _PERIODS:
        raise ValueError(f"rate {value!r} is not like '600/min' or '100/s burst 20'")
    n = int(m["n"]) if m["n"] else 1
    out: dict[str, Any] = {"limit": int(m["limit"]), "period": n * _PERIODS[m["unit"]]}
    if m["burst"]:
        out["burst"] = int(m["burst"])
    return out


RateSpec = Annotated[Rate, BeforeValidator(_parse_rate)]


class DimensionLimits(BaseModel):
    model_config = ConfigDict(extra="forbid")
    requests: RateSpec | None = None
    tokens: RateSpec | None = None


DIMENSIONS = ("key", "account", "org", "end_user", "ip", "subnet")


class Tier(BaseModel):
    """Limits of one plan, per dimension. A dimension left out is not limited."""

    model_config = ConfigDict(extra="forbid")
    key: DimensionLimits = DimensionLimits()
    account: DimensionLimits = DimensionLimits()
    org: DimensionLimits = DimensionLimits()
    end_user: DimensionLimits = DimensionLimits()
    ip: DimensionLimits = DimensionLimits()
    subnet: DimensionLimits = DimensionLimits()


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AllowList(BaseModel):
    model_config = ConfigDict(extra="forbid")
    accounts: list[str] = []
    orgs: list[str] = []
    ips: list[Network] = []

    @field_validator("ips", mode="before")
    @classmethod
    def _nets(cls, v: Any) -> Any:
        return [ipaddress.ip_network(x, strict=False) for x in (v or [])]


class WatermarkPolicy(BaseModel):
    """Which key the upstream watermarks an answer with (docs/attribution.md)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    key_version: int = Field(default=1, ge=1)  # the master secret's current version
    # never | flagged (from an account's first flag on) | always: when an account's own key
    # is used instead of the deployment key
    account_keys: Literal["never", "flagged", "always"] = "flagged"
    account_key_tiers: list[str] = []  # tiers whose accounts always get their own key
    remember_accounts: int = Field(default=1_000_000, gt=0)  # flagged accounts kept in memory


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["enforce", "shadow"] = "enforce"
    replay: bool = False
    trusted_proxies: list[Network] = []
    limits_backend: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_failure: Literal["open", "closed"] = "open"
    max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    max_tokens_cap: int = Field(default=65_536, gt=0)
    max_n: int = Field(default=8, gt=0)
    default_max_tokens: int = Field(default=4096, gt=0)
    decision_budget_ms: float = Field(default=5.0, gt=0)
    throttle_factor: float = Field(default=0.1, gt=0, le=1)
    degrade_max_tokens: int = Field(default=512, gt=0)
    upstream_connect_timeout_s: float = Field(default=5.0, gt=0)
    upstream_read_timeout_s: float = Field(default=120.0, gt=0)
    default_tier: str = "default"
    tiers: dict[str, Tier] = {"default": Tier()}
    allow_list: AllowList = AllowList()
    privacy: Literal["full", "redacted", "fingerprint"] = "full"
    retention_days: float | None = Field(default=90, gt=0)
    detector: Literal["distillation", "volume", "null"] = "distillation"
    detection_state: Literal["memory", "redis"] = "memory"  # redis: shared by replicas
    detection_model: str | None = None  # a model.json from `stillwatch calibrate`
    corpora: str | None = None  # corpora for the membership index (default: shipped samples)
    # coercion in languages the lexicon lacks, scored off the request path (needs the
    # stillwatch[multilingual] extra; without it the lexicon alone is used)
    coercion_encoder: bool = True
    watermark: WatermarkPolicy = WatermarkPolicy()

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxies(cls, v: Any) -> Any:
        return [ipaddress.ip_network(x, strict=False) for x in (v or [])]

    def model_post_init(self, _ctx: Any) -> None:
        if self.default_tier not in self.tiers:
            raise ValueError(f"default_tier {self.default_tier!r} is not among the tiers")

    def tier(self, name: str | None) -> Tier:
        return self.tiers.get(name or self.default_tier) or self.tiers[self.default_tier]


def default_policy_text() -> str:
    return resources.files("stillwatch.defaults").joinpath("policy.yaml").read_text()


def load_policy(path: str | Path | None = None, **overrides: Any) -> Policy:
    """The policy in `path` (the shipped default when None), with `overrides` on top."""
    text = Path(path).read_text() if path else default_policy_text()
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path or 'default policy'}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise PolicyError(f"{path or 'default policy'}: the top level must be a mapping")
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        lines = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise PolicyError(f"{path or 'default policy'}: " + "; ".join(lines)) from None
