"""What every route checks before doing work: the API key, the body size, the JSON shape.

Routes that start sessions spend the operator's money (Daily minutes, CPU), so with
RUNNER_API_KEY set they need `Authorization: Bearer <key>`. Bodies are read with a size cap and
parsed here so every route answers bad input the same way: a 4xx with a one-line reason.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from typing import Any

from fastapi import HTTPException, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runner.config import Config

MAX_BODY_BYTES = 256 * 1024
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


class BodyLimit:
    """ASGI middleware: no HTTP request body may exceed `limit` bytes (413), whatever the route."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", ())).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise HTTPException(413, f"request body over {self.limit} bytes")
            return message

        await self.app(scope, limited, send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": f"request body over {self.limit} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def authorized(config: Config, headers: Mapping[str, str]) -> bool:
    """True when no API key is configured, or the Bearer token matches it (constant time)."""
    if not config.api_key:
        return True
    header = headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode(), config.api_key.encode()
    )


def require_api_key(config: Config, request: Request) -> None:
    """Raise 401 unless the request carries the configured API key."""
    if not authorized(config, request.headers):
        raise HTTPException(401, "missing or wrong API key (Authorization: Bearer <RUNNER_API_KEY>)",
                            headers={"WWW-Authenticate": "Bearer"})


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The raw body, refused with 413 past `limit` without reading the rest."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"request body over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"request body over {limit} bytes")
    return bytes(body)


async def read_json_object(request: Request, limit: int = MAX_BODY_BYTES,
                           allow_empty: bool = False) -> dict[str, Any]:
    """The body as a JSON object; 400 with the reason when it is not one."""
    raw = await read_body(request, limit)
    if not raw.strip():
        if allow_empty:
            return {}
        raise HTTPException(400, "request body is empty; expected a JSON object")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        reason = error.msg if isinstance(error, json.JSONDecodeError) else "not UTF-8"
        raise HTTPException(400, f"request body is not valid JSON ({reason})") from None
    if not isinstance(data, dict):
        raise HTTPException(400, "request body must be a JSON object")
    return data
