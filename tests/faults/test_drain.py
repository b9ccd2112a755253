"""SIGTERM drains: /ready turns 503, new sessions are refused, running ones finish, exit 0."""

from __future__ import annotations

import asyncio
import signal

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from runner.audio import dominant_frequency, tone
from runner.smoke.callers import Target
from runner.smoke.callers.telephony import TwilioCaller

from conftest import ROOT, make_config, runner_serve

FRAME = 640


PUBLIC_URL = "https://bots.example.com"
SECRET = "drain-test-secret"


async def start_server(*extra: str, bot: str = str(ROOT / "bots" / "echo.py"),
                       ) -> tuple[asyncio.subprocess.Process, str]:
    """`runner serve` (worker processes, its default) for a WebSocket and Twilio."""
    return await runner_serve(bot, "--transport", "websocket,twilio", "--public-url", PUBLIC_URL,
                              "--no-verify-signatures", *extra, env={"RUNNER_SECRET": SECRET})


async def echo_check(ws, frequency: int) -> None:
    sent = tone(frequency, 0.3, 16000).pcm
    for offset in range(0, len(sent), FRAME):
        await ws.send(sent[offset:offset + FRAME])
    got = bytearray()
    while len(got) < len(sent) - FRAME:
        message = await asyncio.wait_for(ws.recv(), 3)
        if isinstance(message, bytes):
            got += message
    assert abs(dominant_frequency(bytes(got), 16000) - frequency) < 8


async def phone_call(port: str) -> TwilioCaller:
    config = make_config("serve", {"RUNNER_SECRET": SECRET}, transport="twilio",
                         public_url=PUBLIC_URL, verify_signatures="false")
    phone = TwilioCaller()
    url, headers = await phone.dial(Target(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}",
                                           config))
    await phone.connect(url, headers)
    return phone


async def phone_echo_check(phone: TwilioCaller, frequency: int) -> None:
    heard = len(phone.heard)
    await phone.send_audio(tone(frequency, 0.3, 8000).pcm, realtime=True)
    await phone.wait_heard((heard / 16000) + 0.25)
    assert abs(dominant_frequency(bytes(phone.heard[heard:]), 8000) - frequency) < 10


async def test_sigterm_drains_running_sessions_and_exits_zero() -> None:
    process, port = await start_server()
    try:
        phone = await phone_call(port)
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws-client") as live:
            await echo_check(live, 400)
            await phone_echo_check(phone, 500)
            process.send_signal(signal.SIGTERM)
            async with httpx.AsyncClient() as http:
                for _ in range(50):
                    ready = await http.get(f"http://127.0.0.1:{port}/ready")
                    if ready.status_code == 503:
                        break
                    await asyncio.sleep(0.05)
                assert ready.status_code == 503 and ready.json()["reason"] == "draining"
                assert (await http.get(f"http://127.0.0.1:{port}/health")).status_code == 200
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws-client") as refused:
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(refused.recv(), 3)
                assert refused.close_code == 1013
            await asyncio.sleep(0.5)
            await echo_check(live, 600)  # the running sessions are not cut
            await phone_echo_check(phone, 700)
            assert process.returncode is None
        await asyncio.sleep(0.3)
        assert process.returncode is None  # the phone call is still up
        await phone.hang_up()
        assert await asyncio.wait_for(process.wait(), 15) == 0
        log = (await process.stderr.read()).decode()
        assert "draining: 2 sessions left" in log
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_drain_timeout_ends_sessions_and_second_signal_exits_at_once() -> None:
    process, port = await start_server("--drain-timeout", "0.5")
    try:
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws-client") as live:
            await echo_check(live, 500)
            process.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed):
                while True:
                    await asyncio.wait_for(live.recv(), 5)
            assert live.close_reason == "server shutting down"
        assert await asyncio.wait_for(process.wait(), 15) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    process, port = await start_server()
    try:
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws-client") as live:
            await echo_check(live, 500)
            process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            assert process.returncode is None  # draining, the call still up
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 10)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
