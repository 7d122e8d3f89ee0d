"""Telemetry: request events written in batches by a background thread, off the request path.

Nothing is lost: a batch that fails to commit is kept and retried with backoff (inserts ignore
duplicate ids, so a retried batch whose first commit did land is harmless); while the database
is away, events past a memory bound are appended to a local spool file; at shutdown whatever
could not be committed in time goes to the spool; at start the spool is loaded first.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.exc import SQLAlchemyError

from stillwatch.events import RecordWriter, RequestEvent, parse_ts, read_records
from stillwatch.store.db import events as events_table
from stillwatch.store.db import insert_events_sql
from stillwatch.store.privacy import apply_privacy

log = logging.getLogger("stillwatch.telemetry")
_STOP = object()


class TelemetryWriter:
    def __init__(
        self,
        engine: Engine,
        *,
        spool_dir: str | Path,
        privacy: str = "full",
        replica: str = "",
        batch_size: int = 1000,
        flush_interval: float = 0.1,
        max_pending: int = 200_000,
        retention_days: float | None = None,
    ) -> None:
        self.engine = engine
        self.spool_dir = Path(spool_dir)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.privacy = privacy
        self.replica = replica or f"{os.uname().nodename}:{os.getpid()}"
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        self.retention_days = retention_days
        self.submitted = 0
        self.written = 0
        self.failures = 0
        self.spooled = 0
        self.healthy = True
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._encoder = msgspec.json.Encoder()
        self._insert = insert_events_sql(engine)
        self._thread = threading.Thread(target=self._run, name="stillwatch-telemetry", daemon=True)
        self._stop_deadline: float | None = None
        self._last_retention = 0.0

    # --- producer side (any thread, never blocks) ------------------------------------------
    def submit(self, event: RequestEvent) -> None:
        self.submitted += 1
        self._queue.put(event)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every event submitted so far is committed or spooled."""
        target = self.submitted
        deadline = time.monotonic() + timeout
        while self.written + self.spooled < target:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def pending(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Flush what is queued; what cannot reach the database in `timeout` goes to the spool."""
        self._stop_deadline = time.monotonic() + timeout
        if not self._thread.is_alive():  # never started: spool what was handed over
            batch, _ = self._drain(_STOP)
            if batch:
                self._spool(batch)
            return
        self._queue.put(_STOP)
        self._thread.join(timeout + 5)

    # --- consumer thread ------------------------------------------------------------------
    def _run(self) -> None:
        self._load_spool()
        while True:
            try:
                first = self._queue.get(timeout=0.5)
            except queue.Empty:
                self._maybe_apply_retention()
                continue
            # Sleep out the flush interval, then take everything queued by then: one commit per
            # interval and no wake-up per event, so the request path keeps the GIL.
            if first is not _STOP:
                time.sleep(self.flush_interval)
            batch, stopping = self._drain(first)
            for i in range(0, len(batch), self.batch_size):
                chunk = batch[i : i + self.batch_size]
                if not self._commit_with_retry(chunk, stopping):
                    self._spool(batch[i:])
                    break
            if stopping:
                return
            self._maybe_apply_retention()

    def _drain(self, first: Any) -> tuple[list[RequestEvent], bool]:
        batch: list[RequestEvent] = []
        stopping = first is _STOP
        if not stopping:
            batch.append(first)
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch, stopping
            if item is _STOP:
                stopping = True
            else:
                batch.append(item)

    def _commit_with_retry(self, batch: list[RequestEvent], stopping: bool) -> bool:
        delay = 0.1
        while True:
            try:
                self._commit(batch)
                self.healthy = True
                return True
            except SQLAlchemyError as exc:
                self.failures += 1
                self.healthy = False
                log.warning(
                    "telemetry commit failed (%d events kept): %s",
                    len(batch),
                    str(exc).splitlines()[0],
                )
            if (
                stopping
                and self._stop_deadline is not None
                and time.monotonic() > self._stop_deadline
            ):
                return False
            if not stopping and self._queue.qsize() + len(batch) > self.max_pending:
                # bound memory while the database is away: park the backlog on local disk
                backlog = list(batch)
                while True:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        self._queue.put(_STOP)
                        break
                    backlog.append(item)
                self._spool(backlog)
                return True
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _rows(self, batch: list[RequestEvent]) -> list[tuple[Any, ...]]:
        encode = self._encoder.encode
        privacy = self.privacy
        replica = self.replica
        now = time.time()
        return [
            (
                ev.id,
                ev.ts,
                parse_ts(ev.ts),
                ev.account_id,
                ev.action,
                replica,
                now,
                encode(apply_privacy(ev, privacy)).decode(),
            )
            for ev in batch
        ]

    def _commit(self, batch: list[RequestEvent]) -> None:
        """One executemany of plain tuples: the cheapest insert both drivers offer, which keeps
        this thread's hold on the GIL short."""
        rows = self._rows(batch)
        with self.engine.begin() as conn:
            conn.exec_driver_sql(self._insert, rows)
        self.written += len(batch)

    # --- spool ----------------------------------------------------------------------------
    def _spool(self, batch: list[RequestEvent]) -> None:
        path = self.spool_dir / f"spool-{time.time_ns()}-{os.getpid()}.jsonl"
        with open(path, "ab") as fh:
            for ev in batch:
                fh.write(self._encoder.encode(ev) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.spooled += len(batch)
        log.warning("telemetry: %d events spooled to %s", len(batch), path)

    def _load_spool(self) -> None:
        for path in sorted(self.spool_dir.glob("spool-*.jsonl")):
            batch: list[RequestEvent] = []
            try:
                for ev in read_records(path, RequestEvent, skip_invalid=True):
                    batch.append(ev)
                    if len(batch) >= self.batch_size:
                        self._commit(batch)
                        batch = []
                if batch:
                    self._commit(batch)
            except SQLAlchemyError as exc:
                log.warning("telemetry: spool %s not loaded yet: %s", path, exc)
                return
            path.unlink()

    # --- retention ------------------------------------------------------------------------
    def _maybe_apply_retention(self) -> None:
        if self.retention_days is None or time.monotonic() - self._last_retention < 3600:
            return
        self._last_retention = time.monotonic()
        try:
            apply_retention(self.engine, self.retention_days)
        except SQLAlchemyError as exc:
            log.warning("telemetry: retention not applied: %s", exc)


def apply_retention(engine: Engine, days: float, now: float | None = None) -> int:
    """Delete events stored more than `days` ago. Counted from when the gateway stored them,
    not from the event's own time, so a replayed or imported log is kept for the full period."""
    cutoff = (now or time.time()) - days * 86400
    with engine.begin() as conn:
        return conn.execute(delete(events_table).where(events_table.c.stored_at < cutoff)).rowcount


def count_events(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(events_table)).scalar_one())


def iter_stored_events(
    engine: Engine, since: float | None = None, until: float | None = None, chunk: int = 5000
) -> Iterator[RequestEvent]:
    """Stored events in time order, read in keyset pages so memory stays flat."""
    decoder = msgspec.json.Decoder(RequestEvent)
    last: tuple[float, str] = (since if since is not None else float("-inf"), "")
    first = True
    while True:
        q = select(events_table.c.ts_epoch, events_table.c.id, events_table.c.data)
        if first:
            q = q.where(events_table.c.ts_epoch >= last[0]) if since is not None else q
        else:
            q = q.where(
                (events_table.c.ts_epoch > last[0])
                | ((events_table.c.ts_epoch == last[0]) & (events_table.c.id > last[1]))
            )
        if until is not None:
            q = q.where(events_table.c.ts_epoch <= until)
        q = q.order_by(events_table.c.ts_epoch, events_table.c.id).limit(chunk)
        with engine.connect() as conn:
            rows = conn.execute(q).all()
        if not rows:
            return
        for ts_epoch, ev_id, data in rows:
            yield decoder.decode(data)
            last = (ts_epoch, ev_id)
        first = False


def export_events(
    engine: Engine, out: str | Path, since: float | None = None, until: float | None = None
) -> int:
    with RecordWriter(out, RequestEvent) as writer:
        return writer.write_all(iter_stored_events(engine, since, until))
