"""Watermarked generation with transformers: one `LogitsProcessor` per scheme.

The green list of a context is the keyed hash of (context, token) for every token of the
vocabulary, the same function the detector evaluates, so generation and detection cannot drift
apart. A batch may carry a different key per row (one account's key per request).

transformers applies custom processors before its sampling warpers, so the Gumbel processor
does the temperature and top-p itself and hands back a one-hot row: use it with
`do_sample=False` (`generate_kwargs` does this).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessor

from stillwatch.watermark import hashing
from stillwatch.watermark.schemes import GreenList, GumbelMax, Scheme


def _context_of(input_ids: torch.Tensor, width: int) -> np.ndarray:
    """The detector's context hash of the position after the last token of each row."""
    ids = input_ids[:, -width:].cpu().numpy().astype(np.uint64)
    if ids.shape[1] == 0:
        return np.zeros(ids.shape[0], dtype=np.uint64)
    return hashing.context_of([ids[:, -j] for j in range(1, ids.shape[1] + 1)])


class _Keyed(LogitsProcessor):
    def __init__(self, scheme: Scheme, keys: list[int | None], vocab_size: int) -> None:
        self.scheme = scheme
        self.keys = keys  # None: this row is not watermarked
        self._tok = np.arange(vocab_size, dtype=np.uint64) * hashing._TOKEN
        with np.errstate(over="ignore"):
            self._salt = [None if k is None else hashing.mix64(np.uint64(k) + hashing._GOLDEN)
                          for k in keys]

    def _vocab_hashes_rows(self, ctx: np.ndarray, rows: list[int]) -> np.ndarray:
        """The keyed hash of (context, token) for every token, for the keyed rows of a batch
        at once: shape (len(rows), vocabulary)."""
        salt = np.array([self._salt[r] for r in rows], dtype=np.uint64)
        with np.errstate(over="ignore"):
            return hashing.mix64(hashing.mix64(ctx[rows, None] ^ self._tok) ^ salt[:, None])

    def _rows(self, input_ids: torch.Tensor) -> np.ndarray:
        if input_ids.shape[0] != len(self.keys):
            raise ValueError("one key per row of the batch")
        return _context_of(input_ids, self.scheme.width)


class GreenListProcessor(_Keyed):
    """Adds delta to the logits of the context's green tokens."""

    scheme: GreenList

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        ctx = self._rows(input_ids)
        v = scores.shape[-1]
        shift = np.zeros((scores.shape[0], v), dtype=np.float32)
        rows = [r for r in range(len(ctx)) if self._salt[r] is not None]
        if rows:
            shift[rows] = self.scheme.logits_shift(self._vocab_hashes_rows(ctx, rows)[:, :v])
        return scores + torch.from_numpy(shift).to(scores.device, scores.dtype)


class GumbelProcessor(_Keyed):
    """Picks argmax r ** (1/p) under the temperature and top-p of the request; rows without a
    key are sampled from p with torch's generator.

    The keyed choice is a function of (key, context, p): a context met again in the same
    answer would pick the same token again and the answer would loop. So each context is
    keyed once per answer; when it recurs, the token is sampled from p instead. The detector
    needs no change: it counts each (context, token) pair once anyway."""

    scheme: GumbelMax

    def __init__(
        self,
        scheme: GumbelMax,
        keys: list[int | None],
        vocab_size: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
    ) -> None:
        super().__init__(scheme, keys, vocab_size)
        self.temperature = temperature
        self.top_p = top_p
        self._seen: list[set[int]] = [set() for _ in keys]  # contexts keyed so far, per row

    def _probs(self, scores: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(scores.float() / max(self.temperature, 1e-6), dim=-1)
        if self.top_p < 1.0:
            sorted_p, order = torch.sort(probs, descending=True, dim=-1)
            drop = (sorted_p.cumsum(-1) - sorted_p) > self.top_p
            sorted_p = sorted_p.masked_fill(drop, 0.0)
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
            probs = probs / probs.sum(-1, keepdim=True)
        return probs

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        ctx = self._rows(input_ids)
        v = scores.shape[-1]
        probs = self._probs(scores)
        out = torch.full_like(scores, float("-inf"))
        p_np = probs.cpu().numpy().astype(np.float64)
        keyed_rows = []
        for r in range(len(ctx)):
            if self._salt[r] is not None and int(ctx[r]) not in self._seen[r]:
                self._seen[r].add(int(ctx[r]))
                keyed_rows.append(r)
        hashes = dict(zip(keyed_rows, self._vocab_hashes_rows(ctx, keyed_rows), strict=True))
        for row in range(len(ctx)):
            if self.temperature <= 0:
                choice = int(torch.argmax(scores[row]))
            elif row not in hashes:
                choice = int(torch.multinomial(probs[row], 1))
            else:
                choice = self.scheme.choose(hashes[row][:v], p_np[row])
            out[row, choice] = 0.0
        return out


def processor_for(
    scheme: Scheme,
    keys: list[int | None],
    vocab_size: int,
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
) -> LogitsProcessor:
    if isinstance(scheme, GreenList):
        return GreenListProcessor(scheme, keys, vocab_size)
    return GumbelProcessor(scheme, keys, vocab_size, temperature, top_p)


def generate_kwargs(
    scheme: Scheme | None,
    keys: list[int | None],
    vocab_size: int,
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
) -> dict[str, Any]:
    """The `model.generate` arguments that sample under `scheme` (None: no watermark)."""
    greedy = temperature <= 0
    sampling: dict[str, Any] = (
        {"do_sample": False}
        if greedy
        else {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}
    )
    if scheme is None or all(k is None for k in keys):
        return sampling
    proc = processor_for(scheme, keys, vocab_size, temperature=temperature, top_p=top_p)
    if isinstance(scheme, GumbelMax):
        return {"do_sample": False, "logits_processor": [proc]}
    return {**sampling, "logits_processor": [proc]}
