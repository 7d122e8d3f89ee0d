"""Traitor tracing on SmolLM2 answers: leaked texts of 300 tokens written under the keys of
`--accounts` accounts, traced against `--keys` account keys (Bonferroni at each of `--alphas`). The
right account must be named; for unwatermarked text (human text from the corpora and
unwatermarked answers) no one may be named beyond the stated false-positive rate.

Answers are generated in batches whose rows each carry a different account's key, cached in
bench/.cache/trace/answers.jsonl (resumable: rerun to add more).

    python bench/watermark_trace.py [--texts 500] [--accounts 100] [--keys 1000] [--alphas ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from stillwatch.watermark import GreenList, trace
from stillwatch.watermark.keys import KeyId, MasterKeys
from teacher_cache import corpus_prompts, read, read_jsonl

CACHE = Path(__file__).parent / ".cache" / "trace" / "answers.jsonl"
OUT = Path(__file__).parent / "results" / "watermark_trace.json"
LENGTH = 300


def cached() -> list[dict]:
    return read_jsonl(CACHE)


def generate(n: int, accounts: int, batch: int, budget_s: float) -> list[dict]:
    rows = cached()
    if len(rows) >= n:
        return rows[:n]
    import torch

    from stillwatch.watermark import teacher
    from stillwatch.watermark.model import chat_ids, load_smollm2

    keys = MasterKeys.load()
    lm = load_smollm2(threads=2)
    prompts = corpus_prompts(4000 + n)[3000:]  # apart from the quality and radioactivity sets
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(CACHE, "a") as fh:
        for start in range(len(rows), n, batch):
            if time.time() - t0 > budget_s:
                print(f"time budget reached at {start} texts", file=sys.stderr)
                break
            idx = list(range(start, min(n, start + batch)))
            accts = [f"acct_{i % accounts:04d}" for i in idx]
            ids = [chat_ids(lm.tokenizer, [{"role": "user", "content": prompts[i]}])[-384:]
                   for i in idx]
            torch.manual_seed(start)
            outs = teacher.generate(
                lm, ids, scheme=GreenList(), keys=[keys.derive(KeyId(1, a)) for a in accts],
                max_new_tokens=LENGTH, temperature=1.0, extra={"min_new_tokens": LENGTH},
            )
            for i, a, o in zip(idx, accts, outs, strict=True):
                fh.write(json.dumps({"i": i, "account": a, "ids": o}) + "\n")
            fh.flush()
            print(f"{start + len(idx)}/{n} leaked texts", file=sys.stderr, flush=True)
    return cached()[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--texts", type=int, default=500)
    ap.add_argument("--accounts", type=int, default=100)
    ap.add_argument("--keys", type=int, default=1000)
    ap.add_argument("--alphas", default="1e-3,1e-4,1e-6",
                    help="stated false-positive rates per text (family-wise over the keys)")
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--budget-minutes", type=float, default=60)
    args = ap.parse_args()
    alphas = [float(a) for a in args.alphas.split(",")]
    rows = generate(args.texts, args.accounts, args.batch, args.budget_minutes * 60)
    keys = MasterKeys.load()
    cands = [(str(KeyId(1)), keys.derive(KeyId(1)))]
    cands += [(str(KeyId(1, f"acct_{i:04d}")), keys.derive(KeyId(1, f"acct_{i:04d}")))
              for i in range(args.keys - 1)]
    from stillwatch.watermark.tokenizer import encode_many
    from watermark_null import human_texts

    clean = [t[:LENGTH] for t in encode_many(human_texts(1000)) if t.size >= 100]
    clean += [np.asarray(r["ids"], dtype=np.uint64) for r in read("none") if len(r["ids"]) >= 100]
    n = len(rows)
    accounts_seen = len({r["account"] for r in rows})
    print(f"{n} leaked texts of {LENGTH} tokens from {accounts_seen} accounts, "
          f"{len(cands)} candidate keys (Bonferroni); {len(clean)} unwatermarked texts")
    results = []
    t_trace = 0.0
    for alpha in alphas:
        t0 = time.time()
        named = [trace(np.asarray(r["ids"], dtype=np.uint64), GreenList(), cands,
                       alpha=alpha).named for r in rows]
        t_trace = time.time() - t0
        right = sum(nm == f"v1:{r['account']}" for nm, r in zip(named, rows, strict=True))
        none = sum(nm is None for nm in named)
        falsely = sum(trace(t, GreenList(), cands, alpha=alpha).named is not None for t in clean)
        results.append({"alpha": alpha, "right": right, "wrong": n - right - none,
                        "none": none, "clean_named": falsely})
        print(f"  alpha {alpha:g}: right account {right}/{n} = {right / max(n, 1):.2%}, "
              f"wrong {n - right - none}, no one {none}; "
              f"unwatermarked with anyone named {falsely}/{len(clean)}")
    # the correction itself: at a large alpha the family-wise rate is visible on clean text
    for alpha in (0.1, 0.01):
        falsely = sum(trace(t, GreenList(), cands, alpha=alpha).named is not None for t in clean)
        results.append({"alpha": alpha, "clean_named": falsely, "check": "family-wise rate"})
        print(f"  check, alpha {alpha:g}: unwatermarked with anyone named "
              f"{falsely}/{len(clean)} = {falsely / max(len(clean), 1):.3f} (at most {alpha:g})")
    print(f"  tracing time: {t_trace / max(n, 1) * 1000:.1f} ms per text against "
          f"{len(cands)} keys")
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps({
        "texts": n, "accounts": accounts_seen, "keys": len(cands), "clean_texts": len(clean),
        "results": results, "ms_per_text": t_trace / max(n, 1) * 1000,
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
