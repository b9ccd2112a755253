"""A second participant in the bot's LiveKit room (livekit.rtc), as a person's LiveKit app is.

It asks runner's own `/start` for a room and a token, exactly as the page does, so it joins
with the person's token runner minted (its grants, its identity) rather than one made here.
It publishes the test signal as its microphone, in real time, and listens to the bot: the
bot's audio track through an `AudioStream`, its app messages as data packets on runner's
topic. Leaving the room is how it hangs up.

A LiveKit server is needed: `problem_reaching` tells, in one short TCP connection, whether
LIVEKIT_URL answers, so smoke reports the transport skipped, with the reason, when it does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any
from urllib.parse import urlsplit

import httpx

from runner.audio import AudioConverter, AudioFrame
from runner.smoke.callers import Caller, CallResult, Target
from runner.transports.livekit.sdk import load_rtc
from runner.transports.livekit.transport import DATA_TOPIC

RATE = 48000
FRAME_SAMPLES = RATE // 50
#: Seconds to reach LIVEKIT_URL's host before smoke calls the server unreachable.
REACH_TIMEOUT = 3.0
#: Seconds for `/start` (it creates the room) and for joining the room.
START_TIMEOUT = 15.0
JOIN_TIMEOUT = 20.0
#: The tail of the bot's answer, heard after the last frame is sent.
TAIL_SECONDS = 0.3
DEFAULT_PORTS = {"ws": 80, "http": 80, "wss": 443, "https": 443}


def caller(kind: str) -> Caller:
    return call


async def problem_reaching(url: str, timeout: float = REACH_TIMEOUT) -> str | None:
    """None when a TCP connection to LIVEKIT_URL's host and port opens; else why not."""
    parts = urlsplit(url)
    try:
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        return f"LIVEKIT_URL={url!r} is not a LiveKit server URL"
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, port), timeout)
    except (OSError, TimeoutError) as error:
        return f"LiveKit at {url} cannot be reached: {str(error) or type(error).__name__}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return None


async def start(target: Target) -> dict[str, Any]:
    """`POST /start {"transport": "livekit"}` -> `{url, token, sessionId}`."""
    key = target.config.api_key
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx.AsyncClient(timeout=START_TIMEOUT) as http:
        response = await http.post(f"{target.http}/start", json={"transport": "livekit"},
                                   headers=headers)
    if response.status_code != 200:
        raise RuntimeError(f"/start answered {response.status_code}: {response.text[:200]}")
    return response.json()


class Listener:
    """What the person hears and reads: the bot's audio and app messages, from SDK events
    (each handled on this loop, whichever thread the SDK calls back from)."""

    def __init__(self, rtc: Any, result: CallResult) -> None:
        self.rtc = rtc
        self.result = result
        self.heard = bytearray()
        self.first_sent: float | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.loop = asyncio.get_running_loop()

    def subscribe(self, room: Any) -> None:
        for event, handler in (("track_subscribed", self.track_subscribed),
                               ("data_received", self.data_received)):
            room.on(event, lambda *args, _handler=handler: self.loop.call_soon_threadsafe(
                _handler, *args))

    def is_bot(self, participant: Any) -> bool:
        return participant is not None and \
            participant.kind == self.rtc.ParticipantKind.PARTICIPANT_KIND_AGENT

    def track_subscribed(self, track: Any, publication: Any, participant: Any) -> None:
        if track.kind == self.rtc.TrackKind.KIND_AUDIO and self.is_bot(participant):
            stream = self.rtc.AudioStream(track, sample_rate=RATE, num_channels=1)
            self.tasks.append(asyncio.create_task(self.hear(stream)))

    async def hear(self, stream: Any) -> None:
        try:
            async for event in stream:
                pcm = bytes(event.frame.data)
                self.heard.extend(pcm)
                if (self.result.first_audio_seconds is None and self.first_sent is not None
                        and any(pcm)):
                    self.result.first_audio_seconds = time.monotonic() - self.first_sent
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()

    def data_received(self, packet: Any) -> None:
        if packet.topic != DATA_TOPIC or not self.is_bot(packet.participant):
            return
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            self.result.messages.append(json.loads(bytes(packet.data)))

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def call(target: Target, audio: AudioFrame, duration: float) -> CallResult:
    rtc = load_rtc()
    result = CallResult()
    pcm = AudioConverter(RATE).convert(audio).pcm
    started = time.monotonic()
    session = await start(target)
    room = rtc.Room()
    listener = Listener(rtc, result)
    listener.subscribe(room)
    source = rtc.AudioSource(RATE, 1)
    try:
        await asyncio.wait_for(room.connect(session["url"], session["token"]), JOIN_TIMEOUT)
        track = rtc.LocalAudioTrack.create_audio_track("smoke-microphone", source)
        await room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
        result.connected = True
        result.connect_seconds = time.monotonic() - started
        result.detail = f"joined {session['url']} as the person of session {session['sessionId']}"
        listener.first_sent = time.monotonic()
        await speak(rtc, source, pcm, duration)
        await asyncio.sleep(TAIL_SECONDS)
    finally:
        await listener.close()
        with contextlib.suppress(Exception):
            await room.disconnect()
        with contextlib.suppress(Exception):
            await source.aclose()
    result.received = AudioFrame(bytes(listener.heard), RATE)
    return result


async def speak(rtc: Any, source: Any, pcm: bytes, duration: float) -> None:
    """The signal, looped, a 20 ms frame at a time on the clock (not as fast as the SDK takes
    it): the bot hears it as a person speaks."""
    size = FRAME_SAMPLES * 2
    frames = int(duration * 50)
    began = time.monotonic()
    for index in range(frames):
        offset = (index * size) % max(len(pcm), size)
        chunk = pcm[offset:offset + size].ljust(size, b"\0")
        await source.capture_frame(rtc.AudioFrame(chunk, RATE, 1, FRAME_SAMPLES))
        delay = began + (index + 1) / 50 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
