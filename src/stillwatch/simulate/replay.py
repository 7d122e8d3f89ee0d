"""Replays a traffic log through a running gateway and records what it did to each request.

The log's accounts are imported through the admin API (each gets a key); every event is sent
with its account's key, its client IP as a forwarded address (the replayer must be a trusted
proxy) and its original time (the gateway's replay mode), in time order, optionally sped up.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from stillwatch.events import Account, RequestEvent, parse_ts, read_events_in_order, read_records


class ReplayResult(msgspec.Struct, omit_defaults=True):
    id: str
    account_id: str | None
    status: int
    request_id: str | None = None
    code: str | None = None


def _find(directory: Path, name: str) -> Path:
    for suffix in (".jsonl.gz", ".jsonl", ".parquet"):
        if (directory / f"{name}{suffix}").exists():
            return directory / f"{name}{suffix}"
    raise FileNotFoundError(f"no {name}.jsonl[.gz] or {name}.parquet in {directory}")


async def import_accounts(
    http: aiohttp.ClientSession, gateway: str, admin_token: str, accounts: Iterable[Account]
) -> dict[str, str]:
    body = b"".join(msgspec.json.encode(a) + b"\n" for a in accounts)
    async with http.post(
        f"{gateway}/admin/accounts/import?keys=1",
        data=body,
        headers={"Authorization": f"Bearer {admin_token}"},
    ) as resp:
        data = await resp.json()
        if resp.status != 200:
            raise RuntimeError(f"account import refused ({resp.status}): {data}")
    return {k["account_id"]: k["key"] for k in data["keys"]}


async def replay(
    directory: str | Path,
    gateway: str,
    admin_token: str,
    out: str | Path,
    *,
    speed: float = 0.0,
    concurrency: int = 32,
    limit: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> Counter[str]:
    """Send the log; returns counts of statuses. `speed` 0 sends as fast as order allows;
    `speed` k sends k times faster than the events happened."""
    directory = Path(directory)
    gateway = gateway.rstrip("/")
    counts: Counter[str] = Counter()
    encoder = msgspec.json.Encoder()
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        keys = await import_accounts(
            http, gateway, admin_token, read_records(_find(directory, "accounts"), Account)
        )
        sem = asyncio.Semaphore(concurrency)
        results: list[ReplayResult] = []

        async def send(event: RequestEvent) -> None:
            try:
                headers = {
                    "Authorization": f"Bearer {keys.get(event.account_id or '', 'sw-none')}",
                    "X-Forwarded-For": event.ip,
                    "X-Stillwatch-Event-Time": event.ts,
                    "Content-Type": "application/json",
                }
                if event.user_agent:
                    headers["User-Agent"] = event.user_agent
                if event.end_user:
                    headers["X-Stillwatch-End-User"] = event.end_user
                if event.conversation_id:
                    headers["X-Stillwatch-Conversation-Id"] = event.conversation_id
                path = event.endpoint or "/v1/chat/completions"
                try:
                    async with http.post(
                        gateway + path, data=encoder.encode(event.request), headers=headers
                    ) as resp:
                        raw = await resp.read()
                        code = None
                        if resp.status >= 400:
                            try:
                                code = msgspec.json.decode(raw)["error"].get("code")
                            except (msgspec.DecodeError, KeyError, TypeError, AttributeError):
                                code = None
                        results.append(
                            ReplayResult(
                                event.id,
                                event.account_id,
                                resp.status,
                                resp.headers.get("x-request-id"),
                                code,
                            )
                        )
                        counts[str(resp.status)] += 1
                except (aiohttp.ClientError, TimeoutError) as exc:
                    results.append(
                        ReplayResult(event.id, event.account_id, 0, code=type(exc).__name__)
                    )
                    counts["connection_error"] += 1
            finally:
                sem.release()

        tasks: set[asyncio.Task[None]] = set()
        started = time.monotonic()
        first: float | None = None
        for sent, event in enumerate(read_events_in_order(_find(directory, "events")), start=1):
            if limit is not None and sent > limit:
                break
            if speed > 0:
                t = parse_ts(event.ts)
                first = t if first is None else first
                delay = (t - first) / speed - (time.monotonic() - started)
                if delay > 0:
                    await asyncio.sleep(delay)
            await sem.acquire()
            task = asyncio.create_task(send(event))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            if progress is not None and sent % 1000 == 0:
                progress(sent)
        if tasks:
            await asyncio.gather(*tasks)
    with open(out, "wb") as fh:
        for r in sorted(results, key=lambda r: r.id):
            fh.write(encoder.encode(r) + b"\n")
    return counts


def replay_sync(*args: Any, **kwargs: Any) -> Counter[str]:
    return asyncio.run(replay(*args, **kwargs))
