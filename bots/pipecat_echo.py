"""A Pipecat pipeline on runner: Silero VAD finds each user turn, and the bot plays it back.

Runs offline on every transport (Silero's model ships with pipecat-ai). Needs the extra:
`pip install 'runner[pipecat]'`, then `runner dev bots/pipecat_echo.py`.

Speaking over the playback interrupts it (Pipecat's InterruptionFrame; runner clears the queued
audio, and a phone provider gets its clear). A keypad digit is answered with the app message
`{"dtmf": "5"}`, and an app message that is not RTVI comes back as `{"echo": message}`.
"""

from collections import deque  # noqa: I001 - runner.pipecat first: it names the missing extra

from runner.pipecat import PipecatTransport, TransportParams

from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Frame,
    InputAudioRawFrame,
    InputDTMFFrame,
    InputTransportMessageFrame,
    OutputTransportMessageFrame,
    SpeechOutputAudioRawFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

#: Audio kept from before the VAD is sure the user speaks (it decides `start_secs` late).
PRE_ROLL_SECONDS = 0.3


class PlayBackTurns(FrameProcessor):
    """Keeps the caller's audio of each turn and plays it back when the turn ends."""

    def __init__(self) -> None:
        super().__init__()
        self._recent: deque[bytes] = deque()  # the last moments, for the start of a turn
        self._recent_bytes = 0
        self._turn: bytearray | None = None
        self._rate = 16000
        self._bot_speaking = False

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            self._hear(frame)
            return  # the caller's audio stops here: only the playback goes on to the output
        if isinstance(frame, VADUserStartedSpeakingFrame):
            if self._bot_speaking:
                await self.broadcast_interruption()  # barge-in: stop the playback now
            keep = int((frame.start_secs + PRE_ROLL_SECONDS) * self._rate) * 2
            self._turn = bytearray(b"".join(self._recent)[-keep:])
        elif isinstance(frame, VADUserStoppedSpeakingFrame) and self._turn is not None:
            trailing_silence = int(frame.stop_secs * self._rate) * 2
            turn, self._turn = bytes(self._turn[:max(0, len(self._turn) - trailing_silence)]), None
            if turn:
                # A speech stream: Pipecat's output tells the bot's speech from silence in it.
                await self.push_frame(SpeechOutputAudioRawFrame(turn, self._rate, 1))
        elif isinstance(frame, BotStartedSpeakingFrame):
            self._bot_speaking = True
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._bot_speaking = False
        elif isinstance(frame, InputDTMFFrame):
            await self.push_frame(OutputTransportMessageFrame({"dtmf": frame.button.value}))
        elif isinstance(frame, InputTransportMessageFrame) and not _is_rtvi(frame.message):
            await self.push_frame(OutputTransportMessageFrame({"echo": frame.message}))
        await self.push_frame(frame, direction)

    def _hear(self, frame: InputAudioRawFrame) -> None:
        self._rate = frame.sample_rate
        if self._turn is not None:
            self._turn += frame.audio
        self._recent.append(frame.audio)
        self._recent_bytes += len(frame.audio)
        while self._recent_bytes - len(self._recent[0]) > self._rate * 2:  # a second is plenty
            self._recent_bytes -= len(self._recent.popleft())


def _is_rtvi(message: object) -> bool:
    return isinstance(message, dict) and message.get("label") == "rtvi-ai"


async def bot(transport):
    pipecat = PipecatTransport(transport, TransportParams(audio_in_enabled=True,
                                                          audio_out_enabled=True))
    pipeline = Pipeline([pipecat.input(), VADProcessor(vad_analyzer=SileroVADAnalyzer()),
                         PlayBackTurns(), pipecat.output()])
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(PipelineWorker(pipeline))
    await runner.run()
