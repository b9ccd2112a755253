"""The reference: an echo bot for the Pipecat development runner, written for the benchmark.

Like bots/echo.py it asks for 16 kHz input and plays every input frame back, so both runners
resample the same way (8 kHz mu-law or 48 kHz Opus in, 16 kHz to the bot, back out). Run it with
the reference venv: `benchmarks/.ref-venv/bin/python benchmarks/reference/echo_bot.py -t twilio`.

Pipecat logs at DEBUG by default; set REF_LOG_LEVEL (default INFO, as runner's default) so the
comparison is of the media path, not of log volume.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from loguru import logger
from pipecat.frames.frames import Frame, InputAudioRawFrame, OutputAudioRawFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.runner.types import SmallWebRTCRunnerArguments, WebSocketRunnerArguments
from pipecat.workers.runner import WorkerRunner

RATE = 16000
_logging_set = False


class Echo(FrameProcessor):
    """Turns every inbound audio frame into an outbound one; passes everything else on."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            await self.push_frame(OutputAudioRawFrame(audio=frame.audio, sample_rate=frame.sample_rate,
                                                      num_channels=frame.num_channels))
        else:
            await self.push_frame(frame, direction)


def set_logging() -> None:
    global _logging_set
    if not _logging_set:
        _logging_set = True
        logger.remove()
        logger.add(sys.stderr, level=os.environ.get("REF_LOG_LEVEL", "INFO"))


async def telephony_transport(runner_args: WebSocketRunnerArguments) -> Any:
    """Pipecat's Twilio transport at 16 kHz, hang-up off (no Twilio account: nothing to call)."""
    from pipecat.runner.utils import parse_telephony_websocket
    from pipecat.serializers.twilio import TwilioFrameSerializer
    from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams, FastAPIWebsocketTransport

    _, call = await parse_telephony_websocket(runner_args.websocket)
    serializer = TwilioFrameSerializer(
        stream_sid=call["stream_id"], call_sid=call["call_id"],
        params=TwilioFrameSerializer.InputParams(auto_hang_up=False))
    params = FastAPIWebsocketParams(audio_in_enabled=True, audio_out_enabled=True,
                                    audio_in_sample_rate=RATE, audio_out_sample_rate=RATE,
                                    add_wav_header=False, serializer=serializer)
    return FastAPIWebsocketTransport(websocket=runner_args.websocket, params=params)


def webrtc_transport(runner_args: SmallWebRTCRunnerArguments) -> Any:
    """Pipecat's SmallWebRTC transport at 16 kHz."""
    from pipecat.transports.base_transport import TransportParams
    from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport

    params = TransportParams(audio_in_enabled=True, audio_out_enabled=True,
                             audio_in_sample_rate=RATE, audio_out_sample_rate=RATE)
    return SmallWebRTCTransport(params=params, webrtc_connection=runner_args.webrtc_connection)


async def bot(runner_args: Any) -> None:
    """The Pipecat runner's entry point: transport.input() -> echo -> transport.output()."""
    set_logging()
    if isinstance(runner_args, SmallWebRTCRunnerArguments):
        transport = webrtc_transport(runner_args)
    else:
        transport = await telephony_transport(runner_args)
    # No RTVI and no turn tracking: the leanest pipeline the reference allows, so our ratios are
    # conservative (a default Pipecat bot adds both).
    task = PipelineWorker(Pipeline([transport.input(), Echo(), transport.output()]),
                          params=PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE),
                          enable_rtvi=False, enable_turn_tracking=False)

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(transport: Any, client: Any) -> None:
        await task.cancel()

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(task)
    await runner.run()


if __name__ == "__main__":
    from pipecat.runner.run import main

    main()
