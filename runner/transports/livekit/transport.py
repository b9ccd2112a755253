"""The LiveKit transport: the bot in one LiveKit room, as a participant of its own (livekit.rtc).

The bot's audio leaves through one published track fed from an `AudioSource` at the rate the
bot sends (transport option `sample_rate`, default 48 kHz, Opus's own rate), paced by runner:
one 20 ms frame per tick goes to `capture_frame`, so LiveKit's own queue stays a frame or two
deep and `clear_audio()` (`clear_queue`) silences the bot at once. The bot hears one person at
a time: the first remote participant that is not an agent, through an `AudioStream`; when that
one leaves, the next in order of arrival. App messages are JSON, reliable, on one data topic.
With transport option `video`, the bot also sees that person's camera and may publish its own
(`video`: Daily's VideoFrame both ways).

livekit.rtc emits its events on the loop it was given; runner still hops each one onto the
session's loop (`LoopHop`), so a callback from any thread or task is safe, and what it logs
carries the session id. The session ends as on Daily: the bot returns or hangs up, the last
person has been gone for a short grace, or nobody came in time; then the bot leaves the room.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Mapping
from typing import Any, ClassVar

from runner.pacing import Flag
from runner.transports.base import CallInfo, Dtmf, SessionInfo
from runner.transports.daily.threads import LoopHop
from runner.transports.daily.transport import (
    DEFAULT_BOT_NAME,
    LAST_PARTICIPANT_GRACE,
    ParticipantJoined,
    ParticipantLeft,
)
from runner.transports.daily.video import VideoFrame
from runner.transports.livekit import video
from runner.transports.room import RoomTransport

log = logging.getLogger("runner.livekit")

WIRE_RATE = 48000
#: The data topic app messages travel on, both ways; packets on other topics are not the bot's.
DATA_TOPIC = "runner"
JOIN_TIMEOUT = 30.0
LEAVE_TIMEOUT = 10.0
#: LiveKit's own queue behind the AudioSource: runner paces, so a frame or two sits there.
SOURCE_QUEUE_MS = 200
#: SIP participants' attributes (LiveKit telephony) -> CallInfo fields.
SIP_ATTRIBUTES = {"call_id": "sip.callID", "from_number": "sip.phoneNumber",
                  "to_number": "sip.trunkPhoneNumber"}


class LiveKitTransport(RoomTransport):
    kind = "livekit"
    service = "LiveKit"
    options: ClassVar[Mapping[str, type]] = {"bot_name": str, "sample_rate": int, "video": bool}

    def __init__(self, session: SessionInfo, rtc: Any, *, url: str, token: str, room_name: str,
                 sample_rate: int = WIRE_RATE, video: bool = False,
                 wait_timeout: float | None = None,
                 leave_grace: float = LAST_PARTICIPANT_GRACE) -> None:
        super().__init__(session, wait_timeout=wait_timeout, video=video, wire_rate=sample_rate)
        self.room_name = room_name
        self._rtc = rtc
        self._url = url
        self._token = token
        self._leave_grace = leave_grace
        self._room: Any = None
        self._source: Any = None
        self._hop: LoopHop | None = None
        self._people: dict[str, Any] = {}  # identity -> participant, in order of arrival
        self._audio_tracks: dict[str, Any] = {}  # identity -> their subscribed audio track
        self._listening: tuple[str, Any] | None = None  # (identity, track) heard now
        self._stream_task: asyncio.Task[None] | None = None
        self._frames: deque[bytes] = deque()
        self._frames_ready = Flag()
        self._feeder: asyncio.Task[None] | None = None
        self._video_tracks: dict[str, Any] = {}  # identity -> their subscribed camera track
        self._watching: tuple[str, Any] | None = None  # (identity, track) seen now
        self._watch_task: asyncio.Task[None] | None = None
        self._video_out: video.VideoOut | None = None
        self._video_out_lock = asyncio.Lock()

    # ----------------------------------------------------------------- lifecycle

    @property
    def _room_label(self) -> str:
        return self.room_name

    def _open(self, loop: asyncio.AbstractEventLoop) -> None:
        self._hop = LoopHop(loop)
        self._room = self._rtc.Room(loop=loop)
        self._subscribe_events(self._room)

    def _greet_present(self) -> None:
        for participant in list(self._room.remote_participants.values()):
            self._participant_connected(participant)

    def _start_media(self) -> None:
        self._feeder = asyncio.create_task(self._feed(), name=f"livekit:{self.session.id}")
        self._pace_to(self._write_audio)

    async def _join(self) -> str | None:
        """Connect, then publish the bot's track; the reason it failed, or None."""
        rtc = self._rtc
        try:
            await asyncio.wait_for(self._room.connect(self._url, self._token), JOIN_TIMEOUT)
            self._source = rtc.AudioSource(self.wire_rate, self.wire_channels,
                                           queue_size_ms=SOURCE_QUEUE_MS)
            track = rtc.LocalAudioTrack.create_audio_track("bot", self._source)
            options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
            await asyncio.wait_for(self._room.local_participant.publish_track(track, options),
                                   JOIN_TIMEOUT)
        except TimeoutError:
            return f"no answer within {JOIN_TIMEOUT:.0f} s"
        except Exception as error:  # the SDK raises its own ConnectError, or plain Exception
            return str(error) or type(error).__name__
        return None

    def _subscribe_events(self, room: Any) -> None:
        """Each SDK event only hops onto the session's loop, where the real work runs."""
        hop = self._hop
        assert hop is not None
        handlers = {
            "participant_connected": self._participant_connected,
            "participant_disconnected": self._participant_disconnected,
            "track_subscribed": self._track_subscribed,
            "data_received": self._data_received,
            "sip_dtmf_received": self._dtmf,
            "disconnected": self._disconnected,
        }
        for event, handler in handlers.items():
            room.on(event, lambda *args, _handler=handler: hop.call(_handler, *args))

    async def _close_wire(self, reason: str) -> None:
        await asyncio.shield(self._leave())

    async def _leave_room(self) -> None:
        self._cancel_timers()
        self._outbound.stop()
        for task in (self._feeder, self._stream_task, self._watch_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        room = self._room
        if room is None:
            return
        try:
            await asyncio.wait_for(room.disconnect(), LEAVE_TIMEOUT)
        except Exception as error:
            log.warning("leaving the LiveKit room %s: %s", self.room_name,
                        str(error) or type(error).__name__)
        if self._source is not None:
            with contextlib.suppress(Exception):
                await self._source.aclose()
        if self._video_out is not None:
            await self._video_out.aclose()
        log.info("left the LiveKit room %s (%s)", self.room_name, self.end_reason)

    # ----------------------------------------------------------------- the bot's audio

    def _write_audio(self, chunk: bytes) -> None:
        """The pacer's tick: hand the frame to the feeder (capture_frame is a coroutine)."""
        self._frames.append(chunk)
        self._frames_ready.set()

    async def _feed(self) -> None:
        """Push paced frames into the AudioSource, one at a time, in order."""
        rtc, source, frames, ready = self._rtc, self._source, self._frames, self._frames_ready
        bytes_per_sample = 2 * self.wire_channels
        while True:
            while not frames:
                ready.clear()
                await ready.wait()
            pcm = frames.popleft()
            frame = rtc.AudioFrame(pcm, self.wire_rate, self.wire_channels,
                                   len(pcm) // bytes_per_sample)
            try:
                await source.capture_frame(frame)
            except Exception as error:
                log.warning("the bot's audio did not reach LiveKit: %s", error)

    async def _write_clear(self) -> None:
        self._frames.clear()
        if self._source is not None:
            self._source.clear_queue()

    # ----------------------------------------------------------------- video

    async def _camera(self, first: VideoFrame) -> video.VideoOut:
        async with self._video_out_lock:  # two first frames at once publish one track
            if self._video_out is None:
                self._video_out = await video.VideoOut.publish(
                    self._rtc, self._room.local_participant, first, JOIN_TIMEOUT)
        return self._video_out

    def _watch_heard(self) -> None:
        heard = next(iter(self._people), None)
        track = self._video_tracks.get(heard) if heard is not None else None
        if (self.ended or not self._video_in.wanted or track is None
                or self._watching == (heard, track)):
            return
        if self._watch_task is not None:
            self._watch_task.cancel()
        assert heard is not None
        self._watching = (heard, track)
        stream = video.open_stream(self._rtc, track)
        self._watch_task = asyncio.create_task(video.watch(stream, heard, self._video_in.put),
                                               name=f"livekit:{self.session.id}:{heard}:video")

    # ----------------------------------------------------------------- app messages

    async def _write_message(self, data: Any) -> None:
        if not await self._until_joined():
            return
        try:
            await self._room.local_participant.publish_data(
                json.dumps(data), reliable=True, topic=DATA_TOPIC)
        except Exception as error:
            log.warning("app message not sent: %s", error)

    # ----------------------------------------------------------------- SDK events (on the loop)

    def _is_agent(self, participant: Any) -> bool:
        return participant.kind == self._rtc.ParticipantKind.PARTICIPANT_KIND_AGENT

    def _participant_connected(self, participant: Any) -> None:
        identity = participant.identity
        if self.ended or self._is_agent(participant) or identity in self._people:
            return
        self._people[identity] = participant
        log.info("participant %s joined", identity)
        if participant.kind == self._rtc.ParticipantKind.PARTICIPANT_KIND_SIP:
            self._phone_call(participant)
        self._cancel("grace")
        self._cancel("wait")
        self._listen()
        self._set_connected()
        self._emit(ParticipantJoined(identity, participant.name or ""))

    def _phone_call(self, participant: Any) -> None:
        """A caller through LiveKit telephony: the call's numbers from its SIP attributes."""
        if self.session.call is not None:
            return
        attributes = participant.attributes or {}
        self.session.call = CallInfo(provider="livekit", **{
            field: attributes.get(key) or None for field, key in SIP_ATTRIBUTES.items()})

    def _participant_disconnected(self, participant: Any) -> None:
        identity = participant.identity
        if self._people.pop(identity, None) is None:
            return
        self._audio_tracks.pop(identity, None)
        self._video_tracks.pop(identity, None)
        log.info("participant %s left", identity)
        self._emit(ParticipantLeft(identity, "left"))
        if not self._people:
            self._later("grace", self._leave_grace,
                        lambda: self._client_left("the last participant left"))
        else:
            self._listen()

    def _track_subscribed(self, track: Any, publication: Any, participant: Any) -> None:
        rtc = self._rtc
        if participant.identity not in self._people:
            return
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            self._audio_tracks[participant.identity] = track
            self._listen()
        elif (track.kind == rtc.TrackKind.KIND_VIDEO and self._video
              and publication.source == rtc.TrackSource.SOURCE_CAMERA):  # not a screen share
            self._video_tracks[participant.identity] = track
            self._watch_heard()

    def _listen(self) -> None:
        """Hear the first person who arrived (and is still here), from their audio track."""
        self._watch_heard()
        heard = next(iter(self._people), None)
        track = self._audio_tracks.get(heard) if heard is not None else None
        if self.ended or track is None or self._listening == (heard, track):
            return
        if self._stream_task is not None:
            self._stream_task.cancel()
        self._listening = (heard, track)
        stream = self._rtc.AudioStream(track, sample_rate=WIRE_RATE, num_channels=1)
        self._stream_task = asyncio.create_task(self._hear(stream),
                                                name=f"livekit:{self.session.id}:{heard}")

    async def _hear(self, stream: Any) -> None:
        try:
            async for event in stream:
                frame = event.frame
                if not self.ended:
                    self._receive_audio(bytes(frame.data), frame.sample_rate, frame.num_channels)
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()

    def _data_received(self, packet: Any) -> None:
        sender = packet.participant
        if self.ended or packet.topic != DATA_TOPIC or (sender is not None and self._is_agent(sender)):
            return
        try:
            message = json.loads(bytes(packet.data))
        except (ValueError, UnicodeDecodeError):
            log.debug("data packet on %r is not JSON: dropped", DATA_TOPIC)
            return
        self._receive_message(message)

    def _dtmf(self, dtmf: Any) -> None:
        if isinstance(dtmf.digit, str) and dtmf.digit:
            self._emit(Dtmf(dtmf.digit))

    def _disconnected(self, reason: Any = None) -> None:
        if self._leaving is None and self._joined.is_set():
            self._client_left(f"the bot was disconnected from the room ({reason})")


__all__ = ["DATA_TOPIC", "DEFAULT_BOT_NAME", "LiveKitTransport"]
