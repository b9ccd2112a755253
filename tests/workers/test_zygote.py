"""Workers are forked from one zygote: none waits for imports, and losing the zygote cuts no call."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from pathlib import Path

import psutil
import pytest
import websockets

from runner.loader import load_bot
from workers.support import FRAME, Listener, worker_bot, worker_config

from conftest import collect, serve, stream, wait_for


async def whoami(served) -> dict:
    async with websockets.connect(f"{served.ws}/ws-client?role=whoami") as ws:
        return json.loads(await asyncio.wait_for(ws.recv(), 15))


async def test_every_worker_is_forked_from_the_zygote_even_with_none_prewarmed() -> None:
    async with serve(worker_config(prewarm="0"), worker_bot()) as served:
        seen = [await whoami(served) for _ in range(3)]
        zygote = served.app.state.workers.zygote
        await wait_for(lambda: not served.sessions.active)
    pids = {entry["pid"] for entry in seen}
    assert len(pids) == 3 and zygote.process.pid not in pids
    assert {entry["parent"] for entry in seen} == {zygote.process.pid}
    assert dict(served.sessions.outcomes) == {"websocket:client_left": 3}


async def test_killing_the_zygote_cuts_no_call_and_another_serves_new_sessions(
        caplog: pytest.LogCaptureFixture) -> None:
    async with serve(worker_config(prewarm="1"), worker_bot()) as served:
        pool = served.app.state.workers
        async with websockets.connect(f"{served.ws}/ws-client") as call:
            listener = Listener(call, 440)
            await wait_for(lambda: len(listener.arrivals) > 10, 10)
            first = pool.zygote
            killed_at = time.monotonic()
            os.kill(first.process.pid, signal.SIGKILL)
            await wait_for(lambda: pool.zygote is not None and pool.zygote is not first, 20)
            seen = await whoami(served)  # a worker forked by the new zygote
            assert seen["parent"] == pool.zygote.process.pid
            await asyncio.sleep(0.5)
            listener.check_echo(since=killed_at)
            await listener.close()
        await wait_for(lambda: not served.sessions.active, 10)
    assert dict(served.sessions.outcomes) == {"websocket:client_left": 2}
    assert any("zygote process" in r.getMessage() and "SIGKILL" in r.getMessage()
               for r in caplog.records if r.levelno == logging.ERROR)


async def test_a_bot_whose_import_starts_a_thread_is_imported_by_each_worker(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bot_file = tmp_path / "threaded.py"
    bot_file.write_text(
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(3600,), name='poller', daemon=True).start()\n"
        "async def bot(transport):\n"
        "    async for frame in transport.audio():\n"
        "        await transport.send_audio(frame)\n")
    async with serve(worker_config(prewarm="1"), load_bot(str(bot_file))) as served:
        for _ in range(2):
            async with websockets.connect(f"{served.ws}/ws-client") as ws:
                reader = asyncio.create_task(collect(ws, 0.8))
                await stream(ws, bytes(FRAME * 20))
                audio, _ = await reader
                assert len(audio) > FRAME * 5
        zygote = served.app.state.workers.zygote
        assert psutil.Process(zygote.process.pid).num_threads() == 1  # never imported it
        await wait_for(lambda: not served.sessions.active)
    warnings = [r.getMessage() for r in caplog.records if "starts threads" in r.getMessage()]
    assert len(warnings) == 1 and "poller" in warnings[0]


async def test_a_hung_zygote_is_replaced_and_the_session_still_starts(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from runner.supervisors import spawner

    monkeypatch.setattr(spawner, "FORK_SECONDS", 1.0)
    async with serve(worker_config(prewarm="0"), worker_bot()) as served:
        pool = served.app.state.workers
        await wait_for(lambda: pool.zygote is not None, 20)
        hung = pool.zygote
        os.kill(hung.process.pid, signal.SIGSTOP)
        seen = await whoami(served)
        assert seen["parent"] == pool.zygote.process.pid != hung.process.pid
        await wait_for(lambda: hung.process.returncode is not None, 10)
        await wait_for(lambda: not served.sessions.active)
    assert dict(served.sessions.outcomes) == {"websocket:client_left": 1}
    assert any("did not answer a fork request" in r.getMessage() for r in caplog.records)
