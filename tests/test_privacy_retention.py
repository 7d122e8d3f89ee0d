from __future__ import annotations

import time
from pathlib import Path

import httpx

from stillwatch.events import RequestEvent, Response, format_ts
from stillwatch.store.db import database_url, make_engine
from stillwatch.store.privacy import apply_privacy, redact_text
from stillwatch.store.telemetry import TelemetryWriter, apply_retention, count_events

from helpers import start_gateway


def test_redaction_removes_personal_data() -> None:
    text = (
        "mail jane.doe@example.org or call +1 (555) 123-4567, card 4111 1111 1111 1111, "
        "key sk-abcdefghijklmnopqrstuv, host 10.2.3.4"
    )
    out = redact_text(text)
    for secret in ("jane.doe", "555", "4111", "sk-abc", "10.2.3.4"):
        assert secret not in out
    assert "[EMAIL]" in out and "[SECRET]" in out


def _event(content: str) -> RequestEvent:
    return RequestEvent(
        id="e1",
        ts=format_ts(time.time()),
        account_id="a",
        ip="1.2.3.4",
        request={
            "model": "m",
            "messages": [
                {"role": "user", "content": content},
                {"role": "user", "content": [{"type": "text", "text": content}]},
            ],
        },
        response=Response(status=200, content=content, reasoning=content),
    )


def test_fingerprint_mode_keeps_no_text() -> None:
    ev = apply_privacy(_event("my secret plan"), "fingerprint")
    blob = str(ev)
    assert "secret plan" not in blob
    assert ev.request["messages"][0]["content"].startswith("sha256:")
    assert ev.request["messages"][1]["content"][0]["text"].startswith("sha256:")
    # same text, same fingerprint: template reuse stays visible
    assert (
        ev.response.content
        == apply_privacy(_event("my secret plan"), "fingerprint").response.content
    )


def test_gateway_stores_only_what_privacy_allows(tmp_path: Path, mock_upstream) -> None:
    gw = start_gateway(tmp_path, mock_upstream.url, privacy="fingerprint")
    try:
        key = gw.account("acct-priv")
        httpx.post(
            gw.url + "/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": "m", "messages": [{"role": "user", "content": "confidential"}]},
        )
        (event,) = gw.flush()
    finally:
        gw.stop()
    assert "confidential" not in str(event)
    db = b"".join(p.read_bytes() for p in tmp_path.rglob("stillwatch.db*"))
    assert b"confidential" not in db


def test_retention_counts_from_storage_not_event_time(tmp_path: Path) -> None:
    engine = make_engine(database_url(None, tmp_path))
    writer = TelemetryWriter(engine, spool_dir=tmp_path / "spool", retention_days=30)
    writer.start()
    now = time.time()
    for i, age_days in enumerate((0, 1, 40, 100)):  # a replayed log reaches far back
        writer.submit(
            RequestEvent(
                id=f"e{i}",
                ts=format_ts(now - age_days * 86400),
                account_id="a",
                ip="1.2.3.4",
                request={},
            )
        )
    assert writer.flush(10)
    time.sleep(0.7)  # the writer applies retention once it is idle: nothing is old yet
    writer.close()
    assert count_events(engine) == 4
    assert apply_retention(engine, 30) == 0
    assert apply_retention(engine, 30, now=now + 29 * 86400) == 0
    assert apply_retention(engine, 30, now=now + 31 * 86400) == 4
    assert count_events(engine) == 0


def test_events_spooled_while_database_is_away_are_loaded_later(tmp_path: Path) -> None:
    from sqlalchemy import create_engine

    # a database that cannot be reached: at shutdown the events go to the local spool
    dead = create_engine(
        "postgresql+psycopg://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 1}
    )
    writer = TelemetryWriter(dead, spool_dir=tmp_path / "spool")
    writer.start()
    for i in range(5):
        writer.submit(
            RequestEvent(
                id=f"s{i}", ts=format_ts(time.time()), account_id="a", ip="1.2.3.4", request={}
            )
        )
    writer.close(timeout=1.0)
    assert writer.spooled == 5 and writer.written == 0
    assert len(list((tmp_path / "spool").glob("spool-*.jsonl"))) == 1
    # the next start against a working database loads the spool first
    engine = make_engine(database_url(None, tmp_path))
    again = TelemetryWriter(engine, spool_dir=tmp_path / "spool")
    again.start()
    again.close()
    assert count_events(engine) == 5
    assert not list((tmp_path / "spool").glob("spool-*.jsonl"))
