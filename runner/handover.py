"""Sessions handed over to a bot written for Pipecat's development runner.

Such a bot (`async def bot(runner_args: RunnerArguments)`, runner.loader tells) builds its own
transport with `pipecat.runner.utils.create_transport(runner_args, transport_params)`, so it
must get what Pipecat's runner gives it, built through Pipecat's public constructors:

- plain WebSocket and phone calls: `WebSocketRunnerArguments` with the Starlette WebSocket. The
  phone route has already read the provider's first messages to tell who called; the bot gets a
  `ReplayWebSocket` that hands those out again first, so `parse_telephony_websocket` sees them.
- WebRTC: `SmallWebRTCRunnerArguments` with a `SmallWebRTCConnection`. Pipecat's connection
  builds its own aiortc peer (it has no public way to adopt one), so for these bots it owns the
  peer: `PipecatPeer` answers runner's signaling routes (/api/offer, PATCH, /sessions/..., /start
  unchanged) through the connection's public `initialize` / `renegotiate` / `add_ice_candidate`.
- Daily: `DailyRunnerArguments(room_url, token, body)`; the bot joins the room itself.

Runner keeps the session: the slot, limits, drain, time cap, metrics, worker processes and
signature checks are the route's, as for any bot. `HandedOver` is the runner Transport of such a
session: it carries no audio (Pipecat's transport does), ends when the client leaves or the bot
returns, and closes the connection when runner ends the session. Pipecat is imported only when a
session is built, never for `runner --help`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from starlette.types import Message
from starlette.websockets import WebSocket, WebSocketState

from runner.config import Config, ConfigError
from runner.transports.base import SessionInfo, Transport, TransportError

log = logging.getLogger("runner.handover")

#: Where runner can hand a session to a Pipecat runner bot: what `create_transport` builds.
KINDS = ("webrtc", "daily", "websocket", "twilio", "telnyx", "plivo", "exotel")

NOTE = ("a Pipecat runner bot (runner_args): it gets Pipecat's RunnerArguments and builds its "
        "own transport with create_transport; runner's Transport API (send_audio, clear_audio, "
        "marks, events) and transport_options do not apply to it")

Close = Callable[[str], Awaitable[None]]


#: Pipecat's create_transport reads the phone providers' credentials from the environment (its
#: serializers hang calls up with them); runner's settings under the same names may come from
#: .env or the command line, so they are passed on.
PROVIDER_ENV = {"TWILIO_ACCOUNT_SID": "twilio_account_sid", "TWILIO_AUTH_TOKEN": "twilio_auth_token",
                "TELNYX_API_KEY": "telnyx_api_key", "PLIVO_AUTH_ID": "plivo_auth_id",
                "PLIVO_AUTH_TOKEN": "plivo_auth_token"}


def prepare(config: Config, kinds: Sequence[str]) -> None:
    """At start: check the transports, and give Pipecat the provider credentials runner has
    (`runner smoke`'s local callers need no hang-up: placeholders let its serializers start)."""
    check_kinds(kinds)
    if config.idle_timeout and "daily" in kinds:
        log.warning("--idle-timeout does not end Daily sessions of a Pipecat runner bot: runner "
                    "sees no media there (the bot's own transport is in the room)")
    for env, name in PROVIDER_ENV.items():
        value = getattr(config, name, None) or ("smoke" if config.mode == "smoke" else None)
        if value and not os.environ.get(env):
            os.environ[env] = value


def check_kinds(kinds: Sequence[str]) -> None:
    """A Pipecat runner bot on a transport Pipecat's runner has no arguments for is a one-line
    error at start, not a failed call."""
    other = [kind for kind in kinds if kind not in KINDS]
    if other:
        served = [kind for kind in kinds if kind in KINDS]
        instead = f"; pass --transport {','.join(served)}" if served else ""
        raise ConfigError(f"a Pipecat runner bot (runner_args) runs on {', '.join(KINDS)}, not "
                          f"{', '.join(other)}{instead}")


class HandedOver(Transport):
    """The runner side of a session whose media a Pipecat transport carries."""

    kind = "pipecat"

    def __init__(self, session: SessionInfo, kind: str, close: Close | None = None) -> None:
        super().__init__(session, wire_rate=16000)
        self.kind = kind  # type: ignore[misc]  # reported as the route's transport
        self.runner_args: Any = None
        self._close = close
        #: What changes with the media's traffic, where runner can see it (`activity`).
        self.traffic: Callable[[], Awaitable[object]] | None = None

    async def run(self) -> None:
        self._set_connected()
        await self._ended.wait()

    def client_left(self, reason: str) -> None:
        self._client_left(reason)

    async def activity(self) -> object:
        """The connection's messages or packets, not runner's audio: Pipecat's transport
        carries it (None on Daily, whose room runner does not join for such a bot)."""
        return None if self.traffic is None else await self.traffic()

    async def left(self) -> None:
        """Daily's room clean-up waits for this: the bot leaves the room with its pipeline."""
        await self._ended.wait()

    async def _write_message(self, data: Any) -> None:
        raise TransportError(f"this bot's transport is Pipecat's: {NOTE}")

    async def _close_wire(self, reason: str) -> None:
        if self._close is not None:
            await self._close(reason)


class ReplayWebSocket(WebSocket):
    """The same connection, handing out `replay` (messages already read) before the rest.

    Built on Starlette's public WebSocket: receive and send go through the wrapped socket, so its
    state stays right for runner's own code too. `on_message` sees every message taken from the
    socket (`record=True` keeps them, to replay later); a disconnect ends the runner session."""

    def __init__(self, websocket: WebSocket, replay: Iterable[Message] = (), *,
                 record: bool = False) -> None:
        super().__init__(websocket.scope, receive=websocket.receive, send=websocket.send)
        self.client_state = websocket.client_state
        self.application_state = websocket.application_state
        self._replay = deque(replay)
        self.recorded: list[Message] = []
        self._record = record
        self.on_disconnect: Callable[[], None] | None = None
        self.messages = 0  # both ways: what `--idle-timeout` watches for a Pipecat runner bot

    async def receive(self) -> Message:
        if self._replay:
            return self._replay.popleft()
        message = await super().receive()
        if message["type"] == "websocket.receive":
            self.messages += 1
            if self._record:
                self.recorded.append(message)
        elif message["type"] == "websocket.disconnect" and self.on_disconnect is not None:
            self.on_disconnect()
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "websocket.send":
            self.messages += 1
        await super().send(message)

    def stop_recording(self) -> list[Message]:
        """What was recorded, once: the rest of the call is not kept (a long call's messages
        would pile up for nothing)."""
        recorded, self.recorded, self._record = self.recorded, [], False
        return recorded

    def replaying(self) -> ReplayWebSocket:
        """A socket for the bot that starts with what was recorded here."""
        return ReplayWebSocket(self, self.stop_recording())


async def _close_socket(websocket: WebSocket) -> None:
    if (websocket.application_state == WebSocketState.CONNECTED
            and websocket.client_state == WebSocketState.CONNECTED):
        with contextlib.suppress(RuntimeError, OSError):
            await websocket.close(1000)


def websocket_session(session: SessionInfo, websocket: WebSocket,
                      transport_type: str | None = "websocket",
                      end_call: Callable[[], Awaitable[object]] | None = None) -> HandedOver:
    """`WebSocketRunnerArguments` for a plain WebSocket (`transport_type="websocket"`) or a phone
    call (None: `create_transport` detects the provider from the replayed first messages)."""
    from pipecat.runner.types import WebSocketRunnerArguments

    bot_socket = websocket if isinstance(websocket, ReplayWebSocket) else ReplayWebSocket(websocket)

    async def close(reason: str) -> None:
        await _close_socket(bot_socket)
        if end_call is not None and not transport.client_gone:
            await end_call()  # runner ended the call (drain, time cap): the provider hangs up

    transport = HandedOver(session, session.kind, close)
    bot_socket.on_disconnect = lambda: transport.client_left("client disconnected")

    async def messages() -> int:
        return bot_socket.messages

    transport.traffic = messages
    transport.runner_args = WebSocketRunnerArguments(
        websocket=bot_socket, transport_type=transport_type, body=session.body,
        session_id=session.id)
    return transport


def daily_session(session: SessionInfo, room_url: str, token: str | None) -> HandedOver:
    """`DailyRunnerArguments`: the bot joins the room with Pipecat's DailyTransport. Runner
    cannot make it leave; a session runner ends is cancelled after the grace period."""
    from pipecat.runner.types import DailyRunnerArguments

    transport = HandedOver(session, session.kind)
    transport.runner_args = DailyRunnerArguments(room_url=room_url, token=token,
                                                 body=session.body or {}, session_id=session.id)
    return transport


class PipecatPeer(HandedOver):
    """A WebRTC session whose peer is Pipecat's SmallWebRTCConnection, answering runner's
    signaling as runner's own peer does (registry.py finds it by `pc_id`)."""

    def __init__(self, session: SessionInfo, ice_servers: Sequence[Any] = (),
                 connect_timeout: float = 0.0) -> None:
        from pipecat.runner.types import SmallWebRTCRunnerArguments
        from pipecat.transports.smallwebrtc.connection import IceServer, SmallWebRTCConnection

        super().__init__(session, "webrtc", self._disconnect)
        servers = [IceServer(urls=server["urls"], username=server.get("username"),
                             credential=server.get("credential")) for server in ice_servers]
        self.connection = SmallWebRTCConnection(
            ice_servers=servers or None, connection_timeout_secs=int(connect_timeout or 60))
        self.connection.add_event_handler("closed", self._closed)
        self._answered = False
        self.traffic = self._packets
        self.runner_args = SmallWebRTCRunnerArguments(
            webrtc_connection=self.connection, body=session.body, session_id=session.id)

    @property
    def pc_id(self) -> str | None:
        return self.connection.pc_id if self._answered else None

    async def answer(self, offer: Any) -> str:
        from runner.transports.webrtc.signaling import SignalingError

        if self.ended:
            raise SignalingError("that session has ended", 404)
        if self._answered:
            await self.connection.renegotiate(sdp=offer.sdp, type="offer",
                                              restart_pc=offer.restart_pc)
        else:
            await self.connection.initialize(sdp=offer.sdp, type="offer")
            self._answered = True
        answer = self.connection.get_answer()
        if answer is None:
            raise SignalingError("the offer was not answered", 500)
        return str(answer["sdp"])

    async def add_candidates(self, candidates: Iterable[Any]) -> None:
        from runner.transports.webrtc.peer import ice_candidate
        from runner.transports.webrtc.signaling import SignalingError

        for candidate in [ice_candidate(item) for item in candidates]:
            try:
                await self.connection.add_ice_candidate(candidate)
            except ValueError as error:
                raise SignalingError(f"ICE candidate not usable: {error}") from None

    async def _packets(self) -> int:
        """RTP packets both ways, from aiortc's public statistics of Pipecat's peer."""
        report = await self.connection.pc.getStats()
        return sum(getattr(stat, "packetsReceived", 0) + getattr(stat, "packetsSent", 0)
                   for stat in report.values())

    async def _closed(self, _connection: Any) -> None:
        self.client_left("the peer connection closed")

    async def _disconnect(self, reason: str) -> None:
        if not self.client_gone:
            await self.connection.disconnect()
