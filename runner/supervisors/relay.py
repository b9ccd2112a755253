"""The relay: in a `--isolation process` server, each session's connection goes to a worker.

A WebSocket session (telephony, plain WebSocket) is handed over whole: its socket goes to the
worker, which serves it from then on (`Dispatcher`, reading request heads with runner.heads). An HTTP
session request (WebRTC signaling, Daily) is relayed by an ASGI middleware in front of the app:
a connection that starts a session (routing.py says which) gets a slot reserved in the server's
SessionManager and a prewarmed worker, and the request and its answer go through as ASGI
messages; the media then flows between the client and the worker directly. A WebRTC answer
tells which worker owns its `pc_id`, so trickled candidates and renegotiations reach it. What
the server can refuse itself (no API key, a bad stream token, full, draining) is answered as in
task mode, and no worker is spent on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from runner.context import AppContext, start_transport
from runner.guards import MAX_BODY_BYTES, authorized, is_json, origin_allowed
from runner.heads import VERDICT, protocol_factory
from runner.sessions import SessionRefused
from runner.supervisors import wire
from runner.supervisors.handle import LOST, Relayed, WorkerHandle
from runner.supervisors.routing import Target, session_route, target
from runner.supervisors.workers import WorkerPool, WorkerUnavailable

log = logging.getLogger("runner.relay")

#: `_relay_http`'s answer when the worker ended with its session before it read the request.
ENDED_FIRST = -1
CLOSE_INTERNAL_ERROR = 1011
REASON_BYTES = 120  # of a close frame's 123


def install_relay(app: FastAPI, context: AppContext) -> None:
    """Make `app` relay sessions to a pool of workers started and stopped with it; WebSocket
    sessions are handed over whole (`app.state.http_protocol`, see runner.heads)."""
    pool = WorkerPool(context.config, context.bot.reference, context.sessions)
    context.sessions.local = False
    context.startup_hooks.append(pool.start)
    context.shutdown_hooks.append(pool.stop)
    app.state.workers = pool
    app.state.http_protocol = protocol_factory(Dispatcher(app, pool), AutoHTTPProtocol)
    app.add_middleware(Relay, host=app, pool=pool)


class Dispatcher:
    """Where a connection goes (runner.heads.Router): a WebSocket session's socket is handed to
    a worker, decided from its request head exactly as the app would decide it, so no worker is
    spent on a refusal."""

    def __init__(self, host: FastAPI, pool: WorkerPool) -> None:
        self.host = host
        self.context: AppContext = host.state.context
        self.pool = pool

    def route(self, scope: Scope) -> Callable[[socket.socket, bytes], Awaitable[str | None]] | None:
        """A WebSocket session admitted here goes to a worker; anything else (and a refusal,
        which the app answers as in task mode) stays here."""
        kind = self._admit(scope) if scope["type"] == "websocket" else None
        return None if kind is None else functools.partial(self._hand_over, kind)

    def _admit(self, scope: Scope) -> str | None:
        """The session's kind, with a slot reserved for it; None to leave it to the app."""
        route = session_route(self.context.session_routes, scope)
        if route is None or route.role not in ("websocket", "telephony"):
            return None
        config = self.context.config
        if ((route.route.keyed and not authorized(config, _headers(scope)))
                or not origin_allowed(config, dict(scope["headers"]))):
            return None  # the app refuses it (403)
        try:
            self.context.sessions.reserve()
        except SessionRefused:
            return None  # full or draining: the app refuses it as task mode does
        if route.refusal(scope) is not None:  # after the slot: a stream token let in is spent
            self.context.sessions.release()
            return None  # the app refuses it as its route does, and logs why
        return route.params.get("provider") or route.role

    async def _hand_over(self, kind: str, sock: socket.socket, data: bytes) -> str | None:
        """Pass the connection to a worker; the reason (a verdict) when none could take it. A
        client that left meanwhile is handed over all the same: its worker sees it gone."""
        sessions = self.context.sessions
        try:
            handle = await self.pool.acquire()
        except WorkerUnavailable as error:
            sessions.release()
            shown = error.detail if error.detail and self.context.config.mode == "dev" else error
            return f"cannot start a session: {shown}"
        except BaseException:
            sessions.release()
            raise
        if not handle.hand_over(kind, sock, data):
            return f"cannot start a session: the worker process {handle.kill_reason or 'ended'}"
        return None


def answer_verdicts(app: ASGIApp) -> ASGIApp:
    """Wrap the server's app: a WebSocket whose hand-over failed carries a verdict (the reason,
    in uvicorn's per-connection state), and is accepted, then closed with 1011 and it."""

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        verdict = scope.get("state", {}).get(VERDICT) if scope["type"] == "websocket" else None
        if verdict is None:
            await app(scope, receive, send)
            return
        await receive()  # websocket.connect
        with contextlib.suppress(OSError, RuntimeError):
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": CLOSE_INTERNAL_ERROR,
                        "reason": verdict.encode()[:REASON_BYTES].decode(errors="ignore")})

    return guarded


class Relay:
    """HTTP session routes (WebRTC signaling, Daily) to the worker that owns the session."""

    def __init__(self, app: ASGIApp, host: FastAPI, pool: WorkerPool) -> None:
        self.app = answer_verdicts(app)
        self.host = host
        self.context: AppContext = host.state.context
        self.pool = pool

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = None
        if scope["type"] == "http":
            route = session_route(self.context.session_routes, scope)
        if route is None or (route.route.keyed
                             and not authorized(self.context.config, _headers(scope))):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            await self.app(scope, receive, send)  # the app answers 413 without reading it
            return
        body: dict[str, Any] | None = {}
        if route.route.reads_body:
            raw, read = await _read_body(receive)
            receive = Replay(read, receive)
            sent_as_json = not raw.strip() or is_json(_headers(scope).get("content-type", ""))
            body = (_json_object(raw) if read[-1].get("type") == "http.request" and sent_as_json
                    else None)  # None: the app answers it (400, 413, 415) as in task mode
        goal = target(route, body, lambda pc_id: self.pool.owner(pc_id) is not None,
                      lambda data: start_transport(data, self.context.start_handlers))
        if goal is None:
            await self.app(scope, receive, send)
        elif goal.pc_id is not None:
            await self._to_owner(goal, scope, receive, send)
        elif route.refusal(scope) is not None:
            await self.app(scope, receive, send)  # the app refuses it as task mode does
        else:
            await self._to_fresh(goal, scope, receive, send)

    # ----------------------------------------------------------------- choosing the worker

    async def _to_owner(self, goal: Target, scope: Scope, receive: Receive, send: Send) -> None:
        handle = self.pool.owner(goal.pc_id or "")
        if handle is None:  # it ended meanwhile: the app answers "unknown pc_id"
            await self.app(scope, receive, send)
            return
        first = _taken(receive)
        relayed = handle.connect(goal.kind, wire.portable(scope), reserved=False, first=first)
        status = await self._relay_http(handle, relayed, receive, send, goal)
        if status == ENDED_FIRST:  # its session ended as this came: "unknown pc_id", as in task mode
            await self.app(scope, Replay(first, receive), send)

    async def _to_fresh(self, goal: Target, scope: Scope, receive: Receive, send: Send) -> None:
        held = None
        if goal.held is not None:
            held = self.context.held.take(goal.held) if self.context.held else None
            if held is None:  # unknown or expired: the app answers 404
                await self.app(scope, receive, send)
                return
        sessions = self.context.sessions
        try:
            sessions.reserve()
        except SessionRefused:  # full or draining: the app refuses as task mode does
            self._put_back(goal, held)
            await self.app(scope, receive, send)
            return
        try:
            handle = await self.pool.acquire()
        except BaseException as error:
            sessions.release()
            self._put_back(goal, held)
            if not isinstance(error, WorkerUnavailable):
                raise
            shown = error.detail if error.detail and self.context.config.mode == "dev" else error
            await _error_response(send, 502, f"cannot start a session: {shown}")
            return
        relayed = handle.connect(goal.kind, wire.portable(scope), reserved=True,
                                 held=(goal.held, held.body) if goal.held and held else None,
                                 first=_taken(receive))
        status = await self._relay_http(handle, relayed, receive, send, goal)
        if status != 200:
            self._put_back(goal, held)  # the client may fix its offer and retry

    def _put_back(self, goal: Target, held: Any) -> None:
        if goal.held is not None and held is not None and self.context.held is not None:
            self.context.held.put_back(goal.held, held)

    # ----------------------------------------------------------------- relaying

    async def _relay_http(self, handle: WorkerHandle, relayed: Relayed, receive: Receive,
                          send: Send, goal: Target) -> int:
        """Relay one request; returns the worker's status (502 when the worker died first, and
        ENDED_FIRST, with nothing sent, when it had ended with its session)."""
        pump = asyncio.create_task(_pump(handle, relayed, receive, "http.disconnect"))
        status, answer = 0, bytearray()
        try:
            while (record := await relayed.outbox.get())[0] == wire.SEND:
                message = record[2]
                if message["type"] == "http.response.start":
                    status = message["status"]
                elif goal.kind == "webrtc" and status == 200:
                    answer += message.get("body", b"")
                    if not message.get("more_body"):
                        self._learn(answer, handle)  # before the client can PATCH
                await send(message)
            if record[0] == LOST:
                if status:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                elif handle.ended_cleanly:
                    status = ENDED_FIRST
                else:
                    status = 502
                    await _error_response(send, 502, record[1])
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
        return status

    def _learn(self, answer: bytearray, handle: WorkerHandle) -> None:
        pc_id = (_json_object(bytes(answer)) or {}).get("pc_id")
        if isinstance(pc_id, str):
            self.pool.learn(pc_id, handle)


async def _pump(handle: WorkerHandle, relayed: Relayed, receive: Receive, last: str) -> None:
    """What the client sends, to the worker, until it is gone."""
    while True:
        message = await receive()
        await handle.forward(relayed, message)
        if message["type"] == last:
            return


async def _send_quietly(send: Send, message: Message) -> None:
    """Send to a client that may have gone already (its disconnect reaches the worker anyway)."""
    with contextlib.suppress(OSError, RuntimeError):
        await send(message)


async def _error_response(send: Send, status: int, reason: str) -> None:
    body = json.dumps({"detail": reason}).encode()
    await _send_quietly(send, {"type": "http.response.start", "status": status,
                               "headers": [(b"content-type", b"application/json"),
                                           (b"content-length", str(len(body)).encode())]})
    await _send_quietly(send, {"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> tuple[bytes, list[Message]]:
    """The request body, up to the body limit; and the messages read, to replay to the app."""
    read: list[Message] = []
    size = 0
    while True:
        message = await receive()
        read.append(message)
        if message["type"] != "http.request":
            break
        size += len(message.get("body", b""))
        if size > MAX_BODY_BYTES or not message.get("more_body"):
            break
    return b"".join(message.get("body", b"") for message in read), read


class Replay:
    """A receive that first gives back the messages read already (to decide where to go)."""

    def __init__(self, read: list[Message], receive: Receive) -> None:
        self.pending = deque(read)
        self.receive = receive

    async def __call__(self) -> Message:
        return self.pending.popleft() if self.pending else await self.receive()


def _taken(receive: Receive) -> list[Message]:
    """What was read already, to go with the scope to the worker in one record."""
    if not isinstance(receive, Replay):
        return []
    taken = list(receive.pending)
    receive.pending.clear()
    return taken


def _json_object(raw: bytes) -> dict[str, Any] | None:
    if len(raw) > MAX_BODY_BYTES:
        return None
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # the app answers it with the reason
        return None
    return data if isinstance(data, dict) else None


def _headers(scope: Scope) -> dict[str, str]:
    return {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
