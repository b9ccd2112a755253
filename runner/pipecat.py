"""Pipecat pipelines over any runner transport: `PipecatTransport(transport, params)`.

Pipecat users build bots as `Pipeline([transport.input(), ..., transport.output()])`, with VAD,
turn analysis, interruptions and output chunking living in Pipecat's `BaseInputTransport` /
`BaseOutputTransport`. This module subclasses exactly those two, the way Pipecat's own transports
do (overriding their public hooks: `start`, `write_audio_frame`, `send_message`, ...), and moves
the bytes with runner's Transport API. So the behaviour is Pipecat's, and the wire (WebRTC,
Daily, the phone providers, plain WebSocket), pacing, limits and hang-up are runner's:

- caller audio -> `InputAudioRawFrame` at the pipeline's input rate (runner resamples);
- `OutputAudioRawFrame` -> `send_audio` (runner converts and paces; here writes are held to
  real time as on Pipecat's own network transports, so its bot-speaking state stays true);
- `InterruptionFrame` -> `clear_audio()` (the phone provider gets its clear);
- DTMF -> `InputDTMFFrame`; app messages <-> `InputTransportMessageFrame` /
  `OutputTransportMessageFrame` (RTVI over the data channel);
- `on_client_connected` / `on_client_disconnected` events as on Pipecat's transports; when the
  client has left the pipeline is cancelled (the session is over: runner's bot contract);
- `EndFrame` / `CancelFrame` at the output end the session (a phone call is hung up);
- video both ways where the transport carries it (webrtc, daily).

Needs the `pipecat` extra: `pip install 'runner[pipecat]'`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

try:
    from pipecat.audio.dtmf.types import KeypadEntry
    from pipecat.frames.frames import (
        CancelFrame,
        CancelWorkerFrame,
        ClientConnectedFrame,
        EndFrame,
        Frame,
        InputAudioRawFrame,
        InputDTMFFrame,
        InputImageRawFrame,
        InputTransportMessageFrame,
        InterruptionFrame,
        OutputAudioRawFrame,
        OutputImageRawFrame,
        OutputTransportMessageFrame,
        OutputTransportMessageUrgentFrame,
        StartFrame,
    )
    from pipecat.processors.frame_processor import FrameDirection
    from pipecat.transports.base_input import BaseInputTransport
    from pipecat.transports.base_output import BaseOutputTransport
    from pipecat.transports.base_transport import BaseTransport, TransportParams
except ModuleNotFoundError as error:  # pragma: no cover - exercised without the extra installed
    if error.name is None or not error.name.startswith("pipecat"):
        raise
    raise ModuleNotFoundError(
        "runner.pipecat needs Pipecat: pip install 'runner[pipecat]'", name=error.name) from None

from runner.audio import AudioFrame
from runner.transports.base import ClientConnected, ClientLeft, Dtmf, Transport, TransportError

__all__ = ["PipecatTransport", "TransportParams"]

log = logging.getLogger("runner.pipecat")

#: How far ahead of real time output audio is handed to runner. Pipecat's own network transports
#: sleep to emulate an audio device, so "the bot is speaking" tracks what is heard; runner's pacer
#: then holds only this much, enough that a late write never leaves a gap in the audio.
OUTPUT_LEAD_SECONDS = 0.06


class PipecatTransport(BaseTransport):
    """A Pipecat transport whose `input()` and `output()` carry a runner Transport.

    Event handlers, as on Pipecat's transports: `on_client_connected(transport, client)` and
    `on_client_disconnected(transport, client)`, where `client` is the runner Transport (its
    `session` says who called). They are read by `input()`, so a pipeline without it gets none.
    """

    def __init__(
        self,
        transport: Transport,
        params: TransportParams | None = None,
        *,
        input_name: str | None = None,
        output_name: str | None = None,
    ) -> None:
        super().__init__(input_name=input_name, output_name=output_name)
        self.transport = transport
        self.params = params or TransportParams(audio_in_enabled=True, audio_out_enabled=True)
        self._input: RunnerInputTransport | None = None
        self._output: RunnerOutputTransport | None = None
        self._register_event_handler("on_client_connected")
        self._register_event_handler("on_client_disconnected")

    def input(self) -> RunnerInputTransport:
        if self._input is None:
            self._input = RunnerInputTransport(self, self.params, name=self._input_name)
        return self._input

    def output(self) -> RunnerOutputTransport:
        if self._output is None:
            self._output = RunnerOutputTransport(self, self.params, name=self._output_name)
        return self._output

    def get_client_id(self, client: Any) -> str:
        return self.transport.session.id

    async def _client_connected(self) -> None:
        await self._call_event_handler("on_client_connected", self.transport)

    async def _client_disconnected(self) -> None:
        await self._call_event_handler("on_client_disconnected", self.transport)


class RunnerInputTransport(BaseInputTransport):
    """Caller audio, DTMF, app messages, video and presence from a runner Transport, into Pipecat.

    Audio goes through `push_audio_frame`, so Pipecat's input path (filters, passthrough) is the
    one that handles it; messages are broadcast as Pipecat's own WebSocket transport does."""

    def __init__(self, owner: PipecatTransport, params: TransportParams, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._owner = owner
        self._transport = owner.transport
        self._readers: list[asyncio.Task[None]] = []

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)  # creates the audio queue the audio reader feeds
        if not self._readers:
            self._readers = [self.create_task(self._read_events(), "runner-events"),
                             self.create_task(self._read_messages(), "runner-messages")]
            if self._params.audio_in_enabled:
                self._readers.append(self.create_task(self._read_audio(), "runner-audio"))
            if self._params.video_in_enabled:
                self._readers.append(self.create_task(self._read_video(), "runner-video"))

    async def stop(self, frame: EndFrame) -> None:
        await super().stop(frame)
        await self._stop_readers()

    async def cancel(self, frame: CancelFrame) -> None:
        await super().cancel(frame)
        await self._stop_readers()

    async def cleanup(self) -> None:
        await super().cleanup()
        await self._stop_readers()
        await self._owner.cleanup()

    async def _stop_readers(self) -> None:
        readers, self._readers = self._readers, []
        for reader in readers:
            await self.cancel_task(reader)

    async def _read_audio(self) -> None:
        channels = self._params.audio_in_channels
        async for frame in self._transport.audio(sample_rate=self.sample_rate, channels=channels):
            await self.push_audio_frame(InputAudioRawFrame(
                audio=frame.pcm, sample_rate=frame.sample_rate, num_channels=frame.channels))

    async def _read_messages(self) -> None:
        async for message in self._transport.messages():
            await self.broadcast_frame(InputTransportMessageFrame, message=message)

    async def _read_events(self) -> None:
        async for event in self._transport.events():
            if isinstance(event, ClientConnected):
                await self._owner._client_connected()
                await self.push_frame(ClientConnectedFrame())
            elif isinstance(event, Dtmf):
                try:
                    button = KeypadEntry(event.digit)
                except ValueError:
                    log.warning("skipped DTMF %r: not a key Pipecat knows", event.digit)
                    continue
                await self.push_frame(InputDTMFFrame(button=button))
            elif isinstance(event, ClientLeft):
                if self._transport.client_gone:  # not when the pipeline itself ended the session
                    await self._owner._client_disconnected()
                    # Nobody is there to hear the rest: end the pipeline as runner ends a bot.
                    await self.push_frame(CancelWorkerFrame(reason=event.reason),
                                          FrameDirection.UPSTREAM)
                return

    async def _read_video(self) -> None:
        try:
            async for picture in self._transport.video():
                await self.push_video_frame(_input_image(picture))
        except TransportError as error:
            log.warning("video_in_enabled, but %s", error)


class RunnerOutputTransport(BaseOutputTransport):
    """Pipecat's output (chunking, bot-speaking state, interruptions) writing to a runner Transport."""

    def __init__(self, owner: PipecatTransport, params: TransportParams, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._owner = owner
        self._transport = owner.transport
        self._heard_until = 0.0  # monotonic time the audio written so far will have been played

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)

    async def stop(self, frame: EndFrame) -> None:
        await super().stop(frame)  # Pipecat's media sender plays out what is queued first
        await self._transport.hangup("the pipeline ended")

    async def cancel(self, frame: CancelFrame) -> None:
        await super().cancel(frame)
        await self._transport.hangup("the pipeline was cancelled")

    async def cleanup(self) -> None:
        await super().cleanup()
        await self._owner.cleanup()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InterruptionFrame):
            self._heard_until = 0.0
            await self._transport.clear_audio()

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        transport = self._transport
        if transport.ended:
            return False
        audio = AudioFrame(frame.audio, frame.sample_rate, frame.num_channels)
        await transport.send_audio(audio)
        now = time.monotonic()
        self._heard_until = max(self._heard_until, now) + audio.duration
        wait = self._heard_until - OUTPUT_LEAD_SECONDS - now
        if wait > 0:
            await asyncio.sleep(wait)
        return not transport.ended

    async def send_message(
        self, frame: OutputTransportMessageFrame | OutputTransportMessageUrgentFrame
    ) -> None:
        await self._transport.send_message(frame.message)

    async def write_video_frame(self, frame: OutputImageRawFrame) -> bool:
        transport = self._transport
        if transport.ended:
            return False
        try:
            await transport.send_video(_runner_picture(transport.kind, frame))
        except TransportError as error:
            log.warning("video_out_enabled, but %s", error)
            return False
        return True


# --------------------------------------------------------------------- video, per transport kind


def _input_image(picture: Any) -> InputImageRawFrame:
    """A transport's picture (PyAV VideoFrame on webrtc, Daily's VideoFrame on daily and livekit)
    as Pipecat's frame."""
    if hasattr(picture, "to_ndarray"):  # av.VideoFrame
        rgb = picture.to_ndarray(format="rgb24")
        return InputImageRawFrame(image=rgb.tobytes(), size=(rgb.shape[1], rgb.shape[0]),
                                  format="RGB")
    return InputImageRawFrame(image=bytes(picture.image), size=(picture.width, picture.height),
                              format=picture.color_format)


def _runner_picture(kind: str, frame: OutputImageRawFrame) -> Any:
    """Pipecat's image as what the transport's `send_video` takes."""
    width, height = frame.size
    if kind in ("daily", "tavus", "livekit"):
        from runner.transports.daily.video import VideoFrame

        return VideoFrame(frame.image, width, height, frame.format or "RGB")
    import numpy as np

    image = frame.image
    if (frame.format or "RGB") != "RGB":
        from PIL import Image

        image = Image.frombytes(frame.format, (width, height), image).convert("RGB").tobytes()
    return np.frombuffer(image, dtype=np.uint8).reshape(height, width, 3)
