"""Detector state shared by gateway replicas through Redis, off the request path.

Each replica keeps the state of the requests it served (its part of each account) and
publishes it, msgpack-encoded, to one Redis hash per account (one field per replica). A
background thread refreshes the other replicas' parts of the accounts this replica is serving
and merges them (`AccountState.merged`), so features and risk cover the account's whole
traffic. Entity links (shared IPs, payment methods, templates) go to one Redis stream that
every replica reads, so each replica clusters the same graph and finds the same campaigns.

`decide` never waits for Redis: it reads what the thread last fetched. When Redis is down,
replicas carry on with their own parts and catch up when it returns.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from typing import Any

import msgspec

from stillwatch.detect.account import AccountState

log = logging.getLogger("stillwatch.detect.shared")

PREFIX = "sw:detect:"
TTL_S = 8 * 86_400
STREAM_MAXLEN = 2_000_000


class RedisShare:
    def __init__(
        self,
        url: str,
        replica: str,
        *,
        interval: float | None = 1.0,
        client: Any = None,
    ) -> None:
        import redis

        self.replica = replica or "replica"
        self.redis = client or redis.Redis.from_url(url, socket_timeout=2.0)
        self.remote: dict[str, tuple[AccountState, float]] = {}  # account -> others' parts
        self._outbox: dict[str, bytes] = {}
        self._dirty: dict[str, tuple[AccountState, float]] = {}
        self._encoded_at = 0.0
        self._encode_every = (interval or 0.0) / 2
        self._owner: int | None = None  # the thread that changes the states (event loop)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._links_out: list[tuple[str, str, str]] = []
        self._links_in: deque[tuple[str, str, str]] = deque()
        self._interest: dict[str, None] = {}  # accounts to refresh, oldest first
        self._last_id = "0-0"
        self._lock = threading.Lock()
        self._encode = msgspec.msgpack.Encoder()
        self._decode = msgspec.msgpack.Decoder()
        self.errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if interval is not None:
            self._thread = threading.Thread(
                target=self._run, args=(interval,), name="detect-share", daemon=True
            )
            self._thread.start()

    # --- called on the event loop ---------------------------------------------------------
    def offer(self, account: str, state: AccountState, risk: float) -> None:
        """Marks the account's part as changed. Parts are encoded on the caller's thread (the
        state is not safe to read from another), at most once per half interval for all
        changed accounts together, and before each sync round for whatever is still pending."""
        if self._owner is None:
            self._owner = threading.get_ident()
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:
                self._loop = None
        self._dirty[account] = (state, risk)
        now = time.monotonic()
        if now - self._encoded_at >= self._encode_every:
            self.encode_pending()

    def encode_pending(self) -> None:
        """Encodes every changed part into the outbox. Runs on the owner's thread only."""
        self._encoded_at = time.monotonic()
        dirty, self._dirty = self._dirty, {}
        if not dirty:
            return
        blobs = {
            a: self._encode.encode({"s": st.to_wire(), "r": r}) for a, (st, r) in dirty.items()
        }
        with self._lock:
            self._outbox.update(blobs)
            for a in blobs:
                self._interest.pop(a, None)
                self._interest[a] = None
            while len(self._interest) > 50_000:
                del self._interest[next(iter(self._interest))]

    def _collect_pending(self, timeout: float = 1.0) -> None:
        """Has the owner encode what changed since its last encoding, so the last request's
        state is published in this round and not only when another request comes."""
        if not self._dirty:
            return
        if self._owner in (None, threading.get_ident()):
            self.encode_pending()
            return
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        done = threading.Event()

        def run() -> None:
            try:
                self.encode_pending()
            finally:
                done.set()

        try:
            loop.call_soon_threadsafe(run)
        except RuntimeError:  # the loop stopped meanwhile
            return
        done.wait(timeout)

    def link(self, account: str, kind: str, value: str) -> None:
        with self._lock:
            self._links_out.append((account, kind, value))

    def incoming_links(self) -> list[tuple[str, str, str]]:
        out = []
        while self._links_in:
            out.append(self._links_in.popleft())
        return out

    # --- the background side --------------------------------------------------------------
    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.sync()
            except Exception as exc:  # Redis away: keep our parts, retry next round
                self.errors += 1
                log.warning("detector state sync failed: %s", exc)

    def sync(self) -> None:
        """Publish our parts and links, read the others'. One round of the thread."""
        self._collect_pending()
        with self._lock:
            outbox, self._outbox = self._outbox, {}
            links, self._links_out = self._links_out, []
            interest = list(self._interest)
        pipe = self.redis.pipeline(transaction=False)
        for account, blob in outbox.items():
            key = f"{PREFIX}acct:{account}"
            pipe.hset(key, self.replica, blob)
            pipe.expire(key, TTL_S)
        for account, kind, value in links:
            pipe.xadd(
                f"{PREFIX}links",
                {"r": self.replica, "a": account, "k": kind, "v": value},
                maxlen=STREAM_MAXLEN,
                approximate=True,
            )
        try:
            pipe.execute()
        except Exception:
            with self._lock:  # put back what was not written, unless newer came meanwhile
                for account, blob in outbox.items():
                    self._outbox.setdefault(account, blob)
                self._links_out[:0] = links
            raise
        self._read_links()
        self._refresh(interest[-5_000:])

    def _read_links(self) -> None:
        while True:
            got = self.redis.xread({f"{PREFIX}links": self._last_id}, count=10_000)
            if not got:
                return
            _, entries = got[0]
            for entry_id, fields in entries:
                self._last_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                f = {k.decode(): v.decode() for k, v in fields.items()}
                if f.get("r") == self.replica:
                    continue
                self._links_in.append((f["a"], f["k"], f["v"]))
                if f["a"] not in self._interest:
                    with self._lock:
                        self._interest[f["a"]] = None
            if len(entries) < 10_000:
                return

    def _refresh(self, accounts: list[str]) -> None:
        if not accounts:
            return
        pipe = self.redis.pipeline(transaction=False)
        for account in accounts:
            pipe.hgetall(f"{PREFIX}acct:{account}")
        for account, parts in zip(accounts, pipe.execute(), strict=True):
            merged: AccountState | None = None
            risk = 0.0
            for replica, blob in parts.items():
                name = replica.decode() if isinstance(replica, bytes) else replica
                if name == self.replica:
                    continue
                d = self._decode.decode(blob)
                part = AccountState.from_wire(d["s"])
                merged = part if merged is None else merged.merged(part)
                risk = max(risk, float(d["r"]))
            if merged is not None:
                self.remote[account] = (merged, risk)

    def close(self) -> None:
        """At shutdown, when nothing changes the states any more: publish the last parts."""
        self.encode_pending()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.sync()
        except Exception:
            self.errors += 1
