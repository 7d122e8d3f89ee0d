"""Per-request signals: cheap, stateless, computed once per request and shared by `decide`,
`record`, the offline detector and `stillwatch signals`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stillwatch.detect.signals.capability import CATEGORIES, capability
from stillwatch.detect.signals.coercion import CoercionModel
from stillwatch.detect.signals.corpus_index import CorpusIndex, CorpusMatch
from stillwatch.detect.signals.hashing import word_hashes
from stillwatch.detect.signals.params import parameter_flags
from stillwatch.detect.signals.template import fingerprint_text, template_minhash
from stillwatch.detect.signals.text import newest_user_text, skeleton_words, user_turns

__all__ = [
    "CATEGORIES",
    "CoercionModel",
    "CorpusIndex",
    "CorpusMatch",
    "RequestSignals",
    "SignalExtractor",
]


@dataclass(frozen=True, slots=True)
class RequestSignals:
    coercion: float
    coercion_flag: bool
    coercion_concepts: frozenset[str]
    category: str
    template: tuple[int, ...]
    corpus: CorpusMatch | None
    params: tuple[str, ...]
    user_turns: int
    chars: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "coercion": round(self.coercion, 4),
            "coercion_flag": self.coercion_flag,
            "coercion_concepts": sorted(self.coercion_concepts),
            "category": self.category,
            "template": fingerprint_text(self.template),
            "corpus": (
                {
                    "corpus": self.corpus.corpus,
                    "item": self.corpus.item,
                    "containment": self.corpus.containment,
                }
                if self.corpus
                else None
            ),
            "params": list(self.params),
            "user_turns": self.user_turns,
        }


class SignalExtractor:
    """Holds what the signals need (coercion model, corpus index); `use_corpus=False` switches
    the corpus-membership signal off, for the ablation the evaluation reports."""

    def __init__(
        self,
        coercion: CoercionModel | None = None,
        corpus: CorpusIndex | None = None,
        use_corpus: bool = True,
    ) -> None:
        self.coercion = coercion or CoercionModel.load()
        self.corpus = corpus if use_corpus else None

    def __call__(self, body: dict[str, Any]) -> RequestSignals:
        text = newest_user_text(body)
        words = skeleton_words(text)
        hashes = word_hashes(words)
        score, found = self.coercion.score(text) if text else (0.0, frozenset())
        return RequestSignals(
            coercion=score,
            coercion_flag=score >= self.coercion.threshold,
            coercion_concepts=found,
            category=capability(body, words),
            template=template_minhash(hashes),
            corpus=self.corpus.match(hashes) if self.corpus is not None else None,
            params=parameter_flags(body),
            user_turns=user_turns(body),
            chars=len(text),
        )
