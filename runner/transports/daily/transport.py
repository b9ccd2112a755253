"""The Daily transport: one CallClient per session, in one room, for one bot.

The bot's audio leaves through a custom audio track (`write_frames` with a completion awaited as
a future, so the loop never blocks on daily's real-time pacing); people's audio arrives through
per-participant audio renderers, one voice at a time (see `roster`). Both run at 48 kHz, Opus's
own rate, so daily resamples nothing. Every SDK callback is a hop onto the loop (`threads`).

The session is over when the bot returns or hangs up, when the last person has been gone for a
short grace (a reload or a flaky network rejoins within it), or when nobody came in time. Then
the bot leaves and the client is released, even if the session task is cancelled meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from runner.transports.base import Dtmf, Event, SessionInfo
from runner.transports.daily.roster import Roster
from runner.transports.daily.sdk import Sdk
from runner.transports.daily.threads import LoopHop, SdkCallbacks
from runner.transports.daily.video import VideoFrame, VideoOut
from runner.transports.room import RoomTransport

log = logging.getLogger("runner.daily")

WIRE_RATE = 48000
FRAME_MS = 20
JOIN_TIMEOUT = 30.0
LEAVE_TIMEOUT = 10.0
EJECT_TIMEOUT = 5.0
SEND_TIMEOUT = 5.0
LAST_PARTICIPANT_GRACE = 2.0
DEFAULT_BOT_NAME = "Bot"


@dataclass(frozen=True)
class ParticipantJoined(Event):
    """Someone entered the room (the first also brings `ClientConnected`)."""

    participant_id: str
    name: str = ""


@dataclass(frozen=True)
class ParticipantLeft(Event):
    """Someone left; the session goes on while anyone is still there."""

    participant_id: str
    reason: str = ""


class DailyTransport(RoomTransport):
    kind = "daily"
    service = "Daily"
    options: ClassVar[Mapping[str, type]] = {"bot_name": str, "video": bool}
    #: The rate the bot's audio is sent at and people's audio is rendered at.
    sample_rate: ClassVar[int] = WIRE_RATE
    #: Smallest piece of the bot's audio written at once, in seconds (0: a 20 ms frame).
    min_chunk_seconds: ClassVar[float] = 0.0

    def __init__(self, session: SessionInfo, sdk: Sdk, *, room_url: str, token: str | None,
                 bot_name: str = DEFAULT_BOT_NAME, video: bool = False, wait_timeout: float | None = None,
                 leave_grace: float = LAST_PARTICIPANT_GRACE, eject_on_hangup: bool = False,
                 on_dialin_ready: Callable[[str], Awaitable[None]] | None = None) -> None:
        super().__init__(session, wait_timeout=wait_timeout, video=video,
                         wire_rate=self.sample_rate, min_chunk_seconds=self.min_chunk_seconds)
        self._sdk = sdk
        self._room_url = room_url
        self._token = token
        self._bot_name = bot_name
        self._leave_grace = leave_grace
        self._eject_on_hangup = eject_on_hangup
        self._on_dialin_ready = on_dialin_ready
        self._roster = Roster()
        self._client: Any = None
        self._hop: LoopHop | None = None
        self._callbacks: SdkCallbacks | None = None
        self._source: Any = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._video_out: VideoOut | None = None
        self._caller_connecting = False
        self._listening: str | None = None

    # ----------------------------------------------------------------- lifecycle

    @property
    def _room_label(self) -> str:
        return self._room_url

    def _open(self, loop: asyncio.AbstractEventLoop) -> None:
        self._hop = LoopHop(loop)
        self._callbacks = SdkCallbacks(self._hop, self)
        self._client = self._sdk.call_client(self._callbacks)

    def _greet_present(self) -> None:
        for participant in self._client.participants().values():
            self._participant_joined(participant)

    def _start_media(self) -> None:
        self._listen()
        self._pace_to(self._write_audio)

    async def _join(self) -> str | None:
        assert self._hop is not None
        settings = self._client_settings()
        self._client.set_user_name(self._bot_name)
        self._client.update_subscription_profiles({"base": {
            "microphone": "subscribed", "camera": "unsubscribed", "screenVideo": "unsubscribed"}})
        future, done = self._hop.completion()
        self._client.join(self._room_url, self._token, client_settings=settings, completion=done)
        try:
            _data, error = await asyncio.wait_for(future, JOIN_TIMEOUT)
        except TimeoutError:
            return f"no answer within {JOIN_TIMEOUT:.0f} s"
        return str(error) if error else None

    async def _close_wire(self, reason: str) -> None:
        """The bot hung up or its session ended: a phone caller is hung up too, then we leave."""
        if self._eject_on_hangup and self._joined.is_set() and self._roster.ids:
            assert self._hop is not None
            future, done = self._hop.completion()
            self._client.eject_remote_participants(self._roster.ids, completion=done)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, EJECT_TIMEOUT)
        await asyncio.shield(self._leave())

    async def _leave_room(self) -> None:
        self._cancel_timers()
        self._outbound.stop()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        client, hop = self._client, self._hop
        if client is None or hop is None:
            return
        try:
            future, done = hop.completion()
            client.leave(completion=done)
            (error,) = await asyncio.wait_for(future, LEAVE_TIMEOUT)
        except TimeoutError:
            error = f"no answer within {LEAVE_TIMEOUT:.0f} s"
        finally:
            await asyncio.to_thread(client.release)  # may take a moment; never on the loop
        if error:
            log.warning("leaving the Daily room %s: %s", self._room_url, error)
        log.info("left the Daily room %s (%s)", self._room_url, self.end_reason)

    def _client_settings(self) -> dict[str, Any]:
        """How the bot joins: its audio track as its microphone, no camera yet."""
        self._source = self._sdk.audio_source(self.wire_rate, self.wire_channels)
        return _join_settings(self._sdk.audio_track(self._source).id)

    # ----------------------------------------------------------------- media and messages

    def _write_audio(self, chunk: bytes) -> None:
        # With a completion the SDK queues the frames and returns: a call per tick, paced by us.
        self._source.write_frames(chunk, completion=_written)

    async def _write_message(self, data: Any) -> None:
        if not await self._until_joined():
            return
        assert self._hop is not None
        future, done = self._hop.completion()
        self._client.send_app_message(data, None, completion=done)
        try:
            (error,) = await asyncio.wait_for(future, SEND_TIMEOUT)
        except TimeoutError:
            error = f"no answer within {SEND_TIMEOUT:.0f} s"
        if error:
            log.warning("app message not sent: %s", error)

    def _watch_heard(self) -> None:
        if self._listening is not None:
            self._watch(self._listening)

    async def _camera(self, first: VideoFrame) -> VideoOut:
        if self._video_out is None:
            self._video_out = VideoOut(self._sdk, self._client, first)
        return self._video_out

    def _listen(self) -> None:
        """Render the audio (and video, if wanted) of the participant the bot hears."""
        participant_id = self._roster.heard
        if participant_id is None or participant_id == self._listening or not self._joined.is_set():
            return
        assert self._callbacks is not None
        self._listening = participant_id
        self._client.update_subscriptions(
            participant_settings={participant_id: {"media": {"microphone": "subscribed"}}})
        self._client.set_audio_renderer(participant_id, self._callbacks.audio,
                                        audio_source="microphone", sample_rate=self.wire_rate,
                                        callback_interval_ms=FRAME_MS)
        if self._video_in.wanted:
            self._watch(participant_id)

    def _watch(self, participant_id: str) -> None:
        assert self._callbacks is not None
        if participant_id in self._video_in.watched:
            return
        self._video_in.watched.add(participant_id)
        self._client.update_subscriptions(
            participant_settings={participant_id: {"media": {"camera": "subscribed"}}})
        self._client.set_video_renderer(participant_id, self._callbacks.video,
                                        video_source="camera", color_format="RGB")

    # ----------------------------------------------------------------- SDK events (on the loop)

    def _participant_joined(self, participant: Mapping[str, Any]) -> None:
        participant_id = self._roster.join(participant)
        if participant_id is None:
            return
        log.info("participant %s joined", participant_id)
        self._cancel("grace")
        self._cancel("wait")
        self._listen()
        self._set_connected()
        self._emit(ParticipantJoined(participant_id, self._roster.name(participant_id)))

    def _participant_left(self, participant: Mapping[str, Any], reason: str) -> None:
        participant_id = self._roster.leave(participant)
        if participant_id is None:
            return
        log.info("participant %s left (%s)", participant_id, reason)
        self._emit(ParticipantLeft(participant_id, reason))
        if self._roster.heard is None:
            self._later("grace", self._leave_grace,
                        lambda: self._client_left(f"the last participant left ({reason})"))
        else:
            self._listen()

    def _participant_audio(self, participant_id: str, pcm: bytes, rate: int, channels: int) -> None:
        if participant_id == self._roster.heard and pcm and not self.ended:
            self._receive_audio(pcm, rate, channels)

    def _participant_video(self, frame: VideoFrame) -> None:
        if frame.participant_id == self._roster.heard:
            self._video_in.put(frame)

    def _app_message(self, message: Any, sender: str) -> None:
        if not self.ended:
            self._receive_message(message)

    def _dtmf(self, data: Mapping[str, Any]) -> None:
        tone = data.get("tone")
        if isinstance(tone, str) and tone:
            self._emit(Dtmf(tone))

    def _dialin_ready(self, sip_endpoint: str) -> None:
        if self._on_dialin_ready is None or self._caller_connecting or self.ended:
            return
        self._caller_connecting = True  # one SIP endpoint per room: connect the caller once
        task = asyncio.create_task(self._connect_caller(self._on_dialin_ready, sip_endpoint))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect_caller(self, connect: Callable[[str], Awaitable[None]], sip: str) -> None:
        try:
            await connect(sip)
        except Exception as error:
            log.error("could not connect the dial-in caller: %s", error)
            await self.close(f"dial-in failed: {error}")

    def _call_state(self, state: str) -> None:
        if state == "left" and self._leaving is None and self._joined.is_set():
            self._client_left("the bot was removed from the room")


def _join_settings(track_id: str) -> dict[str, Any]:
    """Publish the custom track as the bot's microphone; no camera until the bot sends video."""
    return {
        "inputs": {
            "camera": {"isEnabled": False},
            "microphone": {"isEnabled": True, "settings": {"customTrack": {"id": track_id}}},
        },
        "publishing": {
            "camera": {"isPublishing": False},
            "microphone": {"isPublishing": True, "sendSettings": {"channelConfig": "mono"}},
        },
    }


def _written(*_: object) -> None:
    """The SDK's completion for queued audio frames: nothing waits for it."""
