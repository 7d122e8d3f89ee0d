"""`stillwatch accounts`: billing accounts, from the spec's accounts.jsonl or one at a time."""

from __future__ import annotations

from pathlib import Path

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from stillwatch.cli.common import DatabaseOpt, DataDirOpt, fail, open_store
from stillwatch.events import Account, RecordError, read_records

app = typer.Typer(help="Import, create and list accounts.", no_args_is_help=True)


@app.command("import")
def import_accounts(
    path: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="accounts.jsonl (.gz or .parquet too)."
    ),
    keys_out: Path | None = typer.Option(
        None, help="Create a key per account and write {account_id, key_id, key} JSONL here."
    ),
    database: str | None = DatabaseOpt,
    data_dir: str = DataDirOpt,
) -> None:
    """Import accounts (so a replayed log's accounts exist), optionally with a key each."""
    store = open_store(database, data_dir)
    try:
        records = list(read_records(path, Account))
    except RecordError as exc:
        raise fail(str(exc)) from None
    store.upsert_accounts(records, actor="cli")
    typer.echo(f"imported {len(records)} accounts")
    if keys_out:
        keys_out.parent.mkdir(parents=True, exist_ok=True)
        made = store.create_keys([rec.account_id for rec in records], "import", actor="cli")
        with open(keys_out, "wb") as fh:
            for new in made:
                fh.write(
                    msgspec.json.encode(
                        {"account_id": new.account_id, "key_id": new.key_id, "key": new.secret}
                    )
                    + b"\n"
                )
        keys_out.chmod(0o600)
        typer.echo(f"wrote {len(records)} keys to {keys_out} (keep it secret)")


@app.command()
def create(
    account_id: str,
    tier: str | None = typer.Option(None),
    org: str | None = typer.Option(None, "--org"),
    database: str | None = DatabaseOpt,
    data_dir: str = DataDirOpt,
) -> None:
    """Create or update one account."""
    try:
        record = Account(account_id=account_id, tier=tier, org_id=org)
    except (ValueError, msgspec.ValidationError) as exc:
        raise fail(str(exc)) from None
    open_store(database, data_dir).upsert_accounts([record], actor="cli")
    typer.echo(f"account {account_id} saved")


@app.command("list")
def list_accounts(database: str | None = DatabaseOpt, data_dir: str = DataDirOpt) -> None:
    """List accounts."""
    table = Table("account_id", "org", "tier", "created_at", "signup_route")
    for a in open_store(database, data_dir).list_accounts():
        table.add_row(
            a.account_id, a.org_id or "", a.tier or "", a.created_at or "", a.signup_route or ""
        )
    Console().print(table)
