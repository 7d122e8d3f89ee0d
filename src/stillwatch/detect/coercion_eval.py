"""The coercion fixture and its held-out evaluation: leave one phrasing family out, leave one
language out, and the share of real benign prompts flagged (measured on a half of them the
model was not fit on)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from stillwatch.detect.signals.coercion import CoercionModel, fit_coercion
from stillwatch.simulate.corpora import load_corpora


@dataclass(frozen=True)
class Phrasing:
    family: str
    lang: str
    text: str
    provenance: str


@dataclass(frozen=True)
class Fixture:
    phrasings: list[Phrasing]
    negatives: list[str]

    @property
    def families(self) -> list[str]:
        return sorted({p.family for p in self.phrasings})

    @property
    def languages(self) -> list[str]:
        return sorted({p.lang for p in self.phrasings})


def load_fixture() -> Fixture:
    text = (
        resources.files("stillwatch.detect.fixtures")
        .joinpath("coercion_families.yaml")
        .read_text(encoding="utf-8")
    )
    data = yaml.safe_load(text)
    phrasings = [
        Phrasing(family, lang, t, spec["provenance"])
        for family, spec in data["families"].items()
        for lang, texts in spec["phrasings"].items()
        for t in texts
    ]
    return Fixture(phrasings, list(data.get("negatives", [])))


def benign_prompts(corpora: str | None = None) -> list[str]:
    """Every distinct human turn of the benign corpora."""
    c = load_corpora(corpora)
    seen: dict[str, None] = {}
    for text in c.chat:
        seen.setdefault(text, None)
    for turns in c.conversations:
        for text in turns:
            seen.setdefault(text, None)
    return list(seen)


def _half(text: str) -> int:
    return zlib.crc32(text.encode()) & 1


def evaluate_coercion(corpora: str | None = None) -> dict[str, Any]:
    fixture = load_fixture()
    benign = benign_prompts(corpora)
    fit_half = [t for t in benign if _half(t) == 0] + fixture.negatives
    test_half = [t for t in benign if _half(t) == 1]

    def held_out(key: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        caught = total = 0
        for value in sorted({getattr(p, key) for p in fixture.phrasings}):
            train = [p.text for p in fixture.phrasings if getattr(p, key) != value]
            test = [p.text for p in fixture.phrasings if getattr(p, key) == value]
            model = fit_coercion(train, fit_half)
            hit = sum(1 for t in test if model.score(t)[0] >= model.threshold)
            out[value] = {"phrasings": len(test), "flagged": hit, "rate": hit / len(test)}
            caught += hit
            total += len(test)
        out["all"] = {"phrasings": total, "flagged": caught, "rate": caught / max(1, total)}
        return out

    full = fit_coercion([p.text for p in fixture.phrasings], fit_half)
    flagged = [t for t in test_half if full.score(t)[0] >= full.threshold]
    shipped = CoercionModel.load()
    shipped_flagged = sum(1 for t in benign if shipped.score(t)[0] >= shipped.threshold)
    return {
        "fixture": {
            "phrasings": len(fixture.phrasings),
            "families": len(fixture.families),
            "languages": fixture.languages,
        },
        "leave_one_family_out": held_out("family"),
        "leave_one_language_out": held_out("lang"),
        "benign_held_out": {
            "prompts": len(test_half),
            "flagged": len(flagged),
            "rate": len(flagged) / max(1, len(test_half)),
            "examples": [t[:160] for t in flagged[:10]],
        },
        "shipped_model_on_all_benign": {
            "prompts": len(benign),
            "flagged": shipped_flagged,
            "rate": shipped_flagged / max(1, len(benign)),
        },
    }
