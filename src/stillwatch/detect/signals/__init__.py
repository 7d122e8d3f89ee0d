"""Per-request signals: cheap, stateless, computed once per request and shared by `decide`,
`record`, the offline detector and `stillwatch signals`."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from stillwatch.detect.signals.capability import CATEGORIES, text_capability, uses_tools
from stillwatch.detect.signals.coercion import CoercionModel
from stillwatch.detect.signals.coercion_encoder import EncoderStage, load_stage
from stillwatch.detect.signals.corpus_index import CorpusIndex, CorpusMatch
from stillwatch.detect.signals.hashing import word_hashes
from stillwatch.detect.signals.params import parameter_flags
from stillwatch.detect.signals.template import fingerprint_text, template_minhash
from stillwatch.detect.signals.text import newest_user_text, skeleton_words, user_turns

__all__ = [
    "CATEGORIES",
    "Coercion",
    "CoercionModel",
    "CorpusIndex",
    "CorpusMatch",
    "RequestSignals",
    "SignalExtractor",
    "TextSignals",
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
    coercion_encoder: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "coercion": round(self.coercion, 4),
            "coercion_flag": self.coercion_flag,
            "coercion_concepts": sorted(self.coercion_concepts),
            "coercion_encoder": (
                None if self.coercion_encoder is None else round(self.coercion_encoder, 4)
            ),
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


def _digest(text: str) -> bytes:
    """The memo's key: 16 bytes whatever the prompt's length (lone surrogates allowed)."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


@dataclass(frozen=True, slots=True)
class Coercion:
    """The one text signal `decide` needs before the exchange (a demand for the hidden
    reasoning is answered by withholding it from this very response), with the memo's key,
    so that the rest of the signals, computed after, do not repeat either."""

    digest: bytes | None
    score: float
    concepts: frozenset[str]
    flag: bool


@dataclass(frozen=True, slots=True)
class TextSignals:
    """What a prompt's text alone decides: the part of the signals worth remembering, and
    what offline workers compute ahead (`stillwatch.detect.parallel`). `coercion` is the
    lexicon's score (what `decide` reads); `encoder` the second stage's, where it ran;
    `coercion_flag` is either stage's flag."""

    coercion: float
    concepts: frozenset[str]
    category: str
    template: tuple[int, ...]
    corpus: CorpusMatch | None
    encoder: float | None
    coercion_flag: bool


class SignalExtractor:
    """Holds what the signals need (coercion model, its encoder stage, corpus index);
    `use_corpus=False` switches the corpus-membership signal off, for the ablation the
    evaluation reports. `encoder=True` adds the coercion signal's encoder stage when its
    optional packages are installed; False leaves it out.

    The same prompt text recurs (retries, one benchmark run by many users, a corpus harvested
    by many accounts, an app's fixed prompts), so the text's signals are remembered for the
    last `memo` distinct texts (least recently used first out; 0 turns it off). The memo
    returns exactly what computing afresh would; `hits` and `misses` count its use."""

    def __init__(
        self,
        coercion: CoercionModel | None = None,
        corpus: CorpusIndex | None = None,
        use_corpus: bool = True,
        memo: int = 20_000,
        encoder: EncoderStage | bool = True,
    ) -> None:
        self.coercion = coercion or CoercionModel.load()
        self.encoder = load_stage() if encoder is True else (encoder or None)
        self.corpus = corpus if use_corpus else None
        self.memo = memo
        self._memo: OrderedDict[bytes, TextSignals] = OrderedDict()  # by digest: bounded
        self._indexed = len(self.corpus) if self.corpus is not None else 0
        self.hits = 0
        self.misses = 0

    def coercion_of(self, body: dict[str, Any]) -> Coercion:
        """The coercion signal alone: remembered, or one scan of the newest user turn."""
        text = newest_user_text(body)
        digest = _digest(text) if self.memo else None
        known = self._memo.get(digest) if digest is not None else None
        if known is not None:
            score, concepts = known.coercion, known.concepts
        else:
            score, concepts = self.coercion.score(text) if text else (0.0, frozenset())
        return Coercion(digest, score, concepts, score >= self.coercion.threshold)

    def _check_index(self) -> None:
        """Coercion does not read the index; the rest of the remembered signals do."""
        if self.corpus is not None and len(self.corpus) != self._indexed:
            self._memo.clear()  # the index grew: remembered corpus matches may be stale
            self._indexed = len(self.corpus)

    def __call__(self, body: dict[str, Any], early: Coercion | None = None) -> RequestSignals:
        """All the signals; `early`, this body's `coercion_of`, spares its work."""
        text = newest_user_text(body)
        self._check_index()
        coercion = (early.score, early.concepts) if early is not None else None
        if not self.memo:
            self.misses += 1
            return self._request_signals(body, text, self.text_signals(text, coercion))
        digest = (early.digest if early is not None else None) or _digest(text)
        known = self._memo.get(digest)
        if known is None:
            self.misses += 1
            known = self.text_signals(text, coercion)
            self._remember(digest, known)
        else:
            self.hits += 1
            self._memo.move_to_end(digest)
        return self._request_signals(body, text, known)

    def _request_signals(
        self, body: dict[str, Any], text: str, known: TextSignals
    ) -> RequestSignals:
        return RequestSignals(
            coercion=known.coercion,
            coercion_flag=known.coercion_flag,
            coercion_concepts=known.concepts,
            category="agentic" if uses_tools(body) else known.category,
            template=known.template,
            corpus=known.corpus,
            params=parameter_flags(body),
            user_turns=user_turns(body),
            chars=len(text),
            coercion_encoder=known.encoder,
        )

    key = staticmethod(_digest)  # what the memo is keyed by

    def remembers(self, key: bytes) -> bool:
        return key in self._memo

    def warm(self) -> None:
        """Load the encoder stage's models now rather than on the first prompt that needs
        them (not before forking workers: each loads its own)."""
        if self.encoder is not None:
            self.encoder.warm()

    def slow_text(self, body: dict[str, Any], early: Coercion) -> str | None:
        """The newest user turn when its signals are not remembered and need the encoder
        stage (tens of milliseconds: the gateway computes them in a worker thread with
        `precompute` rather than on its event loop), else None."""
        if self.encoder is None or early.digest is None or early.flag:
            return None
        if early.digest in self._memo:
            return None
        text = newest_user_text(body)
        return text if self.encoder.applies(text) else None

    def precompute(self, text: str, early: Coercion) -> None:
        """Remember the text's signals, computed now (safe in another thread: the memo's
        single operations hold the interpreter lock)."""
        if early.digest is not None:
            self._remember(early.digest, self.text_signals(text, (early.score, early.concepts)))

    def prime(self, computed: Iterable[tuple[bytes, TextSignals]]) -> None:
        """Remember signals computed elsewhere (by `text_signals`, in a worker), by `key`."""
        if self.memo:
            for key, known in computed:
                self._remember(key, known)

    def _remember(self, digest: bytes, known: TextSignals) -> None:
        self._memo[digest] = known
        if len(self._memo) > self.memo:
            self._memo.popitem(last=False)

    def text_signals(
        self, text: str, coercion: tuple[float, frozenset[str]] | None = None
    ) -> TextSignals:
        words = skeleton_words(text)
        hashes = word_hashes(words)
        if coercion is None:
            coercion = self.coercion.score(text) if text else (0.0, frozenset())
        score, found = coercion
        flag = score >= self.coercion.threshold
        encoder = None
        if not flag and self.encoder is not None:
            encoder = self.encoder.score(text)  # None where the lexicon reads the language
            flag = self.encoder.flags(encoder)
        return TextSignals(
            coercion=score,
            concepts=found,
            category=text_capability(words),
            template=template_minhash(hashes),
            corpus=self.corpus.match(hashes) if self.corpus is not None else None,
            encoder=encoder,
            coercion_flag=flag,
        )
