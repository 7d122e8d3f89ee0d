"""Options shared by the commands that touch the store."""

from __future__ import annotations

import subprocess
import time
import urllib.request

import typer

from stillwatch.gateway.server import DEFAULT_DATA_DIR
from stillwatch.store.accounts import AccountStore
from stillwatch.store.db import database_url, make_engine

DatabaseOpt = typer.Option(
    None,
    "--database",
    envvar="STILLWATCH_DATABASE",
    help="SQLAlchemy or postgresql:// URL; default: SQLite in the data directory.",
)
DataDirOpt = typer.Option(
    DEFAULT_DATA_DIR,
    "--data-dir",
    envvar="STILLWATCH_DATA_DIR",
    help="Where the embedded database and the telemetry spool live.",
)


def open_store(database: str | None, data_dir: str) -> AccountStore:
    return AccountStore(make_engine(database_url(database, data_dir)))


def fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(2)


def wait_ready(
    url: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30.0
) -> None:
    """Poll `url` until it answers 200; fail early if `proc` (the server) has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the process serving {url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout:g}s")
