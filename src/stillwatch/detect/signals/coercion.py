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
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import ahocorasick
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


def _automaton() -> ahocorasick.Automaton:
    automaton = ahocorasick.Automaton()
    merged: dict[str, set[str]] = {}
    for concept in CONCEPTS:
        for terms in LEXICON[concept].values():
            for term in terms:
                merged.setdefault(term.lower(), set()).add(concept)
    for term, found in merged.items():
        automaton.add_word(term, (len(term), term[0].isascii() and term[0].isalpha(), found))
    automaton.make_automaton()
    return automaton


_AUTOMATON = _automaton()


def hits(text: str) -> list[tuple[int, str]]:
    """(position, concept) of every lexicon term in the text; Latin-script terms must start a
    word ("raw" is not in "drawing"), stems may end anywhere."""
    low = text.lower()
    if len(low) > 2 * _TAIL:
        low = low[:_TAIL] + "\n" + low[-_TAIL:]
    out = []
    for end, (length, latin, found) in _AUTOMATON.iter(low):
        start = end - length + 1
        if latin and start > 0 and low[start - 1].isalpha():
            continue
        out.extend((start, c) for c in found)
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


def fit_coercion(
    positives: Sequence[str], negatives: Sequence[str], max_benign_rate: float = 0.0005
) -> CoercionModel:
    """Logistic regression over concept features with balanced classes; the threshold is then
    the lowest one that flags at most `max_benign_rate` of the benign prompts."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    x = np.array([features(hits(t)) for t in [*positives, *negatives]])
    y = np.array([1] * len(positives) + [0] * len(negatives))
    lr = LogisticRegression(C=3.0, max_iter=1000, class_weight="balanced")
    lr.fit(x, y)
    model = CoercionModel(
        tuple(round(float(w), 4) for w in lr.coef_[0]), round(float(lr.intercept_[0]), 4)
    )
    benign = np.sort(np.array([model.score(t)[0] for t in negatives]))[::-1]
    allowed = int(max_benign_rate * len(benign))
    # strictly above the score of the first benign prompt past the allowance
    floor = float(benign[allowed]) if allowed < len(benign) else 0.0
    threshold = max(0.5, min(0.999, floor + 1e-6))
    return CoercionModel(model.weights, model.bias, round(threshold, 6))
