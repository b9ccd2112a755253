"""Process isolation hands a WebSocket session's socket to its worker (supervisors/relay.py):
the server decides from the request head, then does no work per message."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time

import psutil
import pytest
import websockets
from telephony.support import dial, phone_config
from websockets.exceptions import InvalidStatus

from runner.audio import tone
from workers.support import FRAME, Listener, worker_bot, worker_config

from conftest import ROOT, runner_serve, serve, wait_for


def assigned(served: object) -> int:
    """How many workers were ever given a session (each takes one, then exits)."""
    pool = served.app.state.workers  # type: ignore[attr-defined]
    return pool.taken


async def test_a_handed_over_call_is_served_by_its_worker_alone() -> None:
    async with serve(worker_config(prewarm="2"), worker_bot()) as served:
        async with websockets.connect(f"{served.ws}/ws-client?role=whoami") as ws:
            pid = json.loads(await asyncio.wait_for(ws.recv(), 10))["pid"]
            worker = psutil.Process(pid)
            # The client's TCP connection is the worker's: its peer is our client's socket.
            local = ws.transport.get_extra_info("sockname")[:2]
            assert any(conn.raddr and tuple(conn.raddr) == tuple(local)
                       for conn in worker.net_connections(kind="tcp"))
            # (The server keeps a duplicate too, watched for the client's hang-up only.)


async def test_a_head_sent_byte_by_byte_is_still_routed_to_a_worker() -> None:
    async with serve(worker_config(), worker_bot()) as served:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        key = base64.b64encode(os.urandom(16)).decode()
        head = (f"GET /ws-client HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
        for byte in head:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.002)
        status = await asyncio.wait_for(reader.readline(), 10)
        assert status.startswith(b"HTTP/1.1 101")
        await wait_for(lambda: served.sessions.active, 10)
        (session,) = served.sessions.active.values()
        assert session.remote_end is not None  # opened in a worker, registered here
        writer.close()
        await wait_for(lambda: not served.sessions.active, 10)


async def test_a_bad_stream_token_is_refused_without_spending_a_worker() -> None:
    config = phone_config("twilio", isolation="process", verify_signatures=True)
    async with serve(config, worker_bot()) as served:
        await wait_for(lambda: served.app.state.workers.idle, 10)
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(f"{served.ws}/ws/twilio/not-a-token")
        assert refused.value.response.status_code == 403
        assert assigned(served) == 0


async def test_a_full_server_refuses_in_the_server_process() -> None:
    async with serve(worker_config(prewarm="2", max_sessions=1), worker_bot()) as served:
        async with websockets.connect(f"{served.ws}/ws-client") as first:
            await first.send(bytes(FRAME))
            await wait_for(lambda: served.sessions.active, 10)
            async with websockets.connect(f"{served.ws}/ws-client") as second:
                await asyncio.wait_for(second.wait_closed(), 5)
                assert second.close_code == 1013
            assert assigned(served) == 1


async def test_a_phone_call_is_handed_over_and_echoes() -> None:
    async with serve(phone_config("twilio", isolation="process"), worker_bot()) as served:
        phone = await dial(served, "twilio")
        await phone.send_audio(tone(600, 0.4, 8000).pcm)
        await phone.wait_heard(0.3, timeout=10)
        await phone.hang_up()
        await wait_for(lambda: not served.sessions.active, 10)
        assert assigned(served) == 1


@pytest.mark.timeout(120)
async def test_twenty_calls_cost_the_server_process_almost_nothing() -> None:
    """20 real-time echo calls on a `runner serve` process: the workers carry the audio, and
    the server's own CPU stays a small share of the tree's."""
    process, port = await runner_serve(str(ROOT / "bots" / "echo.py"), "--transport",
                                       "websocket", "--prewarm", "4", "--max-sessions", "40")
    try:
        sockets = [await websockets.connect(f"ws://127.0.0.1:{port}/ws-client") for _ in range(20)]
        listeners = [Listener(ws, 300 + 20 * index) for index, ws in enumerate(sockets)]
        await wait_for(lambda: all(len(listener.arrivals) > 10 for listener in listeners), 30)
        server = psutil.Process(process.pid)
        workers = [child for child in server.children(recursive=True)]

        def cpu(proc: psutil.Process) -> float:
            try:
                times = proc.cpu_times()
            except psutil.Error:
                return 0.0
            return times.user + times.system

        start = time.monotonic()
        server_before, workers_before = cpu(server), sum(cpu(worker) for worker in workers)
        await asyncio.sleep(3)
        server_used = cpu(server) - server_before
        workers_used = sum(cpu(worker) for worker in workers) - workers_before
        elapsed = time.monotonic() - start
        for listener in listeners:
            listener.check_echo(since=start)
            await listener.close()
        for ws in sockets:
            await ws.close()
        # Nothing per message: the server's share is its own timers (watchdog, housekeeping,
        # worker heartbeats), well under a twentieth of what 20 calls cost their workers.
        assert workers_used > 0.05 * elapsed
        assert server_used < max(0.05 * workers_used, 0.02 * elapsed), (server_used, workers_used)
    finally:
        process.kill()
        await process.wait()


async def test_a_full_server_refuses_a_call_with_a_valid_stream_token_as_full() -> None:
    """The slot is checked before the stream token is spent: the caller hears "try again later"
    (1013), not a refused token."""
    async with serve(phone_config("twilio", isolation="process", max_sessions=1),
                     worker_bot()) as served:
        first = await dial(served, "twilio")
        await first.send_audio(tone(600, 0.3, 8000).pcm)
        await first.wait_heard(0.2, timeout=10)
        second = await dial(served, "twilio")
        await second.wait_closed(10)
        assert second.close_code == 1013
        await first.hang_up()
        await wait_for(lambda: not served.sessions.active, 10)


async def test_a_blocked_worker_whose_client_left_is_ended_within_the_grace_period() -> None:
    """The server sees a handed-over client hang up (it keeps a duplicate of the socket, for
    hang-ups only): a worker whose loop is blocked cannot end its session, so it is killed
    the grace period and a margin later, long before --worker-timeout, and the slot is freed."""
    from runner.supervisors.workers import HANGUP_MARGIN_SECONDS

    config = worker_config(prewarm="2", grace_period="0.5", worker_timeout="60")
    async with serve(config, worker_bot()) as served:
        ws = await websockets.connect(f"{served.ws}/ws-client?role=block&seconds=60")
        await ws.send(bytes(FRAME))  # its worker now blocks its loop for a minute
        await wait_for(lambda: served.sessions.active, 10)
        await asyncio.sleep(0.3)
        ws.transport.abort()  # the client vanishes
        left = time.monotonic()
        await wait_for(lambda: not served.sessions.active, 0.5 + HANGUP_MARGIN_SECONDS + 5)
        assert time.monotonic() - left < 0.5 + HANGUP_MARGIN_SECONDS + 2
        assert served.sessions.reserved == 0
