"""The coercion fixture and its held-out evaluation: leave one phrasing family out, leave one
language out, and the share of real benign prompts flagged (measured on a half of them the
model was not fit on). With the optional encoder stage installed, each held-out fit refits
both stages, and a prompt is flagged when either stage flags it, as in the detector."""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from stillwatch.detect.signals import coercion_encoder
from stillwatch.detect.signals.coercion import CoercionModel, fit_coercion
from stillwatch.detect.signals.coercion_encoder import (
    Encoder,
    EncoderProbe,
    EncoderStage,
    LanguageGate,
    fit_probe,
)
from stillwatch.simulate.corpora import load_corpora

LEXICON_BENIGN_RATE = 0.0005  # of benign prompts each stage may flag: half the target each
ENCODER_BENIGN_RATE = 0.0005
PROBE_SAMPLE = 1500  # benign prompts the lexicon reads, embedded as the probe's negatives


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


def lexicon_positives(phrasings: Sequence[Phrasing]) -> list[str]:
    """The phrasings the lexicon stage is fit on: those in languages it has words for (one it
    cannot read has no concept hits, and would only teach it to flag nothing in particular;
    the encoder stage is fit on all)."""
    return [p.text for p in phrasings if p.lang in coercion_encoder.COVERED]


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


class ProbeData:
    """Embeddings of what the encoder probe is fit on, each text embedded once: the fixture's
    phrasings and negatives, the benign prompts the language gate sends to the encoder, and a
    seeded sample of those it does not (the probe must also learn what ordinary prompts are)."""

    def __init__(
        self,
        fixture: Fixture,
        benign: Sequence[str],
        gate: LanguageGate,
        encoder: Encoder,
        sample: int = PROBE_SAMPLE,
        seed: int = 0,
    ) -> None:
        self.gated = [t for t in benign if not gate.covered(t)]
        gated = set(self.gated)
        rest = [t for t in benign if t not in gated]
        self.sample = random.Random(seed).sample(rest, min(sample, len(rest)))
        self.phrasings = encoder.embed([p.text for p in fixture.phrasings])
        self.negatives = encoder.embed([*self.sample, *fixture.negatives])
        self.embedded = dict(zip(self.gated, encoder.embed(self.gated), strict=True))

    def fit(self, keep: Sequence[bool], benign: Sequence[str], total: int) -> EncoderProbe:
        """The probe fit on the phrasings marked `keep`, against the sampled negatives and the
        gated prompts among `benign` (a half of `total` benign prompts), allowed to flag
        `ENCODER_BENIGN_RATE` of `total`."""
        import numpy as np

        gated = [self.embedded[t] for t in benign if t in self.embedded]
        gated_x = np.array(gated).reshape(len(gated), -1)
        return fit_probe(
            self.phrasings[np.array(keep)], self.negatives, gated_x,
            int(ENCODER_BENIGN_RATE * total),
        )

    def flagged(self, probe: EncoderProbe, texts: Sequence[str]) -> list[bool]:
        """Which of `texts` (gated benign prompts) the probe flags."""
        import numpy as np

        if not texts:
            return []
        scores = probe.scores(np.array([self.embedded[t] for t in texts]))
        return [s >= probe.threshold for s in scores]


def _stage_flags(
    stage: EncoderStage | None, texts: Sequence[str], lexicon: CoercionModel
) -> list[bool]:
    """Either stage flags each text (the encoder only where the gate sends it)."""
    out = []
    for t in texts:
        score, _ = lexicon.score(t)
        by_encoder = stage is not None and stage.flags(stage.score(t))
        out.append(score >= lexicon.threshold or by_encoder)
    return out


def evaluate_coercion(corpora: str | None = None, encoder: bool = True) -> dict[str, Any]:
    """Held-out figures for the coercion signal: both stages when `encoder` and the optional
    packages are installed, the lexicon alone otherwise."""
    fixture = load_fixture()
    benign = benign_prompts(corpora)
    fit_benign = [t for t in benign if _half(t) == 0]
    test_half = [t for t in benign if _half(t) == 1]
    with_encoder = encoder and coercion_encoder.available()
    gate = LanguageGate()
    embedder = Encoder(threads=2)
    data = ProbeData(fixture, benign, gate, embedder) if with_encoder else None

    def stage_for(keep: Sequence[bool]) -> EncoderStage | None:
        if data is None:
            return None
        probe = data.fit(keep, fit_benign, len(fit_benign))
        return EncoderStage(probe, gate, embedder)

    def held_out(key: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        caught = total = 0
        for value in sorted({getattr(p, key) for p in fixture.phrasings}):
            keep = [getattr(p, key) != value for p in fixture.phrasings]
            train = lexicon_positives(
                [p for p, k in zip(fixture.phrasings, keep, strict=True) if k]
            )
            test = [p.text for p, k in zip(fixture.phrasings, keep, strict=True) if not k]
            model = fit_coercion(train, fit_benign, LEXICON_BENIGN_RATE, fixture.negatives)
            hit = sum(_stage_flags(stage_for(keep), test, model))
            out[value] = {"phrasings": len(test), "flagged": hit, "rate": hit / len(test)}
            caught += hit
            total += len(test)
        out["all"] = {"phrasings": total, "flagged": caught, "rate": caught / max(1, total)}
        return out

    everything = [True] * len(fixture.phrasings)
    full = fit_coercion(
        lexicon_positives(fixture.phrasings), fit_benign, LEXICON_BENIGN_RATE, fixture.negatives
    )
    full_stage = stage_for(everything)
    flagged = _benign_flagged(test_half, full, full_stage, data)
    shipped = CoercionModel.load()
    shipped_stage = EncoderStage(EncoderProbe.load(), gate, embedder) if data else None
    shipped_flagged = _benign_flagged(benign, shipped, shipped_stage, data)
    return {
        "fixture": {
            "phrasings": len(fixture.phrasings),
            "families": len(fixture.families),
            "languages": fixture.languages,
        },
        "stages": ["lexicon", "encoder"] if data else ["lexicon"],
        "gated_benign": len(data.gated) if data else None,
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
            "flagged": len(shipped_flagged),
            "rate": len(shipped_flagged) / max(1, len(benign)),
        },
    }


def _benign_flagged(
    texts: Sequence[str],
    lexicon: CoercionModel,
    stage: EncoderStage | None,
    data: ProbeData | None,
) -> list[str]:
    """Benign prompts either stage flags; the encoder's scores come from `data`'s embeddings
    (every gated benign prompt is there), not from embedding 50,000 prompts again."""

    def by_lexicon(text: str) -> bool:
        return lexicon.score(text)[0] >= lexicon.threshold

    out = [t for t in texts if by_lexicon(t)]
    if stage is not None and data is not None:
        gated = [t for t in texts if t in data.embedded and not by_lexicon(t)]
        out += [t for t, f in zip(gated, data.flagged(stage.probe, gated), strict=True) if f]
    return out
