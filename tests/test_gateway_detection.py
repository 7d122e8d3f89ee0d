"""The real detector is the gateway's default: a hydra campaign replayed through a running
gateway in enforce mode is throttled or blocked, a benign app backend beside it is not."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from typer.testing import CliRunner

from stillwatch.cli.main import app
from stillwatch.detect.detector import DistillationDetector
from stillwatch.events import Label, RequestEvent, read_records

from helpers import replay_log, start_gateway

SCENARIO = """
seed: 311
start: "2026-06-01T00:00:00Z"
days: 0.5
benign: {app_backend: 1, chat_user: 40}
attacks:
  - {strategy: hydra, campaigns: 1, accounts: 16, per_hour: 12, proxies: true,
     shared_payment: 0.5, signup_burst_hours: 3}
"""

ENFORCED = {"throttle", "block", "challenge"}


def test_hydra_is_stopped_and_the_app_backend_is_served(tmp_path: Path, mock_upstream) -> None:
    (tmp_path / "s.yaml").write_text(SCENARIO)
    runner = CliRunner()
    r = runner.invoke(app, ["simulate", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "log")])
    assert r.exit_code == 0, r.output
    labels = {lab.account_id: lab for lab in read_records(tmp_path / "log/labels.jsonl.gz", Label)}
    gw = start_gateway(
        tmp_path / "gw",
        mock_upstream.url,
        replay=True,
        trusted_proxies=["127.0.0.1/32"],
        mode="enforce",
        tiers={"default": {"account": {"requests": "100000/min"}}},
    )
    try:
        assert isinstance(gw.app.detector, DistillationDetector)  # the default, not a stand-in
        replay_log(tmp_path / "log", gw, tmp_path / "results.jsonl", 1)
        stored = gw.flush()
    finally:
        gw.stop()
    actions: dict[str, Counter[str]] = defaultdict(Counter)
    for event in stored:
        if event.account_id:
            actions[event.account_id][event.action or "allow"] += 1
    hydra = [a for a, lab in labels.items() if lab.persona == "hydra" and a in actions]
    backend = [a for a, lab in labels.items() if lab.persona == "app_backend"]
    assert len(hydra) == 16 and len(backend) == 1
    stopped = [a for a in hydra if sum(actions[a][x] for x in ENFORCED) > 0]
    assert len(stopped) >= 15, {a: dict(actions[a]) for a in hydra}
    served = actions[backend[0]]
    assert sum(served.values()) > 100
    assert not ENFORCED & set(served), dict(served)
    chat = [a for a, lab in labels.items() if lab.persona == "chat_user" and a in actions]
    assert not any(ENFORCED & set(actions[a]) for a in chat)
    # what the gateway recorded is the spec's event, with the detector's risk
    hydra_risk = [e.risk for e in stored if e.account_id in hydra and e.action in ENFORCED]
    assert hydra_risk and all(isinstance(x, float) and 0 < x <= 1 for x in hydra_risk)
    assert all(isinstance(e, RequestEvent) for e in stored)
