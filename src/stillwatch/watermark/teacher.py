"""Batched generation from a loaded model under a watermark: what the local upstream serves and
what the benchmarks' teacher writes. Rows of one batch may carry different keys."""

from __future__ import annotations

from typing import Any

import torch

from stillwatch.watermark.generation import generate_kwargs
from stillwatch.watermark.model import LoadedModel
from stillwatch.watermark.schemes import Scheme


def generate(
    lm: LoadedModel,
    prompts: list[list[int]],
    *,
    scheme: Scheme | None,
    keys: list[int | None],
    max_new_tokens: int = 200,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int | None = None,
    streamer: Any = None,
    extra: dict[str, Any] | None = None,
) -> list[list[int]]:
    """Completion token ids per prompt, cut at the end-of-turn token."""
    if len(keys) != len(prompts):
        raise ValueError("one key (or None) per prompt")
    if seed is not None:
        torch.manual_seed(seed)
    width = max(len(p) for p in prompts)
    pad = lm.tokenizer.pad_token_id
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        mask[i, width - len(p) :] = 1
    kwargs = generate_kwargs(
        scheme, keys, lm.vocab_size, temperature=temperature, top_p=top_p
    )
    kwargs.update(extra or {})
    with torch.inference_mode():
        out = lm.model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            pad_token_id=pad,
            eos_token_id=lm.tokenizer.eos_token_id,
            streamer=streamer,
            **kwargs,
        )
    eos = lm.tokenizer.eos_token_id
    result = []
    for row in out[:, width:].tolist():
        result.append(row[: row.index(eos)] if eos in row else row)
    return result
