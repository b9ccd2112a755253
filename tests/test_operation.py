"""Operation: metrics, the event-loop watchdog, idle timeout, body limits, JSON logs."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time

import httpx
import pytest
import websockets

from runner.logs import JsonFormatter, current_session

from conftest import as_bot, make_config, metric, serve, wait_for


async def echo(transport):
    async for frame in transport.audio(sample_rate=16000):
        await transport.send_audio(frame)


async def test_metrics_count_sessions_outcomes_frames_and_refusals() -> None:
    async def crash(transport):
        raise RuntimeError("bad bot")

    async def bot(transport):
        if transport.session.body.get("crash"):
            await crash(transport)
        await echo(transport)

    config = make_config(transport="websocket", max_sessions="1")
    async with serve(config, as_bot(bot)) as served, httpx.AsyncClient() as http:
        async with websockets.connect(f"{served.ws}/ws-client") as ws:
            for _ in range(10):
                await ws.send(bytes(640))
            await asyncio.sleep(0.3)
            text = (await http.get(f"{served.http}/metrics")).text
            assert metric(text, "runner_sessions_active", transport="websocket") == 1
            async with websockets.connect(f"{served.ws}/ws-client") as refused:
                await asyncio.wait_for(refused.wait_closed(), 3)
        await wait_for(lambda: not served.sessions.active)
        async with websockets.connect(f"{served.ws}/ws-client?crash=1") as ws:
            await asyncio.wait_for(ws.wait_closed(), 3)
        await wait_for(lambda: not served.sessions.active)
        response = await http.get(f"{served.http}/metrics")
        assert response.headers["content-type"].startswith("text/plain")
        text = response.text
        assert metric(text, "runner_sessions_active", transport="websocket") == 0
        assert metric(text, "runner_sessions_total", transport="websocket",
                      outcome="client_left") == 1
        assert metric(text, "runner_sessions_total", transport="websocket",
                      outcome="bot_error") == 1
        assert metric(text, "runner_bot_errors_total", transport="websocket") == 1
        assert metric(text, "runner_sessions_refused_total", transport="websocket",
                      reason="full") == 1
        assert metric(text, "runner_audio_frames_in_total", transport="websocket") == 10
        assert metric(text, "runner_audio_out_seconds_total", transport="websocket") > 0.15
        assert metric(text, "runner_session_duration_seconds_count", transport="websocket") == 2
        assert metric(text, "runner_event_loop_lag_seconds_count") > 0


async def test_watchdog_names_the_session_that_blocked_the_loop(
        caplog: pytest.LogCaptureFixture) -> None:
    ids = []

    async def blocking(transport):
        ids.append(transport.session.id)
        time.sleep(0.4)  # noqa: ASYNC251 - the bug the watchdog exists for

    config = make_config(transport="websocket", block_warning="0.1")
    async with serve(config, as_bot(blocking)) as served, httpx.AsyncClient() as http:
        async with websockets.connect(f"{served.ws}/ws-client") as ws:
            await asyncio.wait_for(ws.wait_closed(), 5)
        await wait_for(lambda: served.app.state.watchdog.stalls >= 1)
        warnings = [r for r in caplog.records if r.name == "runner.watchdog"]
        assert len(warnings) == 1  # once per stall
        message = warnings[0].getMessage()
        assert f"by session {ids[0]} (websocket)" in message
        assert "time.sleep(0.4)" in message and "blocking" in message
        ready = await http.get(f"{served.http}/ready")
        assert ready.status_code == 503 and ready.json()["reason"] == "event loop stalled"


async def test_idle_timeout_ends_a_silent_session() -> None:
    async def quiet(transport):
        async for _ in transport.audio():
            pass

    config = make_config(transport="websocket", idle_timeout="0.5")
    async with serve(config, as_bot(quiet)) as served:
        async with websockets.connect(f"{served.ws}/ws-client") as ws:
            started = time.monotonic()
            await asyncio.wait_for(ws.wait_closed(), 5)
            assert ws.close_reason == "idle timeout"
            assert time.monotonic() - started < 3
        await wait_for(lambda: not served.sessions.active)
        assert dict(served.sessions.outcomes) == {"websocket:timeout": 1}


async def test_oversize_bodies_are_refused_on_every_route() -> None:
    async with serve(make_config(transport="websocket"), as_bot(echo)) as served:
        async with httpx.AsyncClient(base_url=served.http) as http:
            big = b"x" * (300 * 1024)
            assert (await http.post("/status", content=big)).status_code == 413

            async def chunks():
                for _ in range(300):
                    yield b"y" * 1024

            streamed = await http.post("/health", content=chunks())
            assert streamed.status_code in (405, 413)
            assert (await http.get("/health")).status_code == 200


def test_json_logs_carry_the_session_on_every_line() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.json")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    token = current_session.set(("abc123", "twilio"))
    try:
        logger.info("inside")
    finally:
        current_session.reset(token)
    logger.info("outside")
    logger.removeHandler(handler)
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["session_id"] == "abc123" and inside["transport"] == "twilio"
    assert inside["message"] == "inside" and inside["level"] == "info"
    assert "session_id" not in outside
