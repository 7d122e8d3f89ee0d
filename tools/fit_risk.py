"""Fits the shipped account risk model's weights on a simulated training scenario and writes
src/stillwatch/defaults/risk_model.json (thresholds are kept; recalibrate afterwards):

    python tools/fit_risk.py --corpora ../shared/data/corpora [--scenario scenarios/train.yaml]
    stillwatch simulate scenarios/calibrate.yaml --out /tmp/calib --corpora ...
    stillwatch calibrate --benign /tmp/calib/events.jsonl.gz --accounts \
        /tmp/calib/accounts.jsonl.gz --target-fpr 0.0005 \
        --out src/stillwatch/defaults/risk_model.json
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from stillwatch.detect.account import FEATURES
from stillwatch.detect.risk import RiskModel
from stillwatch.detect.training import snapshots_of_directory
from stillwatch.simulate.corpora import load_corpora
from stillwatch.simulate.generator import generate
from stillwatch.simulate.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = ROOT / "src/stillwatch/defaults"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--corpora", default=None)
    ap.add_argument("--scenario", default=str(ROOT / "scenarios/train.yaml"))
    ap.add_argument("--data", default=None, help="reuse a simulated directory")
    ap.add_argument(
        "--no-corpus-signal",
        action="store_true",
        help="fit the model used when the corpus-membership signal is off",
    )
    args = ap.parse_args()
    use_corpus = not args.no_corpus_signal
    out = DEFAULTS / ("risk_model.json" if use_corpus else "risk_model_nocorpus.json")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data or tmp)
        if not args.data:
            generate(load_scenario(args.scenario), load_corpora(args.corpora), data)
        snaps = snapshots_of_directory(data, args.corpora, use_corpus)
    model = snaps.fit()
    old = RiskModel.load(out) if out.exists() else None
    model = model.with_thresholds(
        old.threshold if old else 0.9,
        old.block_threshold if old else 0.999,
        notes={
            "fit_on": Path(args.scenario).name,
            "snapshots": len(snaps.x),
            "attacker": sum(snaps.y),
        },
    )
    model.save(out)
    print(f"{len(snaps.x)} snapshots ({sum(snaps.y)} attacker) -> {out}")
    for w, name in sorted(zip(model.weights, FEATURES, strict=True)):
        print(f"{w:+.3f} {name}")


if __name__ == "__main__":
    main()
