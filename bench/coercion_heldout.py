"""The coercion signal on what it was not fit on: leave one phrasing family out, leave one
language out (two of the fixture's languages, sv and fi, are not in the lexicon at all), and
the share of real benign prompts flagged (on the half of them the model was not fit on).

    python bench/coercion_heldout.py [--corpora ../shared/data/corpora]

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
    ap.add_argument("--out", default=str(ROOT / "bench/results/coercion_heldout.json"))
    args = ap.parse_args()
    r = evaluate_coercion(args.corpora)
    Path(args.out).write_text(json.dumps(r, indent=1, ensure_ascii=False) + "\n")
    fx = r["fixture"]
    print(f"fixture: {fx['phrasings']} phrasings, {fx['families']} families, "
          f"languages {', '.join(fx['languages'])}")
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
