"""Cohorts no single request shows: accounts moving in lockstep, accounts splitting a corpus;
and a campaign held together by nothing else is found."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stillwatch.cli.main import app
from stillwatch.detect.cohorts import Cohorts, PartitionTracker, SyncTracker
from stillwatch.events import Label, read_records

HOUR = 3600.0


def test_cohorts_are_named_by_their_smallest_member_whatever_the_order() -> None:
    c = Cohorts()
    assert sorted(c.join("d", "c")) == ["c", "d"]
    assert c.join("b", "a") and c.join("c", "b") == ["c", "d"]
    assert {c.root(x) for x in "abcd"} == {"a"}
    assert c.join("a", "d") == []


def _fire(tracker: SyncTracker, account: str, times: list[float]) -> None:
    for t in times:
        tracker.beat(account, t)


def test_accounts_firing_in_waves_are_one_cohort_and_chance_overlap_is_not() -> None:
    rng = random.Random(3)
    waves = sorted(rng.uniform(0, 3 * HOUR) for _ in range(60))
    tracker = SyncTracker()
    for k in range(6):  # one orchestrator: each member within 3 s of a wave, skips some
        _fire(tracker, f"sync{k}", [w + rng.uniform(0, 3) for w in waves if rng.random() > 0.1])
    for k in range(40):  # the same rate on clocks of their own
        _fire(tracker, f"solo{k:02d}", sorted(rng.uniform(0, 3 * HOUR) for _ in range(60)))
    for k in range(3):  # always on: a request every 20 seconds says nothing by its timing
        _fire(tracker, f"busy{k}", [i * 20.0 + k for i in range(540)])
    joined = dict(tracker.tick(3 * HOUR))
    assert set(joined) == {f"sync{k}" for k in range(6)}
    assert set(joined.values()) == {"sync0"}
    # the next tick with nothing new changes nothing, and quiet accounts are forgotten
    assert tracker.tick(3 * HOUR + 600) == []
    assert tracker.tick(7 * HOUR) == [] and not tracker.buckets


def test_disjoint_sweeps_of_one_corpus_are_one_cohort() -> None:
    rng = random.Random(4)
    size = 2000
    tracker = PartitionTracker()
    for k in range(5):  # a plan: member k takes items k, k + 5, k + 10, ...
        for item in range(k, 600, 5):
            tracker.take(f"part{k}", "gsm8k", item)
    for k in range(5):  # independent sweeps of the same size overlap by chance
        for item in rng.sample(range(size), 120):
            tracker.take(f"rand{k}", "gsm8k", item)
    for k in range(5):  # disjoint, but too few items for disjointness to mean anything
        for item in range(1000 + 10 * k, 1000 + 10 * k + 10):
            tracker.take(f"small{k}", "gsm8k", item)
    for k in range(2):  # two stretches of the set, as two people splitting a benchmark
        for item in range(1200 + 300 * k, 1500 + 300 * k):
            tracker.take(f"half{k}", "gsm8k", item)
    for item in range(0, 600, 5):  # another corpus entirely: never compared with gsm8k
        tracker.take("other", "mbpp", item)
    joined = tracker.tick({"gsm8k": size, "mbpp": 500}, now=0.0)
    cohorts: dict[str, set[str]] = {}
    for corpus, account, cohort in joined:
        assert corpus == "gsm8k"
        cohorts.setdefault(cohort, set()).add(account)
    assert {f"part{k}" for k in range(5)} <= cohorts["part0"]
    # a chance pair of random sweeps may avoid each other; none is tied to the plan's cohort
    # except by that chance, and the small and foreign accounts never are
    assert not any(a.startswith(("small", "other", "half")) for _, a, _ in joined)
    assert sum(a.startswith("rand") for a in cohorts["part0"]) <= 1
    tracker.take("part0", "gsm8k", 1999)  # within the hour: not looked at yet
    assert tracker.tick({"gsm8k": size}, now=600.0) == [] and tracker.changed


SCENARIO = """
seed: 77
start: "2026-07-06T00:00:00Z"
days: 1
benign: {{chat_user: 120, student: 20, app_backend: 2, benchmark_evaluator: 2}}
attacks:
  - {{strategy: {strategy}, campaigns: 1, accounts: 8, per_hour: 12,
     synchronised: {sync}}}
"""


def _campaigns(tmp: Path, strategy: str, sync: bool) -> tuple[set[str], list[dict]]:
    runner = CliRunner()
    (tmp / "s.yaml").write_text(SCENARIO.format(strategy=strategy, sync=str(sync).lower()))
    r = runner.invoke(app, ["simulate", str(tmp / "s.yaml"), "--out", str(tmp / "log")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, [
        "detect", str(tmp / "log/events.jsonl.gz"), "--accounts",
        str(tmp / "log/accounts.jsonl.gz"), "--out", str(tmp / "v.jsonl"),
        "--campaigns", str(tmp / "c.jsonl"), "--workers", "0",
    ])
    assert r.exit_code == 0, r.output
    attackers = {
        lab.account_id for lab in read_records(tmp / "log/labels.jsonl.gz", Label)
        if lab.label == "attacker"
    }
    return attackers, [json.loads(x) for x in (tmp / "c.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    ("strategy", "sync", "tie"),
    [
        ("naive_bulk", True, "sync"),  # the same corpus, shuffled: only the waves tie them
        ("naive_bulk", False, None),  # nothing shared at all: no campaign
        ("low_and_slow", False, "partition"),  # each member its own slice of the corpus
    ],
)
def test_a_campaign_tied_only_by_its_timing_or_its_plan_is_found(
    tmp_path: Path, strategy: str, sync: bool, tie: str | None
) -> None:
    """Members with addresses, cards and sign-ups of their own: only the orchestrator's
    waves, or its split of the corpus, tie them together."""
    attackers, campaigns = _campaigns(tmp_path, strategy, sync)
    ours = [c for c in campaigns if set(c["accounts"]) & attackers]
    if tie is None:
        assert ours == []
        return
    assert len(ours) == 1
    assert set(ours[0]["accounts"]) == attackers
    assert tie in ours[0]["indicators"]
    words = "lockstep" if tie == "sync" else "disjoint slices"
    assert any(words in line for line in ours[0]["evidence"])


def test_two_plans_dealt_over_one_corpus_are_not_merged() -> None:
    """Plans of six and of four accounts, each dealing the same corpus in turn: across the
    plans half the pairs miss each other by arithmetic, but they do not stand apart from the
    same accounts, so no cohort mixes the two."""
    tracker = PartitionTracker()
    for k in range(6):
        for item in range(k, 1200, 6):
            tracker.take(f"a{k}", "gsm8k", item)
    for k in range(4):
        for item in range(k, 1200, 4):
            tracker.take(f"b{k}", "gsm8k", item)
    cohorts: dict[str, set[str]] = {}
    for _, account, cohort in tracker.tick({"gsm8k": 2000}, now=0.0):
        cohorts.setdefault(cohort, set()).add(account)
    assert cohorts  # each plan is found (in parts where it meets the other by parity)
    for members in cohorts.values():
        assert len({m[0] for m in members}) == 1, members
        assert len(members) >= 2
