"""The real-bot benchmark's bot: Silero VAD and Smart Turn v3 find each user turn, the bot plays
it back. One file, run unchanged by both servers measured:

    runner serve benchmarks/realbot_bot.py --transport twilio
    benchmarks/.ref-venv/bin/python benchmarks/realbot_bot.py -t twilio   # Pipecat's runner

It is bots/pipecat_unchanged.py's playback with Pipecat's own turn machinery in front: the
turn ends when `TurnAnalyzerUserTurnStopStrategy` (`LocalSmartTurnAnalyzerV3`, the model that
ships inside pipecat-ai, so offline) says so, not when the VAD first hears 0.2 s of silence.
The cost of a real voice bot's ears (VAD on every frame, a transformer at every pause) is in
every session, which the echo benchmark leaves out.

Pipecat logs at DEBUG by default (a line per Smart Turn inference); REF_LOG_LEVEL (default INFO)
sets both servers' bot logging alike, as in the echo reference.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import (
    Frame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.runner.types import RunnerArguments, SmallWebRTCRunnerArguments
from pipecat.turns.user_stop.turn_analyzer_user_turn_stop_strategy import (
    TurnAnalyzerUserTurnStopStrategy,
)
from pipecat.turns.user_turn_processor import UserTurnProcessor
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.workers.runner import WorkerRunner

# Both servers start this file with the repository as the working directory but not on sys.path
# (`runner` is a console script; Pipecat's runner puts benchmarks/ there).
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from benchmarks.reference.echo_bot import (  # noqa: E402
    set_logging,
    telephony_transport,
    webrtc_transport,
)
from bots.pipecat_unchanged import PlayBackTurns  # noqa: E402


class SmartTurnEnds(FrameProcessor):
    """Shows PlayBackTurns the turn Smart Turn decided on, in the VAD frames it understands.

    The first VAD start opens a turn; VAD stops are held until the turn processor's
    `UserStoppedSpeakingFrame`, when the last one is released with `stop_secs` grown by the
    wait (so the playback is trimmed at the end of speech); a VAD start inside an open turn
    (Smart Turn heard an unfinished sentence, the user went on) is dropped.
    """

    def __init__(self) -> None:
        super().__init__()
        self._open = False
        self._held: VADUserStoppedSpeakingFrame | None = None
        self._held_at = 0.0

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, VADUserStartedSpeakingFrame):
            self._held = None
            if self._open:
                return
            self._open = True
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._held, self._held_at = frame, time.monotonic()
            return
        elif isinstance(frame, UserStoppedSpeakingFrame) and self._open and self._held:
            waited = time.monotonic() - self._held_at
            stop = VADUserStoppedSpeakingFrame(stop_secs=self._held.stop_secs + waited)
            self._open, self._held = False, None
            await self.push_frame(stop, direction)
        await self.push_frame(frame, direction)


def ears() -> list[FrameProcessor]:
    """VAD on every frame, then Pipecat's user-turn processor ending turns by Smart Turn v3."""
    stop = TurnAnalyzerUserTurnStopStrategy(turn_analyzer=LocalSmartTurnAnalyzerV3(),
                                            wait_for_transcript=False)  # no STT in this bot
    return [VADProcessor(vad_analyzer=SileroVADAnalyzer()),
            UserTurnProcessor(user_turn_strategies=UserTurnStrategies(stop=[stop])),
            SmartTurnEnds()]


async def bot(runner_args: RunnerArguments) -> None:
    """Pipecat's runner entry point (runner calls it the same way). The transports are the echo
    reference's: Pipecat's own, 16 kHz in the pipeline, Twilio's hang-up off (there is no
    account; `create_transport` would insist on one)."""
    set_logging()
    transport: Any
    if isinstance(runner_args, SmallWebRTCRunnerArguments):
        transport = webrtc_transport(runner_args)
    else:
        transport = await telephony_transport(runner_args)
    worker = PipelineWorker(Pipeline([transport.input(), *ears(), PlayBackTurns(),
                                      transport.output()]))

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(transport: Any, client: Any) -> None:
        await worker.cancel()

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()


if __name__ == "__main__":
    from pipecat.runner.run import main

    main()
