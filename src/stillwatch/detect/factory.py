"""Building a detector by name, the same way for the gateway, `detect`, `calibrate` and the
causality check."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from stillwatch.detect.base import Detector
from stillwatch.detect.signals import CorpusIndex, SignalExtractor
from stillwatch.events import Account, read_records

DETECTOR_NAMES = ("distillation", "volume", "null")


def _texts(path: Path) -> Iterable[str]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            item = json.loads(line)
            if isinstance(item, str):
                yield item
            elif isinstance(item, dict):
                text = item.get("prompt") or item.get("text") or item.get("instruction")
                if isinstance(text, str):
                    yield text


def build_corpus_index(
    corpora: str | os.PathLike[str] | None = None,
    extra: Iterable[str | os.PathLike[str]] = (),
) -> CorpusIndex:
    """The public corpora attackers sweep (math, code, instructions) from `corpora` (or
    $STILLWATCH_CORPORA, or the shipped samples), plus any JSONL files an operator adds."""
    from stillwatch.simulate.corpora import load_corpora

    c = load_corpora(corpora, attack_only=True)
    index = CorpusIndex()
    index.add("math", c.math)
    index.add("code", c.code)
    index.add("instructions", c.instructions)
    for path in extra:
        index.add(Path(path).stem, _texts(Path(path)))
    return index


def load_accounts(path: str | os.PathLike[str] | None) -> dict[str, Account]:
    if path is None:
        return {}
    return {a.account_id: a for a in read_records(path, Account)}


def build_detector(
    name: str = "distillation",
    *,
    model: str | os.PathLike[str] | None = None,
    accounts: Mapping[str, Account] | None = None,
    corpora: str | os.PathLike[str] | None = None,
    extra_corpora: Iterable[str | os.PathLike[str]] = (),
    use_corpus: bool = True,
    index: CorpusIndex | None = None,
    share: Any = None,
    background_clustering: bool = False,
    signal_memo: int = 20_000,
    coercion_encoder: bool = True,
) -> Detector:
    from stillwatch.detect.baselines import DETECTORS

    if name in DETECTORS:
        return DETECTORS[name]()
    if name != "distillation":
        raise ValueError(f"unknown detector {name!r}; available: {', '.join(DETECTOR_NAMES)}")
    from stillwatch.detect.detector import DistillationDetector
    from stillwatch.detect.risk import RiskModel

    if use_corpus and index is None:
        index = build_corpus_index(corpora, extra_corpora)
    signals = SignalExtractor(
        corpus=index, use_corpus=use_corpus, memo=signal_memo, encoder=coercion_encoder
    )
    from stillwatch.detect.campaigns import BackgroundClusterer

    return DistillationDetector(
        RiskModel.load(model, corpus_signal=use_corpus),
        signals,
        accounts or {},
        share=share,
        clusterer=BackgroundClusterer() if background_clustering else None,
    )
