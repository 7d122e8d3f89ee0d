"""Telemetry out of the store: export to the spec's files, validate files, apply retention."""

from __future__ import annotations

from pathlib import Path

import typer

from stillwatch.cli.common import DatabaseOpt, DataDirOpt, fail, open_store
from stillwatch.events import RECORD_TYPES, RecordError, parse_ts, read_records, write_records


def export(
    out: Path = typer.Option(..., help="events.jsonl, .jsonl.gz or .parquet"),
    accounts_out: Path | None = typer.Option(None, help="Also write accounts here."),
    since: str | None = typer.Option(None, help="RFC 3339; only events at or after it."),
    until: str | None = typer.Option(None, help="RFC 3339; only events at or before it."),
    database: str | None = DatabaseOpt,
    data_dir: str = DataDirOpt,
) -> None:
    """Write stored telemetry as the spec's request events (and accounts)."""
    from stillwatch.store.telemetry import export_events

    store = open_store(database, data_dir)
    try:
        lo = parse_ts(since) if since else None
        hi = parse_ts(until) if until else None
    except ValueError as exc:
        raise fail(str(exc)) from None
    n = export_events(store.engine, out, lo, hi)
    typer.echo(f"wrote {n} events to {out}")
    if accounts_out:
        from stillwatch.events import Account

        m = write_records(accounts_out, Account, store.list_accounts())
        typer.echo(f"wrote {m} accounts to {accounts_out}")


def validate(
    path: Path = typer.Argument(..., exists=True, dir_okay=False),
    kind: str = typer.Option("events", help=", ".join(RECORD_TYPES)),
    max_errors: int = typer.Option(20, help="Errors to print before stopping."),
) -> None:
    """Check a file against the traffic-log spec; exit 1 if any line is wrong."""
    if kind not in RECORD_TYPES:
        raise fail(f"kind must be one of {', '.join(RECORD_TYPES)}")
    errors: list[RecordError] = []
    n = 0
    for _ in read_records(path, RECORD_TYPES[kind], skip_invalid=True, errors=errors):
        n += 1
    for err in errors[:max_errors]:
        typer.echo(str(err), err=True)
    typer.echo(f"{n} valid {kind} records, {len(errors)} invalid")
    if errors:
        raise typer.Exit(1)


def retention(
    days: float = typer.Option(..., help="Delete events older than this many days."),
    database: str | None = DatabaseOpt,
    data_dir: str = DataDirOpt,
) -> None:
    """Delete stored events past the retention period."""
    from stillwatch.store.telemetry import apply_retention

    n = apply_retention(open_store(database, data_dir).engine, days)
    typer.echo(f"deleted {n} events older than {days:g} days")
