"""The gateway's keep-alive pool to the upstream."""

from __future__ import annotations

import asyncio

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from stillwatch.gateway.upstream_pool import UpstreamError, UpstreamPool, UpstreamTimeout

from helpers import ServerThread, free_port

BODY = b'{"model":"mock-small","messages":[{"role":"user","content":"hi"}]}'
JSON = [("Content-Type", "application/json")]


def test_connections_are_reused(mock_upstream) -> None:
    async def run() -> tuple[int, int]:
        pool = UpstreamPool(mock_upstream.url)
        seen = set()
        for _ in range(5):
            resp = await pool.request(b"POST", "/v1/chat/completions", BODY, JSON)
            assert resp.status == 200 and b"choices" in await resp.read()
            seen.add(id(resp._conn))
            resp.release()
        idle = len(pool._idle)
        await pool.close()
        return len(seen), idle

    assert asyncio.run(run()) == (1, 1)


def test_streamed_body_arrives_in_pieces_and_connection_is_reused(mock_upstream) -> None:
    async def run() -> tuple[int, bytes, int]:
        pool = UpstreamPool(mock_upstream.url)
        body = BODY[:-1] + b',"stream":true}'
        resp = await pool.request(b"POST", "/v1/chat/completions", body, JSON)
        pieces = [c async for c in resp.iter_chunks()]
        resp.release()
        again = await pool.request(b"GET", "/v1/models")
        await again.read()
        reused = id(again._conn) == id(resp._conn)
        again.release()
        await pool.close()
        return len(pieces), b"".join(pieces), reused

    n, data, reused = asyncio.run(run())
    assert n > 1 and data.rstrip().endswith(b"data: [DONE]") and reused


def test_connection_close_is_honoured_and_errors_are_typed() -> None:
    async def closing(request: Request) -> Response:
        return Response(b"{}", headers={"Connection": "close"}, media_type="application/json")

    async def slow(request: Request) -> StreamingResponse:
        async def gen():
            yield b"data: 1\n\n"
            await asyncio.sleep(5)
            yield b"data: 2\n\n"

        return StreamingResponse(gen(), media_type="text/event-stream")

    server = ServerThread(
        Starlette(routes=[Route("/close", closing, methods=["POST"]), Route("/slow", slow)])
    ).start()

    async def run() -> None:
        pool = UpstreamPool(server.url, read_timeout=0.3)
        resp = await pool.request(b"POST", "/close", b"{}")
        await resp.read()
        resp.release()
        assert len(pool._idle) == 0  # the upstream said close
        resp = await pool.request(b"GET", "/slow")
        with pytest.raises(UpstreamTimeout):
            async for _ in resp.iter_chunks():
                pass
        resp.release()
        dead = UpstreamPool(f"http://127.0.0.1:{free_port()}")
        with pytest.raises(UpstreamError, match="cannot connect"):
            await dead.request(b"GET", "/")
        with pytest.raises(ValueError):
            UpstreamPool("https://example.org")

    try:
        asyncio.run(run())
    finally:
        server.stop()
