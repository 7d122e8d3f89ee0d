"""Is the null honest? Real human text from the corpora and unwatermarked SmolLM2 answers,
scored under 1,000 random keys: the share of p-values at or below alpha must fall inside its
binomial confidence interval around alpha, for alpha = 0.1, 0.01 and 0.001.

Exact binomial p-values are discrete; stillwatch's `p_value` breaks ties with a keyed uniform
and is exactly uniform under the null, while `p_upper` (the plain tail) is conservative. Both
are reported; the tail shares of `p_value` are the test.

    python bench/watermark_null.py [--keys 1000] [--texts 1000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import secrets
import sys
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).parent))
from stillwatch.watermark import GreenList, GumbelMax, score_many
from stillwatch.watermark.keys import MasterKeys
from stillwatch.watermark.tokenizer import encode_many, load_tokenizer
from teacher_cache import CORPORA, read

OUT = Path(__file__).parent / "results" / "watermark_null.json"
ALPHAS = (0.1, 0.01, 0.001)


def human_texts(limit: int, seed: int = 3) -> list[str]:
    from stillwatch.simulate.corpora import load_corpora

    c = load_corpora(CORPORA if CORPORA.exists() else None)
    pool = [t for t in c.chat if len(t) >= 200]
    rng = np.random.default_rng(seed)
    return [pool[i] for i in rng.permutation(len(pool))[:limit]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keys", type=int, default=1000)
    ap.add_argument("--texts", type=int, default=1000)
    ap.add_argument("--confidence", type=float, default=0.99)
    ap.add_argument("--seed", type=int, default=None, help="key seed (default: random)")
    args = ap.parse_args()
    tok = load_tokenizer()
    corpora = {
        "human (corpora)": [t for t in encode_many(human_texts(args.texts), tok) if t.size >= 20],
        "unwatermarked SmolLM2": [
            np.asarray(r["ids"], dtype=np.uint64) for r in read("none") if len(r["ids"]) >= 20
        ],
    }
    seed = args.seed if args.seed is not None else secrets.randbits(32)
    master = MasterKeys({1: hashlib.sha256(f"null-{seed}".encode()).digest()})
    print(f"keys from seed {seed}")
    keys = [master.derive(f"v1:null{i}") for i in range(args.keys)]
    report: dict[str, dict] = {}
    ok = True
    for scheme in (GreenList(), GumbelMax()):
        for name, texts in corpora.items():
            if not texts:
                print(f"skip {name}: no texts (run bench/teacher_cache.py --setting none)")
                continue
            ps, pus = [], []
            for k in keys:
                n, stat, pk = score_many(texts, scheme, k)
                ps.append(pk)
                pus.append(scheme.pvalues(n, stat))
            p, pu = np.concatenate(ps), np.concatenate(pus)
            row = {"texts": len(texts), "p_values": int(p.size)}
            print(f"\n{scheme.name:9s} | {name}: {len(texts)} texts x {len(keys)} keys")
            for a in ALPHAS:
                hits = int((p <= a).sum())
                ci = stats.binomtest(hits, p.size, a).proportion_ci(args.confidence)
                inside = ci.low <= a <= ci.high
                ok &= inside
                share_upper = float((pu <= a).mean())
                row[f"alpha={a:g}"] = {
                    "share": hits / p.size, "ci": [ci.low, ci.high], "inside": inside,
                    "share_p_upper": share_upper,
                }
                print(
                    f"  alpha {a:<6g} share {hits / p.size:.5f}  {args.confidence:.0%} CI "
                    f"[{ci.low:.5f}, {ci.high:.5f}]  {'inside' if inside else 'OUTSIDE'}  "
                    f"(conservative tail: {share_upper:.5f})"
                )
            report[f"{scheme.name} | {name}"] = row
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(
        {"keys": args.keys, "seed": seed, "all_inside": ok, "rows": report}, indent=2
    ))
    print(f"\nall tail shares inside their interval: {ok}")


if __name__ == "__main__":
    main()
