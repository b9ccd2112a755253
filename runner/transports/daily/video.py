"""Video on Daily, both ways, only for bots that ask for it (`transport_options` `video`).

Camera subscriptions cost bandwidth and decoding for every frame, so nothing is subscribed until
the bot iterates `video()`, and the bot has no camera until its first `send_video`, whose frame
size then fixes the track's size.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from runner.transports.base import TransportError, _Mailbox

#: Frames kept for a slow reader: the newest matter, a backlog of old ones does not.
VIDEO_BUFFER = 2


@dataclass(frozen=True)
class VideoFrame:
    """One picture: `image` holds width x height pixels in `color_format` (e.g. RGB, RGBA)."""

    image: bytes
    width: int
    height: int
    color_format: str = "RGB"
    participant_id: str = ""


class VideoIn:
    """Frames of the participant the bot hears, once the bot wants them."""

    def __init__(self) -> None:
        self._frames: _Mailbox[VideoFrame] = _Mailbox(VIDEO_BUFFER)
        self.wanted = False
        self.watched: set[str] = set()

    def put(self, frame: VideoFrame) -> None:
        self._frames.put(frame)

    def end(self) -> None:
        self._frames.end()

    async def frames(self) -> AsyncIterator[VideoFrame]:
        while (frame := await self._frames.get()) is not None:
            yield frame


class VideoOut:
    """The bot's camera: a custom video track, published from the first frame on."""

    def __init__(self, sdk: Any, client: Any, first: VideoFrame) -> None:
        self.width, self.height, self.color_format = first.width, first.height, first.color_format
        self._source = sdk.video_source(first.width, first.height, first.color_format)
        track = sdk.video_track(self._source)
        client.update_inputs({"camera": {"isEnabled": True,
                                         "settings": {"customTrack": {"id": track.id}}}})
        client.update_publishing({"camera": {"isPublishing": True}})

    def write(self, frame: VideoFrame) -> None:
        shape = (frame.width, frame.height, frame.color_format)
        if shape != (self.width, self.height, self.color_format):
            raise TransportError(f"video frame is {frame.width}x{frame.height} {frame.color_format}; "
                                 f"the bot's camera is {self.width}x{self.height} {self.color_format}")
        self._source.write_frame(frame.image)
