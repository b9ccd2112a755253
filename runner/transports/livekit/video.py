"""Video on LiveKit, both ways, only for bots that ask for it (`transport_options` `video`).

The bot sees and sends the same raw `VideoFrame` Daily gives it (image bytes, size, color
format), so a bot and runner.pipecat handle both room transports alike. Decoding a camera costs
CPU for every frame, so no `VideoStream` is made until the bot iterates `video()`; the bot has no
camera track until its first `send_video`, whose frame size then fixes the track's size.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from runner.transports.base import TransportError
from runner.transports.daily.video import VIDEO_BUFFER, VideoFrame

#: The bot's frame color formats -> livekit.rtc's VideoBufferType names. Not ABGR: livekit 1.2's
#: native converter panics on it.
BUFFER_TYPES = {"RGB": "RGB24", "RGBA": "RGBA", "BGRA": "BGRA", "ARGB": "ARGB"}
#: Bytes per pixel of each of those formats, to refuse a short image before the SDK does.
PIXEL_BYTES = {"RGB": 3, "RGBA": 4, "BGRA": 4, "ARGB": 4}
#: The smallest picture side sent: tiny frames (2x2, 3x3 measured) abort the whole process in
#: WebRTC's native checks instead of raising, so they are refused here.
MIN_SIDE = 16


def buffer_type(rtc: Any, color_format: str) -> Any:
    """livekit.rtc's VideoBufferType for a frame's color format; refused if it has none."""
    name = BUFFER_TYPES.get(color_format)
    if name is None:
        raise TransportError(f"video color format {color_format!r} is not one LiveKit takes "
                             f"({', '.join(BUFFER_TYPES)})")
    return getattr(rtc.VideoBufferType, name)


def check(rtc: Any, frame: VideoFrame) -> Any:
    """The frame's VideoBufferType, once its format, size and image length are ones LiveKit
    takes (a wrong one would crash its native core, or fail far from the bot's call)."""
    kind = buffer_type(rtc, frame.color_format)
    if min(frame.width, frame.height) < MIN_SIDE:
        raise TransportError(f"video frame {frame.width}x{frame.height} is too small for LiveKit "
                             f"(at least {MIN_SIDE}x{MIN_SIDE})")
    size = frame.width * frame.height * PIXEL_BYTES[frame.color_format]
    if len(frame.image) != size:
        raise TransportError(f"video frame {frame.width}x{frame.height} {frame.color_format} "
                             f"needs {size} bytes of image, not {len(frame.image)}")
    return kind


def open_stream(rtc: Any, track: Any) -> Any:
    """A VideoStream of a remote camera, converted to RGB by the SDK and kept short: a slow
    bot gets the newest pictures, not a growing backlog."""
    return rtc.VideoStream(track, format=rtc.VideoBufferType.RGB24, capacity=VIDEO_BUFFER)


async def watch(stream: Any, identity: str, put: Callable[[VideoFrame], None]) -> None:
    """Hand each picture of `stream` to `put` as the bot's VideoFrame, until cancelled."""
    try:
        async for event in stream:
            frame = event.frame
            put(VideoFrame(bytes(frame.data), frame.width, frame.height, "RGB", identity))
    finally:
        with contextlib.suppress(Exception):
            await stream.aclose()


class VideoOut:
    """The bot's camera: a VideoSource published as a camera track from the first frame on."""

    def __init__(self, rtc: Any, source: Any, first: VideoFrame) -> None:
        self._rtc = rtc
        self._source = source
        self.width, self.height, self.color_format = first.width, first.height, first.color_format

    @classmethod
    async def publish(cls, rtc: Any, participant: Any, first: VideoFrame,
                      timeout: float) -> VideoOut:
        """Make the source at the first frame's size and publish its track as the camera."""
        check(rtc, first)  # refuse a frame the SDK cannot take before publishing anything
        source = rtc.VideoSource(first.width, first.height)
        track = rtc.LocalVideoTrack.create_video_track("bot-camera", source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA)
        try:
            await asyncio.wait_for(participant.publish_track(track, options), timeout)
        except BaseException:
            with contextlib.suppress(Exception):
                await source.aclose()
            raise
        return cls(rtc, source, first)

    def write(self, frame: VideoFrame) -> None:
        shape = (frame.width, frame.height, frame.color_format)
        if shape != (self.width, self.height, self.color_format):
            raise TransportError(f"video frame is {frame.width}x{frame.height} {frame.color_format}; "
                                 f"the bot's camera is {self.width}x{self.height} {self.color_format}")
        picture = self._rtc.VideoFrame(frame.width, frame.height, check(self._rtc, frame),
                                       frame.image)
        self._source.capture_frame(picture)

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self._source.aclose()
