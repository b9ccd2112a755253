"""`runner serve` (process isolation, its default) drains on SIGTERM as task mode does."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from runner.audio import dominant_frequency, tone
from workers.support import BOTS, FRAME, RATE

from conftest import ROOT


async def start_server(*extra: str) -> tuple[asyncio.subprocess.Process, str]:
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runner", "serve", BOTS, "--transport", "websocket",
        "--host", "127.0.0.1", "--port", "0", "--prewarm", "1", *extra,
        stderr=asyncio.subprocess.PIPE, env=env, cwd=ROOT,
    )
    while True:
        line = (await asyncio.wait_for(process.stderr.readline(), 20)).decode()
        assert line, "server exited before printing its URL"
        if match := re.search(r"ws://127\.0\.0\.1:(\d+)/ws-client", line):
            return process, match.group(1)


async def echo_check(ws, frequency: int) -> None:
    sent = tone(frequency, 0.3, RATE).pcm
    for offset in range(0, len(sent), FRAME):
        await ws.send(sent[offset:offset + FRAME])
    got = bytearray()
    while len(got) < len(sent) - FRAME:
        message = await asyncio.wait_for(ws.recv(), 5)
        if isinstance(message, bytes):
            got += message
    assert abs(dominant_frequency(bytes(got), RATE) - frequency) < 8


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_sigterm_drains_sessions_in_workers_then_ends_them_at_the_timeout() -> None:
    process, port = await start_server("--drain-timeout", "2")
    try:
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws-client?role=whoami") as live:
            worker = json.loads(await asyncio.wait_for(live.recv(), 20))["pid"]
            await echo_check(live, 400)
            process.send_signal(signal.SIGTERM)
            async with httpx.AsyncClient() as http:
                for _ in range(50):
                    ready = await http.get(f"http://127.0.0.1:{port}/ready")
                    if ready.status_code == 503:
                        break
                    await asyncio.sleep(0.05)
                assert ready.json() == {"ready": False, "reason": "draining"}
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws-client") as refused:
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(refused.recv(), 3)
                assert refused.close_code == 1013
            await echo_check(live, 600)  # the running session is not cut
            with pytest.raises(ConnectionClosed):
                while True:
                    await asyncio.wait_for(live.recv(), 10)
            assert live.close_reason == "server shutting down"
        assert await asyncio.wait_for(process.wait(), 15) == 0
        assert gone(worker)
        log = (await process.stderr.read()).decode()
        assert "draining: 1 sessions left" in log and "drain timeout: ending 1 sessions" in log
        assert "Traceback" not in log
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_a_drain_ends_when_the_last_worker_session_ends() -> None:
    process, port = await start_server()
    try:
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws-client") as live:
            await echo_check(live, 500)
            process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.5)
            await echo_check(live, 700)
            assert process.returncode is None
        assert await asyncio.wait_for(process.wait(), 15) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
