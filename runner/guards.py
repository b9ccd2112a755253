"""What every route checks before doing work: the API key, the body size, the JSON shape.

Routes that start sessions spend the operator's money (Daily minutes, CPU), so with
RUNNER_API_KEY set they need `Authorization: Bearer <key>`. Bodies are read with a size cap and
parsed here so every route answers bad input the same way: a 4xx with a one-line reason.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Mapping
from typing import Any

from fastapi import HTTPException, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runner.config import Config

MAX_BODY_BYTES = 256 * 1024
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
#: Browser origins `runner dev` allows besides --allowed-origins: any local dev server.
LOOPBACK_ORIGIN = r"https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?"
CLOSE_POLICY = 1008


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


class OriginCheck:
    """ASGI middleware: with an allow-list of browser origins in force (--allowed-origins, and
    the loopback default in dev), a WebSocket from a page of another site is refused (HTTP 403).
    A WebSocket carries no CORS: without this, any site a user visits could open one. Clients
    that are not browsers send no Origin (phone providers) and are not affected; a page of the
    server's own origin always may."""

    def __init__(self, app: ASGIApp, config: Config) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and not origin_allowed(self.config, dict(scope["headers"])):
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": CLOSE_POLICY})  # before accept: 403
            return
        await self.app(scope, receive, send)


_LOOPBACK_ORIGIN = re.compile(LOOPBACK_ORIGIN)


def origin_allowed(config: Config, headers: Mapping[bytes, bytes]) -> bool:
    """Whether a WebSocket's Origin may connect (see OriginCheck)."""
    origin = headers.get(b"origin", b"").decode("latin-1")
    allowed = config.allowed_origins
    dev = config.mode == "dev"
    if not origin or not (allowed or dev) or "*" in allowed or origin in allowed:
        return True
    if dev and _LOOPBACK_ORIGIN.fullmatch(origin):
        return True
    host = headers.get(b"host", b"").decode("latin-1")
    return bool(host) and origin.split("://", 1)[-1] == host  # the server's own page


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
    """The body as a JSON object; 400 with the reason when it is not one, 415 when it is not
    sent as JSON (a browser sends `text/plain` to another site without asking it first)."""
    raw = await read_body(request, limit)
    if not raw.strip():
        if allow_empty:
            return {}
        raise HTTPException(400, "request body is empty; expected a JSON object")
    if not is_json(request.headers.get("content-type", "")):
        raise HTTPException(415, "send the body as Content-Type: application/json")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as error:  # not JSON, not UTF-8, or past the parser's limits
        raise HTTPException(400, f"request body is not usable JSON ({json_problem(error)})") from None
    if not isinstance(data, dict):
        raise HTTPException(400, "request body must be a JSON object")
    return data


def json_problem(error: Exception) -> str:
    """What was wrong with client JSON, in a few words (for a 400 or a skipped message's log)."""
    if isinstance(error, json.JSONDecodeError):
        return error.msg
    if isinstance(error, UnicodeDecodeError):
        return "not UTF-8"
    if isinstance(error, RecursionError):
        return "nested too deeply"
    return str(error).split(";")[0][:80]  # e.g. an integer over Python's digit limit


def is_json(content_type: str) -> bool:
    """`application/json` or a `+json` type, whatever its parameters (charset)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))
