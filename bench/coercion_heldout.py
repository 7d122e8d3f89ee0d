"""The coercion signal on what it was not fit on: leave one phrasing family out, leave one
language out (six of the fixture's languages, sv fi da cs uk el, are not in the lexicon at
all), and the share of real benign prompts flagged (on the half of them the stages were not
fit on). Both stages when `stillwatch[multilingual]` is installed (each held-out fit refits
both; about 2 minutes, most of it embedding 1,900 prompts), `--lexicon-only` otherwise.

    python bench/coercion_heldout.py [--corpora ../shared/data/corpora] [--lexicon-only]

Writes bench/results/coercion_heldout.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stillwatch.detect.coercion_eval import evaluate_coercion

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--corpora", default=None)
    ap.add_argument("--lexicon-only", action="store_true", help="leave the encoder stage out")
    ap.add_argument("--out", default=str(ROOT / "bench/results/coercion_heldout.json"))
    args = ap.parse_args()
    r = evaluate_coercion(args.corpora, encoder=not args.lexicon_only)
    Path(args.out).write_text(json.dumps(r, indent=1, ensure_ascii=False) + "\n")
    fx = r["fixture"]
    print(f"fixture: {fx['phrasings']} phrasings, {fx['families']} families, "
          f"languages {', '.join(fx['languages'])}")
    gated = r["gated_benign"]
    print(f"stages: {' + '.join(r['stages'])}"
          + (f" ({gated} benign prompts reach the encoder)" if gated else ""))
    for key, title in (("leave_one_family_out", "family"), ("leave_one_language_out", "language")):
        rows = r[key]
        print(f"leave one {title} out: {rows['all']['flagged']}/{rows['all']['phrasings']} "
              f"= {100 * rows['all']['rate']:.1f}% flagged")
        for name, row in rows.items():
            if name != "all":
                print(f"  {name:<26} {row['flagged']:>3}/{row['phrasings']:<3}")
    b = r["benign_held_out"]
    print(f"benign prompts not fit on: {b['flagged']}/{b['prompts']} = "
          f"{100 * b['rate']:.3f}% flagged")
    s = r["shipped_model_on_all_benign"]
    print(f"shipped model on all benign prompts: {s['flagged']}/{s['prompts']} = "
          f"{100 * s['rate']:.3f}%")


if __name__ == "__main__":
    main()
