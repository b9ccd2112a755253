"""What every room transport shares (Daily, Tavus, LiveKit): the bot joins a room and waits for
people, so it keeps a joined flag, named timers (nobody came, the last person left) and a way
to wait for the join before sending; and, with video on, the heard person's camera and the
bot's (each SDK says how to watch and how to publish)."""

from __future__ import annotations

import asyncio
import logging
from abc import abstractmethod
from collections.abc import AsyncIterator, Callable
from typing import Any

from runner.transports.base import SessionInfo, Transport, TransportError
from runner.transports.daily.video import VideoFrame, VideoIn

log = logging.getLogger("runner.transport")


class RoomTransport(Transport):
    """A Transport whose far end is a room the bot joins.

    `run` is the same for every room: open the SDK's client, join, greet the people already
    there, start sending, wait for people, and always leave. Each SDK fills in the steps."""

    #: The room's name in log lines and end reasons ("Daily", "LiveKit").
    service: str = "room"

    def __init__(self, session: SessionInfo, *, wait_timeout: float | None, video: bool = False,
                 **wire: Any) -> None:
        super().__init__(session, **wire)
        self._wait_timeout = wait_timeout
        self._video = video
        self._video_in = VideoIn()
        self._joined = asyncio.Event()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._leaving: asyncio.Future[None] | None = None

    async def run(self) -> None:
        if self.ended:
            return
        self._open(asyncio.get_running_loop())
        try:
            error = await self._join()
            if error:
                log.error("could not join the %s room %s: %s", self.service, self._room_label,
                          error)
                self._client_left(f"could not join the {self.service} room: {error}")
                return
            if self.ended:
                return
            log.info("joined the %s room %s", self.service, self._room_label)
            self._joined.set()
            self._greet_present()
            self._start_media()
            self._wait_for_people()
            await self.wait_ended()
        finally:
            await asyncio.shield(self._leave())

    @property
    @abstractmethod
    def _room_label(self) -> str:
        """The room as log lines name it."""

    @abstractmethod
    def _open(self, loop: asyncio.AbstractEventLoop) -> None:
        """Create the SDK's client for this session, its callbacks hopping onto `loop`."""

    @abstractmethod
    async def _join(self) -> str | None:
        """Join and publish the bot's media; the reason it failed, or None."""

    @abstractmethod
    def _greet_present(self) -> None:
        """The people who were in the room before the bot: as if they had just joined."""

    @abstractmethod
    def _start_media(self) -> None:
        """Start hearing people and sending the bot's audio."""

    async def left(self) -> None:
        """Wait until the bot has left the room and its client is released."""
        if self._leaving is not None:
            await asyncio.shield(self._leaving)

    def _leave(self) -> asyncio.Future[None]:
        """Leave the room and release the client, once: later calls share the first."""
        if self._leaving is None:
            self._leaving = asyncio.ensure_future(self._leave_room())
        return self._leaving

    @abstractmethod
    async def _leave_room(self) -> None:
        """Stop the media, leave the room, release the SDK's client."""

    def _later(self, name: str, delay: float, func: Callable[[], None]) -> None:
        """Run `func` in `delay` seconds, replacing the timer of that name."""
        self._cancel(name)
        self._timers[name] = asyncio.get_running_loop().call_later(delay, func)

    def _cancel(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def _cancel_timers(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def _wait_for_people(self) -> None:
        """Once joined: end the session if nobody comes within the wait timeout."""
        if self._wait_timeout:
            self._later("wait", self._wait_timeout, self._nobody_came)

    def _nobody_came(self) -> None:
        if not self.connected:
            self._client_left(f"nobody joined within {self._wait_timeout:g} s")

    async def _until_joined(self) -> bool:
        """Wait for the bot to be in the room; False when the session ended first."""
        if not self._joined.is_set() and not self.ended:
            waiters = [asyncio.ensure_future(self._joined.wait()),
                       asyncio.ensure_future(self.wait_ended())]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
        return self._joined.is_set() and not self.ended

    # ----------------------------------------------------------------- video

    async def video(self) -> AsyncIterator[VideoFrame]:
        """Camera frames (RGB) of the participant the bot hears."""
        self._require_video()
        self._video_in.wanted = True
        self._watch_heard()
        async for frame in self._video_in.frames():
            yield frame

    async def send_video(self, frame: Any) -> None:
        """Show a frame as the bot's camera; every frame must have the first frame's size."""
        self._require_video()
        if not isinstance(frame, VideoFrame):
            raise TransportError("send_video takes a runner.transports.daily.video.VideoFrame")
        if await self._until_joined():
            (await self._camera(frame)).write(frame)

    def _require_video(self) -> None:
        if not self._video:
            raise TransportError(f"video is off for {self.kind}: set transport_options = "
                                 f"{{'{self.kind}': {{'video': True}}}} in the bot file")

    @abstractmethod
    def _watch_heard(self) -> None:
        """See the heard person's camera, once the bot wants video and that camera is there."""

    @abstractmethod
    async def _camera(self, first: VideoFrame) -> Any:
        """The bot's camera, published with its first frame: `write(frame)` shows a frame."""

    def _finish(self, reason: str) -> None:
        super()._finish(reason)
        self._video_in.end()
