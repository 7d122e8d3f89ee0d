"""The database schema (SQLAlchemy Core) and engine creation for SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
)
from sqlalchemy.dialects import postgresql, sqlite

metadata = MetaData()

accounts = Table(
    "sw_accounts",
    metadata,
    Column("account_id", String, primary_key=True),
    Column("org_id", String, index=True),
    Column("tier", String),
    Column("created_at", String),
    Column("email_domain", String),
    Column("payment_fingerprint", String),
    Column("signup_route", String),
    Column("country", String),
    Column("updated_at", Float, nullable=False, index=True),
)

api_keys = Table(
    "sw_api_keys",
    metadata,
    Column("key_id", String, primary_key=True),
    Column("account_id", String, nullable=False, index=True),
    Column("key_hash", String, nullable=False, unique=True),
    Column("prefix", String, nullable=False),
    Column("name", String),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
    Column("updated_at", Float, nullable=False, index=True),
)

events = Table(
    "sw_events",
    metadata,
    Column("id", String, primary_key=True),
    Column("ts", String, nullable=False),
    Column("ts_epoch", Float, nullable=False),
    Column("account_id", String),
    Column("action", String),
    Column("replica", String),
    Column("stored_at", Float, nullable=False),
    Column("data", Text, nullable=False),
    Index("ix_sw_events_ts", "ts_epoch"),
    Index("ix_sw_events_stored", "stored_at"),
    Index("ix_sw_events_account", "account_id", "ts_epoch"),
)

audit_log = Table(
    "sw_audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),
    Column("actor", String, nullable=False),
    Column("action", String, nullable=False),
    Column("target", String),
    Column("detail", Text),
)


def database_url(value: str | None, data_dir: str | Path) -> str:
    """A SQLAlchemy URL from a CLI value: a full URL, `postgresql://…`, or empty for SQLite."""
    if value:
        if value.startswith(("postgresql://", "postgres://")):
            return "postgresql+psycopg://" + value.split("://", 1)[1]
        return value
    path = Path(data_dir) / "stillwatch.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
    else:
        kwargs.setdefault("pool_pre_ping", True)
        kwargs.setdefault("connect_args", {"connect_timeout": 5})
        engine = create_engine(url, **kwargs)
    metadata.create_all(engine, checkfirst=True)
    return engine


def upsert(engine: Engine, table: Table, key: str) -> Any:
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table)
    cols = {c.name: stmt.excluded[c.name] for c in table.columns if c.name != key}
    return stmt.on_conflict_do_update(index_elements=[key], set_=cols)


def insert_events_sql(engine: Engine) -> str:
    """The telemetry insert in the driver's own dialect, ignoring ids already stored (so a
    batch retried after a lost commit acknowledgement is harmless)."""
    cols = "id, ts, ts_epoch, account_id, action, replica, stored_at, data"
    if engine.dialect.name == "postgresql":
        return (
            f"INSERT INTO sw_events ({cols}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (id) DO NOTHING"
        )
    return f"INSERT OR IGNORE INTO sw_events ({cols}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
