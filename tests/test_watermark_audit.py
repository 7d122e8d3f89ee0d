"""The suspect-model audit: a student that inherited the watermark's bias is found; a clean
model is not, even one that copies the (watermarked) text it is fed."""

from __future__ import annotations

import numpy as np
import pytest

from stillwatch.watermark import GreenList, GumbelMax, hashing
from stillwatch.watermark.audit import (
    audit_against_reference,
    audit_generated,
    audit_reading,
    first_contexts,
)
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


def _green_of(ctx: np.uint64, vocab: int) -> np.ndarray:
    h = hashing.keyed(
        hashing.pair_hashes(np.full(vocab, ctx), np.arange(vocab, dtype=np.uint64)),
        np.uint64(KEY),
    )
    return h < hashing.threshold(SCHEME.gamma)


def _fine_tune(bias: float, rng: np.random.Generator, vocab: int = 1000, copy: float = 0.0):
    """A public reference model and a fine-tune of it that raised every green token's logit
    by `bias` (training on our text) and, by `copy`, the token that followed the current one
    when it was last read (in-context copying: a clean habit that repeats our green-biased
    pairs), plus noise of its own. Returns the fine-tune's top-1 predictor and shift scorer."""
    from scipy.special import softmax

    def logits(toks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ref = rng.normal(0.0, 3.0, size=(len(toks), vocab))
        sus = ref + rng.normal(0.0, 0.2, size=ref.shape)
        after: dict[int, int] = {}
        for t in range(len(toks)):
            ctx = next_context([int(x) for x in toks[: t + 1]], SCHEME.width)
            sus[t] += bias * _green_of(ctx, vocab)
            if t >= 1:
                after[int(toks[t - 1])] = int(toks[t])
            if int(toks[t]) in after:
                sus[t, after[int(toks[t])]] += copy
        return ref, sus

    def top1(group: list[np.ndarray]) -> list[np.ndarray]:
        return [logits(toks)[1].argmax(-1).astype(np.uint64) for toks in group]

    def shift(group: list[np.ndarray], positions: list[np.ndarray]):
        out = []
        for toks, pos in zip(group, positions, strict=True):
            ref, sus = logits(toks)
            p, q = softmax(sus[pos - 1], axis=-1), softmax(ref[pos - 1], axis=-1)
            top = np.argsort(-(p + q), axis=-1)[:, :64]
            out.append((top.astype(np.uint64),
                        np.take_along_axis(p, top, -1) - np.take_along_axis(q, top, -1)))
        return out

    return top1, shift


def _ours_in(vocab: int, n_texts: int, rng: np.random.Generator, repeat: bool = False):
    texts = [watermarked(120, SCHEME, KEY, rng, vocab=vocab) for _ in range(n_texts)]
    if repeat:  # a phrase said three times, so copying pays off
        texts = [np.concatenate([t[:40]] * 3 + [t[40:]]) for t in texts]
    return texts


def test_reading_against_the_reference_sees_a_bias_the_top_prediction_misses() -> None:
    rng = np.random.default_rng(14)
    ours = _ours_in(1000, 30, rng)
    top1, shift = _fine_tune(0.05, rng)  # a rise that rarely overturns the favourite
    weak = audit_reading(top1, ours, SCHEME, KEY)
    strong = audit_against_reference(shift, ours, SCHEME, KEY)
    assert strong.mode == "reading-vs-reference"
    assert strong.p_value < 1e-10, strong.evidence
    assert strong.statistic > 0
    assert weak.p_value > 1e-3, weak.evidence
    _, clean = _fine_tune(0.0, rng)  # fine-tuned on clean text: noise only
    null = audit_against_reference(clean, ours, SCHEME, KEY)
    assert null.p_value > 0.01, null.evidence


def test_reading_against_the_reference_is_not_fooled_by_copying() -> None:
    """A clean fine-tune that copies what followed the current token before: the copied pair
    is green-biased, but a position is scored only the first time its context is written, so
    no scored candidate's colour was chosen by anything the models were shown. (Scoring every
    position instead gives this model a mean z of about 3.4 over seeds.)"""
    rng = np.random.default_rng(15)
    ours = _ours_in(1000, 30, rng, repeat=True)
    _, copying = _fine_tune(0.0, rng, copy=3.0)
    r = audit_against_reference(copying, ours, SCHEME, KEY, null_keys=50)
    assert r.p_value > 0.01, r.evidence
    assert r.duplicates > r.scored  # the repeated phrases' positions were left out
    assert "random keys" in r.evidence[2]


def test_first_contexts_scores_each_context_once_and_never_in_the_prompt() -> None:
    texts = [np.array([5, 1, 2, 1, 3], dtype=np.uint64), np.array([9, 2, 7], dtype=np.uint64)]
    pos, ctx, repeats = first_contexts(texts, [1, 0], width=1)
    # text 0: position 1 (after 5), 2 (after 1), 3 (after 2), 4 (after 1 again: left out)
    assert pos[0].tolist() == [1, 2, 3]
    # text 1: position 1 (after 9), position 2 (after 2: written in text 0, left out)
    assert pos[1].tolist() == [1]
    assert repeats == 2
    assert ctx[0].tolist() == hashing.context_hashes(texts[0], 1)[[1, 2, 3]].tolist()


def _student_texts(
    bias: float, rng: np.random.Generator, n_texts: int = 30, length: int = 150
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A student that writes most tokens with no real choice (one candidate) and the rest
    with eight open candidates, leaning to a green one with probability `bias` there; and the
    openness of each choice as a model of the language would see it (1 - Σ q²)."""
    texts, weights = [], []
    for _ in range(n_texts):
        seq = [int(rng.integers(VOCAB))]
        openness = [0.0]
        while len(seq) < length:
            open_choice = rng.random() < 0.3
            k = 8 if open_choice else 1
            cand = rng.integers(0, VOCAB, size=k).astype(np.uint64)
            pick = cand[0]
            if open_choice and rng.random() < bias:
                h = hashing.keyed(
                    hashing.pair_hashes(np.full(k, next_context(seq, 1)), cand), np.uint64(KEY)
                )
                green = np.flatnonzero(h < hashing.threshold(SCHEME.gamma))
                pick = cand[green[0]] if green.size else cand[0]
            seq.append(int(pick))
            openness.append(1.0 - 1.0 / k)
        texts.append(np.array(seq, dtype=np.uint64))
        weights.append(np.array(openness))
    return texts, weights


def test_generated_mode_weighted_by_openness_is_sharper_and_keeps_its_null() -> None:
    rng = np.random.default_rng(16)
    texts, weights = _student_texts(0.15, rng)
    plain = audit_generated(texts, SCHEME, KEY)
    sharp = audit_generated(texts, SCHEME, KEY, weights=weights)
    assert sharp.mode == "generated-weighted"
    assert sharp.p_value < 1e-5 < plain.p_value, (sharp.evidence, plain.evidence)
    for seed in range(3):  # a student that never leans: the weighted test does not accuse it
        t, w = _student_texts(0.0, np.random.default_rng(seed))
        assert audit_generated(t, SCHEME, KEY, weights=w).p_value > 1e-3
    with pytest.raises(ValueError, match="one weight per token"):
        audit_generated(texts, SCHEME, KEY, weights=[w[:-1] for w in weights])


def test_torch_scorers_read_the_right_rows() -> None:
    """The shift scorer's weights are the suspect's minus the reference's probabilities of
    the next token (the row before each position), and openness is 1 - Σ q² of that row."""
    torch = pytest.importorskip("torch")
    from types import SimpleNamespace

    from stillwatch.watermark.audit import (
        torch_openness,
        torch_reference_guess,
        torch_shift_scorer,
    )

    vocab = 5
    table = torch.randn(vocab, vocab)  # a bigram "model": logits of the next token

    def bigram(bias: float):
        def net(input_ids, attention_mask):
            logits = table[input_ids] + bias * (torch.arange(vocab) == 2)
            return SimpleNamespace(logits=logits)
        return net

    seq = np.array([1, 3, 0, 4, 2], dtype=np.uint64)
    (cand, w), = torch_shift_scorer(bigram(1.0), bigram(0.0), candidates=vocab)(
        [seq], [np.array([2, 4])]
    )
    p = torch.softmax(table[seq[[1, 3]].astype(np.int64)] + (torch.arange(vocab) == 2), -1)
    q = torch.softmax(table[seq[[1, 3]].astype(np.int64)], -1)
    expect = (p - q).numpy()
    assert cand.shape == (2, vocab)
    np.testing.assert_allclose(w, np.take_along_axis(expect, cand.astype(np.int64), 1),
                               atol=1e-6)
    (open_,) = torch_openness(bigram(0.0))([np.array([1], np.uint64)], [seq[1:]])
    rows = torch.softmax(table[np.array([1, 3, 0, 4])], -1)
    np.testing.assert_allclose(open_, (1 - (rows * rows).sum(-1)).numpy(), atol=1e-6)
    # the reference's guess at each token written after the prompt, at a temperature
    (top, prob, written), (top0, _, written0) = torch_reference_guess(
        bigram(0.0), candidates=3, temperature=0.5
    )([np.array([1], np.uint64), np.zeros(0, np.uint64)], [seq[1:], seq[1:]])
    sharp = torch.softmax(table[np.array([1, 3, 0, 4])] / 0.5, -1)
    best = sharp.topk(3, dim=-1)
    np.testing.assert_array_equal(top, best.indices.numpy())
    np.testing.assert_allclose(prob, best.values.numpy(), atol=1e-6)
    np.testing.assert_allclose(written, sharp[torch.arange(4), seq[1:].astype(np.int64)],
                               atol=1e-6)
    # without a prompt the first token has nothing before it: no guess
    assert written0[0] == 0.0 and (top0[1:] == top[1:]).all()


def _bigram_world(vocab: int = 1000, seed: int = 20):
    """A public reference model (a bigram table, confident after some tokens and open after
    others) and a sampler of texts from it with every green token's logit raised by `bias`
    (a fine-tune of it trained on our text); and the reference's `ReferenceGuess`."""
    from scipy.special import softmax

    rng = np.random.default_rng(seed)
    table = rng.normal(0.0, 1.0, size=(vocab, vocab)) * rng.choice([1.5, 10.0], size=(vocab, 1))
    green: dict[int, np.ndarray] = {}

    def green_after(prev: int) -> np.ndarray:
        if prev not in green:
            green[prev] = _green_of(next_context([prev], SCHEME.width), vocab)
        return green[prev]

    def sample(bias: float, n_texts: int, length: int, rng: np.random.Generator,
               prompts: list[np.ndarray] | None = None) -> list[np.ndarray]:
        out = []
        for i in range(n_texts):
            prev = int(prompts[i][-1]) if prompts else int(rng.integers(vocab))
            seq = [] if prompts else [prev]
            while len(seq) < length:
                p = softmax(table[prev] + bias * green_after(prev))
                prev = int(rng.choice(vocab, p=p))
                seq.append(prev)
            out.append(np.array(seq, dtype=np.uint64))
        return out

    def guess(prompts: list[np.ndarray], texts: list[np.ndarray]):
        out = []
        for pre, toks in zip(prompts, texts, strict=True):
            seq = np.concatenate([pre, toks]).astype(np.int64)
            first = 0 if pre.size else 1
            q = np.zeros((toks.size, vocab))
            q[first:] = softmax(table[seq[pre.size + first - 1 : -1]], axis=-1)
            top = np.argsort(-q, axis=-1)[:, :64]
            written = q[np.arange(toks.size), toks.astype(np.int64)]
            out.append((top.astype(np.uint64), np.take_along_axis(q, top, -1), written))
        return out

    return sample, guess


def test_generated_against_the_reference_hears_a_lean_plain_counting_misses() -> None:
    from stillwatch.watermark.audit import audit_generated_against_reference

    sample, guess = _bigram_world()
    rng = np.random.default_rng(21)
    texts = sample(0.15, 40, 150, rng)  # a faint lean towards our green tokens
    plain = audit_generated(texts, SCHEME, KEY)
    sharp = audit_generated_against_reference(guess, texts, SCHEME, KEY, null_keys=50)
    assert sharp.mode == "generated-vs-reference"
    assert sharp.p_value < 1e-5 < plain.p_value, (sharp.evidence, plain.evidence)
    assert sharp.statistic > 0 and "random keys" in sharp.evidence[2]
    for seed in range(3):  # samples of the reference itself: never accused
        clean = sample(0.0, 40, 150, np.random.default_rng(seed))
        r = audit_generated_against_reference(guess, clean, SCHEME, KEY, null_keys=0)
        assert r.p_value > 1e-3, r.evidence


def test_generated_against_the_reference_keeps_its_null_across_keys() -> None:
    """Over many keys no text was written with, z is standard normal: the tail shares stay
    near their rates."""
    from stillwatch.watermark.audit import audit_generated_against_reference

    sample, guess = _bigram_world(seed=22)
    texts = sample(0.0, 30, 120, np.random.default_rng(23))
    keys = [MasterKeys({1: bytes([k]) * 32}).derive("v1") for k in range(1, 201)]
    p = np.array([audit_generated_against_reference(guess, texts, SCHEME, k, null_keys=0)
                  .p_value for k in keys])
    assert 0.03 <= (p <= 0.1).mean() <= 0.17
    assert (p <= 0.01).mean() <= 0.04


def test_generated_against_the_reference_scores_after_the_prompt_and_drops_shown_pairs() -> None:
    from stillwatch.watermark.audit import audit_generated_against_reference

    sample, guess = _bigram_world(seed=24)
    rng = np.random.default_rng(25)
    prompts = [watermarked(60, SCHEME, KEY, rng, vocab=1000) for _ in range(20)]
    answers = sample(0.0, 20, 40, rng, prompts=prompts)
    # a clean model that quotes its (watermarked) prompt back before answering
    quoting = [np.concatenate([p, a]) for p, a in zip(prompts, answers, strict=True)]
    lead = [np.zeros(0, dtype=np.uint64)] * len(quoting)
    fooled = audit_generated_against_reference(guess, quoting, SCHEME, KEY, prompts=lead,
                                               null_keys=0)
    assert fooled.p_value < 1e-5
    honest = audit_generated_against_reference(guess, quoting, SCHEME, KEY, prompts=lead,
                                               shown=prompts, null_keys=0)
    assert honest.p_value > 1e-3 and honest.filtered > 0, honest.evidence
    # with its prompt, every answer token is scored, the first one after the prompt's end
    r = audit_generated_against_reference(guess, answers, SCHEME, KEY, prompts=prompts,
                                          null_keys=0)
    assert str(sum(a.size for a in answers)) in r.evidence[0]
    with pytest.raises(ValueError, match="one prompt per text"):
        audit_generated_against_reference(guess, answers, SCHEME, KEY, prompts=prompts[:3])
