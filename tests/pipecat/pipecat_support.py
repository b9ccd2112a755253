"""The Pipecat bot under test: bots/pipecat_echo.py's pipeline plus a processor that records what
reaches the pipeline and ends it on request (DTMF 9 or {"end": ...}/{"cancel": ...} messages).
Built with the older PipelineTask / PipelineRunner names, which must keep working."""

from __future__ import annotations

from typing import Any

from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import (
    CancelWorkerFrame,
    ClientConnectedFrame,
    EndWorkerFrame,
    Frame,
    InputDTMFFrame,
    InputTransportMessageFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import PipelineRunner
from pipecat.pipeline.task import PipelineTask
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from runner.loader import load_bot
from runner.pipecat import PipecatTransport, TransportParams
from runner.transports.base import Transport

from conftest import ROOT

EXAMPLE = load_bot(str(ROOT / "bots" / "pipecat_echo.py"))
PlayBackTurns = EXAMPLE.func.__globals__["PlayBackTurns"]


class Recorder(FrameProcessor):
    def __init__(self, seen: list[Frame]) -> None:
        super().__init__()
        self.seen = seen

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, (InputDTMFFrame, InputTransportMessageFrame, ClientConnectedFrame)):
            self.seen.append(frame)
        message = frame.message if isinstance(frame, InputTransportMessageFrame) else None
        if (isinstance(frame, InputDTMFFrame) and frame.button.value == "9") or (
                isinstance(message, dict) and "end" in message):
            await self.push_frame(EndWorkerFrame(), FrameDirection.UPSTREAM)
        elif isinstance(message, dict) and "cancel" in message:
            await self.push_frame(CancelWorkerFrame(), FrameDirection.UPSTREAM)
        await self.push_frame(frame, direction)


class PipecatBot:
    """Records the frames that reach the pipeline and the transport's client events."""

    __name__ = "pipecat_bot"

    def __init__(self) -> None:
        self.seen: list[Frame] = []
        self.events: list[str] = []
        self.returned = False
        self.transport: Transport | None = None

    async def __call__(self, transport: Transport) -> None:
        self.transport = transport
        pipecat = PipecatTransport(transport, TransportParams(audio_in_enabled=True,
                                                              audio_out_enabled=True))

        @pipecat.event_handler("on_client_connected")
        async def connected(_: Any, client: Transport) -> None:
            self.events.append(f"connected {pipecat.get_client_id(client)}")

        @pipecat.event_handler("on_client_disconnected")
        async def disconnected(_: Any, client: Transport) -> None:
            self.events.append("disconnected")

        pipeline = Pipeline([pipecat.input(), VADProcessor(vad_analyzer=SileroVADAnalyzer()),
                             Recorder(self.seen), PlayBackTurns(), pipecat.output()])
        await PipelineRunner(handle_sigint=False).run(PipelineTask(pipeline))
        self.returned = True

    def of_type(self, kind: type) -> list[Any]:
        return [frame for frame in self.seen if isinstance(frame, kind)]
