"""`stillwatch keys`: API keys, shown once and stored only as hashes."""

from __future__ import annotations

import time

import typer
from rich.console import Console
from rich.table import Table

from stillwatch.cli.common import DatabaseOpt, DataDirOpt, fail, open_store

app = typer.Typer(help="Create, list, revoke and rotate API keys.", no_args_is_help=True)


@app.command()
def create(
    account_id: str = typer.Argument(..., help="The account the key bills to."),
    name: str | None = typer.Option(None, help="A label for the key."),
    database: str | None = DatabaseOpt,
    data_dir: str = DataDirOpt,
) -> None:
    """Create a key. Its secret is printed once and cannot be shown again."""
    store = open_store(database, data_dir)
    try:
        new = store.create_key(account_id, name, actor="cli")
    except KeyError as exc:
        raise fail(f"{exc.args[0]} (create it with `stillwatch accounts create`)") from None
    typer.echo(f"key_id: {new.key_id}")
    typer.echo(f"key:    {new.secret}")
    typer.secho(
        "Store the key now: it is kept only as a hash and cannot be shown again.",
        err=True,
        fg=typer.colors.YELLOW,
    )


@app.command("list")
def list_keys(
    account: str | None = typer.Option(None, help="Only this account's keys."),
    database: str | None = DatabaseOpt,
    data_dir: str = DataDirOpt,
) -> None:
    """List keys by id and display prefix (never the secret)."""
    store = open_store(database, data_dir)
    table = Table("key_id", "prefix", "account", "name", "created", "state")
    now = time.time()
    for k in store.list_keys(account):
        state = "active" if k.active(now) else "revoked"
        if k.revoked_at and k.active(now):
            state = f"expires in {int(k.revoked_at - now)}s"
        created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(k.created_at or 0))
        table.add_row(k.key_id, k.prefix + "…", k.account_id, k.name or "", created, state)
    Console().print(table)


@app.command()
def revoke(
    key_id: str,
    database: str | None = DatabaseOpt,
    data_dir: str = DataDirOpt,
) -> None:
    """Revoke a key now (running gateways drop it within their poll interval)."""
    if not open_store(database, data_dir).revoke_key(key_id, actor="cli"):
        raise fail(f"no key {key_id!r}")
    typer.echo(f"revoked {key_id}")


@app.command()
def rotate(
    key_id: str,
    grace: float = typer.Option(0.0, help="Seconds the old key keeps working."),
    database: str | None = DatabaseOpt,
    data_dir: str = DataDirOpt,
) -> None:
    """Replace a key with a new one for the same account."""
    try:
        new = open_store(database, data_dir).rotate_key(key_id, grace_s=grace, actor="cli")
    except KeyError as exc:
        raise fail(str(exc.args[0])) from None
    typer.echo(f"key_id: {new.key_id}")
    typer.echo(f"key:    {new.secret}")
