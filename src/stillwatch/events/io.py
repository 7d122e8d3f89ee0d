"""Streaming readers and writers for the spec's files: JSONL, gzip JSONL and Parquet.

The format follows the file name: `.parquet` is Parquet, `.gz` is gzip JSONL, anything else
plain JSONL. Parquet keeps the spec's column names; nested objects (the request body, the
response) are stored as JSON text columns because their keys are open-ended.
"""

from __future__ import annotations

import gzip
import heapq
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

import msgspec
import orjson

from stillwatch.events.records import RequestEvent
from stillwatch.events.timefmt import parse_ts

R = TypeVar("R", bound=msgspec.Struct)

PARQUET_BATCH = 10_000


class RecordError(ValueError):
    """A line of a record file that does not follow the spec; says where and why."""

    def __init__(self, path: str | os.PathLike[str], line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path = str(path)
        self.line = line
        self.reason = reason


def _is_parquet(path: str | os.PathLike[str]) -> bool:
    return str(path).endswith(".parquet")


def _open_text(path: str | os.PathLike[str], mode: str) -> IO[bytes]:
    if str(path).endswith(".gz"):
        return gzip.open(path, mode + "b", compresslevel=5)  # type: ignore[return-value]
    return open(path, mode + "b")


def read_records(
    path: str | os.PathLike[str],
    record_type: type[R],
    *,
    skip_invalid: bool = False,
    errors: list[RecordError] | None = None,
) -> Iterator[R]:
    """Yield records in file order; a bad line raises RecordError (or is skipped and kept in
    `errors` when `skip_invalid`)."""
    if _is_parquet(path):
        yield from _read_parquet(path, record_type, skip_invalid, errors)
        return
    decoder = msgspec.json.Decoder(record_type)
    with _open_text(path, "r") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line:
                continue
            try:
                yield decoder.decode(line)
            except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError) as exc:
                reason = str(exc)
                if not isinstance(exc, msgspec.ValidationError):
                    reason = f"malformed JSON: {reason}"
                err = RecordError(path, lineno, reason)
                if not skip_invalid:
                    raise err from None
                if errors is not None:
                    errors.append(err)


class RecordWriter:
    """Writes records one at a time; Parquet rows are buffered into row groups."""

    def __init__(self, path: str | os.PathLike[str], record_type: type[msgspec.Struct]) -> None:
        self.path = Path(path)
        self.record_type = record_type
        self.count = 0
        self._encoder = msgspec.json.Encoder()
        self._parquet = _is_parquet(path)
        self._rows: list[dict[str, Any]] = []
        self._pq_writer: Any = None
        self._fh: IO[bytes] | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self._parquet:
            self._fh = _open_text(self.path, "w")

    def write(self, record: msgspec.Struct) -> None:
        self.count += 1
        if self._fh is not None:
            self._fh.write(self._encoder.encode(record) + b"\n")
            return
        self._rows.append(msgspec.to_builtins(record))
        if len(self._rows) >= PARQUET_BATCH:
            self._flush_parquet()

    def write_all(self, records: Iterable[msgspec.Struct]) -> int:
        for record in records:
            self.write(record)
        return self.count

    def _flush_parquet(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = parquet_schema(self.record_type)
        columns: dict[str, list[Any]] = {name: [] for name in schema.names}
        json_cols = _json_columns(self.record_type)
        for row in self._rows:
            for name in schema.names:
                value = row.get(name)
                if name in json_cols and value is not None:
                    value = orjson.dumps(value).decode()
                columns[name].append(value)
        table = pa.table(columns, schema=schema)
        if self._pq_writer is None:
            self._pq_writer = pq.ParquetWriter(str(self.path), schema, compression="zstd")
        self._pq_writer.write_table(table)
        self._rows.clear()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        elif self._parquet:
            if self._rows or self._pq_writer is None:
                self._flush_parquet()
            self._pq_writer.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_records(
    path: str | os.PathLike[str],
    record_type: type[msgspec.Struct],
    records: Iterable[msgspec.Struct],
) -> int:
    with RecordWriter(path, record_type) as writer:
        return writer.write_all(records)


# --- Parquet column mapping ---------------------------------------------------------------


def _scalar_arrow_type(info: Any) -> Any:
    import pyarrow as pa
    from msgspec import inspect as mi

    if isinstance(info, mi.UnionType):
        kinds = [t for t in info.types if not isinstance(t, mi.NoneType)]
        if len(kinds) == 1:
            return _scalar_arrow_type(kinds[0])
        return None
    if isinstance(info, mi.StrType):
        return pa.string()
    if isinstance(info, mi.BoolType):
        return pa.bool_()
    if isinstance(info, mi.IntType):
        return pa.int64()
    if isinstance(info, mi.FloatType):
        return pa.float64()
    return None


def _json_columns(record_type: type[msgspec.Struct]) -> frozenset[str]:
    from msgspec import inspect as mi

    info = mi.type_info(record_type)
    return frozenset(f.encode_name for f in info.fields if _scalar_arrow_type(f.type) is None)


def parquet_schema(record_type: type[msgspec.Struct]) -> Any:
    import pyarrow as pa
    from msgspec import inspect as mi

    info = mi.type_info(record_type)
    fields = []
    for f in info.fields:
        arrow_type = _scalar_arrow_type(f.type) or pa.string()
        fields.append(pa.field(f.encode_name, arrow_type))
    return pa.schema(fields)


def _read_parquet(
    path: str | os.PathLike[str],
    record_type: type[R],
    skip_invalid: bool,
    errors: list[RecordError] | None,
) -> Iterator[R]:
    import pyarrow.parquet as pq

    json_cols = _json_columns(record_type)
    pf = pq.ParquetFile(str(path))
    row_no = 0
    for batch in pf.iter_batches(batch_size=PARQUET_BATCH):
        for row in batch.to_pylist():
            row_no += 1
            try:
                clean = {}
                for key, value in row.items():
                    if value is None:
                        continue
                    clean[key] = orjson.loads(value) if key in json_cols else value
                yield msgspec.convert(clean, record_type)
            except (msgspec.ValidationError, orjson.JSONDecodeError) as exc:
                err = RecordError(path, row_no, str(exc))
                if not skip_invalid:
                    raise err from None
                if errors is not None:
                    errors.append(err)


# --- Events in time order ------------------------------------------------------------------


def _event_key(event: RequestEvent) -> tuple[float, str]:
    return (parse_ts(event.ts), event.id)


class _EventKey(msgspec.Struct):
    id: str
    ts: str


def _is_sorted(path: str | os.PathLike[str]) -> bool:
    """A cheap pass that decodes only `ts` and `id` of each line."""
    last: tuple[float, str] | None = None
    for ev in read_records(path, _EventKey, skip_invalid=True):
        try:
            key = (parse_ts(ev.ts), ev.id)
        except ValueError:
            continue
        if last is not None and key < last:
            return False
        last = key
    return True


def read_events_in_order(
    path: str | os.PathLike[str], *, chunk_size: int = 200_000, skip_invalid: bool = False
) -> Iterator[RequestEvent]:
    """Events sorted by `ts`, ties by `id`, as the spec asks readers to.

    A log already in order streams straight through; otherwise sorted runs of `chunk_size`
    events are spilled to temporary files and merged, so memory stays bounded.
    """
    events = read_records(path, RequestEvent, skip_invalid=skip_invalid)
    if _is_sorted(path):
        yield from events
        return
    chunk: list[tuple[tuple[float, str], RequestEvent]] = []
    runs: list[str] = []
    encoder = msgspec.json.Encoder()
    try:
        for event in events:
            chunk.append((_event_key(event), event))
            if len(chunk) >= chunk_size:
                runs.append(_spill(chunk, encoder))
                chunk.clear()
        chunk.sort(key=lambda kv: kv[0])
        streams: list[Iterator[tuple[tuple[float, str], RequestEvent]]] = [
            iter(chunk),
            *(_read_run(run) for run in runs),
        ]
        yield from (ev for _, ev in heapq.merge(*streams, key=lambda kv: kv[0]))
    finally:
        for run in runs:
            os.unlink(run)


def _spill(
    chunk: list[tuple[tuple[float, str], RequestEvent]], encoder: msgspec.json.Encoder
) -> str:
    chunk.sort(key=lambda kv: kv[0])
    fd, name = tempfile.mkstemp(prefix="stillwatch-sort-", suffix=".jsonl")
    with os.fdopen(fd, "wb") as fh:
        for _, event in chunk:
            fh.write(encoder.encode(event) + b"\n")
    return name


def _read_run(name: str) -> Iterator[tuple[tuple[float, str], RequestEvent]]:
    for event in read_records(name, RequestEvent):
        yield _event_key(event), event
