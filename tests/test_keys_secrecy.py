"""API keys are shown once and never readable from the store, the logs or the telemetry."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import httpx
import pytest

from stillwatch.events import Account
from stillwatch.store.accounts import AccountStore, hash_key
from stillwatch.store.db import database_url, make_engine

from helpers import export_events, start_gateway


def test_keys_never_readable_from_store_logs_or_telemetry(
    tmp_path: Path, mock_upstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gw = start_gateway(tmp_path, mock_upstream.url)
    try:
        key = gw.account("acct-secret")
        headers = {"Authorization": f"Bearer {key}"}
        httpx.post(
            gw.url + "/v1/chat/completions",
            headers=headers,
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        )
        httpx.post(gw.url + "/v1/chat/completions", headers=headers, content=b"{broken")
        httpx.post(
            gw.url + "/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}x"},
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        )
        admin = {"Authorization": "Bearer admin-secret-token"}
        listed = httpx.get(gw.url + "/admin/keys", headers=admin).text
        created = httpx.post(
            gw.url + "/admin/keys", headers=admin, json={"account_id": "acct-secret"}
        ).json()
        events = gw.flush()
        exported = tmp_path / "events.jsonl"
        export_events(exported, "--data-dir", str(tmp_path))
    finally:
        gw.stop()
    secrets = [key, created["key"]]
    stored = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    for secret in secrets:
        assert secret.encode() not in stored
        assert secret[10:].encode() not in stored  # not even past the display prefix
        assert secret not in caplog.text
        assert secret not in listed
        assert all(secret not in str(e) for e in events)
    assert hash_key(key).encode() in stored  # what is stored is the hash


def test_key_lifecycle_create_rotate_revoke(tmp_path: Path) -> None:
    store = AccountStore(make_engine(database_url(None, tmp_path)))
    store.upsert_accounts([Account(account_id="a1")])
    first = store.create_key("a1", "ci")
    assert first.secret.startswith("sw-") and first.prefix == first.secret[:10]
    rotated = store.rotate_key(first.key_id, grace_s=3600)
    now = time.time()
    infos = {k.key_id: k for k in store.list_keys("a1")}
    assert infos[first.key_id].active(now) and not infos[first.key_id].active(now + 3601)
    assert infos[rotated.key_id].active(now)
    assert store.revoke_key(rotated.key_id)
    assert not store.get_key(rotated.key_id).active(time.time())
    assert not store.revoke_key("key_missing")
    with pytest.raises(KeyError):
        store.create_key("nobody")
    actions = [e["action"] for e in store.audit_entries()]
    assert actions.count("keys.create") == 2 and "keys.revoke" in actions


def test_admin_api_needs_its_own_credential(gateway) -> None:
    key = gateway.account("acct-admin")
    for auth in (None, f"Bearer {key}", "Bearer wrong"):
        headers = {"Authorization": auth} if auth else {}
        r = httpx.get(gateway.url + "/admin/keys", headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_admin_token"
    admin = {"Authorization": "Bearer admin-secret-token"}
    imported = httpx.post(
        gateway.url + "/admin/accounts/import?keys=1",
        headers=admin,
        content=b'{"account_id":"imp-1","tier":"free"}\n{"account_id":"imp-2"}\n',
    )
    assert imported.status_code == 200
    keys = {k["account_id"]: k["key"] for k in imported.json()["keys"]}
    r = httpx.post(
        gateway.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {keys['imp-1']}"},
        json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert r.status_code == 200  # usable at once on this replica
    bad = httpx.post(
        gateway.url + "/admin/accounts/import",
        headers=admin,
        content=b'{"account_id":"x","created_at":"never"}\n',
    )
    assert bad.status_code == 400 and "line 1" in bad.json()["error"]["message"]
    key_id = httpx.get(gateway.url + "/admin/keys?account_id=imp-2", headers=admin).json()[0]
    rotated = httpx.post(
        gateway.url + f"/admin/keys/{key_id['key_id']}/rotate",
        headers=admin,
        json={"grace_seconds": 0},
    )
    assert rotated.status_code == 201
    old = httpx.post(
        gateway.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {keys['imp-2']}"},
        json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert old.status_code == 401
    assert httpx.post(gateway.url + "/admin/keys/nope/revoke", headers=admin).status_code == 404
