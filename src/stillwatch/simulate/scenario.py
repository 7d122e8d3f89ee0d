"""A scenario: who is in the traffic, for how long, and which campaigns run. YAML."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from stillwatch.events import parse_ts
from stillwatch.simulate.attacks import STRATEGIES
from stillwatch.simulate.personas import PERSONAS


class AttackSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    strategy: Literal[tuple(STRATEGIES)]  # type: ignore[valid-type]
    campaigns: int = Field(1, ge=1)
    accounts: int = Field(1, ge=1, description="accounts per campaign")
    per_hour: float | None = Field(None, gt=0, description="requests per account per hour")
    proxies: bool = False  # rotate through a proxy network of many /24s
    signup_burst_hours: float | None = Field(None, gt=0)  # accounts created within this span
    shared_payment: float = Field(0.0, ge=0, le=1)  # share of accounts on a few payment methods
    shared_email_domain: float = Field(0.0, ge=0, le=1)  # share on one throwaway domain
    reseller: bool = False  # one more account mixing the attack into real customers' traffic
    # one orchestrator: paced members fire in the same waves, seconds apart
    synchronised: bool = False


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seed: int = 7
    start: str = "2026-03-02T00:00:00Z"
    days: float = Field(7, gt=0)
    models: list[str] = ["frontier-1"]
    new_model: str | None = "frontier-2"
    new_model_day: float = 4
    benign: dict[str, int] = {}
    attacks: list[AttackSpec] = []

    @field_validator("benign")
    @classmethod
    def _personas(cls, v: dict[str, int]) -> dict[str, int]:
        unknown = set(v) - set(PERSONAS)
        if unknown:
            raise ValueError(f"unknown personas {sorted(unknown)}; known: {sorted(PERSONAS)}")
        return v

    @field_validator("start")
    @classmethod
    def _start(cls, v: str) -> str:
        parse_ts(v)
        return v

    @property
    def start_ts(self) -> float:
        return parse_ts(self.start)

    @property
    def end_ts(self) -> float:
        return self.start_ts + self.days * 86_400


def load_scenario(path: str | Path | None = None) -> Scenario:
    text = (
        Path(path).read_text()
        if path
        else resources.files("stillwatch.defaults").joinpath("scenario.yaml").read_text()
    )
    try:
        return Scenario.model_validate(yaml.safe_load(text) or {})
    except (ValidationError, yaml.YAMLError, ValueError) as exc:
        raise ValueError(f"{path or 'default scenario'}: {exc}") from None
