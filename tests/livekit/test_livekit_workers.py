"""LiveKit in process isolation: `/start` goes to a worker, which creates the room, joins it with
the real livekit.rtc and deletes the room when its session is over.

No LiveKit server runs here (only its room service, on 127.0.0.1), so the worker's join fails,
which ends the session like any other end.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from livekit_fakes import API_KEY, API_SECRET, FakeLiveKitServer

from runner.loader import load_bot

from conftest import make_config, serve, wait_for

BOT = "async def bot(transport):\n    await transport.wait_connected()\n"


async def test_a_worker_creates_joins_and_deletes_the_room(tmp_path: Path) -> None:
    pytest.importorskip("livekit.rtc")
    (tmp_path / "bot.py").write_text(BOT)
    with FakeLiveKitServer() as server:
        environ = {"LIVEKIT_URL": server.url, "LIVEKIT_API_KEY": API_KEY,
                   "LIVEKIT_API_SECRET": API_SECRET}
        config = make_config(environ=environ, transport="livekit", isolation="process",
                             prewarm="1")
        async with serve(config, load_bot(str(tmp_path / "bot.py"))) as served, \
                httpx.AsyncClient(timeout=15) as http:
            pool = served.app.state.workers
            await wait_for(lambda: len(pool.idle) == 1, 20)
            (idle,) = pool.idle
            answer = await http.post(f"{served.http}/start", json={"transport": "livekit"})
            assert answer.status_code == 200 and set(answer.json()) == {"url", "token", "sessionId"}
            assert idle not in pool.idle  # the session runs in a worker
            assert len(server.calls("CreateRoom")) == 1
            await wait_for(lambda: len(server.calls("DeleteRoom")) == 1, 45)
            await wait_for(lambda: not served.sessions.active, 15)
            assert dict(served.sessions.outcomes) == {"livekit:client_left": 1}
        assert server.rooms == {}
