from __future__ import annotations

import gzip
import random
from pathlib import Path

import pytest

from stillwatch.events import (
    Account,
    Campaign,
    Label,
    RecordError,
    RequestEvent,
    Response,
    Usage,
    Verdict,
    format_ts,
    parse_ts,
    read_events_in_order,
    read_records,
    write_records,
)


def _event(i: int, ts: float) -> RequestEvent:
    return RequestEvent(
        id=f"r{i:05d}",
        ts=format_ts(ts),
        account_id=f"acct{i % 7}",
        ip=f"10.0.{i % 250}.{i % 200}",
        request={
            "model": "m",
            "messages": [{"role": "user", "content": f"question {i} ✓"}],
            "temperature": 0,
        },
        response=Response(status=200, content=f"answer {i}", finish_reason="stop"),
        usage=Usage(prompt_tokens=3, completion_tokens=i % 50),
        action="allow",
        latency_ms=1.5,
        end_user="u1" if i % 2 else None,
    )


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".parquet"])
def test_events_round_trip_in_every_format(tmp_path: Path, suffix: str) -> None:
    events = [_event(i, 1_760_000_000 + i) for i in range(25_000 if suffix == ".parquet" else 500)]
    path = tmp_path / f"events{suffix}"
    assert write_records(path, RequestEvent, events) == len(events)
    back = list(read_records(path, RequestEvent))
    assert back == events


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_every_record_type_round_trips(tmp_path: Path, suffix: str) -> None:
    samples = {
        Account: [
            Account(
                account_id="a1",
                created_at="2026-01-01T00:00:00Z",
                tier="free",
                email_domain="example.com",
                org_id="o1",
            )
        ],
        Label: [Label(account_id="a1", label="attacker", campaign_id="c1", persona="hydra")],
        Verdict: [
            Verdict(
                account_id="a1",
                risk=0.9,
                flagged=True,
                action="review",
                reasons=["template reuse"],
                first_flagged_at="2026-01-01T00:00:01Z",
                requests_before_flag=12,
            )
        ],
        Campaign: [
            Campaign(
                campaign_id="c1",
                accounts=["a1", "a2"],
                first_seen="2026-01-01T00:00:00Z",
                detected_at="2026-01-01T01:00:00Z",
                evidence=["shared /24"],
                indicators={"ip_ranges": ["10.0.0.0/24"]},
            )
        ],
    }
    for kind, records in samples.items():
        path = tmp_path / f"{kind.__name__}{suffix}"
        write_records(path, kind, records)
        assert list(read_records(path, kind)) == records


def test_bad_lines_name_the_line_and_the_field(tmp_path: Path) -> None:
    good = (
        b'{"id":"a","ts":"2026-02-12T10:00:00.123Z","account_id":null,"ip":"1.2.3.4","request":{}}'
    )
    cases = {
        b'{"id":"a","ts":"yesterday","account_id":null,"ip":"1.2.3.4","request":{}}': "ts",
        b'{"id":"a","ts":"2026-02-12T10:00:00Z","account_id":null,"ip":"nope","request":{}}': "ip",
        b'{"id":"a","ts":"2026-02-12T10:00:00Z","ip":"1.2.3.4","request":{}}': "account_id",
        b'{"id":"a","ts":"2026-02-12T10:00:00Z","account_id":"x","ip":"1.2.3.4",'
        b'"request":[]}': "request",
        b'{"id":"a","ts":"2026-02-12T10:00:00Z","account_id":"x","ip":"1.2.3.4","request":{},'
        b'"action":"smite"}': "action",
        b'{"id":"a", "ts": ': "malformed",
        b"\xff\xfe{}": "",
    }
    for bad, word in cases.items():
        path = tmp_path / "e.jsonl"
        path.write_bytes(good + b"\n\n" + bad + b"\n")
        with pytest.raises(RecordError) as info:
            list(read_records(path, RequestEvent))
        assert info.value.line == 3
        assert word in str(info.value).lower() or word in str(info.value)
        errors: list[RecordError] = []
        assert len(list(read_records(path, RequestEvent, skip_invalid=True, errors=errors))) == 1
        assert len(errors) == 1


def test_gzip_is_chosen_by_name(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl.gz"
    write_records(path, RequestEvent, [_event(1, 1e9)])
    assert gzip.decompress(path.read_bytes()).startswith(b'{"id":"r00001"')


def test_events_in_order_sorts_by_ts_then_id_with_bounded_chunks(tmp_path: Path) -> None:
    rng = random.Random(3)
    events = [_event(i, 1_760_000_000 + rng.randint(0, 500)) for i in range(3_000)]
    path = tmp_path / "shuffled.jsonl"
    write_records(path, RequestEvent, events)
    ordered = list(read_events_in_order(path, chunk_size=256))
    keys = [(parse_ts(e.ts), e.id) for e in ordered]
    assert keys == sorted(keys)
    assert sorted(e.id for e in ordered) == sorted(e.id for e in events)


def test_events_already_in_order_stream_through(tmp_path: Path) -> None:
    events = [_event(i, 1_760_000_000 + i) for i in range(100)]
    path = tmp_path / "ordered.jsonl.gz"
    write_records(path, RequestEvent, events)
    assert list(read_events_in_order(path)) == events


def test_time_format_is_rfc3339_utc_milliseconds() -> None:
    assert format_ts(1_770_890_400.1234) == "2026-02-12T10:00:00.123Z"
    assert parse_ts("2026-02-12T10:00:00.123Z") == pytest.approx(1_770_890_400.123)
    assert parse_ts("2026-02-12T11:00:00+01:00") == parse_ts("2026-02-12T10:00:00Z")


def test_an_event_takes_the_addresses_the_standard_library_takes() -> None:
    """IPv4 is checked by one regex on the hot path; it must agree with `ipaddress` on the
    edges (leading zeros, 256, too few or many parts, non-ASCII digits), IPv6 included."""
    import ipaddress

    import msgspec

    addresses = [
        "0.0.0.0", "255.255.255.255", "256.1.1.1", "01.2.3.4", "1.2.3", "1.2.3.4.5",
        "1.2.3.4\n", " 1.2.3.4", "\u0661.2.3.4", "192.168.001.1", "10.0.0.1", "::1",
        "2001:db8::1", "2001:db8::g", "", "1..2.3", "99.100.199.250",
    ]
    for address in addresses:
        try:
            ipaddress.ip_address(address)
            valid = True
        except ValueError:
            valid = False
        line = msgspec.json.encode(
            {"id": "a", "ts": "2026-02-12T10:00:00Z", "account_id": None, "ip": address,
             "request": {}}
        )
        try:
            msgspec.json.decode(line, type=RequestEvent)
            taken = True
        except msgspec.ValidationError as exc:
            assert "ip" in str(exc)
            taken = False
        assert taken == valid, address
