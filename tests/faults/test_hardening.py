"""What an adversarial probe of the server broke once, and must survive from now on (issue 24).

Cases that need the fault arena run in both isolation modes (the `isolation` fixture); the rest
start `runner serve` in a process of its own, as users run it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sys
import time

import httpx
import psutil
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from faults.arena import AUTH, FRAME, ISOLATION, arena
from faults.test_drain import start_server
from faults.test_faults import echo_ok, ws_client
from runner.audio import dominant_frequency, tone

from conftest import ROOT, wait_for

pytestmark = pytest.mark.timeout(90)

WORKER_BOT = str(ROOT / "tests" / "workers" / "bots.py")


@pytest.fixture(params=["task", "process"])
def isolation(request: pytest.FixtureRequest) -> str:
    ISOLATION["mode"] = request.param
    return request.param


# ----------------------------------------------------------------- client JSON past the parser


@pytest.mark.parametrize("text", ["1" * 5000, "[" * 100_000 + "]" * 100_000])
async def test_unusable_json_text_is_skipped_and_the_session_goes_on(isolation: str,
                                                                       text: str) -> None:
    async with arena() as a:
        ws = await ws_client(a.served)
        await ws.send(text)
        await echo_ok(ws)  # skipped with a log line; the session still echoes
        await ws.close()
        await a.settle()


async def test_unusable_json_on_a_phone_call_is_skipped(isolation: str) -> None:
    from telephony.support import dial

    async with arena() as a:
        phone = await dial(a.served, "twilio")
        await phone.send("[" * 100_000 + "]" * 100_000)
        await phone.send_audio(tone(600, 0.3, 8000).pcm)
        await phone.wait_heard(0.2, timeout=10)
        await phone.hang_up()
        await a.settle()


@pytest.mark.parametrize("path", ["/api/offer", "/start"])
async def test_deep_or_huge_json_bodies_are_400(isolation: str, path: str) -> None:
    async with arena(transports="webrtc") as a, httpx.AsyncClient(base_url=a.served.http) as http:
        for body in ("[" * 100_000 + "]" * 100_000, '{"sdp": ' + "1" * 5000 + "}"):
            answer = await http.post(path, content=body, headers={**AUTH,
                                                                   "content-type": "application/json"})
            assert answer.status_code == 400, answer.text
            assert "JSON" in answer.json()["detail"]
        await a.settle()


async def test_a_declared_oversize_body_is_413_at_once(isolation: str) -> None:
    async with arena(transports="webrtc") as a:
        reader, writer = await asyncio.open_connection("127.0.0.1", a.served.port)
        auth = AUTH["Authorization"].encode()
        writer.write(b"POST /api/offer HTTP/1.1\r\nHost: x\r\nAuthorization: " + auth
                     + b"\r\nContent-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n")
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 3)  # no body sent: answered at once
        assert b" 413 " in status
        writer.close()
        await a.settle()


async def test_a_bot_that_ignores_its_cancellation_does_not_hold_its_slot(isolation: str) -> None:
    """The client leaves; the bot neither returns nor lets itself be cancelled: its session
    still ends within the grace period and a couple of seconds, and frees its slot."""
    async with arena() as a:
        ws = await ws_client(a.served, "?fault=ignore_cancel")
        await wait_for(lambda: len(a.sessions.active) == 2, 10)
        await ws.close()
        left = time.monotonic()
        await wait_for(lambda: len(a.sessions.active) == 1, 10)
        assert time.monotonic() - left < 0.5 + 2.0 + 1.5  # grace, the cancel's wait, slack
        assert a.outcomes().get("websocket:bot_hung") == 1
        await asyncio.sleep(4)  # the bot's own lingering ends: nothing is left behind
        await a.settle()


# ----------------------------------------------------------------- bursts


async def test_a_burst_of_small_audio_messages_keeps_the_freshest_second(isolation: str) -> None:
    async with arena() as a:
        ws = await ws_client(a.served)
        pcm = tone(700, 0.625, 16000).pcm  # 625 ms in 10,000 messages of 2 bytes
        for offset in range(0, len(pcm), 2):
            await ws.send(pcm[offset:offset + 2])
        heard = bytearray()
        with contextlib.suppress(TimeoutError):
            while len(heard) < len(pcm):
                message = await asyncio.wait_for(ws.recv(), 2)
                if isinstance(message, bytes):
                    heard += message
        assert len(heard) >= len(pcm) * 0.95  # under a second: all of it comes back
        assert abs(dominant_frequency(bytes(heard), 16000) - 700) < 8
        await ws.close()
        await a.settle()


async def test_app_message_drops_are_counted(isolation: str) -> None:
    async with arena() as a:
        ws = await ws_client(a.served)  # its bot never reads app messages: past 1,000 they drop
        for index in range(3000):
            await ws.send(json.dumps({"n": index}))
        await echo_ok(ws)
        await ws.close()
        await wait_for(lambda: len(a.sessions.active) == 1, 10)
        async with httpx.AsyncClient(base_url=a.served.http) as http:
            text = (await http.get("/metrics")).text
        dropped = [line for line in text.splitlines()
                   if line.startswith('runner_app_messages_dropped_total{transport="websocket"}')]
        assert dropped and float(dropped[0].split()[-1]) >= 2000 - 1
        await a.settle()


# ----------------------------------------------------------------- request heads


@pytest.mark.parametrize("head", [
    b"X-Long: " + b"a" * 20_000 + b"\r\n",
    b"".join(b"X-H%d: v\r\n" % n for n in range(200)),
])
async def test_oversized_request_heads_are_answered_and_closed(isolation: str, head: bytes) -> None:
    async with arena() as a:
        reader, writer = await asyncio.open_connection("127.0.0.1", a.served.port)
        writer.write(b"GET /ws-client HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" + head + b"\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)  # answered, then closed
        assert answer.startswith((b"HTTP/1.1 4", b"HTTP/1.0 4")) or answer == b""
        writer.close()
        await a.settle()


async def test_a_request_head_that_never_completes_is_closed(isolation: str) -> None:
    from runner.heads import HEAD_SECONDS

    async with arena() as a:
        reader, writer = await asyncio.open_connection("127.0.0.1", a.served.port)
        writer.write(b"GET /ws-client HTTP/1.1\r\nHost: x\r\n")  # and nothing more
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), HEAD_SECONDS + 5)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408")
        writer.close()
        await a.settle()


# ----------------------------------------------------------------- browsers from other sites


@pytest.mark.parametrize("origin", ["https://evil.example", "null"])
async def test_a_websocket_from_an_origin_outside_the_list_is_403(isolation: str,
                                                                    origin: str) -> None:
    async with arena(allowed_origins="https://good.example") as a:
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(f"{a.served.ws}/ws-client", origin=origin,
                                     additional_headers=AUTH)
        assert refused.value.response.status_code == 403
        ws = await websockets.connect(f"{a.served.ws}/ws-client", origin="https://good.example",
                                      additional_headers=AUTH)
        await echo_ok(ws)
        await ws.close()
        await a.settle()


async def test_json_routes_need_a_json_content_type(isolation: str) -> None:
    async with arena(transports="webrtc") as a, httpx.AsyncClient(base_url=a.served.http) as http:
        answer = await http.post("/api/offer", content='{"sdp": "v=0", "type": "offer"}',
                                 headers={**AUTH, "content-type": "text/plain"})
        assert answer.status_code == 415
        await a.settle()


# ----------------------------------------------------------------- floods


FLOODER = """
import sys, time
from websockets.sync.client import connect
with connect(sys.argv[1], additional_headers={"Authorization": sys.argv[2]}) as ws:
    print("flooding", flush=True)
    chunk, until = bytes(640), time.monotonic() + float(sys.argv[3])
    while time.monotonic() < until:
        ws.send(chunk)  # as fast as loopback takes them
"""


async def test_one_flooding_connection_does_not_starve_the_others(isolation: str) -> None:
    """A client in a process of its own sends binary messages as fast as it can, for 4 s:
    `/health` keeps answering and the bystander call keeps its echo."""
    async with arena() as a:
        flooder = await asyncio.create_subprocess_exec(
            sys.executable, "-c", FLOODER, f"{a.served.ws}/ws-client", AUTH["Authorization"], "4",
            stdout=asyncio.subprocess.PIPE)
        try:
            assert await asyncio.wait_for(flooder.stdout.readline(), 10) == b"flooding\n"
            await asyncio.sleep(0.5)
            async with httpx.AsyncClient(base_url=a.served.http) as http:
                for _ in range(5):
                    started = time.monotonic()
                    assert (await http.get("/health", timeout=5)).status_code == 200
                    assert time.monotonic() - started < 2.0  # answered, not starved
            await a.bystander.still_hears()
        finally:
            with contextlib.suppress(ProcessLookupError):
                flooder.kill()
            await flooder.wait()
        await a.settle()


# ----------------------------------------------------------------- processes


async def test_no_worker_outlives_its_server_and_the_port_is_free_again() -> None:
    process, port = await start_server("--transport", "websocket", "--grace-period", "1",
                                       bot=WORKER_BOT)
    try:
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws-client?role=block&seconds=120") as ws:
            await ws.send(bytes(FRAME))  # its worker now blocks its loop for two minutes
            await asyncio.sleep(0.5)
            family = psutil.Process(process.pid).children(recursive=True)
            assert family
            process.send_signal(signal.SIGKILL)
            await process.wait()
            _, alive = psutil.wait_procs(family, timeout=1 + 3 + 5)
            assert not alive, [p.pid for p in alive]
        with socket.socket() as again:  # nothing holds the port
            again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            again.bind(("127.0.0.1", int(port)))
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
