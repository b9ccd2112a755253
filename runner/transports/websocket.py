"""The plain WebSocket transport at `/ws-client`: the simplest protocol anyone can write a client for.

Binary messages are PCM16 little-endian mono at `?sample_rate=` (default 16000) in both
directions; text messages are JSON app messages. Outbound audio is paced in real time.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, WebSocket

from runner.context import AppContext, SessionRoute
from runner.guards import authorized, json_problem
from runner.sessions import SessionRefused
from runner.transports.base import SessionInfo, Transport, check_options
from runner.transports.media_socket import MediaSocket

log = logging.getLogger("runner.websocket")

DEFAULT_RATE = 16000
ALLOWED_RATES = (8000, 16000, 24000, 32000, 44100, 48000)
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_POLICY = 1008


class WebSocketTransport(Transport):
    kind = "websocket"

    def __init__(self, session: SessionInfo, websocket: WebSocket, sample_rate: int) -> None:
        super().__init__(session, wire_rate=sample_rate)
        self.websocket = websocket
        self._socket = MediaSocket(websocket)

    async def run(self) -> None:
        self._set_connected()
        self._pace_to(self._socket.write)
        try:
            await self._socket.read(self._on_message)
            self._client_left("client disconnected")
        finally:
            self._outbound.stop()
            self._socket.stop()

    def _on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self._on_audio(message)
        else:
            self._on_text(message)

    def _on_audio(self, pcm: bytes) -> None:
        if len(pcm) % 2:
            log.warning("skipped a binary message of %d bytes: PCM16 needs an even length", len(pcm))
            return
        if pcm:
            self._receive_audio(pcm)

    def _on_text(self, text: str) -> None:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as error:  # not JSON, or past the parser's limits
            log.warning("skipped a text message that is not usable JSON (%s)", json_problem(error))
            return
        self._receive_message(data)

    async def _write_message(self, data: Any) -> None:
        self._socket.write(json.dumps(data))

    async def _close_wire(self, reason: str) -> None:
        await self._socket.close(1000, reason[:120])


def mount(app: FastAPI, context: AppContext, kinds: list[str]) -> None:
    check_options("websocket", context.bot.options_for("websocket"), WebSocketTransport.options)

    async def ws_client(websocket: WebSocket) -> None:
        if not authorized(context.config, websocket.headers):
            await websocket.close(CLOSE_POLICY)  # before accept: the client sees HTTP 403
            return
        raw_rate = websocket.query_params.get("sample_rate", str(DEFAULT_RATE))
        await websocket.accept()
        if not raw_rate.isdigit() or int(raw_rate) not in ALLOWED_RATES:
            rates = ", ".join(map(str, ALLOWED_RATES))
            await websocket.close(CLOSE_POLICY, f"sample_rate must be one of {rates}")
            return
        try:
            session = context.sessions.open("websocket", body=dict(websocket.query_params))
        except SessionRefused as refused:
            await websocket.close(CLOSE_TRY_AGAIN_LATER, str(refused))
            return
        transport: Transport
        if context.bot.pipecat:  # the bot's own Pipecat transport reads the socket
            from runner.handover import websocket_session

            transport = websocket_session(session.info, websocket)
        else:
            transport = WebSocketTransport(session.info, websocket, int(raw_rate))
        await session.run(transport)

    context.route(app, SessionRoute("WS", "/ws-client", "websocket"), ws_client)
