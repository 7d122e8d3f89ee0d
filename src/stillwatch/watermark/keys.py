"""Watermark keys derived from a versioned master secret per deployment.

No per-account key is ever stored: an account's key is HMAC(master, "account:" + id), so the
gateway names it by id and the upstream and the auditor re-derive it. Rotation adds a version;
old versions stay in the ring so that text generated under them is still detectable.

A key id is `v<version>` for the deployment key, `v<version>:<account id>` for an account's.
Key ids go into telemetry (`watermark_key_id`); the keys themselves never do.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

ENV_SECRETS = "STILLWATCH_WATERMARK_SECRETS"  # "1=hex,2=hex" or a path to a JSON file
# For the demo and tests only; `stillwatch watermark keygen` makes a real one.
DEMO_SECRETS = {1: bytes.fromhex("5eed" * 16)}


class KeyError_(ValueError):
    """An unknown or malformed key id."""


@dataclass(frozen=True)
class KeyId:
    version: int
    account: str | None = None

    def __str__(self) -> str:
        return f"v{self.version}" if self.account is None else f"v{self.version}:{self.account}"

    @classmethod
    def parse(cls, text: str) -> KeyId:
        head, sep, account = text.partition(":")
        if not head.startswith("v") or not head[1:].isdigit():
            raise KeyError_(f"not a watermark key id: {text!r} (expected v<N> or v<N>:<account>)")
        if sep and not account:
            raise KeyError_(f"empty account in key id {text!r}")
        return cls(int(head[1:]), account if sep else None)


class MasterKeys:
    def __init__(self, versions: dict[int, bytes]) -> None:
        if not versions:
            raise KeyError_("no watermark master secret")
        for v, s in versions.items():
            if len(s) < 16:
                raise KeyError_(f"watermark secret v{v} is shorter than 16 bytes")
        self.versions = dict(sorted(versions.items()))
        self.current = max(self.versions)

    @classmethod
    def load(cls, source: str | None = None) -> MasterKeys:
        """From `source` or the environment: "1=hex,2=hex", or a JSON file {"1": "hex"}.
        Without either, the demo secret (not for production)."""
        source = source or os.environ.get(ENV_SECRETS)
        if not source:
            return cls(DEMO_SECRETS)
        path = Path(source)
        if path.is_file():
            data = json.loads(path.read_text())
            items = [(str(k), str(v)) for k, v in data.items()]
        else:
            items = [tuple(part.split("=", 1)) for part in source.split(",") if part.strip()]
            if any(len(i) != 2 for i in items):
                raise KeyError_("watermark secrets: expected '1=hex,2=hex' or a JSON file")
        try:
            return cls({int(k.strip().lstrip("v")): bytes.fromhex(v.strip()) for k, v in items})
        except ValueError as exc:
            raise KeyError_(f"watermark secrets: {exc}") from None

    @staticmethod
    def generate(version: int = 1) -> dict[str, str]:
        return {str(version): secrets.token_hex(32)}

    def key_id(self, account: str | None = None, version: int | None = None) -> KeyId:
        return KeyId(version or self.current, account)

    def derive(self, key_id: KeyId | str) -> int:
        """The 64-bit key of one key id."""
        kid = KeyId.parse(key_id) if isinstance(key_id, str) else key_id
        master = self.versions.get(kid.version)
        if master is None:
            raise KeyError_(f"no master secret for key version v{kid.version}")
        scope = "deployment" if kid.account is None else f"account:{kid.account}"
        mac = hmac.new(master, b"stillwatch-watermark/" + scope.encode(), hashlib.sha256)
        return int.from_bytes(mac.digest()[:8], "little")

    def derive_many(self, key_ids: list[KeyId]) -> list[int]:
        return [self.derive(k) for k in key_ids]
