"""A simulated log replayed through a running gateway keeps its time, addresses and accounts."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from typer.testing import CliRunner

from stillwatch.cli.main import app
from stillwatch.events import RequestEvent, read_records

from helpers import replay_log, start_gateway

SCENARIO = """
seed: 5
days: 1
benign: {chat_user: 60, student: 10}
attacks:
  - {strategy: naive_bulk, accounts: 1, per_hour: 30}
"""


def test_replay_through_gateway(tmp_path: Path, mock_upstream) -> None:
    (tmp_path / "s.yaml").write_text(SCENARIO)
    runner = CliRunner()
    r = runner.invoke(app, ["simulate", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "log")])
    assert r.exit_code == 0, r.output
    sent = list(read_records(tmp_path / "log" / "events.jsonl.gz", RequestEvent))
    gw = start_gateway(
        tmp_path / "gw",
        mock_upstream.url,
        replay=True,
        trusted_proxies=["127.0.0.1/32"],
        tiers={"default": {"account": {"requests": "20/hour"}}},
    )
    try:
        replay_log(tmp_path / "log", gw, tmp_path / "results.jsonl", 8)
        stored = {e.request_id if hasattr(e, "request_id") else e.id: e for e in gw.flush()}
    finally:
        gw.stop()
    results = [line for line in (tmp_path / "results.jsonl").read_text().splitlines() if line]
    assert len(results) == len(sent) == len(stored)
    statuses = Counter(r.split('"status":')[1].split(",")[0].rstrip("}") for r in results)
    # the bulk account outruns 20 requests an hour in event time; the others do not
    assert statuses["200"] > 0 and statuses["429"] > 0
    by_key = Counter((e.ts, e.ip) for e in stored.values())
    assert by_key == Counter((e.ts, e.ip) for e in sent)  # original times and addresses kept
    limited = {e.account_id for e in stored.values() if e.action == "rate_limited"}
    assert len(limited) == 1
