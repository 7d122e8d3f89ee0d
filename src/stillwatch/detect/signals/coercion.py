"""Reasoning-trace coercion: a request that asks the model to reveal, repeat, translate, encode
or imagine its own internal reasoning, in any of the languages of the lexicon below.

The lexicon names concepts, not phrasings: the trace itself (chain of thought, scratchpad),
reasoning in general, the qualifiers that make it the model's private reasoning (internal,
hidden, raw), demands for an exact copy (verbatim, not a summary), acts of disclosure (show,
print, repeat) and transformations (translate, encode). Which combinations count, and how much,
is a small logistic model over concept hits, fit on the committed fixture of attack phrasings
against real benign prompts (`fit_coercion`); because its inputs are concepts, what it learns
in one language carries to the others the lexicon covers.
"""

from __future__ import annotations

import bisect
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import ahocorasick_rs
import yaml


def load_lexicon(path: str | Path | None = None) -> dict[str, dict[str, list[str]]]:
    text = (
        Path(path).read_text(encoding="utf-8")
        if path
        else resources.files("stillwatch.defaults")
        .joinpath("coercion_lexicon.yaml")
        .read_text(encoding="utf-8")
    )
    return yaml.safe_load(text)


LEXICON = load_lexicon()
CONCEPTS = tuple(LEXICON)
MODIFIERS = ("private", "exact", "disclose", "transform")
FEATURES = (
    "trace&modifier",
    "reasoning",
    "about&private",
    "about&exact",
    "about&disclose",
    "about&transform",
    "about&2_modifiers",
    "about&3_modifiers",
    "about&fiction",
)
_TAIL = 2000  # demands sit at either end of a prompt; the middle is the task


WINDOW = 160  # characters: a modifier counts only near a mention of reasoning


_SURROGATE = re.compile("[\ud800-\udfff]")


class _Lexicon:
    """Every term of the lexicon in one Aho-Corasick automaton (a compiled one: the scan is
    the dearest step of the signal on long prompts), with what each term means."""

    def __init__(self) -> None:
        merged: dict[str, set[str]] = {}
        for concept in CONCEPTS:
            for terms in LEXICON[concept].values():
                for term in terms:
                    merged.setdefault(term.lower(), set()).add(concept)
        terms = sorted(merged)
        # (starts a Latin word, concepts) by term number
        self.meaning = [(t[0].isascii() and t[0].isalpha(), frozenset(merged[t])) for t in terms]
        kind, dfa = ahocorasick_rs.MatchKind.Standard, ahocorasick_rs.Implementation.DFA
        self.automaton = ahocorasick_rs.AhoCorasick(terms, matchkind=kind, implementation=dfa)
        # ASCII text (most prompts) is scanned as bytes: no offsets to convert, same positions
        self.ascii_automaton = ahocorasick_rs.BytesAhoCorasick(
            [t.encode() for t in terms], matchkind=kind, implementation=dfa
        )

    def find(self, low: str) -> list[tuple[int, int, int]]:
        """(term number, start, end) of every occurrence, overlapping ones included."""
        if low.isascii():
            return self.ascii_automaton.find_matches_as_indexes(low.encode(), overlapping=True)
        try:
            return self.automaton.find_matches_as_indexes(low, overlapping=True)
        except UnicodeEncodeError:  # lone surrogates: no term holds one; same positions
            low = _SURROGATE.sub("\ufffd", low)
            return self.automaton.find_matches_as_indexes(low, overlapping=True)


_LEXICON = _Lexicon()


def hits(text: str) -> list[tuple[int, str]]:
    """(position, concept) of every lexicon term in the text, in text order; Latin-script
    terms must start a word ("raw" is not in "drawing"), stems may end anywhere."""
    if len(text) > 2 * _TAIL:  # cut before lower-casing: the middle is never read
        low = text[:_TAIL].lower() + "\n" + text[-_TAIL:].lower()
    else:
        low = text.lower()
    meaning = _LEXICON.meaning
    out = []
    for number, start, _ in _LEXICON.find(low):
        latin, found = meaning[number]
        if latin and start > 0 and low[start - 1].isalpha():
            continue
        out.extend((start, c) for c in found)
    out.sort()  # by position, then concept: the features read mentions in text order
    return out


def features(found: list[tuple[int, str]]) -> tuple[float, ...]:
    """Concept hits, and the modifiers found within WINDOW characters of one mention of
    reasoning (the best such mention): scattered words in a long text do not add up."""
    names = {c for _, c in found}
    mods = sorted((p, c) for p, c in found if c in MODIFIERS)
    where = [p for p, _ in mods]
    best: set[str] = set()
    traced = False
    anchors = [(p, c) for p, c in found if c in ("trace", "reasoning")]
    for anchor, concept in anchors:  # the modifiers near it: one slice of the sorted list
        lo = bisect.bisect_left(where, anchor - WINDOW)
        hi = bisect.bisect_right(where, anchor + WINDOW)
        if concept == "trace" and hi > lo:
            traced = True
        if hi - lo > len(best):
            near = {c for _, c in mods[lo:hi]}
            if len(near) > len(best):
                best = near
    n_mods = len(best)
    return (
        float(traced),
        float("reasoning" in names),
        *(float(m in best) for m in MODIFIERS),
        float(n_mods >= 2),
        float(n_mods >= 3),
        float(bool(anchors) and "fiction" in names),
    )


@dataclass(frozen=True)
class CoercionModel:
    weights: tuple[float, ...]
    bias: float
    threshold: float = 0.5

    def score(self, text: str) -> tuple[float, frozenset[str]]:
        found = hits(text)
        if not found:
            return 0.0, frozenset()
        z = self.bias + sum(w * x for w, x in zip(self.weights, features(found), strict=True))
        return 1.0 / (1.0 + math.exp(-z)), frozenset(c for _, c in found)

    def to_json(self) -> str:
        return json.dumps(
            {
                "features": FEATURES,
                "weights": self.weights,
                "bias": self.bias,
                "threshold": self.threshold,
            },
            indent=1,
        )

    @classmethod
    def load(cls, path: str | Path | None = None) -> CoercionModel:
        text = (
            Path(path).read_text()
            if path
            else resources.files("stillwatch.defaults").joinpath("coercion_model.json").read_text()
        )
        data = json.loads(text)
        if tuple(data["features"]) != FEATURES:
            raise ValueError("coercion model was fit on other features; refit it")
        return cls(tuple(data["weights"]), float(data["bias"]), float(data["threshold"]))


HARD_WEIGHT = 50.0  # a curated hard negative counts as this many ordinary benign prompts


def fit_coercion(
    positives: Sequence[str],
    negatives: Sequence[str],
    max_benign_rate: float = 0.0005,
    hard_negatives: Sequence[str] = (),
) -> CoercionModel:
    """Logistic regression over concept features with balanced classes; the threshold is then
    the lowest one that flags at most `max_benign_rate` of the benign prompts and none of the
    `hard_negatives` (curated benign prompts that talk about reasoning, weighted up)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    x = np.array([features(hits(t)) for t in [*positives, *negatives, *hard_negatives]])
    y = np.array([1] * len(positives) + [0] * (len(negatives) + len(hard_negatives)))
    weight = np.r_[
        np.ones(len(positives) + len(negatives)), np.full(len(hard_negatives), HARD_WEIGHT)
    ]
    lr = LogisticRegression(C=3.0, max_iter=1000, class_weight="balanced")
    lr.fit(x, y, sample_weight=weight)
    model = CoercionModel(
        tuple(round(float(w), 4) for w in lr.coef_[0]), round(float(lr.intercept_[0]), 4)
    )
    threshold = threshold_above(
        [model.score(t)[0] for t in negatives],
        int(max_benign_rate * len(negatives)),
        max((model.score(t)[0] for t in hard_negatives), default=0.0),
    )
    return CoercionModel(model.weights, model.bias, threshold)


def threshold_above(benign: Sequence[float], allowed: int, at_least: float = 0.0) -> float:
    """An operating threshold (within [0.5, 0.999]) strictly above the score of every benign
    prompt but the `allowed` highest, and above `at_least`."""
    ranked = sorted(benign, reverse=True)
    floor = float(ranked[allowed]) if allowed < len(ranked) else 0.0
    return round(max(0.5, min(0.999, max(floor, at_least) + 1e-6)), 6)
