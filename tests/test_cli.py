"""The `stillwatch` command: help everywhere, accounts and keys, export, validate, the demo."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stillwatch.cli.main import app

from helpers import free_port

runner = CliRunner()


def _commands(group, prefix=()):
    import typer.main

    click_group = typer.main.get_command(group) if not hasattr(group, "commands") else group
    for name, cmd in click_group.commands.items():
        yield (*prefix, name)
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, (*prefix, name))


def test_every_command_has_help() -> None:
    names = list(_commands(app))
    assert {
        ("serve",),
        ("upstream",),
        ("keys", "create"),
        ("keys", "revoke"),
        ("keys", "list"),
        ("accounts", "import"),
        ("export",),
        ("demo",),
    } <= set(names)
    for name in [(), *names]:
        result = runner.invoke(app, [*name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert "Usage" in result.output


def test_accounts_import_keys_and_export(tmp_path: Path) -> None:
    accounts = tmp_path / "accounts.jsonl"
    accounts.write_text('{"account_id":"a1","tier":"free","org_id":"o1"}\n{"account_id":"a2"}\n')
    d = ["--data-dir", str(tmp_path / "data")]
    keys_out = tmp_path / "keys.jsonl"
    r = runner.invoke(app, ["accounts", "import", str(accounts), "--keys-out", str(keys_out), *d])
    assert r.exit_code == 0, r.output
    lines = keys_out.read_text().splitlines()
    assert len(lines) == 2 and '"key":"sw-' in lines[0]
    r = runner.invoke(app, ["keys", "list", *d])
    assert r.exit_code == 0 and "a1" in r.output and "sw-" in r.output
    r = runner.invoke(app, ["keys", "create", "a2", "--name", "second", *d])
    assert r.exit_code == 0 and "key:    sw-" in r.output
    r = runner.invoke(app, ["keys", "create", "ghost", *d])
    assert r.exit_code == 2 and "no account" in r.output
    r = runner.invoke(app, ["keys", "revoke", "key_missing", *d])
    assert r.exit_code == 2
    out = tmp_path / "acc.jsonl"
    r = runner.invoke(
        app, ["export", "--out", str(tmp_path / "ev.jsonl.gz"), "--accounts-out", str(out), *d]
    )
    assert r.exit_code == 0, r.output
    assert "wrote 0 events" in r.output and '"tier":"free"' in out.read_text()
    assert gzip.decompress((tmp_path / "ev.jsonl.gz").read_bytes()) == b""


def test_accounts_import_reports_bad_lines(tmp_path: Path) -> None:
    bad = tmp_path / "accounts.jsonl"
    bad.write_text('{"account_id":"a1"}\n{"account_id": 7}\n')
    r = runner.invoke(app, ["accounts", "import", str(bad), "--data-dir", str(tmp_path)])
    assert r.exit_code == 2 and "accounts.jsonl:2" in r.output


def test_validate(tmp_path: Path) -> None:
    f = tmp_path / "e.jsonl"
    f.write_text(
        '{"id":"a","ts":"2026-01-01T00:00:00Z","account_id":"x","ip":"1.2.3.4",'
        '"request":{}}\n{"id":"b"}\n'
    )
    r = runner.invoke(app, ["validate", str(f)])
    assert r.exit_code == 1 and "1 valid events records, 1 invalid" in r.output
    assert "e.jsonl:2" in r.output


def test_serve_refuses_a_bad_policy(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text("mode: sideways\n")
    r = runner.invoke(app, ["serve", "--policy", str(p)])
    assert r.exit_code == 2 and "mode" in r.output


@pytest.mark.timeout(120)
def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    port = free_port()
    while True:  # the mock model takes the next port
        upstream = port + 1
        try:
            import socket

            with socket.socket() as s:
                s.bind(("127.0.0.1", upstream))
            break
        except OSError:
            port = free_port()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "stillwatch",
            "demo",
            "--exit",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "demo"),
        ],
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert r.returncode == 0, r.stderr
    assert "HTTP 200" in r.stdout and "HTTP 429" in r.stdout and "HTTP 400" in r.stdout
    assert "Where to look" in r.stdout
    assert (tmp_path / "demo" / "events.jsonl.gz").exists()
