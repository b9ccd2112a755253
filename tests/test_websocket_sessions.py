"""Session lifecycle through the real server and real WebSocket clients on /ws-client."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from runner.audio import AudioFrame, dominant_frequency, tone

from conftest import as_bot, collect, make_config, serve, stream, wait_for

RATE = 16000
FRAME = 640  # 20 ms of PCM16 mono at 16 kHz


async def echo(transport):
    async for frame in transport.audio(sample_rate=RATE):
        await transport.send_audio(frame)


def outcomes(served) -> dict[str, int]:
    return dict(served.sessions.outcomes)


async def test_echo_returns_the_same_tone_paced_in_real_time() -> None:
    async with serve(make_config(transport="websocket"), as_bot(echo)) as served:
        async with websockets.connect(f"{served.ws}/ws-client?sample_rate=16000") as ws:
            sent = tone(440, 1.0, RATE).pcm
            reader = asyncio.create_task(collect(ws, 1.6))
            started = time.monotonic()
            await stream(ws, sent, realtime=False)  # burst: the server must pace it
            audio, _ = await reader
            assert abs(dominant_frequency(bytes(audio), RATE) - 440) < 5
            assert len(audio) >= len(sent) - FRAME
            # 1 s of audio sent in a burst comes back paced: it cannot finish much before 1 s.
            assert time.monotonic() - started > 0.9
        await wait_for(lambda: not served.sessions.active)
        assert outcomes(served) == {"websocket:client_left": 1}


async def test_audio_is_not_compressed_even_when_the_client_offers_deflate() -> None:
    async with serve(make_config(transport="websocket"), as_bot(echo)) as served:
        async with websockets.connect(f"{served.ws}/ws-client") as ws:  # offers permessage-deflate
            assert ws.protocol.extensions == []
            reader = asyncio.create_task(collect(ws, 0.5))
            await stream(ws, tone(440, 0.2, RATE).pcm)
            audio, _ = await reader
            assert len(audio) > FRAME


async def test_other_sample_rates_are_resampled_both_ways() -> None:
    async with serve(make_config(transport="websocket"), as_bot(echo)) as served:
        async with websockets.connect(f"{served.ws}/ws-client?sample_rate=8000") as ws:
            sent = tone(700, 0.6, 8000).pcm
            reader = asyncio.create_task(collect(ws, 1.2))
            for offset in range(0, len(sent), 320):
                await ws.send(sent[offset:offset + 320])
            audio, _ = await reader
            assert abs(dominant_frequency(bytes(audio), 8000) - 700) < 10


async def test_app_messages_round_trip_and_bad_messages_are_skipped() -> None:
    async def messages(transport):
        async for message in transport.messages():
            await transport.send_message({"echo": message})

    async with serve(make_config(transport="websocket"), as_bot(messages)) as served:
        async with websockets.connect(f"{served.ws}/ws-client") as ws:
            await ws.send("not json {")
            await ws.send(b"\x01\x02\x03")  # odd length: not PCM16
            await ws.send(json.dumps({"n": 1}))
            _, texts = await collect(ws, 0.5)
            assert texts == [{"echo": {"n": 1}}]
        await wait_for(lambda: not served.sessions.active)


async def test_bot_that_returns_ends_the_session_and_closes_the_socket() -> None:
    async def greet_and_leave(transport):
        await transport.send_audio(AudioFrame.silence(0.1, RATE))
        await transport.send_message({"bye": True})

    async with serve(make_config(transport="websocket"), as_bot(greet_and_leave)) as served:
        async with websockets.connect(f"{served.ws}/ws-client") as ws:
            _, texts = await collect(ws, 2.0)
            assert texts == [{"bye": True}]
            assert ws.close_code == 1000
        await wait_for(lambda: not served.sessions.active)
        assert outcomes(served) == {"websocket:ok": 1}


@pytest.mark.parametrize("delay", [0.0, 0.3])
async def test_bot_that_raises_ends_only_its_own_session(delay: float,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    async def bot(transport):
        if transport.session.body.get("role") == "crash":
            await asyncio.sleep(delay)
            raise RuntimeError("boom")
        await echo(transport)

    async with serve(make_config(transport="websocket"), as_bot(bot)) as served:
        async with websockets.connect(f"{served.ws}/ws-client") as healthy:
            async with websockets.connect(f"{served.ws}/ws-client?role=crash") as crashing:
                _, _ = await collect(crashing, 1.0)
                assert crashing.close_code == 1000
            reader = asyncio.create_task(collect(healthy, 0.8))
            await stream(healthy, tone(300, 0.4, RATE).pcm)
            audio, _ = await reader
            assert abs(dominant_frequency(bytes(audio), RATE) - 300) < 5
        await wait_for(lambda: not served.sessions.active)
    assert outcomes(served)["websocket:bot_error"] == 1
    errors = [r for r in caplog.records if r.levelname == "ERROR" and "boom" in r.getMessage()]
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert errors[0].session_id is not None


async def test_bot_that_never_returns_is_cancelled_after_the_grace_period() -> None:
    cancelled = asyncio.Event()

    async def stubborn(transport):
        try:
            await asyncio.sleep(3600)
        finally:
            cancelled.set()

    config = make_config(transport="websocket", grace_period="0.3")
    async with serve(config, as_bot(stubborn)) as served:
        async with websockets.connect(f"{served.ws}/ws-client"):
            await wait_for(lambda: served.sessions.active)
        await asyncio.wait_for(cancelled.wait(), 3)
        await wait_for(lambda: not served.sessions.active)
        assert outcomes(served) == {"websocket:bot_hung": 1}


async def test_bot_that_never_reads_audio_is_not_flooded() -> None:
    async def deaf(transport):
        await asyncio.sleep(0.8)
        assert transport.stats.frames_in > 50
        assert transport.stats.frames_read == 0
        assert transport.stats.frames_dropped > 0  # bounded: oldest frames dropped, counted

    async with serve(make_config(transport="websocket"), as_bot(deaf)) as served:
        async with websockets.connect(f"{served.ws}/ws-client") as ws:
            await stream(ws, bytes(FRAME * 80), realtime=False)
            await collect(ws, 1.5)
        await wait_for(lambda: not served.sessions.active)
        assert outcomes(served) == {"websocket:ok": 1}


async def test_client_that_vanishes_mid_stream_ends_the_session() -> None:
    async with serve(make_config(transport="websocket"), as_bot(echo)) as served:
        ws = await websockets.connect(f"{served.ws}/ws-client")
        await stream(ws, tone(440, 0.2, RATE).pcm, realtime=False)
        ws.transport.abort()  # no close handshake: the TCP connection just drops
        await wait_for(lambda: not served.sessions.active)
        assert outcomes(served) == {"websocket:client_left": 1}


async def test_max_sessions_refuses_with_1013_and_running_sessions_continue() -> None:
    config = make_config(transport="websocket", max_sessions="1")
    async with serve(config, as_bot(echo)) as served:
        async with websockets.connect(f"{served.ws}/ws-client") as first:
            await wait_for(lambda: len(served.sessions.active) == 1)
            async with websockets.connect(f"{served.ws}/ws-client") as second:
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(second.recv(), 2)
                assert second.close_code == 1013
            async with __import__("httpx").AsyncClient() as http:
                ready = await http.get(f"{served.http}/ready")
                assert ready.status_code == 503 and ready.json()["reason"] == "at --max-sessions"
            reader = asyncio.create_task(collect(first, 0.8))
            await stream(first, tone(500, 0.4, RATE).pcm)
            audio, _ = await reader
            assert abs(dominant_frequency(bytes(audio), RATE) - 500) < 5
        await wait_for(lambda: not served.sessions.active)


async def test_max_duration_ends_the_session() -> None:
    config = make_config(transport="websocket", max_duration="0.5")
    async with serve(config, as_bot(echo)) as served:
        async with websockets.connect(f"{served.ws}/ws-client") as ws:
            started = time.monotonic()
            await collect(ws, 3.0)
            assert ws.close_code == 1000 and ws.close_reason == "max duration reached"
            assert 0.4 < time.monotonic() - started < 2.0
        await wait_for(lambda: not served.sessions.active)
        assert outcomes(served) == {"websocket:timeout": 1}


async def test_bad_sample_rate_is_refused_with_a_reason() -> None:
    async with serve(make_config(transport="websocket"), as_bot(echo)) as served:
        async with websockets.connect(f"{served.ws}/ws-client?sample_rate=1234") as ws:
            await collect(ws, 1.0)
            assert ws.close_code == 1008 and "sample_rate" in ws.close_reason
        assert not served.sessions.active


async def test_health_ready_status_and_unselected_routes() -> None:
    import httpx

    async with serve(make_config(transport="websocket"), as_bot(echo)) as served:
        async with httpx.AsyncClient(base_url=served.http) as http:
            assert (await http.get("/health")).json() == {"status": "ok"}
            assert (await http.get("/ready")).json() == {"ready": True}
            status = (await http.get("/status")).json()
            assert status["transports"] == ["websocket"] and status["sessions"] == []
            for path in ("/api/offer", "/twilio", "/start"):
                assert (await http.post(path)).status_code in (404, 405)


async def test_api_key_is_required_when_set() -> None:
    from websockets.exceptions import InvalidStatus

    config = make_config(transport="websocket", environ={"RUNNER_API_KEY": "k3y"})
    async with serve(config, as_bot(echo)) as served:
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(f"{served.ws}/ws-client")
        assert refused.value.response.status_code == 403
        with pytest.raises(InvalidStatus):
            await websockets.connect(f"{served.ws}/ws-client",
                                     additional_headers={"Authorization": "Bearer wrong"})
        async with websockets.connect(f"{served.ws}/ws-client",
                                      additional_headers={"Authorization": "Bearer k3y"}) as ws:
            await ws.send(bytes(640))
            assert isinstance(await asyncio.wait_for(ws.recv(), 2), bytes)
        await wait_for(lambda: not served.sessions.active)


def test_serve_refuses_open_routes_on_a_public_address_without_a_key() -> None:
    from runner.app import create_app
    from runner.config import ConfigError

    with pytest.raises(ConfigError, match="RUNNER_API_KEY"):
        create_app(make_config(transport="websocket", host="0.0.0.0"), as_bot(echo))
    create_app(make_config(transport="websocket", host="0.0.0.0", allow_unauthenticated=True),
               as_bot(echo))
    create_app(make_config(transport="websocket", host="0.0.0.0",
                           environ={"RUNNER_API_KEY": "k"}), as_bot(echo))


async def test_tasks_a_bot_leaves_running_are_cancelled_with_its_session(
        caplog: pytest.LogCaptureFixture) -> None:
    leaked: list[asyncio.Task] = []

    async def leaky(transport):
        async def forever():
            await asyncio.sleep(3600)

        leaked.append(asyncio.create_task(forever(), name="forgotten-poller"))
        await echo(transport)

    async with serve(make_config(transport="websocket"), as_bot(leaky)) as served:
        async with websockets.connect(f"{served.ws}/ws-client") as ws:
            await ws.send(bytes(FRAME))
            await wait_for(lambda: bool(leaked))
        await wait_for(lambda: not served.sessions.active)
        assert leaked[0].cancelled()
    assert any("forgotten-poller" in r.getMessage() for r in caplog.records)


def test_unknown_websocket_transport_options_are_refused_at_start() -> None:
    from runner.app import create_app
    from runner.transports.base import TransportError

    async def bot(transport):
        pass

    loaded = as_bot(bot, websocket={"sample_rte": 16000})
    with pytest.raises(TransportError, match="unknown key 'sample_rte'"):
        create_app(make_config(transport="websocket", host="127.0.0.1"), loaded)


async def test_a_failure_handling_one_message_ends_only_that_session_with_1011(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from runner.transports.websocket import WebSocketTransport

    def broken(self, pcm: bytes) -> None:
        if pcm == b"\x01\x02":
            raise RuntimeError("a bug in message handling (the test's)")
        self._receive_audio(pcm)

    monkeypatch.setattr(WebSocketTransport, "_on_audio", broken)
    async with serve(make_config(transport="websocket"), as_bot(echo)) as served:
        async with websockets.connect(f"{served.ws}/ws-client") as bystander:
            async with websockets.connect(f"{served.ws}/ws-client") as ws:
                await ws.send(b"\x01\x02")
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 5)
                assert ws.close_code == 1011
            reader = asyncio.create_task(collect(bystander, 0.8))
            await stream(bystander, tone(500, 0.4, RATE).pcm)
            audio, _ = await reader
            assert abs(dominant_frequency(bytes(audio), RATE) - 500) < 8
        await wait_for(lambda: not served.sessions.active)
    failed = [r for r in caplog.records if "handling a message from the client failed" in r.getMessage()]
    assert len(failed) == 1 and failed[0].session_id is not None


async def test_a_client_that_stops_reading_costs_bounded_memory_and_the_bot_can_still_hang_up(
        ) -> None:
    """The bot sends 4 MB of app messages to a client that reads nothing: at most 1 MiB waits
    in the server, and the bot's hang-up still ends the session promptly."""
    from runner.transports.media_socket import MAX_QUEUED_BYTES

    seen: list = []

    async def flooding(transport):
        seen.append(transport)
        for index in range(4000):
            await transport.send_message({"n": index, "pad": "x" * 1000})
        await asyncio.sleep(0.5)
        await transport.hangup("done")

    async with serve(make_config(transport="websocket"), as_bot(flooding)) as served:
        _, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(b"GET /ws-client HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        await writer.drain()
        started = time.monotonic()
        await wait_for(lambda: seen, 5)
        await wait_for(lambda: not served.sessions.active, 10)  # never read a byte
        assert time.monotonic() - started < 0.5 + 2 * 2.0 + 2  # the hang-up's bounded waits
        socket_ = seen[0]._socket
        assert socket_.dropped > 0 and socket_.queued_bytes <= MAX_QUEUED_BYTES
        writer.close()
