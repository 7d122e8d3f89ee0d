"""Fits the coercion model on the committed fixture against real benign prompts and writes
src/stillwatch/defaults/coercion_model.json. Run when the fixture or the lexicon changes:

    python tools/fit_coercion.py [--corpora ../shared/data/corpora]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stillwatch.detect.coercion_eval import benign_prompts, load_fixture
from stillwatch.detect.signals.coercion import fit_coercion

OUT = Path(__file__).resolve().parents[1] / "src/stillwatch/defaults/coercion_model.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--corpora", default=None)
    args = ap.parse_args()
    fixture = load_fixture()
    negatives = benign_prompts(args.corpora) + fixture.negatives
    model = fit_coercion([p.text for p in fixture.phrasings], negatives)
    OUT.write_text(model.to_json() + "\n")
    print(f"{len(fixture.phrasings)} phrasings, {len(negatives)} benign prompts -> {OUT}")
    print(model)


if __name__ == "__main__":
    main()
