"""runner.pipecat over the plain WebSocket transport, with the real server and a real client:
bots/pipecat_echo.py plays each turn back; app messages (RTVI too) go both ways; the session
follows the pipeline and the pipeline follows the client."""

from __future__ import annotations

import asyncio
import json

import pytest

# A submodule, not "pipecat": without the extra, this very directory (tests/pipecat, on sys.path)
# would import as a namespace package of that name.
pytest.importorskip("pipecat.frames.frames",
                    reason="runner.pipecat needs the pipecat extra: pip install '.[pipecat]'")

import websockets
from pipecat.frames.frames import InputTransportMessageFrame
from pipecat_speech import silence, utterance, voiced_seconds
from pipecat_support import EXAMPLE, PipecatBot

from runner.audio import dominant_frequency

from conftest import as_bot, collect, make_config, serve, stream, wait_for

RATE = 16000


async def test_the_example_plays_each_turn_back_at_its_pitch_and_length() -> None:
    async with serve(make_config(transport="websocket"), EXAMPLE) as served:
        async with websockets.connect(f"{served.ws}/ws-client?sample_rate={RATE}") as ws:
            said = utterance(1.2, RATE)
            reader = asyncio.create_task(collect(ws, 5.0))
            await stream(ws, silence(0.3) + said + silence(1.0))
            await stream(ws, silence(2.0))
            heard, _ = await reader
        reply = bytes(heard)
        assert abs(voiced_seconds(reply, RATE) - voiced_seconds(said, RATE)) < 0.25
        assert abs(dominant_frequency(reply, RATE) - dominant_frequency(said, RATE)) < 8
        await wait_for(lambda: not served.sessions.active)


async def test_app_messages_and_rtvi_go_both_ways() -> None:
    async with serve(make_config(transport="websocket"), EXAMPLE) as served:
        async with websockets.connect(f"{served.ws}/ws-client") as ws:
            await ws.send(json.dumps({"hello": 1}))
            await ws.send(json.dumps({"label": "rtvi-ai", "type": "client-ready", "id": "c1",
                                      "data": {"version": "1.0.0"}}))
            _, texts = await collect(ws, 1.5)
        assert {"echo": {"hello": 1}} in texts
        ready = [text for text in texts if text.get("type") == "bot-ready"]
        assert ready and ready[0]["label"] == "rtvi-ai"
        await wait_for(lambda: not served.sessions.active)


async def test_client_events_fire_and_messages_reach_the_pipeline() -> None:
    bot = PipecatBot()
    async with serve(make_config(transport="websocket"), as_bot(bot)) as served:
        async with websockets.connect(f"{served.ws}/ws-client") as ws:
            await ws.send(json.dumps({"n": 2}))
            await wait_for(lambda: bot.events == [f"connected {bot.transport.session.id}"]
                           and [f.message for f in bot.of_type(InputTransportMessageFrame)] == [{"n": 2}])
        await wait_for(lambda: bot.returned, timeout=3)  # the client left: the pipeline ended
        assert bot.events[-1] == "disconnected"
        await wait_for(lambda: not served.sessions.active)
        assert dict(served.sessions.outcomes) == {"websocket:client_left": 1}


@pytest.mark.parametrize(("ask", "reason"), [("end", "the pipeline ended"),
                                             ("cancel", "the pipeline was cancelled")])
async def test_the_session_ends_when_the_pipeline_does(ask: str, reason: str) -> None:
    bot = PipecatBot()
    async with serve(make_config(transport="websocket"), as_bot(bot)) as served:
        async with websockets.connect(f"{served.ws}/ws-client") as ws:
            await ws.send(json.dumps({ask: True}))
            await collect(ws, 5.0)  # reads until the server closes (an ended pipeline plays out)
            assert ws.close_code == 1000 and ws.close_reason == reason
        await wait_for(lambda: bot.returned and not served.sessions.active)
        assert "disconnected" not in bot.events  # the pipeline left, not the client
