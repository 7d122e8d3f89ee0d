"""Fitting the risk model's weights from a labelled log (a simulated one, or an operator's
hand-labelled traffic): causal snapshots of every account's features, the way the detector
sees them live, at its 3rd, 5th, 8th, 13th, ... request."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from stillwatch.detect.factory import build_detector
from stillwatch.detect.risk import RiskModel, fit
from stillwatch.detect.runner import context_of
from stillwatch.events import Account, Label, RequestEvent

SNAPSHOTS = frozenset({3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987})


@dataclass
class Snapshots:
    x: list[list[float]]
    y: list[int]
    persona: list[str]

    def without(self, personas: Iterable[str]) -> Snapshots:
        drop = set(personas)
        keep = [i for i, p in enumerate(self.persona) if p not in drop]
        return Snapshots(
            [self.x[i] for i in keep], [self.y[i] for i in keep], [self.persona[i] for i in keep]
        )

    def fit(self) -> RiskModel:
        return fit(self.x, self.y)


def collect_snapshots(
    events: Iterable[RequestEvent],
    labels: Mapping[str, Label],
    accounts: Mapping[str, Account] | None = None,
    corpora: str | os.PathLike[str] | None = None,
    use_corpus: bool = True,
) -> Snapshots:
    detector = build_detector(corpora=corpora, accounts=accounts or {}, use_corpus=use_corpus)
    out = Snapshots([], [], [])
    counts: dict[str, int] = {}
    for event in events:
        account = event.account_id
        if account is None or account not in labels or event.action == "rejected":
            continue
        ctx = context_of(event)
        detector.decide(ctx)
        detector.record(event)
        k = counts[account] = counts.get(account, 0) + 1
        if k in SNAPSHOTS:
            out.x.append(detector.snapshot(account, ctx.ts))  # type: ignore[attr-defined]
            out.y.append(int(labels[account].label == "attacker"))
            out.persona.append(labels[account].persona or "")
    return out


def snapshots_of_directory(
    data: str | os.PathLike[str],
    corpora: str | os.PathLike[str] | None = None,
    use_corpus: bool = True,
) -> Snapshots:
    """Snapshots of a simulated directory (events, accounts and labels as `simulate` writes)."""
    from pathlib import Path

    from stillwatch.detect.factory import load_accounts
    from stillwatch.events import read_events_in_order, read_records

    d = Path(data)
    labels = {x.account_id: x for x in read_records(d / "labels.jsonl.gz", Label)}
    return collect_snapshots(
        read_events_in_order(d / "events.jsonl.gz"),
        labels,
        load_accounts(d / "accounts.jsonl.gz"),
        corpora,
        use_corpus,
    )
