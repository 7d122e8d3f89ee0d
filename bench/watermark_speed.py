"""Detection speed: stillwatch's vectorised detector beside transformers' `WatermarkDetector`,
on the same token ids, each including its de-duplication and p-value. Tokenisation (the
`tokenizers` library, shipped SmolLM2 tokenizer) is timed separately.

    python bench/watermark_speed.py [--tokens 10000000] [--baseline-tokens 20000]

The baseline is far slower, so it runs on the first `--baseline-tokens` tokens only; the ratio
compares tokens per second on that same slice, then stillwatch alone on the full set.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from stillwatch.watermark import GreenList, GumbelMax, score_many
from stillwatch.watermark.keys import MasterKeys
from teacher_cache import HF_CONFIG

OUT = Path(__file__).parent / "results" / "watermark_speed.json"


def texts_of(tokens: int, length: int, rng: np.random.Generator) -> list[np.ndarray]:
    flat = rng.integers(0, 49152, size=tokens).astype(np.uint64)
    return [flat[i : i + length] for i in range(0, tokens, length)]


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=10_000_000)
    ap.add_argument("--baseline-tokens", type=int, default=20_000)
    ap.add_argument("--length", type=int, default=200)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    key = MasterKeys.load().derive("v1")
    small = texts_of(args.baseline_tokens, args.length, rng)

    import torch
    from transformers import AutoConfig, WatermarkDetector, WatermarkingConfig

    from stillwatch.watermark.model import gguf_path

    path = gguf_path()
    cfg = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
    det = WatermarkDetector(
        cfg, "cpu", WatermarkingConfig(**HF_CONFIG), ignore_repeated_ngrams=True
    )
    batch = torch.tensor(np.stack(small).astype(np.int64))

    def baseline() -> None:
        det(batch, return_dict=True)

    t_base = best_of(baseline, 1)
    t_ours_small = best_of(lambda: score_many(small, GreenList(), key))
    base_rate = args.baseline_tokens / t_base
    ours_small = args.baseline_tokens / t_ours_small
    print(f"same {args.baseline_tokens:,} tokens ({len(small)} texts of {args.length}):")
    print(f"  transformers WatermarkDetector  {base_rate:14,.0f} tokens/s")
    print(f"  stillwatch greenlist            {ours_small:14,.0f} tokens/s")
    print(f"  ratio                           {ours_small / base_rate:14,.0f}x")

    big = texts_of(args.tokens, args.length, rng)
    rates = {}
    for name, scheme in (("greenlist", GreenList()), ("gumbel", GumbelMax())):
        t = best_of(lambda s=scheme: score_many(big, s, key))
        rates[name] = args.tokens / t
        print(f"stillwatch {name:9s} on {args.tokens:,} tokens: {rates[name]:14,.0f} tokens/s/key")
    # tracing: many keys on the same text (the pairs are hashed and de-duplicated once)
    from stillwatch.watermark.detect import score

    keys = np.array([MasterKeys.load().derive(f"v1:a{i}") for i in range(1000)], np.uint64)
    one = big[0]
    t = best_of(lambda: score(one, GreenList(), keys))
    key_tokens = one.size * keys.size / t
    print(f"tracing: 1,000 keys x {one.size} tokens: {key_tokens:14,.0f} key-tokens/s")

    from stillwatch.watermark.tokenizer import encode_many, load_tokenizer

    tok = load_tokenizer()
    words = [
        "the", "model", "answers", "each", "question", "with", "care", "and", "a", "short",
        "list", "of", "steps", "tokenisation", "Überraschung", "2026", "{x: 1}", "naïve",
    ]
    docs = [" ".join(rng.choice(words, 150)) for _ in range(2000)]
    t = best_of(lambda: encode_many(docs, tok), 2)
    n_tok = sum(len(x) for x in encode_many(docs, tok))
    print(f"tokenisation (tokenizers, batch): {n_tok / t:14,.0f} tokens/s")
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps({
        "baseline_tokens": args.baseline_tokens,
        "transformers_tokens_per_s": base_rate,
        "stillwatch_same_tokens_per_s": ours_small,
        "ratio": ours_small / base_rate,
        "tokens": args.tokens,
        "stillwatch_tokens_per_s_per_key": rates,
        "tracing_key_tokens_per_s": key_tokens,
        "tokenisation_tokens_per_s": n_tok / t,
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
