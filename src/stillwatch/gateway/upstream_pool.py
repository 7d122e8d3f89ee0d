"""The gateway's hop to the model: HTTP/1.1 keep-alive connections parsed by httptools.

The upstream is one known origin speaking plain HTTP/1.1, so a general-purpose client's
machinery (cookies, redirects, proxies, URL handling, payload registries) is cost without
use on the hottest path. This pool writes each request in one `write`, parses answers with
httptools (the parser uvicorn uses for the other side), and hands the body over chunk by chunk
as it arrives, so streams are relayed as the model produces them. `bench/upstream_client.py`
measures it against aiohttp's client on the same upstream.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httptools

MAX_BUFFERED = 1 << 20  # pause reading past this many unconsumed bytes


class UpstreamError(Exception):
    """The upstream could not be reached or failed mid-answer."""


class UpstreamTimeout(UpstreamError):
    pass


class UpstreamUnavailable(UpstreamError):
    pass


class _Connection(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.headers_done = False
        self.keep_alive = False
        self.complete = False
        self.error: Exception | None = None
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.paused = False
        self.waiter: asyncio.Future[None] | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.error = UpstreamError(f"malformed answer from the model: {exc}")
            self._close()
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete and self.error is None:
            self.error = UpstreamError("connection to the model closed mid-answer")
        self._wake()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        # asked now: the parser's answer is only meaningful while the message is parsed
        self.keep_alive = self.parser.should_keep_alive()
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > MAX_BUFFERED and not self.paused and self.transport is not None:
            self.transport.pause_reading()
            self.paused = True

    def on_message_complete(self) -> None:
        self.complete = True

    # consumer side
    def _wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def wait(self, timeout: float) -> None:
        waiter = self.loop.create_future()
        self.waiter = waiter
        timer = self.loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self.waiter = None

    def take(self) -> bytes:
        data = b"".join(self.chunks) if len(self.chunks) != 1 else self.chunks[0]
        self.chunks.clear()
        self.buffered = 0
        if self.paused and self.transport is not None:
            self.transport.resume_reading()
            self.paused = False
        return data


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(UpstreamTimeout("the model did not answer in time"))


class UpstreamResponse:
    def __init__(self, pool: UpstreamPool, conn: _Connection) -> None:
        self._pool = pool
        self._conn = conn
        self.status = conn.status
        self.headers = conn.headers
        self._released = False

    @property
    def content_type(self) -> str:
        return self.headers.get(b"content-type", b"application/json").decode("latin-1")

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        conn = self._conn
        while True:
            if conn.chunks:
                yield conn.take()
                continue
            if conn.complete:
                return
            if conn.error is not None:
                raise conn.error
            await conn.wait(self._pool.read_timeout)

    async def read(self) -> bytes:
        parts = [chunk async for chunk in self.iter_chunks()]
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def release(self) -> None:
        """Back to the pool if the answer was read whole and the connection may be reused."""
        if self._released:
            return
        self._released = True
        conn = self._conn
        if conn.complete and not conn.closed and conn.keep_alive:
            conn._reset()
            self._pool._idle.append(conn)
        else:
            conn._close()


class UpstreamPool:
    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 120.0,
        max_idle: int = 512,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http":
            raise ValueError(f"the upstream must be an http:// URL; got {base_url!r}")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self._host_header = f"Host: {parts.netloc}\r\n".encode()
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_idle = max_idle
        self._idle: collections.deque[_Connection] = collections.deque()

    async def _connection(self) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                return conn
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(loop), self.host, self.port),
                self.connect_timeout,
            )
        except TimeoutError:
            raise UpstreamTimeout("connecting to the model timed out") from None
        except OSError as exc:
            reason = exc.strerror or exc
            raise UpstreamUnavailable(f"cannot connect to the model ({reason})") from None
        return conn

    async def request(
        self,
        method: bytes,
        path: str,
        body: bytes = b"",
        headers: list[tuple[str, str]] | None = None,
    ) -> UpstreamResponse:
        """Send a request; returns once the answer's status and headers have arrived.

        A kept-alive connection the upstream closed just as it was reused fails before any
        byte of the answer; that one case is retried once on a new connection.
        """
        reused = bool(self._idle)
        try:
            return await self._send(await self._connection(), method, path, body, headers)
        except UpstreamTimeout:
            raise
        except UpstreamError as exc:
            if not reused or "mid-answer" not in str(exc):
                raise
        return await self._send(await self._fresh(), method, path, body, headers)

    async def _fresh(self) -> _Connection:
        idle, self._idle = self._idle, collections.deque()
        try:
            return await self._connection()
        finally:
            self._idle.extend(idle)

    async def _send(
        self,
        conn: _Connection,
        method: bytes,
        path: str,
        body: bytes,
        headers: list[tuple[str, str]] | None,
    ) -> UpstreamResponse:
        head = [method, b" ", (self.prefix + path).encode(), b" HTTP/1.1\r\n", self._host_header]
        for name, value in headers or ():
            head.append(f"{name}: {value}\r\n".encode("latin-1"))
        head.append(b"Content-Length: %d\r\n\r\n" % len(body))
        head.append(body)
        assert conn.transport is not None
        conn.transport.write(b"".join(head))
        try:
            while not conn.headers_done:
                if conn.error is not None:
                    raise conn.error
                await conn.wait(self.read_timeout)
        except BaseException:
            conn._close()
            raise
        if len(self._idle) > self.max_idle:
            self._idle.popleft()._close()
        return UpstreamResponse(self, conn)

    async def close(self) -> None:
        while self._idle:
            self._idle.pop()._close()
