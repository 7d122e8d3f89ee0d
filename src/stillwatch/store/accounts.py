"""Accounts and API keys. A key's secret is shown once at creation and stored only as a hash."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Engine, or_, select, update

from stillwatch.events import Account
from stillwatch.store.db import accounts, api_keys, audit_log, upsert

KEY_PREFIX = "sw-"
DISPLAY_CHARS = 10


def hash_key(secret: str) -> str:
    """SHA-256 of the key (keys carry 256 random bits, so no slow hash is needed), keyed with
    an optional deployment pepper so a stolen table cannot be checked offline."""
    pepper = os.environ.get("STILLWATCH_KEY_PEPPER", "").encode()
    if pepper:
        return hmac.new(pepper, secret.encode(), hashlib.sha256).hexdigest()
    return hashlib.sha256(secret.encode()).hexdigest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What the gateway needs to know about a key; never the secret."""

    key_id: str
    key_hash: str
    prefix: str
    account_id: str
    org_id: str | None
    tier: str | None
    revoked_at: float | None
    name: str | None = None
    created_at: float | None = None

    def active(self, now: float) -> bool:
        return self.revoked_at is None or self.revoked_at > now


@dataclass(frozen=True, slots=True)
class NewKey:
    key_id: str
    secret: str
    prefix: str
    account_id: str


class AccountStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- accounts -------------------------------------------------------------------------
    def upsert_accounts(self, records: list[Account], actor: str = "system") -> int:
        if not records:
            return 0
        now = time.time()
        rows = [
            {
                "account_id": a.account_id,
                "org_id": a.org_id,
                "tier": a.tier,
                "created_at": a.created_at,
                "email_domain": a.email_domain,
                "payment_fingerprint": a.payment_fingerprint,
                "signup_route": a.signup_route,
                "country": a.country,
                "updated_at": now,
            }
            for a in records
        ]
        with self.engine.begin() as conn:
            for i in range(0, len(rows), 1000):
                conn.execute(upsert(self.engine, accounts, "account_id"), rows[i : i + 1000])
            self._audit(conn, actor, "accounts.upsert", None, {"count": len(rows)})
        return len(rows)

    def get_account(self, account_id: str) -> Account | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(accounts).where(accounts.c.account_id == account_id)).first()
        return _account(row._mapping) if row else None

    def list_accounts(self) -> list[Account]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(accounts).order_by(accounts.c.account_id)).all()
        return [_account(r._mapping) for r in rows]

    # --- keys -----------------------------------------------------------------------------
    def create_key(self, account_id: str, name: str | None = None, actor: str = "system") -> NewKey:
        return self.create_keys([account_id], name, actor)[0]

    def create_keys(
        self, account_ids: list[str], name: str | None = None, actor: str = "system"
    ) -> list[NewKey]:
        """One new key for each account, in one transaction (imports of many accounts)."""
        now = time.time()
        made, rows = [], []
        for account_id in account_ids:
            secret = generate_key()
            new = NewKey("key_" + secrets.token_hex(8), secret, secret[:DISPLAY_CHARS], account_id)
            made.append(new)
            rows.append(
                {
                    "key_id": new.key_id,
                    "account_id": account_id,
                    "key_hash": hash_key(secret),
                    "prefix": new.prefix,
                    "name": name,
                    "created_at": now,
                    "revoked_at": None,
                    "updated_at": now,
                }
            )
        with self.engine.begin() as conn:
            known = {r[0] for r in conn.execute(select(accounts.c.account_id))}
            missing = sorted(set(account_ids) - known)
            if missing:
                raise KeyError(f"no account {missing[0]!r}")
            for i in range(0, len(rows), 1000):
                conn.execute(api_keys.insert(), rows[i : i + 1000])
            target = made[0].key_id if len(made) == 1 else None
            self._audit(
                conn,
                actor,
                "keys.create",
                target,
                {"count": len(rows), "accounts": account_ids[:20]},
            )
        return made

    def revoke_key(self, key_id: str, *, at: float | None = None, actor: str = "system") -> bool:
        """Revoke now, or at `at` (a grace period after rotation)."""
        now = time.time()
        with self.engine.begin() as conn:
            res = conn.execute(
                update(api_keys)
                .where(api_keys.c.key_id == key_id)
                .values(revoked_at=at if at is not None else now, updated_at=now)
            )
            if res.rowcount:
                self._audit(conn, actor, "keys.revoke", key_id, {"at": at or now})
        return bool(res.rowcount)

    def rotate_key(self, key_id: str, *, grace_s: float = 0.0, actor: str = "system") -> NewKey:
        """A new key for the same account; the old one stops working after `grace_s`."""
        old = self.get_key(key_id)
        if old is None:
            raise KeyError(f"no key {key_id!r}")
        new = self.create_key(old.account_id, old.name, actor=actor)
        self.revoke_key(key_id, at=time.time() + grace_s, actor=actor)
        return new

    def get_key(self, key_id: str) -> KeyInfo | None:
        rows = self._key_rows(api_keys.c.key_id == key_id)
        return rows[0] if rows else None

    def list_keys(self, account_id: str | None = None) -> list[KeyInfo]:
        cond = api_keys.c.account_id == account_id if account_id else None
        return self._key_rows(cond)

    def keys_changed_since(self, since: float) -> list[KeyInfo]:
        """Keys whose own row or whose account changed after `since` (for the gateway's ring)."""
        return self._key_rows(or_(api_keys.c.updated_at > since, accounts.c.updated_at > since))

    def _key_rows(self, cond: Any) -> list[KeyInfo]:
        q = select(
            api_keys.c.key_id,
            api_keys.c.key_hash,
            api_keys.c.prefix,
            api_keys.c.account_id,
            accounts.c.org_id,
            accounts.c.tier,
            api_keys.c.revoked_at,
            api_keys.c.name,
            api_keys.c.created_at,
        ).select_from(api_keys.outerjoin(accounts, accounts.c.account_id == api_keys.c.account_id))
        if cond is not None:
            q = q.where(cond)
        with self.engine.connect() as conn:
            return [KeyInfo(*row) for row in conn.execute(q.order_by(api_keys.c.created_at))]

    # --- audit ----------------------------------------------------------------------------
    def _audit(self, conn: Any, actor: str, action: str, target: str | None, detail: Any) -> None:
        conn.execute(
            audit_log.insert(),
            {
                "ts": time.time(),
                "actor": actor,
                "action": action,
                "target": target,
                "detail": orjson.dumps(detail).decode(),
            },
        )

    def audit_entries(self, limit: int = 100) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(audit_log).order_by(audit_log.c.seq.desc()).limit(limit))
            return [dict(r._mapping) for r in rows]


def _account(m: Any) -> Account:
    return Account(
        account_id=m["account_id"],
        created_at=m["created_at"],
        email_domain=m["email_domain"],
        payment_fingerprint=m["payment_fingerprint"],
        signup_route=m["signup_route"],
        country=m["country"],
        tier=m["tier"],
        org_id=m["org_id"],
    )
