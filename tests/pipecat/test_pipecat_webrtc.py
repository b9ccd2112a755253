"""runner.pipecat over WebRTC with a real aiortc peer: the example echoes a turn through Opus at
its pitch, RTVI goes both ways over the data channel, and video goes both ways."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

# A submodule, not "pipecat": without the extra, this very directory (tests/pipecat, on sys.path)
# would import as a namespace package of that name.
pytest.importorskip("pipecat.frames.frames",
                    reason="runner.pipecat needs the pipecat extra: pip install '.[pipecat]'")
pytest.importorskip("aiortc", reason="the webrtc extra is not installed")

from pipecat.frames.frames import Frame, InputImageRawFrame, OutputImageRawFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner
from pipecat_speech import silence, utterance, voiced_seconds
from pipecat_support import EXAMPLE

from runner.audio import dominant_frequency
from runner.pipecat import PipecatTransport, TransportParams
from runner.smoke.callers.webrtc import RATE, Client

from conftest import as_bot, make_config, serve, wait_for


async def connected(served: Any, **options: Any) -> Client:
    client = Client(served.http, **options)
    await client.offer()
    await client.wait_connected()
    return client


async def test_the_example_echoes_a_turn_and_answers_rtvi_over_the_data_channel() -> None:
    async with serve(make_config("dev"), EXAMPLE) as served:
        client = await connected(served)
        try:
            client.send({"label": "rtvi-ai", "type": "client-ready", "id": "c1",
                         "data": {"version": "1.0.0"}})
            said = utterance(1.2, RATE)
            client.mic.play(silence(0.3, RATE) + said + silence(1.0, RATE))
            await asyncio.sleep(4.5)
            reply = b"".join(pcm for _, pcm in client.audio)
            assert abs(voiced_seconds(reply, RATE) - voiced_seconds(said, RATE)) < 0.3
            assert abs(dominant_frequency(reply, RATE) - dominant_frequency(said, RATE)) < 10
            assert any(message.get("type") == "bot-ready" for message in client.messages)
        finally:
            await client.close()
        await wait_for(lambda: not served.sessions.active)


class Mirror(FrameProcessor):
    """Shows the caller their own camera."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputImageRawFrame):
            await self.push_frame(OutputImageRawFrame(frame.image, frame.size, frame.format))
        else:
            await self.push_frame(frame, direction)


async def mirror(transport: Any) -> None:
    pipecat = PipecatTransport(transport, TransportParams(
        video_in_enabled=True, video_out_enabled=True, video_out_is_live=True,
        video_out_width=160, video_out_height=120))
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(PipelineWorker(Pipeline([pipecat.input(), Mirror(),
                                                      pipecat.output()])))
    await runner.run()


async def test_video_goes_both_ways() -> None:
    async with serve(make_config("dev"), as_bot(mirror, webrtc={"video": True})) as served:
        client = await connected(served, video=True)
        try:
            await wait_for(lambda: len(client.frames) >= 3, timeout=10)
            picture = client.frames[-1].to_ndarray(format="rgb24").reshape(-1, 3).mean(axis=0)
            assert picture[0] > 150 and picture[1] < 90 and picture[2] < 90, picture  # red
        finally:
            await client.close()
