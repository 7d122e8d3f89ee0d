"""The admin API, under /admin on its own credential: accounts and keys.

A key's secret appears once, in the answer that creates it; nothing else ever returns it.
"""

from __future__ import annotations

import hmac
from dataclasses import asdict
from typing import Any

import msgspec
import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from stillwatch.events import Account
from stillwatch.gateway.auth import KeyRing
from stillwatch.gateway.errors import error_body
from stillwatch.store.accounts import AccountStore, KeyInfo, NewKey

MAX_IMPORT_BYTES = 64 * 1024 * 1024


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status, media_type="application/json")


def _error(status: int, message: str, code: str) -> Response:
    return Response(
        error_body(message, "invalid_request_error", None, code),
        status,
        media_type="application/json",
    )


def _new_key(new: NewKey) -> Response:
    """The one answer that ever carries a key's secret."""
    body = {
        "key_id": new.key_id,
        "key": new.secret,
        "prefix": new.prefix,
        "account_id": new.account_id,
    }
    return _json(body, 201)


def _public(info: KeyInfo) -> dict[str, Any]:
    data = asdict(info)
    data.pop("key_hash")
    return data


def build_admin_app(store: AccountStore, keyring: KeyRing, admin_token: str | None) -> Starlette:
    token = admin_token.encode() if admin_token else None

    def authorised(request: Request) -> bool:
        if token is None:
            return False
        given = request.headers.get("authorization", "")
        scheme, _, secret = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(secret.strip().encode(), token)

    def guarded(handler: Any) -> Any:
        async def wrapped(request: Request) -> Response:
            if token is None:
                return _error(404, "the admin API is disabled (no admin token set)", "disabled")
            if not authorised(request):
                return _error(401, "admin credential missing or wrong", "invalid_admin_token")
            try:
                return await handler(request)
            except (ValueError, KeyError, msgspec.ValidationError) as exc:
                return _error(400, str(exc).strip("'\""), "invalid_value")

        return wrapped

    async def body_json(request: Request) -> Any:
        raw = await request.body()
        try:
            return orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"body is not valid JSON: {exc}") from None

    async def refresh() -> None:
        await run_in_threadpool(keyring.load)

    async def list_accounts(request: Request) -> Response:
        rows = await run_in_threadpool(store.list_accounts)
        return _json([msgspec.to_builtins(a) for a in rows])

    async def upsert_accounts(request: Request) -> Response:
        data = await body_json(request)
        items = data if isinstance(data, list) else [data]
        records = [msgspec.convert(x, Account) for x in items]
        n = await run_in_threadpool(store.upsert_accounts, records, "admin")
        await refresh()
        return _json({"upserted": n})

    async def import_accounts(request: Request) -> Response:
        """JSONL of accounts; with ?keys=1 a new key is made for each, returned once."""
        raw = await request.body()
        if len(raw) > MAX_IMPORT_BYTES:
            return _error(413, "import over 64 MiB; split it", "too_large")
        decoder = msgspec.json.Decoder(Account)
        records = []
        for i, line in enumerate(raw.splitlines(), 1):
            if line.strip():
                try:
                    records.append(decoder.decode(line))
                except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                    raise ValueError(f"line {i}: {exc}") from None
        await run_in_threadpool(store.upsert_accounts, records, "admin")
        keys = []
        if request.query_params.get("keys") in ("1", "true"):
            made = await run_in_threadpool(
                store.create_keys, [r.account_id for r in records], "import", "admin"
            )
            keys = [{"account_id": k.account_id, "key_id": k.key_id, "key": k.secret} for k in made]
        await refresh()
        return _json({"imported": len(records), "keys": keys})

    async def list_keys(request: Request) -> Response:
        rows = await run_in_threadpool(store.list_keys, request.query_params.get("account_id"))
        return _json([_public(k) for k in rows])

    async def create_key(request: Request) -> Response:
        data = await body_json(request)
        if not isinstance(data, dict) or not isinstance(data.get("account_id"), str):
            raise ValueError("give account_id")
        new = await run_in_threadpool(
            store.create_key, data["account_id"], data.get("name"), "admin"
        )
        await refresh()
        return _new_key(new)

    async def revoke_key(request: Request) -> Response:
        ok = await run_in_threadpool(store.revoke_key, request.path_params["key_id"], actor="admin")
        await refresh()
        return _json({"revoked": ok}, 200 if ok else 404)

    async def rotate_key(request: Request) -> Response:
        data = await body_json(request)
        grace = float(data.get("grace_seconds", 0)) if isinstance(data, dict) else 0.0
        new = await run_in_threadpool(
            lambda: store.rotate_key(request.path_params["key_id"], grace_s=grace, actor="admin")
        )
        await refresh()
        return _new_key(new)

    async def audit(request: Request) -> Response:
        rows = await run_in_threadpool(store.audit_entries, 200)
        return _json(rows)

    routes = [
        Route("/admin/accounts", guarded(list_accounts), methods=["GET"]),
        Route("/admin/accounts", guarded(upsert_accounts), methods=["POST"]),
        Route("/admin/accounts/import", guarded(import_accounts), methods=["POST"]),
        Route("/admin/keys", guarded(list_keys), methods=["GET"]),
        Route("/admin/keys", guarded(create_key), methods=["POST"]),
        Route("/admin/keys/{key_id}/revoke", guarded(revoke_key), methods=["POST"]),
        Route("/admin/keys/{key_id}/rotate", guarded(rotate_key), methods=["POST"]),
        Route("/admin/audit", guarded(audit), methods=["GET"]),
    ]
    return Starlette(routes=routes)
