"""A bot written for Pipecat's own development runner, run by runner unchanged.

`async def bot(runner_args: RunnerArguments)` and `create_transport(runner_args, ...)` are
Pipecat's: the same file runs with `python -m pipecat.runner.run` (add the usual `__main__`
block) and with `runner dev bots/pipecat_unchanged.py -t webrtc,websocket,twilio`. It does what
bots/pipecat_echo.py does: Silero VAD finds each user turn and the bot plays it back; speaking
over the playback interrupts it. Offline (Silero's model ships with pipecat-ai).

On the plain WebSocket (`/ws-client`) the wire is the serializer's: `PlainPCMSerializer` below
speaks runner's protocol (PCM16 at `?sample_rate=`, JSON text messages), so runner's clients
and `runner smoke` can call it.
"""

import json
from collections import deque

from pipecat.audio.utils import create_stream_resampler
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Frame,
    InputAudioRawFrame,
    InputTransportMessageFrame,
    OutputAudioRawFrame,
    OutputTransportMessageFrame,
    OutputTransportMessageUrgentFrame,
    SpeechOutputAudioRawFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.runner.types import RunnerArguments
from pipecat.runner.utils import create_transport
from pipecat.serializers.base_serializer import FrameSerializer
from pipecat.transports.base_transport import TransportParams
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams
from pipecat.workers.runner import WorkerRunner

PRE_ROLL_SECONDS = 0.3  # audio kept from before the VAD is sure the user speaks


class PlayBackTurns(FrameProcessor):
    """Keeps the caller's audio of each turn and plays it back when the turn ends."""

    def __init__(self) -> None:
        super().__init__()
        self._recent: deque[bytes] = deque()
        self._recent_bytes = 0
        self._turn: bytearray | None = None
        self._rate = 16000
        self._bot_speaking = False

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            self._hear(frame)
            return
        if isinstance(frame, VADUserStartedSpeakingFrame):
            if self._bot_speaking:
                await self.broadcast_interruption()
            keep = int((frame.start_secs + PRE_ROLL_SECONDS) * self._rate) * 2
            self._turn = bytearray(b"".join(self._recent)[-keep:])
        elif isinstance(frame, VADUserStoppedSpeakingFrame) and self._turn is not None:
            trailing_silence = int(frame.stop_secs * self._rate) * 2
            turn, self._turn = bytes(self._turn[:max(0, len(self._turn) - trailing_silence)]), None
            if turn:
                await self.push_frame(SpeechOutputAudioRawFrame(turn, self._rate, 1))
        elif isinstance(frame, BotStartedSpeakingFrame):
            self._bot_speaking = True
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._bot_speaking = False
        await self.push_frame(frame, direction)

    def _hear(self, frame: InputAudioRawFrame) -> None:
        self._rate = frame.sample_rate
        if self._turn is not None:
            self._turn += frame.audio
        self._recent.append(frame.audio)
        self._recent_bytes += len(frame.audio)
        while self._recent_bytes - len(self._recent[0]) > self._rate * 2:
            self._recent_bytes -= len(self._recent.popleft())


class PlainPCMSerializer(FrameSerializer):
    """PCM16 mono at the client's rate as binary messages, app messages as JSON text."""

    def __init__(self, wire_rate: int) -> None:
        super().__init__()
        self._wire_rate = wire_rate
        self._pipeline_rate = 16000
        self._in = create_stream_resampler()
        self._out = create_stream_resampler()

    async def setup(self, setup) -> None:
        self._pipeline_rate = setup.audio_in_sample_rate

    async def serialize(self, frame: Frame) -> str | bytes | None:
        if isinstance(frame, OutputAudioRawFrame):
            return await self._out.resample(frame.audio, frame.sample_rate, self._wire_rate)
        if isinstance(frame, (OutputTransportMessageFrame, OutputTransportMessageUrgentFrame)):
            return json.dumps(frame.message)
        return None

    async def deserialize(self, data: str | bytes) -> Frame | None:
        if isinstance(data, str):
            return InputTransportMessageFrame(message=json.loads(data))
        audio = await self._in.resample(data, self._wire_rate, self._pipeline_rate)
        return InputAudioRawFrame(audio=audio, sample_rate=self._pipeline_rate, num_channels=1)


def _phone() -> FastAPIWebsocketParams:
    return FastAPIWebsocketParams(audio_in_enabled=True, audio_out_enabled=True)


async def bot(runner_args: RunnerArguments):
    def plain_websocket() -> FastAPIWebsocketParams:
        rate = int(runner_args.websocket.query_params.get("sample_rate", 16000))
        return FastAPIWebsocketParams(audio_in_enabled=True, audio_out_enabled=True,
                                      serializer=PlainPCMSerializer(rate))

    def daily():
        from pipecat.transports.daily.transport import DailyParams

        return DailyParams(audio_in_enabled=True, audio_out_enabled=True)

    transport = await create_transport(runner_args, {
        "webrtc": lambda: TransportParams(audio_in_enabled=True, audio_out_enabled=True),
        "daily": daily,
        "websocket": plain_websocket,
        "twilio": _phone, "telnyx": _phone, "plivo": _phone, "exotel": _phone,
    })
    worker = PipelineWorker(Pipeline([transport.input(),
                                      VADProcessor(vad_analyzer=SileroVADAnalyzer()),
                                      PlayBackTurns(), transport.output()]))

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(transport, client):
        await worker.cancel()

    runner = WorkerRunner(handle_sigint=runner_args.handle_sigint)
    await runner.add_workers(worker)
    await runner.run()
