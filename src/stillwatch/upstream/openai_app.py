"""What every model server here shares: the OpenAI error shape and the four routes."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route


def error_response(
    status: int,
    message: str,
    type_: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
) -> Response:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return Response(orjson.dumps(body), status, media_type="application/json")


def openai_app(server: Any) -> Starlette:
    """Routes to `server.chat`, `.completions`, `.models` and `.health`."""
    return Starlette(
        routes=[
            Route("/v1/chat/completions", server.chat, methods=["POST"]),
            Route("/v1/completions", server.completions, methods=["POST"]),
            Route("/v1/models", server.models, methods=["GET"]),
            Route("/healthz", server.health, methods=["GET"]),
        ]
    )
