"""Media between aiortc and the Transport: the bot's outbound tracks and the readers of the client's.

aiortc's sender calls `recv()` back to back and never paces, so the audio track waits for the
shared 20 ms clock (`OutboundAudio.next_frame`) and sends silence when the bot is quiet; delay
added here is at most one tick. aiortc's receive queues are unbounded, so every remote track we
keep is read continuously and the frames go to bounded mailboxes (newest wins).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
from collections.abc import Callable
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from runner.audio import to_channels
from runner.pacing import FRAME_SECONDS, OutboundAudio

WIRE_RATE = 48000
SAMPLES_PER_FRAME = int(WIRE_RATE * FRAME_SECONDS)
VIDEO_CLOCK = 90000
#: An idle bot video track repeats its last picture this often, so late keyframe requests are met.
VIDEO_REPEAT_SECONDS = 1.0


class BotAudioTrack(MediaStreamTrack):
    """The bot's voice: 20 ms mono frames at 48 kHz, taken from the transport's paced queue."""

    kind = "audio"

    def __init__(self, outbound: OutboundAudio) -> None:
        super().__init__()
        self._outbound = outbound
        self._pts = 0
        self._time_base = fractions.Fraction(1, WIRE_RATE)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        pcm = await self._outbound.next_frame()
        frame = av.AudioFrame(format="s16", layout="mono", samples=SAMPLES_PER_FRAME)
        frame.planes[0].update(pcm)
        frame.sample_rate = WIRE_RATE
        frame.pts = self._pts
        frame.time_base = self._time_base
        self._pts += SAMPLES_PER_FRAME
        return frame


class LatestFrame:
    """A one-frame slot: a bot sending video faster than it is encoded loses the older frames."""

    def __init__(self) -> None:
        self.frame: av.VideoFrame | None = None
        self._fresh = asyncio.Event()

    def put(self, frame: av.VideoFrame) -> None:
        self.frame = frame
        self._fresh.set()

    async def next(self, timeout: float) -> av.VideoFrame | None:
        """The newest frame once there is one; the previous one again after `timeout` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._fresh.wait(), timeout)
        self._fresh.clear()
        return self.frame


class BotVideoTrack(MediaStreamTrack):
    """The bot's video: whatever `send_video` put last, stamped with the wall clock."""

    kind = "video"

    def __init__(self, latest: LatestFrame) -> None:
        super().__init__()
        self._latest = latest
        self._start = time.monotonic()
        self._time_base = fractions.Fraction(1, VIDEO_CLOCK)

    async def recv(self) -> av.VideoFrame:
        frame = None
        while frame is None:
            if self.readyState != "live":
                raise MediaStreamError
            frame = await self._latest.next(VIDEO_REPEAT_SECONDS)
        frame.pts = int((time.monotonic() - self._start) * VIDEO_CLOCK)
        frame.time_base = self._time_base
        return frame


def as_video_frame(frame: Any) -> av.VideoFrame:
    """Accept a PyAV VideoFrame or an RGB array of shape (height, width, 3), dtype uint8."""
    if isinstance(frame, av.VideoFrame):
        return frame
    if isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] == 3 \
            and frame.dtype == np.uint8:
        return av.VideoFrame.from_ndarray(frame, format="rgb24")
    raise TypeError("send_video takes an av.VideoFrame or an RGB uint8 array (height, width, 3)")


def trim_jitter_buffer(receiver: Any) -> None:
    """Release each inbound audio frame as soon as the next one arrives: 60 ms less delay.

    aiortc's audio jitter buffer holds a frame until 4 later ones are in (80 ms), yet waits for
    a missing packet the same way whatever that number is, so above 1 it only adds delay (measured:
    echo round trip 167 -> 113 ms on loopback). The attribute is aiortc's private one; the media
    tests fail if an aiortc upgrade moves it.
    """
    buffer = getattr(receiver, "_RTCRtpReceiver__jitter_buffer", None)
    if buffer is not None and hasattr(buffer, "_prefetch"):
        buffer._prefetch = 1


async def read_audio(track: MediaStreamTrack, push: Callable[[bytes, int], None]) -> None:
    """Read decoded client audio until the track ends; `push(mono_pcm16, sample_rate)` each frame.

    aiortc's decoders all yield packed s16 (Opus: 48 kHz stereo, G.711: 8 kHz mono); the stereo of
    a browser microphone is one voice twice, so it is averaged to mono here, once.
    """
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        channels = len(frame.layout.channels)
        pcm = frame.to_ndarray().tobytes()
        push(to_channels(pcm, channels, 1), frame.sample_rate)


async def read_video(track: MediaStreamTrack, push: Callable[[av.VideoFrame], None]) -> None:
    """Read decoded client video until the track ends."""
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        push(frame)
