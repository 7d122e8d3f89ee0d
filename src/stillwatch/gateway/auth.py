"""The gateway's view of API keys: an in-memory ring of key hashes, kept fresh from the store.

Secrets never reach the ring: a presented key is hashed and looked up. Changes made through
this replica's admin API apply at once; changes made elsewhere arrive with the next poll.
"""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy.exc import SQLAlchemyError

from stillwatch.store.accounts import AccountStore, KeyInfo, hash_key

log = logging.getLogger("stillwatch.auth")


class KeyRing:
    def __init__(self, store: AccountStore, poll_interval: float = 2.0) -> None:
        self.store = store
        self.poll_interval = poll_interval
        self._by_hash: dict[str, KeyInfo] = {}
        self._since = 0.0
        self._task: asyncio.Task[None] | None = None

    def load(self) -> None:
        """Pick up keys changed since the last load (all of them the first time)."""
        started = time.time()
        for info in self.store.keys_changed_since(self._since):
            self._by_hash[info.key_hash] = info
        # overlap the window so a row committed during the query is not missed next time
        self._since = started - 5.0

    def authenticate(self, authorization: bytes | None, now: float) -> KeyInfo | None:
        if not authorization:
            return None
        scheme, _, secret = authorization.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not secret:
            return None
        info = self._by_hash.get(hash_key(secret.strip()))
        if info is None or not info.active(now):
            return None
        return info

    def __len__(self) -> int:
        return len(self._by_hash)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await asyncio.to_thread(self.load)
            except SQLAlchemyError as exc:
                log.warning("key ring not refreshed: %s", str(exc).splitlines()[0])

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._poll())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
