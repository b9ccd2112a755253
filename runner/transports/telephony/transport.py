"""The phone-call transport: one class for every provider, the provider's codec does the talking.

The base Transport queues, resamples and paces outbound audio; here each paced chunk becomes the
provider's media message. Marks go to the provider when our pacer reaches them and are reported
when the provider says they played, so `MarkReached` means "the caller heard it", not "we sent
it". A message we cannot use is logged and skipped; only `stop` or the socket closing ends a call.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.websockets import WebSocket

from runner.transports.base import Dtmf, MarkReached, SessionInfo, Transport
from runner.transports.media_socket import MediaSocket
from runner.transports.telephony.codec import (
    Audio,
    Codec,
    Digit,
    Malformed,
    Played,
    Stopped,
    loads,
)
from runner.transports.telephony.detect import Data

log = logging.getLogger("runner.telephony")

LOGGED_SKIPS = 10  # per call at warning level; the rest at debug, so a broken peer cannot flood
CLOSE_REASON_BYTES = 123  # the most a WebSocket close data holds


#: Hang-ups in flight, held here so none is garbage-collected before it is done.
_endings: set[asyncio.Future[None]] = set()


def close_reason(text: str) -> str:
    """`text` cut to what fits in a close data."""
    return text.encode()[:CLOSE_REASON_BYTES].decode(errors="ignore")


class TelephonyTransport(Transport):
    """A phone call on a provider's media-stream WebSocket."""

    kind = "telephony"  # each instance reports its provider, see __init__
    send_ahead = 0.2  # providers play our audio from their own buffer (PROTOCOLS.md 1.3)

    def __init__(
        self,
        session: SessionInfo,
        websocket: WebSocket,
        codec: Codec,
        *,
        replay: Iterable[Data] = (),
        end_call: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """`replay`: messages read before the transport existed; `end_call`: the provider's REST
        hang-up, run when we (not the caller) end the call."""
        super().__init__(session, wire_rate=codec.audio.sample_rate,
                         min_chunk_seconds=codec.chunk_seconds,
                         max_chunk_seconds=codec.max_chunk_seconds)
        self.kind = codec.provider  # type: ignore[misc]  # the provider is the transport kind
        self.websocket = websocket
        self._socket = MediaSocket(websocket)
        self.codec = codec
        self._replay = list(replay)
        self._end_call = end_call
        self._sent_marks: deque[str] = deque()  # sent, not yet confirmed
        self._clearing: Counter[str] = Counter()  # the provider will confirm these as cleared
        self._skipped = 0
        self._told_no_messages = False
        self._ending: asyncio.Future[None] | None = None

    async def run(self) -> None:
        self._set_connected()
        self._pace_to(self._send_media)
        try:
            for data in self._replay:
                self._handle(data)
            self._replay.clear()
            await self._socket.read(self._handle)
            self._client_left(f"{self.kind} closed the stream")
        finally:
            self._outbound.stop()
            self._socket.stop()
            if self._ending is not None:  # the session is over once the call is
                await asyncio.shield(self._ending)
            if self._skipped > LOGGED_SKIPS:
                log.warning("skipped %d unusable messages on this call", self._skipped)

    def _handle(self, data: Data) -> None:
        if self._ended.is_set():
            return
        try:
            if isinstance(data, bytes):
                event = self.codec.parse_binary(data)
            else:
                try:
                    message = loads(data)
                except (ValueError, RecursionError):
                    raise Malformed(f"not JSON: {data[:40]!r}") from None
                if not isinstance(message, dict):
                    raise Malformed("not a JSON object")
                event = self.codec.parse(message)
        except Malformed as error:
            self._skipped += 1
            level = logging.WARNING if self._skipped <= LOGGED_SKIPS else logging.DEBUG
            log.log(level, "skipped a %s message: %s", self.kind, error)
            return
        if isinstance(event, Audio):
            if event.pcm:
                self._receive_audio(event.pcm, self.wire_rate)
        elif isinstance(event, Digit):
            self._emit(Dtmf(event.digit))
        elif isinstance(event, Played):
            self._confirm(event.name)
        elif isinstance(event, Stopped):
            self._client_left(event.reason)

    # ------------------------------------------------------------------ marks and barge-in

    def _mark_played(self, name: str, cleared: bool) -> None:
        """The pacer reached a mark: hand it to the provider, who plays our audio from a buffer."""
        if cleared or not self._open:
            self._emit(MarkReached(name, cleared=True))
            return
        self._sent_marks.append(name)
        self._socket.write(self.codec.mark(name))

    def _confirm(self, name: str) -> None:
        if self._clearing[name]:
            self._clearing[name] -= 1
            self._emit(MarkReached(name, cleared=True))
        elif name in self._sent_marks:
            self._sent_marks.remove(name)
            self._emit(MarkReached(name))
        else:
            log.debug("ignored a %s confirmation of mark %r we are not waiting for", self.kind, name)

    async def _write_clear(self) -> None:
        self._socket.write(self.codec.clear())
        if self.codec.confirms_cleared_marks:
            self._clearing.update(self._sent_marks)
        else:
            for name in self._sent_marks:
                self._emit(MarkReached(name, cleared=True))
        self._sent_marks.clear()

    # ------------------------------------------------------------------ the wire

    @property
    def _open(self) -> bool:
        return self._socket.open

    def _send_media(self, pcm: bytes) -> None:
        self._socket.write(self.codec.media(pcm))

    async def _write_message(self, data: Any) -> None:
        # A bot written for the browser must work on the phone unchanged: drop, say so once.
        if not self._told_no_messages:
            self._told_no_messages = True
            log.info("app messages have no channel on a %s call; dropped", self.kind)

    async def _close_wire(self, reason: str) -> None:
        """We end the call. In a task of its own: a bot often hangs up from a task it cancels
        as soon as its audio ends, and that must not cut the REST hang-up short."""
        if self._ending is None:
            self._ending = asyncio.ensure_future(self._end(reason))
            _endings.add(self._ending)
            self._ending.add_done_callback(_endings.discard)
        await asyncio.shield(self._ending)

    async def _end(self, reason: str) -> None:
        """Close the socket (enough where nothing follows the stream), then the provider's REST
        hang-up where it has one."""
        await self._socket.close(1000, close_reason(reason))
        if self._end_call is not None:
            await self._end_call()
