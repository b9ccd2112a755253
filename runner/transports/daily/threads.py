"""From daily-python's threads to the event loop, and nothing else on those threads.

daily-python calls event handlers, completions and audio renderers on its own native threads,
holding the GIL. Touching an asyncio object there is a race, and calling back into the
CallClient there can deadlock. So every callback does exactly one thing: schedule the real work
on the loop with `call_soon_threadsafe`, in the context of the session that made the hop, so
what it logs carries the session id.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from runner.transports.daily.video import VideoFrame

if TYPE_CHECKING:
    from runner.transports.daily.transport import DailyTransport

log = logging.getLogger("runner.daily")


class LoopHop:
    """Runs functions on one event loop, whichever thread asks."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._context = contextvars.copy_context()

    def call(self, func: Callable[..., Any], *args: Any) -> None:
        """Schedule `func(*args)` on the loop; dropped once the loop has closed (shutdown)."""
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(func, *args, context=self._context)

    def completion(self) -> tuple[asyncio.Future[tuple[Any, ...]], Callable[..., None]]:
        """A future and the SDK completion callback that resolves it with the callback's args."""
        future: asyncio.Future[tuple[Any, ...]] = self.loop.create_future()

        def done(*args: Any) -> None:
            self.call(_settle, future, args)

        return future, done


def _settle(future: asyncio.Future[tuple[Any, ...]], args: tuple[Any, ...]) -> None:
    if not future.done():
        future.set_result(args)


class SdkCallbacks:
    """daily-python's callbacks. They run on SDK threads, so each only hops to the loop."""

    def __init__(self, hop: LoopHop, transport: DailyTransport) -> None:
        self._hop = hop
        self._transport = transport

    def on_participant_joined(self, participant: Mapping[str, Any]) -> None:
        self._hop.call(self._transport._participant_joined, participant)

    def on_participant_left(self, participant: Mapping[str, Any], reason: str) -> None:
        self._hop.call(self._transport._participant_left, participant, reason)

    def on_app_message(self, message: Any, sender: str) -> None:
        self._hop.call(self._transport._app_message, message, sender)

    def on_dtmf_event(self, data: Mapping[str, Any]) -> None:
        self._hop.call(self._transport._dtmf, data)

    def on_dialin_ready(self, sip_endpoint: str) -> None:
        self._hop.call(self._transport._dialin_ready, sip_endpoint)

    def on_call_state_updated(self, state: str) -> None:
        self._hop.call(self._transport._call_state, state)

    def on_error(self, message: str) -> None:
        self._hop.call(log.error, "Daily: %s", message)

    def on_dialin_connected(self, data: Mapping[str, Any]) -> None:
        self._hop.call(log.info, "dial-in connected: %s", data)

    def on_dialin_stopped(self, data: Mapping[str, Any]) -> None:
        self._hop.call(log.info, "dial-in stopped: %s", data)

    def on_dialin_error(self, data: Mapping[str, Any]) -> None:
        self._hop.call(log.error, "dial-in error: %s", data)

    def on_dialin_warning(self, data: Mapping[str, Any]) -> None:
        self._hop.call(log.warning, "dial-in warning: %s", data)

    def audio(self, participant_id: str, audio: Any, audio_source: str) -> None:
        self._hop.call(self._transport._participant_audio, participant_id, audio.audio_frames,
                       audio.sample_rate, audio.num_channels)

    def video(self, participant_id: str, frame: Any, video_source: str) -> None:
        self._hop.call(self._transport._participant_video, VideoFrame(
            frame.buffer, frame.width, frame.height, frame.color_format, participant_id))

