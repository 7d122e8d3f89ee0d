"""The suspect-model audit: a student that inherited the watermark's bias is found; a clean
model is not, even one that copies the (watermarked) text it is fed."""

from __future__ import annotations

import numpy as np
import pytest

from stillwatch.watermark import GreenList, GumbelMax, hashing
from stillwatch.watermark.audit import audit_generated, audit_reading
from stillwatch.watermark.keys import MasterKeys
from wmsynth import VOCAB, next_context, random_tokens, watermarked

KEY = MasterKeys({1: b"a" * 32}).derive("v1")
SCHEME = GreenList()


def _ours(n_texts: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [watermarked(120, SCHEME, KEY, rng) for _ in range(n_texts)]


def _student(bias: float, rng: np.random.Generator):
    """Predicts a green token with probability `bias` extra (what training on our text does)."""

    def predict(group: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for toks in group:
            preds = []
            for t in range(len(toks)):
                ctx = next_context([int(x) for x in toks[: t + 1]], SCHEME.width)
                cand = rng.integers(0, VOCAB, size=8).astype(np.uint64)
                h = hashing.keyed(hashing.pair_hashes(np.full(8, ctx), cand), np.uint64(KEY))
                green = np.flatnonzero(h < hashing.threshold(SCHEME.gamma))
                pick = cand[green[0]] if green.size and rng.random() < bias else cand[0]
                preds.append(int(pick))
            out.append(np.array(preds, dtype=np.uint64))
        return out

    return predict


def _induction(group: list[np.ndarray]) -> list[np.ndarray]:
    """A clean model that copies in context: after a token it has seen before in the text, it
    predicts what followed it then (a green-biased pair of our text); otherwise the token 0."""
    out = []
    for toks in group:
        last: dict[int, int] = {}
        preds = []
        for t in range(len(toks)):
            preds.append(last.get(int(toks[t]), 0))
            if t >= 1:
                last[int(toks[t - 1])] = int(toks[t])
        out.append(np.array(preds, dtype=np.uint64))
    return out


def test_reading_mode_finds_a_radioactive_student() -> None:
    rng = np.random.default_rng(10)
    r = audit_reading(_student(0.3, rng), _ours(30, rng), SCHEME, KEY)
    assert r.p_value < 1e-5, r.evidence
    assert r.statistic > r.expected


def test_reading_mode_does_not_accuse_a_clean_model_that_copies_in_context() -> None:
    rng = np.random.default_rng(11)
    # repetitive texts of ours: a phrase said three times, so copying pays off
    ours = [np.concatenate([t[:40]] * 3 + [t[40:]]) for t in _ours(40, rng)]
    r = audit_reading(_induction, ours, SCHEME, KEY)
    assert r.filtered > 2000  # the copied predictions, dropped
    assert r.p_value > 0.01, r.evidence
    clean = audit_reading(_student(0.0, rng), ours, SCHEME, KEY)
    assert clean.p_value > 0.001 and clean.scored > 3000


def test_generated_mode_and_its_prompt_filter() -> None:
    rng = np.random.default_rng(12)
    student_texts = [watermarked(200, SCHEME, KEY, rng, k=1) for _ in range(5)]
    # k=1: no choice, so no bias: the null
    assert audit_generated(student_texts, SCHEME, KEY).p_value > 0.001
    biased = []
    for _ in range(40):  # a student that picks the green token one time in eight
        t = watermarked(150, SCHEME, KEY if rng.random() < 0.125 else None, rng, k=4)
        biased.append(t)
    # a mild bias over many tokens is still decisive
    mild = audit_generated(biased, SCHEME, KEY)
    assert mild.p_value < 1e-3, mild.evidence
    # a clean model that quotes watermarked prompts back: the prompt filter removes them
    prompts = _ours(20, rng)
    quoting = [np.concatenate([p, random_tokens(50, rng)]) for p in prompts]
    assert audit_generated(quoting, SCHEME, KEY).p_value < 1e-10  # unfiltered: fooled
    honest = audit_generated(quoting, SCHEME, KEY, shown=prompts)
    assert honest.p_value > 0.001 and honest.filtered > 0


def test_gumbel_audit_uses_its_own_statistic() -> None:
    rng = np.random.default_rng(13)
    texts = [watermarked(150, GumbelMax(), KEY, rng) for _ in range(5)]
    assert audit_generated(texts, GumbelMax(), KEY).p_value < 1e-10
    assert audit_generated([random_tokens(600, rng)], GumbelMax(), KEY).p_value > 0.001


def _fine_tune(bias: float, rng: np.random.Generator, vocab: int = 1000):
    """A public reference model and a fine-tune of it that raised every green token's logit
    by `bias` (training on our text), plus noise of its own: (suspect, reference) predictors
    of the top-1 and the most-raised rules, over the same logits."""
    torch = pytest.importorskip("torch")
    from stillwatch.watermark.audit import boosted_tokens

    def logits(group: list[np.ndarray]):
        ref, sus = [], []
        for toks in group:
            r = rng.normal(0.0, 3.0, size=(len(toks), vocab))
            green = np.zeros_like(r)
            for t in range(len(toks)):
                ctx = next_context([int(x) for x in toks[: t + 1]], SCHEME.width)
                h = hashing.keyed(
                    hashing.pair_hashes(np.full(vocab, ctx), np.arange(vocab, dtype=np.uint64)),
                    np.uint64(KEY),
                )
                green[t] = h < hashing.threshold(SCHEME.gamma)
            ref.append(torch.tensor(r))
            sus.append(torch.tensor(r + bias * green + rng.normal(0.0, 0.2, size=r.shape)))
        return ref, sus

    def top1(group: list[np.ndarray]) -> list[np.ndarray]:
        _, sus = logits(group)
        return [s.argmax(-1).numpy().astype(np.uint64) for s in sus]

    def raised(group: list[np.ndarray]) -> list[np.ndarray]:
        ref, sus = logits(group)
        pairs = zip(sus, ref, strict=True)
        return [boosted_tokens(s, r).numpy().astype(np.uint64) for s, r in pairs]

    return top1, raised


def test_reading_against_the_reference_sees_a_bias_the_top_prediction_misses() -> None:
    rng = np.random.default_rng(14)
    # our texts, folded into the stand-in models' vocabulary of 1,000 ids
    ours = [watermarked(120, SCHEME, KEY, rng) % 1000 for _ in range(30)]
    top1, raised = _fine_tune(0.05, rng)  # a rise that rarely overturns the favourite
    weak = audit_reading(top1, ours, SCHEME, KEY)
    strong = audit_reading(raised, ours, SCHEME, KEY, against_reference=True)
    assert strong.mode == "reading-vs-reference"
    assert strong.p_value < 1e-10, strong.evidence
    assert weak.p_value > 1e-3, weak.evidence
    _, clean = _fine_tune(0.0, rng)  # fine-tuned on clean text: noise only
    assert audit_reading(clean, ours, SCHEME, KEY, against_reference=True).p_value > 0.01
