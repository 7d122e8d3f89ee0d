"""The causal baselines behind `stillwatch detect`, and the causality check."""

from __future__ import annotations

import random
from pathlib import Path

import msgspec
from typer.testing import CliRunner

from stillwatch.cli.analysis import DetectorSpec, check_causal
from stillwatch.cli.main import app
from stillwatch.detect.base import ALLOW, Decision, RequestContext
from stillwatch.detect.baselines import NullDetector, VolumeDetector
from stillwatch.detect.runner import detect_file, run_detection
from stillwatch.events import RequestEvent, format_ts, read_records, write_records

T0 = 1_770_000_000.0


def _log(tmp: Path) -> Path:
    """150 light accounts over two days; one heavy account starts on the second day."""
    rng = random.Random(7)
    events = []
    for a in range(150):
        for i in range(rng.randint(1, 6)):
            events.append((T0 + rng.uniform(0, 2 * 86400), f"light{a:03d}", i))
    for i in range(400):
        events.append((T0 + 86400 + i * 60, "heavy", i))
    events.sort()
    path = tmp / "events.jsonl"
    write_records(
        path,
        RequestEvent,
        [
            RequestEvent(
                id=f"{acct}-{i}",
                ts=format_ts(t),
                account_id=acct,
                ip="10.1.2.3",
                request={"model": "m", "messages": [{"role": "user", "content": "q"}]},
            )
            for t, acct, i in events
        ],
    )
    return path


def test_null_flags_nothing(tmp_path: Path) -> None:
    verdicts = run_detection(read_records(_log(tmp_path), RequestEvent), NullDetector())
    assert len(verdicts) == 151 and not any(v.flagged for v in verdicts)


def test_volume_flags_the_heavy_account_early_and_causally(tmp_path: Path) -> None:
    log = _log(tmp_path)
    verdicts = {v.account_id: v for v in detect_file(log, tmp_path / "v.jsonl", VolumeDetector())}
    heavy = verdicts["heavy"]
    assert heavy.flagged and heavy.action == "review" and heavy.reasons
    assert heavy.requests_before_flag is not None and heavy.requests_before_flag < 10
    # the top 1% of 151 accounts, with ties at the light accounts' peak, is a handful
    assert sum(v.flagged for v in verdicts.values()) <= 8
    assert check_causal(log, list(verdicts.values()), DetectorSpec("volume")) == []


def test_detect_is_byte_identical_across_runs(tmp_path: Path) -> None:
    log = _log(tmp_path)
    runner = CliRunner()
    for name in ("a", "b"):
        r = runner.invoke(
            app,
            ["detect", str(log), "--out", str(tmp_path / f"{name}.jsonl"), "--detector", "volume"],
        )
        assert r.exit_code == 0, r.output
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    r = runner.invoke(
        app, ["detect", str(log), "--out", str(tmp_path / "c.jsonl"), "--detector", "psychic"]
    )
    assert r.exit_code == 2 and "unknown detector" in r.output


def test_causality_check_catches_hindsight(tmp_path: Path) -> None:
    log = _log(tmp_path)
    verdicts = detect_file(log, tmp_path / "v.jsonl", VolumeDetector())
    # a verdict that claims a flag earlier than the detector could have known it
    cheat = [
        msgspec.structs.replace(v, first_flagged_at=format_ts(T0)) if v.account_id == "heavy" else v
        for v in verdicts
    ]
    assert check_causal(log, cheat, DetectorSpec("volume"))


class _Tripwire:
    """Flags an account once `trip` of its requests are observed; `decide` reads that."""

    def __init__(self, trip: int) -> None:
        self.trip, self.seen = trip, {}

    def _standing(self, account: str) -> Decision:
        tripped = self.seen.get(account, 0) >= self.trip
        return Decision("throttle", 1.0, "trip") if tripped else ALLOW

    def decide(self, request: RequestContext) -> Decision:
        return self._standing(request.account_id)

    def observe(self, request: RequestContext) -> None:
        self.seen[request.account_id] = self.seen.get(request.account_id, 0) + 1

    def standing(self, account: str) -> Decision:
        return self._standing(account)

    def record(self, event: RequestEvent) -> None:
        return None


def test_an_account_is_flagged_by_the_request_that_gives_it_away_and_it_counts_as_served(
    tmp_path: Path,
) -> None:
    """Its decision came before it was observed: an account that stops right after that
    request is flagged all the same, with the request counted among those served."""
    events = [
        RequestEvent(id=f"{a}-{i}", ts=format_ts(T0 + 60 * i), account_id=a, ip="10.1.2.3",
                     request={"messages": [{"role": "user", "content": "q"}]})
        for a, n in (("stops", 3), ("goes-on", 5), ("light", 2))
        for i in range(n)
    ]
    events.sort(key=lambda e: (e.ts, e.id))
    verdicts = {v.account_id: v for v in run_detection(events, _Tripwire(3))}
    assert verdicts["stops"].flagged and verdicts["stops"].requests_before_flag == 3
    assert verdicts["stops"].first_flagged_at == format_ts(T0 + 120)
    assert verdicts["goes-on"].requests_before_flag == 3  # the same: the third gave it away
    assert verdicts["goes-on"].action == "throttle"
    assert not verdicts["light"].flagged
