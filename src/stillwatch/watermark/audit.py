"""The suspect-model audit: was a model trained on our watermarked outputs?

A student trained on watermarked text inherits its bias ("radioactivity"): it prefers, a little,
the tokens our key made green after each context. The audit measures that preference in one of
two ways and turns it into an exact p-value under the null of a model that never saw our text.

- Reading mode (open weights): feed our watermarked texts to the suspect and take its top-1
  prediction at each position; score the (context, prediction) pairs. When the suspect is a
  fine-tune of a public model (the reference), take instead the token, among the reference's
  most likely few, whose log-probability the suspect raised most: what fine-tuning taught it,
  without the reference's own preferences, which say nothing about our key.
- Generated mode (only outputs): score the (context, token) pairs of texts the suspect wrote.

What keeps the test honest: each distinct (context, token) pair counts once across the whole
audit, and pairs the suspect could have copied from what it was shown are dropped (in reading
mode, a prediction that repeats a pair from earlier in the same text; in generated mode, any
pair of the prompts). A clean model that merely repeats what it reads (itself green) would
otherwise look radioactive. Under the null every
remaining pair is green with probability gamma independently of the others, so the green count
is exactly binomial (Gamma-distributed score sum for the Gumbel scheme).
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
    mode: str  # reading | reading-vs-reference | generated
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
) -> AuditResult:
    candidates = int(pairs.size)
    unique = np.unique(pairs)
    duplicates = candidates - int(unique.size)
    keep = ~np.isin(unique, exclude, assume_unique=True) if exclude.size else np.ones(
        unique.size, dtype=bool
    )
    scored = unique[keep]
    s = scheme.token_scores(hashing.keyed(scored, np.uint64(key))) if scored.size else (
        np.zeros(0)
    )
    n = float(scored.size)
    stat = float(s.sum())
    p = float(scheme.pvalues(np.array([n]), np.array([stat]))[0])
    exp = float(scheme.expected(np.array([n]))[0])
    what = "green pairs" if scheme.name == "greenlist" else "score"
    evidence = [
        f"{candidates} (context, token) pairs from {texts} texts; {duplicates} repeats and "
        f"{candidates - duplicates - int(scored.size)} pairs the suspect was shown dropped",
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
        filtered=candidates - duplicates - int(scored.size),
        texts=texts,
        evidence=evidence,
    )


def audit_generated(
    suspect_texts: Sequence[object],
    scheme: Scheme,
    key: int,
    *,
    shown: Sequence[object] = (),
) -> AuditResult:
    """`suspect_texts`: token ids of what the suspect wrote; `shown`: the prompts it was given
    (their pairs are dropped)."""
    w = scheme.width
    chunks = []
    for t in suspect_texts:
        toks = _as_tokens(t)
        if toks.size > w:
            chunks.append(hashing.pair_hashes(hashing.context_hashes(toks, w), toks)[w:])
    pairs = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.uint64)
    return _decide("generated", pairs, text_pairs(shown, w), scheme, key, len(suspect_texts))


Predictor = Callable[[list[np.ndarray]], list[np.ndarray]]
"""Token ids of texts -> the suspect's top-1 next-token prediction at every position."""


def audit_reading(
    predict: Predictor,
    our_texts: Sequence[object],
    scheme: Scheme,
    key: int,
    *,
    batch: int = 8,
    against_reference: bool = False,
) -> AuditResult:
    """Feed our watermarked texts to the suspect and score its predictions in their contexts.

    A model that never saw our text predicts from the prefix alone, so its prediction is green
    with probability gamma, unless it copies a (context, token) pair from earlier in the same
    text (in-context copying of a pair that was itself green-biased): such predictions are
    dropped. What remains can only be green more often than gamma if the model learnt our
    key's preferences from text it was trained on. `against_reference`: `predict` gives
    `boosted_tokens` against a reference model (the result and its evidence say so)."""
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
    mode = "reading-vs-reference" if against_reference else "reading"
    result = _decide(mode, pairs, np.zeros(0, dtype=np.uint64), scheme, key, len(texts))
    candidates = result.candidates + filtered
    evidence = [
        f"{candidates} {'most raised tokens' if against_reference else 'predictions'} on "
        f"{len(texts)} of our texts; {filtered} that copy a pair "
        "from earlier in the same text and "
        f"{result.duplicates} repeats dropped",
        *result.evidence[1:],
    ]
    return AuditResult(
        **{**result.to_dict(), "candidates": candidates, "filtered": filtered,
           "evidence": evidence}
    )


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


def boosted_tokens(suspect_logits: Any, reference_logits: Any, candidates: int = 10) -> Any:
    """Per position, the token among the reference model's `candidates` most likely whose
    log-probability the suspect raised most (torch tensors, [..., vocab] -> [...]).

    A function of the two models and the prefix only, never of our key: under the null each
    chosen (context, token) pair is green with probability gamma, as a top-1 prediction is.
    A student trained on our text has raised the green tokens after each context a little;
    the top-1 prediction shows that only where the rise overturns the reference's favourite,
    the most raised candidate shows it at every position."""
    import torch

    ref = torch.log_softmax(reference_logits.float(), dim=-1)
    sus = torch.log_softmax(suspect_logits.float(), dim=-1)
    top = ref.topk(min(candidates, ref.shape[-1]), dim=-1).indices
    gain = sus.gather(-1, top) - ref.gather(-1, top)
    return top.gather(-1, gain.argmax(dim=-1, keepdim=True)).squeeze(-1)


def torch_predictor(
    model: Any,
    pad_id: int = 0,
    max_len: int = 1024,
    *,
    reference: Any | None = None,
    candidates: int = 10,
) -> Predictor:
    """Top-1 predictions of a transformers causal LM (right-padded batches); with `reference`
    (the public model the suspect was fine-tuned from), its `boosted_tokens` instead."""
    import torch

    def logits_of(net: Any, ids: Any, mask: Any) -> Any:
        with torch.inference_mode():
            return net(input_ids=ids, attention_mask=mask).logits

    def predict(group: list[np.ndarray]) -> list[np.ndarray]:
        group = [g[:max_len] for g in group]
        width = max(len(g) for g in group)
        ids = torch.full((len(group), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        for r, g in enumerate(group):
            ids[r, : len(g)] = torch.from_numpy(g.astype(np.int64))
            mask[r, : len(g)] = 1
        logits = logits_of(model, ids, mask)
        if reference is None:
            top = logits.argmax(-1)
        else:
            top = boosted_tokens(logits, logits_of(reference, ids, mask), candidates)
        chosen = top.numpy().astype(np.uint64)
        return [chosen[r, : len(g)] for r, g in enumerate(group)]

    return predict
