"""The plain WebSocket transport with each session in a worker process: what task mode does, unchanged."""

from __future__ import annotations

import asyncio
import os
import time

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from runner.audio import dominant_frequency, tone
from workers.support import FRAME, RATE, worker_bot, worker_config, worker_pids

from conftest import collect, metric, serve, stream, wait_for


async def test_echo_runs_in_a_worker_paced_in_real_time_and_is_counted() -> None:
    async with serve(worker_config(), worker_bot()) as served:
        async with websockets.connect(f"{served.ws}/ws-client?role=whoami") as ws:
            sent = tone(440, 1.0, RATE).pcm
            reader = asyncio.create_task(collect(ws, 1.6))
            started = time.monotonic()
            await stream(ws, sent, realtime=False)  # burst: the worker must pace it
            audio, texts = await reader
            assert abs(dominant_frequency(bytes(audio), RATE) - 440) < 5
            assert len(audio) >= len(sent) - FRAME
            assert time.monotonic() - started > 0.9
            assert texts[0]["pid"] != os.getpid() and texts[0]["pid"] in worker_pids(served)
            await wait_for(lambda: len(served.sessions.active) == 1)
            (session,) = served.sessions.active.values()
            assert served.sessions.status()[0]["id"] == session.id
        await wait_for(lambda: not served.sessions.active)
        assert dict(served.sessions.outcomes) == {"websocket:client_left": 1}
        record = served.sessions.history[-1]
        assert record.frames_in >= 49 and record.audio_seconds_out > 0.9
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"{served.http}/metrics")).text
        assert metric(text, "runner_sessions_total", transport="websocket",
                      outcome="client_left") == 1
        assert metric(text, "runner_audio_frames_in_total", transport="websocket") >= 49
        assert metric(text, "runner_sessions_active", transport="websocket") == 0


async def test_resampling_messages_and_a_bot_that_returns() -> None:
    async with serve(worker_config(), worker_bot()) as served:
        async with websockets.connect(f"{served.ws}/ws-client?sample_rate=8000") as ws:
            sent = tone(700, 0.6, 8000).pcm
            reader = asyncio.create_task(collect(ws, 1.2))
            for offset in range(0, len(sent), 320):
                await ws.send(sent[offset:offset + 320])
            audio, _ = await reader
            assert abs(dominant_frequency(bytes(audio), 8000) - 700) < 10
        async with websockets.connect(f"{served.ws}/ws-client?role=bye") as ws:
            _, texts = await collect(ws, 3.0)
            assert texts == [{"bye": True}] and ws.close_code == 1000
        await wait_for(lambda: not served.sessions.active)
        assert served.sessions.outcomes["websocket:ok"] == 1


async def test_a_bot_that_raises_is_a_bot_error_reported_by_its_worker() -> None:
    async with serve(worker_config(), worker_bot()) as served:
        async with websockets.connect(f"{served.ws}/ws-client?role=raise") as ws:
            await ws.send(bytes(FRAME))
            await collect(ws, 3.0)
            assert ws.close_code == 1000
        await wait_for(lambda: not served.sessions.active)
        assert dict(served.sessions.outcomes) == {"websocket:bot_error": 1}
        assert served.sessions.history[-1].error == "RuntimeError: boom"


async def test_limits_refusals_and_the_api_key_are_answered_by_the_server() -> None:
    config = worker_config(max_sessions="1", environ={"RUNNER_API_KEY": "k3y"})
    key = {"Authorization": "Bearer k3y"}
    async with serve(config, worker_bot()) as served:
        spawned = set(worker_pids(served))
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(f"{served.ws}/ws-client")
        assert refused.value.response.status_code == 403
        async with websockets.connect(f"{served.ws}/ws-client", additional_headers=key) as first:
            await wait_for(lambda: len(served.sessions.active) == 1)
            async with websockets.connect(f"{served.ws}/ws-client",
                                          additional_headers=key) as second:
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(second.recv(), 2)
                assert second.close_code == 1013
            async with httpx.AsyncClient() as http:
                ready = await http.get(f"{served.http}/ready")
                assert ready.status_code == 503 and ready.json()["reason"] == "at --max-sessions"
            reader = asyncio.create_task(collect(first, 0.8))
            await stream(first, tone(500, 0.4, RATE).pcm)
            audio, _ = await reader
            assert abs(dominant_frequency(bytes(audio), RATE) - 500) < 5
        await wait_for(lambda: not served.sessions.active)
        # Refused connections spent no worker: one session, one worker used.
        assert served.sessions.started_total["websocket"] == 1
        assert len(spawned | worker_pids(served)) <= 3


async def test_max_duration_ends_the_session_in_the_worker() -> None:
    async with serve(worker_config(max_duration="0.5"), worker_bot()) as served:
        async with websockets.connect(f"{served.ws}/ws-client") as ws:
            await collect(ws, 3.0)
            assert ws.close_code == 1000 and ws.close_reason == "max duration reached"
        await wait_for(lambda: not served.sessions.active)
        assert dict(served.sessions.outcomes) == {"websocket:timeout": 1}
