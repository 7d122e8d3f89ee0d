"""Evaluate's figures on small hand-made verdicts, checked against sums done by hand."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from stillwatch.cli.main import app
from stillwatch.evaluate import evaluate
from stillwatch.evaluate.report import render_html
from stillwatch.events import Label, RequestEvent, Verdict, format_ts, write_records

T0 = 1_770_000_000.0


def _events() -> list[RequestEvent]:
    plan = {"a1": 5, "a2": 3, "a3": 4, "b1": 3, "b2": 2}
    out = []
    for account, n in plan.items():
        for i in range(n):
            action = "throttle" if (account, i) == ("b2", 1) else "allow"
            out.append(
                RequestEvent(
                    id=f"{account}-{i}",
                    ts=format_ts(T0 + i * 3600),
                    account_id=account,
                    ip="10.0.0.1",
                    request={},
                    action=action,
                )
            )
    out.append(
        RequestEvent(
            id="anon",
            ts=format_ts(T0),
            account_id=None,
            ip="10.0.0.9",
            request={},
            action="rejected",
        )
    )
    return out


LABELS = [
    Label(account_id="a1", label="attacker", campaign_id="c1", persona="hydra"),
    Label(account_id="a2", label="attacker", campaign_id="c1", persona="hydra"),
    Label(account_id="a3", label="attacker", campaign_id="c2", persona="naive_bulk"),
    Label(account_id="b1", label="benign", persona="chat_user"),
    Label(account_id="b2", label="benign", persona="app_backend"),
    Label(account_id="b3", label="benign", persona="chat_user"),
]

VERDICTS = [
    Verdict(
        account_id="a1",
        risk=0.9,
        flagged=True,
        action="block",
        campaign_id="p1",
        first_flagged_at=format_ts(T0 + 2 * 3600),
        requests_before_flag=2,
    ),
    Verdict(account_id="a2", risk=0.3, flagged=False, action="allow", campaign_id="p1"),
    Verdict(
        account_id="a3",
        risk=0.8,
        flagged=True,
        action="review",
        first_flagged_at=format_ts(T0),
        requests_before_flag=0,
    ),
    Verdict(
        account_id="b1",
        risk=0.85,
        flagged=True,
        action="review",
        campaign_id="p2",
        first_flagged_at=format_ts(T0 + 3600),
        requests_before_flag=1,
    ),
    Verdict(account_id="b2", risk=0.1, flagged=False, action="allow"),
    Verdict(account_id="zz", risk=0.5, flagged=False, action="allow"),
]


def test_figures_are_exact() -> None:
    ev = evaluate(VERDICTS, LABELS, _events())
    assert ev.accounts == {
        "attacker": 3,
        "benign": 2,  # b3 sent no request: silent, left out
        "with_verdict": 6,
        "silent_attacker": 0,
        "silent_benign": 1,
    }
    assert ev.attacker_recall == pytest.approx(2 / 3)
    assert ev.benign_fpr == pytest.approx(1 / 2)
    assert ev.by_persona["hydra"] == {"label": "attacker", "accounts": 2, "flagged": 1, "rate": 0.5}
    assert ev.by_persona["chat_user"]["rate"] == 1.0
    assert ev.by_persona["app_backend"]["flagged"] == 0
    assert ev.campaigns["recall"] == 1.0
    assert ev.campaigns["member_recall"] == {"c1": 0.5, "c2": 1.0}
    assert ev.campaigns["purity"] == pytest.approx(2 / 3)  # p1 pure (2), p2 a benign account
    # a1 harvested 2 of 5, a2 never flagged (3 of 3), a3 none of 4
    assert ev.extraction_yield == pytest.approx(5 / 12)
    assert ev.before_detection["requests"] == {"n": 2, "median": 0.0, "p90": 2.0, "max": 2.0}
    assert ev.before_detection["hours"] == {"n": 2, "median": 0.0, "p90": 2.0, "max": 2.0}
    assert ev.benign_affected == {
        "after_flag_by_action": {"review": 2},
        "recorded_by_gateway": {"throttle": 1},
        "blocked_accounts": 0,
    }
    assert ev.roc["auc"] == pytest.approx(4 / 6)
    assert ev.roc["points"][0] == (0.0, 0.0) and ev.roc["points"][-1] == (1.0, 1.0)
    assert ev.unlabelled_verdicts == 1


def test_without_events_the_log_figures_are_absent() -> None:
    ev = evaluate(VERDICTS, LABELS)
    assert ev.extraction_yield is None and ev.notes
    assert ev.attacker_recall == pytest.approx(2 / 3)
    assert ev.benign_fpr == pytest.approx(1 / 3)  # without events, every labelled account


def test_report_is_self_contained() -> None:
    page = render_html(evaluate(VERDICTS, LABELS, _events()))
    assert page.startswith("<!doctype html>") and "<svg" in page and "AUC 0.6667" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "hydra" in page and "41.67%" in page  # extraction yield 5/12


def test_cli_writes_json_and_html(tmp_path: Path) -> None:
    write_records(tmp_path / "v.jsonl", Verdict, VERDICTS)
    write_records(tmp_path / "l.jsonl", Label, LABELS)
    write_records(tmp_path / "e.jsonl.gz", RequestEvent, _events())
    r = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--verdicts",
            str(tmp_path / "v.jsonl"),
            "--labels",
            str(tmp_path / "l.jsonl"),
            "--events",
            str(tmp_path / "e.jsonl.gz"),
            "--out",
            str(tmp_path / "rep"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "attacker recall 66.67%" in r.output and "extraction yield 41.67%" in r.output
    assert (tmp_path / "rep" / "report.html").exists()
    assert '"attacker_recall": 0.6666' in (tmp_path / "rep" / "report.json").read_text()


def test_roc_is_thinned_for_reports_but_its_area_is_exact() -> None:
    from stillwatch.evaluate.metrics import roc_curve

    scores = [(i / 5000, i % 3 == 0) for i in range(5000)]
    full = roc_curve(scores, max_points=10_000)
    thin = roc_curve(scores, max_points=100)
    assert len(thin["points"]) == 100 and len(full["points"]) == 5001
    assert thin["auc"] == full["auc"]
    assert thin["points"][0] == (0.0, 0.0) and thin["points"][-1] == (1.0, 1.0)
