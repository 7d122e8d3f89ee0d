"""The tokenizer detection uses: SmolLM2's, shipped with the package as one JSON file, so that
detection needs neither the model nor transformers. Another model's `tokenizer.json` can be
named instead."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

SHIPPED = "smollm2-tokenizer.json"


@lru_cache(maxsize=4)
def load_tokenizer(path: str | None = None) -> Tokenizer:
    if path is None:
        with resources.as_file(resources.files("stillwatch.watermark") / "data" / SHIPPED) as p:
            return Tokenizer.from_file(str(p))
    if not Path(path).is_file():
        raise FileNotFoundError(f"no tokenizer file at {path}")
    return Tokenizer.from_file(path)


def encode(text: str, tokenizer: Tokenizer | None = None) -> np.ndarray:
    tok = tokenizer or load_tokenizer()
    return np.asarray(tok.encode(text, add_special_tokens=False).ids, dtype=np.uint64)


def encode_many(texts: list[str], tokenizer: Tokenizer | None = None) -> list[np.ndarray]:
    tok = tokenizer or load_tokenizer()
    return [
        np.asarray(e.ids, dtype=np.uint64)
        for e in tok.encode_batch(texts, add_special_tokens=False)
    ]
