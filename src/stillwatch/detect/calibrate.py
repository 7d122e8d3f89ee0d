"""Fitting the operating thresholds on an operator's own benign traffic.

The detector runs over the benign log exactly as it would live; each account's highest risk
is what decides whether it would have been flagged. The review threshold is set just above the
risk of the account at the target false-positive rate; the block threshold just above the
riskiest benign account (never below the shipped bar), so that no account of the calibration
traffic would have been blocked.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from stillwatch.detect.factory import build_detector
from stillwatch.detect.risk import RiskModel
from stillwatch.detect.runner import run_detection
from stillwatch.events import Account, read_events_in_order


def calibrate(
    benign_events: str | os.PathLike[str],
    *,
    target_fpr: float = 0.001,
    model: str | os.PathLike[str] | None = None,
    accounts: Mapping[str, Account] | None = None,
    corpora: str | os.PathLike[str] | None = None,
    use_corpus: bool = True,
) -> tuple[RiskModel, dict[str, Any]]:
    if not 0 < target_fpr < 1:
        raise ValueError("target FPR must be between 0 and 1")
    base = RiskModel.load(model, corpus_signal=use_corpus)
    probe = base.with_thresholds(1.0, 1.0)  # flag nothing while measuring
    detector = build_detector(
        model=model, accounts=accounts, corpora=corpora, use_corpus=use_corpus
    )
    detector.model = probe  # type: ignore[attr-defined]
    verdicts = run_detection(read_events_in_order(benign_events), detector)
    risks = sorted((v.risk for v in verdicts), reverse=True)
    if not risks:
        raise ValueError(f"{benign_events}: no account traffic to calibrate on")
    allowed = int(target_fpr * len(risks))
    at = risks[allowed] if allowed < len(risks) else 0.0
    threshold = min(0.999999, max(at + 1e-6, 0.5))
    block = min(0.9999999, max(base.block_threshold, risks[0] + 1e-6, threshold))
    report = {
        "accounts": len(risks),
        "target_fpr": target_fpr,
        "threshold": threshold,
        "block_threshold": block,
        "expected_flagged": sum(1 for r in risks if r >= threshold),
        "highest_benign_risk": risks[0],
    }
    return base.with_thresholds(threshold, block, notes={"calibration": report}), report
