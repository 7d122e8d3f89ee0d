"""Offline detection's request signals, computed ahead in worker processes.

A request's text signals depend on its text alone, so they can be computed out of order and in
other processes; only the account state must see events one by one in time order. The log is
read in chunks; each chunk's texts that the extractor does not already remember go to a pool
of forked workers (which inherit the extractor, corpus index included) while the chunks before
it are replayed; their answers are handed to the extractor's memo just before the chunk is
replayed. The detector then computes exactly what it would have computed itself, so verdicts
do not depend on the number of workers.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator

from stillwatch.detect.signals import SignalExtractor, TextSignals
from stillwatch.detect.signals.text import newest_user_text
from stillwatch.events import RequestEvent

CHUNK = 2_000  # events per task: large enough to amortise the hand-over
AHEAD = 3  # chunks in flight per worker

_EXTRACTOR: SignalExtractor | None = None  # the workers' copy, inherited through fork


def default_workers() -> int:
    """One worker per core beyond the one that replays the log."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def _compute(texts: list[str]) -> list[TextSignals]:
    assert _EXTRACTOR is not None, "worker started without an extractor"
    return [_EXTRACTOR.text_signals(t) for t in texts]


def presignalled(
    events: Iterable[RequestEvent], extractor: SignalExtractor, workers: int
) -> Iterator[RequestEvent]:
    """`events`, unchanged and in order, with their text signals computed by `workers`
    processes shortly before each is yielded. `workers` < 1 yields them as they are."""
    if workers < 1 or not extractor.memo or "fork" not in multiprocessing.get_all_start_methods():
        yield from events  # nothing to compute ahead into, or no way to share the index
        return
    global _EXTRACTOR
    _EXTRACTOR = extractor
    ctx = multiprocessing.get_context("fork")
    pending: deque[tuple[list[RequestEvent], list[bytes], object]] = deque()
    try:
        with ctx.Pool(workers) as pool:
            for chunk in _chunks(events, CHUNK):
                missing: dict[bytes, str] = {}  # digest -> text, each text once
                for text in map(_text, chunk):
                    if text:
                        key = extractor.key(text)
                        if key not in missing and not extractor.remembers(key):
                            missing[key] = text
                task = pool.apply_async(_compute, (list(missing.values()),))
                pending.append((chunk, list(missing), task))
                if len(pending) >= AHEAD * workers:
                    yield from _replay(pending.popleft(), extractor)
            while pending:
                yield from _replay(pending.popleft(), extractor)
    finally:
        _EXTRACTOR = None


def _replay(
    item: tuple[list[RequestEvent], list[bytes], object], extractor: SignalExtractor
) -> Iterator[RequestEvent]:
    chunk, keys, result = item
    extractor.prime(zip(keys, result.get(), strict=True))  # type: ignore[attr-defined]
    yield from chunk


def _text(event: RequestEvent) -> str:
    return newest_user_text(event.request) if event.request else ""


def _chunks(events: Iterable[RequestEvent], size: int) -> Iterator[list[RequestEvent]]:
    chunk: list[RequestEvent] = []
    for event in events:
        chunk.append(event)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
