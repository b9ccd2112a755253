"""A worker that dies, hangs or bloats ends only its own session; the others do not notice."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time

import httpx
import psutil
import pytest
import websockets

from runner.audio import tone
from workers.support import FRAME, RATE, Listener, worker_bot, worker_config

from conftest import metric, serve, wait_for

#: How a client sees the end of a connection whose worker died: the kernel closed the socket.
ABNORMAL = 1006

async def crash_while_another_talks(role: str, caplog: pytest.LogCaptureFixture,
                                    **flags: str) -> tuple[websockets.ClientConnection, object]:
    """Run a `role` session next to a healthy echo; returns the faulty socket once closed."""
    async with serve(worker_config(prewarm="2", **flags), worker_bot()) as served:
        async with websockets.connect(f"{served.ws}/ws-client") as healthy:
            listener = Listener(healthy, 440)
            await wait_for(lambda: len(listener.arrivals) > 10, 10)
            async with websockets.connect(f"{served.ws}/ws-client?role={role}") as faulty:
                fault_at = time.monotonic()
                await faulty.send(bytes(FRAME))
                await asyncio.wait_for(faulty.wait_closed(), 10)
                closed_after = time.monotonic() - fault_at
            await asyncio.sleep(0.8)
            listener.check_echo(since=fault_at)
            await listener.close()
        await wait_for(lambda: not served.sessions.active)
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"{served.http}/metrics")).text
    assert dict(served.sessions.outcomes) == {"websocket:crashed": 1, "websocket:client_left": 1}
    assert metric(text, "runner_worker_crashes_total", transport="websocket") == 1
    assert metric(text, "runner_sessions_total", transport="websocket", outcome="crashed") == 1
    crashed = next(r for r in served.sessions.history if r.outcome == "crashed")
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and "worker" in r.getMessage()]
    assert len(errors) == 1 and errors[0].session_id == crashed.id
    faulty.closed_after = closed_after  # type: ignore[attr-defined]
    return faulty, errors[0].getMessage()


async def test_a_segfault_ends_only_its_session(caplog: pytest.LogCaptureFixture) -> None:
    faulty, logged = await crash_while_another_talks("segv", caplog)
    assert faulty.close_code == ABNORMAL  # its worker owned the connection: no close frame
    assert "was killed by SIGSEGV" in logged


async def test_os_exit_ends_only_its_session(caplog: pytest.LogCaptureFixture) -> None:
    faulty, logged = await crash_while_another_talks("exit", caplog)
    assert faulty.close_code == ABNORMAL and "exited with status 3" in logged


async def test_a_memory_hog_is_killed_at_the_limit(caplog: pytest.LogCaptureFixture) -> None:
    faulty, logged = await crash_while_another_talks("hog", caplog, worker_memory_limit="250")
    assert faulty.close_code == ABNORMAL and "--worker-memory-limit 250 MB" in logged
    used = int(logged.split("it used ")[1].split(" MB")[0])
    assert 250 < used < 600  # polled: caught soon after it crossed the line


async def test_a_loop_without_heartbeats_is_killed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    faulty, logged = await crash_while_another_talks("block&seconds=30", caplog,
                                                     worker_timeout="1")
    assert faulty.close_code == ABNORMAL and "no heartbeat for 1 s" in logged
    assert faulty.closed_after < 4  # type: ignore[attr-defined]


async def test_a_worker_killed_from_outside(caplog: pytest.LogCaptureFixture) -> None:
    async with serve(worker_config(), worker_bot()) as served:
        async with websockets.connect(f"{served.ws}/ws-client?role=whoami") as ws:
            pid = json.loads(await asyncio.wait_for(ws.recv(), 10))["pid"]
            os.kill(pid, signal.SIGKILL)
            await asyncio.wait_for(ws.wait_closed(), 5)
            assert ws.close_code == ABNORMAL
        await wait_for(lambda: not served.sessions.active)
    assert dict(served.sessions.outcomes) == {"websocket:crashed": 1}
    assert any("was killed by SIGKILL" in r.getMessage() for r in caplog.records)


async def test_a_blocked_loop_does_not_delay_another_session() -> None:
    async with serve(worker_config(prewarm="2"), worker_bot()) as served:
        async with websockets.connect(f"{served.ws}/ws-client") as healthy:
            listener = Listener(healthy, 523)
            await wait_for(lambda: len(listener.arrivals) > 10, 10)
            async with websockets.connect(f"{served.ws}/ws-client?role=block") as blocker:
                blocked_at = time.monotonic()
                await blocker.send(bytes(FRAME))
                await asyncio.sleep(3.2)  # the blocker's loop is stuck for 3 s
                listener.check_echo(since=blocked_at)
                # The blocker itself comes back to life and echoes afterwards.
                await blocker.send(tone(300, 0.2, RATE).pcm)
                echoed = await asyncio.wait_for(blocker.recv(), 5)
                assert isinstance(echoed, bytes)
            await listener.close()
        await wait_for(lambda: not served.sessions.active)
    assert dict(served.sessions.outcomes) == {"websocket:client_left": 2}


async def test_a_request_in_flight_gets_a_502_when_its_worker_dies() -> None:
    pytest.importorskip("aiortc")
    async with serve(worker_config("webrtc"), worker_bot()) as served:
        pool = served.app.state.workers
        await wait_for(lambda: bool(pool.idle), 20)
        (worker,) = pool.idle
        os.kill(worker.pid, signal.SIGSTOP)  # it will take the offer and never answer
        offer = {"sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n", "type": "offer"}
        async with httpx.AsyncClient(timeout=10) as http:
            answer = asyncio.create_task(http.post(f"{served.http}/api/offer", json=offer))
            await wait_for(lambda: served.sessions.reserved == 1)
            os.kill(worker.pid, signal.SIGKILL)
            response = await answer
            text = (await http.get(f"{served.http}/metrics")).text
        assert response.status_code == 502
        assert response.json() == {"detail": "the session's worker process was killed by SIGKILL"}
        assert served.sessions.reserved == 0 and not served.sessions.active
        assert metric(text, "runner_worker_crashes_total", transport="webrtc") == 1


async def test_a_stopped_worker_under_a_flood_costs_the_server_nothing() -> None:
    """The worker owns its connection: one that stops reading (here: SIGSTOP) leaves a flood in
    the kernel's buffers, where the client's writes back up; the server holds none of it, and
    the other session goes on."""
    server = psutil.Process()
    async with serve(worker_config(prewarm="2"), worker_bot()) as served:
        async with websockets.connect(f"{served.ws}/ws-client") as healthy:
            listener = Listener(healthy, 659)
            await wait_for(lambda: len(listener.arrivals) > 10, 10)
            async with websockets.connect(f"{served.ws}/ws-client?role=whoami") as flooder:
                pid = json.loads(await asyncio.wait_for(flooder.recv(), 10))["pid"]
                os.kill(pid, signal.SIGSTOP)
                try:
                    flood_at = time.monotonic()
                    rss_before = server.memory_info().rss
                    sent, chunk = 0, bytes(16000)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(2):
                            while sent < 300:  # 4.8 MB: far more than the kernel buffers hold
                                await flooder.send(chunk)
                                sent += 1
                    assert sent < 300  # the writes backed up: nobody read the flood
                    assert server.memory_info().rss - rss_before < 4 << 20
                    listener.check_echo(since=flood_at)
                finally:
                    os.kill(pid, signal.SIGKILL)
            await listener.close()
        await wait_for(lambda: not served.sessions.active, 10)
    assert served.sessions.outcomes["websocket:client_left"] == 1
