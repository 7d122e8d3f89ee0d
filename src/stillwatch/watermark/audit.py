"""The suspect-model audit: was a model trained on our watermarked outputs?

A student trained on watermarked text inherits its bias ("radioactivity"): it prefers, a little,
the tokens our key made green after each context. The audit measures that preference in one of
four ways and turns it into a p-value under the null of a model that never saw our text.

- Reading mode (open weights): feed our watermarked texts to the suspect and take its top-1
  prediction at each position; score the (context, prediction) pairs.
- Reading against a reference (open weights, and the public model the suspect was fine-tuned
  from): at each position, how much more probability the suspect puts on our green tokens than
  the reference does, over the whole of both next-token distributions. Fine-tuning on our text
  moves every green token's probability a little; the top-1 prediction shows that only where
  the move overturns the favourite, the green mass shows it at every position.
- Generated mode (only outputs): score the (context, token) pairs of texts the suspect wrote.
- Generated against a reference (outputs, and the public model the suspect was fine-tuned
  from): at each token the suspect wrote, its colour minus the reference's expectation of it;
  the same shift as reading against a reference, heard through samples.

What keeps the test honest: each distinct (context, token) pair counts once across the whole
audit, and pairs the suspect could have copied from what it was shown are dropped (in reading
mode, a prediction that repeats a pair from earlier in the same text; in generated mode, any
pair of the prompts). A clean model that merely repeats what it reads (itself green) would
otherwise look radioactive. Under the null every
remaining pair is green with probability gamma independently of the others, so the green count
is exactly binomial (Gamma-distributed score sum for the Gumbel scheme). Against a reference,
a position counts only the first time its context was written (see `first_contexts`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from stillwatch.watermark import hashing
from stillwatch.watermark.detect import _as_tokens
from stillwatch.watermark.schemes import Scheme


@dataclass(frozen=True)
class AuditResult:
    # reading | reading-vs-reference | generated | generated-weighted | generated-vs-reference
    mode: str
    p_value: float
    scored: int  # distinct (context, token) pairs scored
    statistic: float
    expected: float  # the statistic's mean under the null
    candidates: int  # pairs before de-duplication and filtering
    duplicates: int
    filtered: int  # pairs dropped because the suspect was shown them
    texts: int
    evidence: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def text_pairs(texts: Iterable[object], width: int) -> np.ndarray:
    """Every (context, token) pair hash of the texts (what a suspect could copy from them)."""
    chunks = []
    for t in texts:
        toks = _as_tokens(t)
        if toks.size > width:
            ctx = hashing.context_hashes(toks, width)
            chunks.append(hashing.pair_hashes(ctx, toks)[width:])
    return np.unique(np.concatenate(chunks)) if chunks else np.zeros(0, dtype=np.uint64)


def _decide(
    mode: str,
    pairs: np.ndarray,
    exclude: np.ndarray,
    scheme: Scheme,
    key: int,
    texts: int,
    weights: np.ndarray | None = None,
) -> AuditResult:
    candidates = int(pairs.size)
    unique, first = np.unique(pairs, return_index=True)
    duplicates = candidates - int(unique.size)
    keep = ~np.isin(unique, exclude, assume_unique=True) if exclude.size else np.ones(
        unique.size, dtype=bool
    )
    scored = unique[keep]
    s = scheme.token_scores(hashing.keyed(scored, np.uint64(key))) if scored.size else (
        np.zeros(0)
    )
    dropped = candidates - duplicates - int(scored.size)
    seen = (
        f"{candidates} (context, token) pairs from {texts} texts; {duplicates} repeats and "
        f"{dropped} pairs the suspect was shown dropped"
    )
    if weights is not None:
        return _weighted(mode, s, weights[first[keep]], scheme, seen, candidates, duplicates,
                         dropped, texts)
    n = float(scored.size)
    stat = float(s.sum())
    p = float(scheme.pvalues(np.array([n]), np.array([stat]))[0])
    exp = float(scheme.expected(np.array([n]))[0])
    what = "green pairs" if scheme.name == "greenlist" else "score"
    evidence = [
        seen,
        f"{what}: {stat:.1f} observed against {exp:.1f} expected of a model that never saw "
        f"our text ({int(scored.size)} pairs scored)",
        f"exact p-value {p:.3g} ({'radioactive' if p < 1e-5 else 'no evidence at 1e-5'})",
    ]
    return AuditResult(
        mode=mode,
        p_value=p,
        scored=int(scored.size),
        statistic=stat,
        expected=exp,
        candidates=candidates,
        duplicates=duplicates,
        filtered=dropped,
        texts=texts,
        evidence=evidence,
    )


def _weighted(
    mode: str, s: np.ndarray, w: np.ndarray, scheme: Scheme, seen: str, candidates: int,
    duplicates: int, dropped: int, texts: int,
) -> AuditResult:
    """Σ w (score - mean): under the null the scores are independent of weights fixed
    without the key, so the sum has mean 0 and variance var · Σ w²; normal tail."""
    from scipy import stats

    mean, var = scheme.score_moments()
    spread = float(np.sqrt(var * np.sum(w**2)))
    z = float((s - mean) @ w) / spread if spread > 0 else 0.0
    p = float(stats.norm.sf(z)) if spread > 0 else 1.0
    share = float((s * w).sum() / w.sum()) if w.sum() > 0 else 0.0
    what = "green share" if scheme.name == "greenlist" else "mean score"
    evidence = [
        seen,
        f"{what}, each pair weighted by how open the choice was ({s.size} pairs, mean weight "
        f"{float(w.mean()) if w.size else 0.0:.2f}): {share:.4f} against {mean:.4f} of a model "
        f"that never saw our text; z = {z:.2f}",
        f"p-value {p:.3g} (normal tail; {'radioactive' if p < 1e-5 else 'no evidence at 1e-5'})",
    ]
    return AuditResult(
        mode=mode, p_value=p, scored=int(s.size), statistic=share, expected=mean,
        candidates=candidates, duplicates=duplicates, filtered=dropped, texts=texts,
        evidence=evidence,
    )


def audit_generated(
    suspect_texts: Sequence[object],
    scheme: Scheme,
    key: int,
    *,
    shown: Sequence[object] = (),
    weights: Sequence[np.ndarray] | None = None,
) -> AuditResult:
    """`suspect_texts`: token ids of what the suspect wrote; `shown`: the prompts it was given
    (their pairs are dropped).

    `weights`: per text, one weight per token, fixed without our key: how open the choice of
    that token was (`torch_openness`, from any model, the public one the suspect came from
    being the best guess). A radioactive model leans towards green tokens only where it had a
    choice; where one continuation is all but certain, its colour is chance. Weighting the
    pairs by that openness keeps the null (mean 0, variance known) and sharpens the test."""
    w = scheme.width
    chunks, weight_chunks = [], []
    for i, t in enumerate(suspect_texts):
        toks = _as_tokens(t)
        if toks.size > w:
            chunks.append(hashing.pair_hashes(hashing.context_hashes(toks, w), toks)[w:])
            if weights is not None:
                weight_chunks.append(np.asarray(weights[i], dtype=np.float64)[w : toks.size])
    pairs = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.uint64)
    flat = None
    if weights is not None:
        flat = np.concatenate(weight_chunks) if weight_chunks else np.zeros(0)
        if flat.size != pairs.size:
            raise ValueError("one weight per token of each text")
    mode = "generated" if weights is None else "generated-weighted"
    return _decide(mode, pairs, text_pairs(shown, w), scheme, key, len(suspect_texts), flat)


Predictor = Callable[[list[np.ndarray]], list[np.ndarray]]
"""Token ids of texts -> the suspect's top-1 next-token prediction at every position."""


def audit_reading(
    predict: Predictor,
    our_texts: Sequence[object],
    scheme: Scheme,
    key: int,
    *,
    batch: int = 8,
) -> AuditResult:
    """Feed our watermarked texts to the suspect and score its predictions in their contexts.

    A model that never saw our text predicts from the prefix alone, so its prediction is green
    with probability gamma, unless it copies a (context, token) pair from earlier in the same
    text (in-context copying of a pair that was itself green-biased): such predictions are
    dropped. What remains can only be green more often than gamma if the model learnt our
    key's preferences from text it was trained on."""
    w = scheme.width
    texts = [_as_tokens(t) for t in our_texts]
    chunks = []
    filtered = 0
    for i in range(0, len(texts), batch):
        group = texts[i : i + batch]
        preds = predict(group)
        for toks, pred in zip(group, preds, strict=True):
            if toks.size <= w:
                continue
            # the prediction at position t is the token after toks[: t + 1]; its context is
            # the `w` tokens ending at t, which is the detector's context of position t + 1
            ctx = hashing.context_hashes(np.concatenate([toks, [0]]).astype(np.uint64), w)[1:]
            q = hashing.pair_hashes(ctx, np.asarray(pred, dtype=np.uint64))[w - 1 :]
            # pairs of the text itself: the one ending at position s, for s >= w
            own = hashing.pair_hashes(hashing.context_hashes(toks, w), toks)[w:]
            first = _first_positions(own) + w  # position where each own pair first occurs
            t_of_q = np.arange(w - 1, w - 1 + q.size)
            seen = _lookup(own, first, q)
            copied = seen <= t_of_q  # the pair occurred in the prefix the model was shown
            filtered += int(copied.sum())
            chunks.append(q[~copied])
    pairs = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.uint64)
    result = _decide("reading", pairs, np.zeros(0, dtype=np.uint64), scheme, key, len(texts))
    candidates = result.candidates + filtered
    evidence = [
        f"{candidates} predictions on {len(texts)} of our texts; {filtered} that copy a pair "
        f"from earlier in the same text and {result.duplicates} repeats dropped",
        *result.evidence[1:],
    ]
    return AuditResult(
        **{**result.to_dict(), "candidates": candidates, "filtered": filtered,
           "evidence": evidence}
    )


ShiftScorer = Callable[
    [list[np.ndarray], list[np.ndarray]], list[tuple[np.ndarray, np.ndarray]]
]
"""(token ids of texts, the positions to score in each) -> per text, at each position j (the
prediction of token j from the tokens before it): candidate token ids (m, k) and how much more
probability the suspect gives each than the reference does (m, k)."""


def first_contexts(
    texts: Sequence[np.ndarray], given: Sequence[int], width: int
) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """Per text, the positions to score against a reference and their context hashes; and how
    many written positions were left out because their context had been written before.

    Token j of a text (from `given[i]` on; the tokens before are its prompt, not written under
    the key) was written under the green list of its context. Position j is scored only if
    that context was never written under before, in this text or an earlier one: then nothing
    the suspect or the reference is shown up to j, and nothing an earlier position was scored
    on, depends on that context's green list, so under the null every candidate token is
    green with probability gamma, independently of its weight and of every earlier term."""
    contexts, starts, spans = [], [], []
    for toks, g in zip(texts, given, strict=True):
        lo = max(int(g), width)
        ctx = hashing.context_hashes(toks, width)[lo:] if toks.size > lo else np.zeros(
            0, dtype=np.uint64
        )
        contexts.append(ctx)
        starts.append(lo)
        spans.append(ctx.size)
    flat = np.concatenate(contexts) if contexts else np.zeros(0, dtype=np.uint64)
    keep = np.zeros(flat.size, dtype=bool)
    if flat.size:
        _, first = np.unique(flat, return_index=True)  # first occurrence in text order
        keep[first] = True
    out_pos, out_ctx, offset = [], [], 0
    for lo, n, ctx in zip(starts, spans, contexts, strict=True):
        k = keep[offset : offset + n]
        out_pos.append(np.flatnonzero(k) + lo)
        out_ctx.append(ctx[k])
        offset += n
    return out_pos, out_ctx, int(flat.size - keep.sum())


def audit_against_reference(
    shift: ShiftScorer,
    our_texts: Sequence[object],
    scheme: Scheme,
    key: int,
    *,
    given: Sequence[int] | None = None,
    batch: int = 4,
    max_len: int = 1024,
    null_keys: int = 200,
) -> AuditResult:
    """Reading mode for a suspect fine-tuned from a public model we also have (the reference).

    The statistic is the sum, over the scored positions and their candidate tokens, of the
    suspect's extra probability times the token's centred score under our key (green minus
    gamma): how much more of its probability the suspect puts on our green lists than the
    reference does. Under the null the weights are fixed before the scores are drawn (see
    `first_contexts`), so the sum has mean 0 and a variance known from the weights; the
    p-value is its normal tail. `null_keys` random keys, for which no text was ever written,
    show the spread of the standardised statistic the p-value assumes (mean 0, deviation 1).
    `given`: per text, how many leading tokens are its prompt (fed to both models, never
    scored); without it, the first `width` tokens are taken as given."""
    w = scheme.width
    texts = [_as_tokens(t)[:max_len] for t in our_texts]
    lead = [0] * len(texts) if given is None else list(given)
    positions, contexts, repeats = first_contexts(texts, lead, w)
    pair_chunks, weight_chunks = [], []
    todo = [i for i, pos in enumerate(positions) if pos.size]
    for b in range(0, len(todo), batch):
        idx = todo[b : b + batch]
        group = [texts[i][: int(positions[i][-1])] for i in idx]
        scored = shift(group, [positions[i] for i in idx])
        for i, (cand, weight) in zip(idx, scored, strict=True):
            cand = np.asarray(cand, dtype=np.uint64)
            ctx = np.broadcast_to(contexts[i][:, None], cand.shape)
            pair_chunks.append(hashing.pair_hashes(ctx, cand).ravel())
            weight_chunks.append(np.asarray(weight, dtype=np.float64).ravel())
    pairs = np.concatenate(pair_chunks) if pair_chunks else np.zeros(0, dtype=np.uint64)
    weights = np.concatenate(weight_chunks) if weight_chunks else np.zeros(0)
    z, p, null, spread = _centred_test(pairs, weights, scheme, key, null_keys)
    n_pos = int(sum(pos.size for pos in positions))
    per_position = z * spread / max(n_pos, 1)
    evidence = [
        f"{n_pos} positions of {len(todo)} of our texts scored, each the first time its "
        f"context was written; {repeats} positions whose context had been written before "
        "left out",
        f"the suspect puts {100 * per_position:+.3f} points more of its probability per "
        f"position on our {'green tokens' if scheme.name == 'greenlist' else 'high scores'} "
        f"than the reference does ({weights.size} candidate tokens): z = {z:.2f}",
    ]
    evidence += _null_evidence(z, p, null)
    return AuditResult(
        mode="reading-vs-reference",
        p_value=p,
        scored=n_pos,
        statistic=per_position,
        expected=0.0,
        candidates=n_pos + repeats,
        duplicates=repeats,
        filtered=0,
        texts=len(texts),
        evidence=evidence,
    )


ReferenceGuess = Callable[
    [list[np.ndarray], list[np.ndarray]], list[tuple[np.ndarray, np.ndarray, np.ndarray]]
]
"""(prompts, texts written after them) -> per text, at each of its tokens: the reference's
likeliest next tokens (n, k), their probabilities (n, k), and the probability it gave the
token actually written (n,)."""


def audit_generated_against_reference(
    guess: ReferenceGuess,
    suspect_texts: Sequence[object],
    scheme: Scheme,
    key: int,
    *,
    prompts: Sequence[object] | None = None,
    shown: Sequence[object] = (),
    batch: int = 8,
    null_keys: int = 200,
) -> AuditResult:
    """Generated mode for a suspect fine-tuned from a public model we also have.

    At each token the suspect wrote, the statistic adds that token's centred score minus the
    reference's expectation of it (its probabilities times the centred scores of its likeliest
    tokens): how much greener the suspect's choice was than the reference's guess at that
    point. A token the reference was sure of adds nothing, so the test hears the suspect
    only where it had a choice, and the reference's own chance lean towards our key cancels.
    The expectation is that of the green-mass shift that reading against a reference
    measures, so the two modes read the same bias, one from weights and one from samples.

    Under the null (a suspect that never saw our text) neither the texts nor the reference
    depend on the key. Every (context, token) pair's weight, summed over the positions it
    occurs at, is fixed before its score is drawn, independently for distinct pairs, so the
    sum has mean 0 and variance var · Σ W²; normal tail, with `null_keys` random keys showing
    the spread. `prompts`: per text, what the suspect was asked (the reference reads the text
    after it; the prompt is never scored). Pairs of `shown` are dropped, as in
    `audit_generated`. Whether the reference samples at the temperature the suspect was asked
    for changes only the power, never the null."""
    w = scheme.width
    texts = [_as_tokens(t) for t in suspect_texts]
    leads = [_as_tokens(p) for p in prompts] if prompts is not None else [
        np.zeros(0, dtype=np.uint64) for _ in texts
    ]
    if len(leads) != len(texts):
        raise ValueError("one prompt per text")
    pair_chunks, weight_chunks = [], []
    positions = 0
    for b in range(0, len(texts), batch):
        group, lead = texts[b : b + batch], leads[b : b + batch]
        for toks, pre, (top, prob, written) in zip(group, lead, guess(lead, group), strict=True):
            seq = np.concatenate([pre, toks]).astype(np.uint64)
            start = max(w - pre.size, 0)  # the first token with `w` tokens before it
            if toks.size <= start:
                continue
            ctx = hashing.context_hashes(seq, w)[pre.size + start :]
            top = np.asarray(top, dtype=np.uint64)[start:]
            here = toks[start:]
            out = -np.asarray(prob, dtype=np.float64)[start:]
            out[top == here[:, None]] = 0.0  # the written token gets its own column below
            cand = np.concatenate([top, here[:, None]], axis=1)
            weight = np.concatenate(
                [out, 1.0 - np.asarray(written, dtype=np.float64)[start:, None]], axis=1
            )
            pair_chunks.append(hashing.pair_hashes(np.broadcast_to(ctx[:, None], cand.shape),
                                                   cand).ravel())
            weight_chunks.append(weight.ravel())
            positions += here.size
    pairs = np.concatenate(pair_chunks) if pair_chunks else np.zeros(0, dtype=np.uint64)
    weights = np.concatenate(weight_chunks) if weight_chunks else np.zeros(0)
    unique, inverse = np.unique(pairs, return_inverse=True)
    summed = np.bincount(inverse, weights=weights, minlength=unique.size)
    exclude = text_pairs(shown, w)
    keep = summed != 0.0
    if exclude.size:
        keep &= ~np.isin(unique, exclude, assume_unique=True)
    dropped = int((summed != 0.0).sum() - keep.sum())
    z, p, null, spread = _centred_test(unique[keep], summed[keep], scheme, key, null_keys)
    per_position = z * spread / max(positions, 1)
    evidence = [
        f"{positions} tokens of {len(texts)} texts the suspect wrote, each set against the "
        f"reference's guess there; {int(keep.sum())} distinct (context, token) pairs weighed, "
        f"{dropped} pairs the suspect was shown dropped",
        f"the suspect's tokens are {100 * per_position:+.3f} points per token more often our "
        f"{'green tokens' if scheme.name == 'greenlist' else 'high scores'} than the "
        f"reference expected: z = {z:.2f}",
        *_null_evidence(z, p, null),
    ]
    return AuditResult(
        mode="generated-vs-reference",
        p_value=p,
        scored=int(keep.sum()),
        statistic=per_position,
        expected=0.0,
        candidates=int(pairs.size),
        duplicates=int(pairs.size - unique.size),
        filtered=dropped,
        texts=len(texts),
        evidence=evidence,
    )


def _centred_test(
    pairs: np.ndarray, weights: np.ndarray, scheme: Scheme, key: int, null_keys: int
) -> tuple[float, float, np.ndarray, float]:
    """z of Σ w (score - mean) over distinct pairs with weights fixed without the key, its
    normal tail, the z of `null_keys` keys no text was written with, and the sum's spread."""
    from scipy import stats

    mean, var = scheme.score_moments()
    spread = float(np.sqrt(var * np.sum(weights**2)))

    def z_of(keys: np.ndarray) -> np.ndarray:
        if not pairs.size or spread == 0.0:
            return np.zeros(keys.size)
        out = np.empty(keys.size)
        for j, k in enumerate(keys):  # one key at a time: pairs can number millions
            out[j] = float((scheme.token_scores(hashing.keyed(pairs, k)) - mean) @ weights)
        return out / spread

    z = float(z_of(np.array([key], dtype=np.uint64))[0])
    p = float(stats.norm.sf(z)) if spread > 0 else 1.0
    null = z_of(hashing.mix64(np.uint64(key) ^ np.arange(1, null_keys + 1, dtype=np.uint64)))
    return z, p, null, spread


def _null_evidence(z: float, p: float, null: np.ndarray) -> list[str]:
    out = []
    if null.size:
        out.append(
            f"{null.size} random keys give z of mean {null.mean():+.2f} and deviation "
            f"{null.std():.2f} (the null's 0 and 1); {int((null >= z).sum())} reach {z:.2f}"
        )
    out.append(
        f"p-value {p:.3g} (normal tail; {'radioactive' if p < 1e-5 else 'no evidence at 1e-5'})"
    )
    return out


def _first_positions(values: np.ndarray) -> np.ndarray:
    """For each element, the index of the first element equal to it."""
    order = np.argsort(values, kind="stable")
    sv = values[order]
    starts = np.concatenate([[True], sv[1:] != sv[:-1]])
    group_first = order[np.flatnonzero(starts)]
    group_of = np.cumsum(starts) - 1
    out = np.empty(values.size, dtype=np.int64)
    out[order] = group_first[group_of]
    return out


def _lookup(keys: np.ndarray, first: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """First position of each query among `keys` (a large number where absent)."""
    absent = np.iinfo(np.int64).max
    if keys.size == 0:
        return np.full(queries.size, absent, dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    idx = np.clip(np.searchsorted(sk, queries), 0, sk.size - 1)
    hit = sk[idx] == queries
    return np.where(hit, first[order][idx], absent)


def _padded(group: list[np.ndarray], pad_id: int) -> tuple[Any, Any]:
    import torch

    width = max(len(g) for g in group)
    ids = torch.full((len(group), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(group), width), dtype=torch.long)
    for r, g in enumerate(group):
        ids[r, : len(g)] = torch.from_numpy(g.astype(np.int64))
        mask[r, : len(g)] = 1
    return ids, mask


def _logits(net: Any, ids: Any, mask: Any) -> Any:
    import torch

    with torch.inference_mode():
        return net(input_ids=ids, attention_mask=mask).logits


def torch_predictor(model: Any, pad_id: int = 0, max_len: int = 1024) -> Predictor:
    """Top-1 predictions of a transformers causal LM (right-padded batches)."""

    def predict(group: list[np.ndarray]) -> list[np.ndarray]:
        group = [g[:max_len] for g in group]
        top = _logits(model, *_padded(group, pad_id)).argmax(-1)
        chosen = top.numpy().astype(np.uint64)
        return [chosen[r, : len(g)] for r, g in enumerate(group)]

    return predict


def torch_shift_scorer(
    model: Any, reference: Any, pad_id: int = 0, candidates: int = 64
) -> ShiftScorer:
    """The suspect's and the reference's next-token probabilities at the positions asked
    for: the `candidates` tokens most likely under the two together, and the suspect's
    probability minus the reference's on each (the rest of the vocabulary carries little
    mass under either, and leaving it out is a choice made without the key)."""
    import torch

    def shift(group: list[np.ndarray], positions: list[np.ndarray]) -> list[
        tuple[np.ndarray, np.ndarray]
    ]:
        ids, mask = _padded(group, pad_id)
        sus, ref = _logits(model, ids, mask), _logits(reference, ids, mask)
        out = []
        for r, pos in enumerate(positions):
            rows = torch.from_numpy(np.asarray(pos, dtype=np.int64) - 1)
            p = torch.softmax(sus[r, rows].float(), dim=-1)
            q = torch.softmax(ref[r, rows].float(), dim=-1)
            top = (p + q).topk(min(candidates, p.shape[-1]), dim=-1).indices
            out.append((top.numpy().astype(np.uint64),
                        (p.gather(-1, top) - q.gather(-1, top)).double().numpy()))
        return out

    return shift


def _distributions_after(
    model: Any, prompts: list[np.ndarray], texts: list[np.ndarray], pad_id: int,
    temperature: float = 1.0,
) -> list[tuple[int, Any]]:
    """Per text written after its prompt: the index of its first token the model had
    something to predict from (0 after a prompt, 1 without one) and the model's next-token
    distributions for it and every later token of the text (rows of a tensor)."""
    import torch

    seqs = [np.concatenate([np.asarray(p, np.uint64), np.asarray(t, np.uint64)])
            for p, t in zip(prompts, texts, strict=True)]
    logits = _logits(model, *_padded(seqs, pad_id))
    out = []
    for r, (p, t) in enumerate(zip(prompts, texts, strict=True)):
        n, lead = len(t), len(p)
        start = max(lead, 1)
        rows = logits[r, start - 1 : max(lead + n - 1, start - 1)].float() / temperature
        out.append((start - lead, torch.softmax(rows, dim=-1)))
    return out


def torch_openness(model: Any, pad_id: int = 0) -> Callable[
    [list[np.ndarray], list[np.ndarray]], list[np.ndarray]
]:
    """(prompts, texts written after them) -> per text, 1 - Σ q² of the model's next-token
    distribution q at each of its tokens: 0 where one token was certain, near 1 where many
    were open. Any model gives weights fixed without our key; the closer it is to the
    suspect, the sharper the test."""

    def weigh(prompts: list[np.ndarray], texts: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for t, (first, q) in zip(texts, _distributions_after(model, prompts, texts, pad_id),
                                 strict=True):
            w = np.ones(len(t))  # a first token with nothing before it: no guess, full weight
            w[first:] = (1.0 - (q * q).sum(-1)).double().numpy()
            out.append(w)
        return out

    return weigh


def torch_reference_guess(
    model: Any, pad_id: int = 0, candidates: int = 64, temperature: float = 1.0
) -> ReferenceGuess:
    """The reference's guess at each token of texts written after their prompts (see
    `ReferenceGuess`): its `candidates` likeliest tokens at `temperature`. A text's first
    token with no prompt before it gets no guess (probabilities 0; it is never scored)."""
    import torch

    def guess(prompts: list[np.ndarray], texts: list[np.ndarray]) -> list[
        tuple[np.ndarray, np.ndarray, np.ndarray]
    ]:
        out = []
        for t, (first, q) in zip(
            texts, _distributions_after(model, prompts, texts, pad_id, temperature), strict=True
        ):
            n, k = len(t), min(candidates, q.shape[-1])
            top = np.zeros((n, k), dtype=np.uint64)
            prob = np.zeros((n, k))
            written = np.zeros(n)
            if n > first:
                best = q.topk(k, dim=-1)
                top[first:] = best.indices.numpy().astype(np.uint64)
                prob[first:] = best.values.double().numpy()
                ids = torch.from_numpy(np.asarray(t[first:], dtype=np.int64))[:, None]
                written[first:] = q.gather(-1, ids)[:, 0].double().numpy()
            out.append((top, prob, written))
        return out

    return guess
