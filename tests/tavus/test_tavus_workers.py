"""Tavus in process isolation: `/start` goes to a worker, which creates the conversation, owns
the CallClient (the real daily-python) and ends the conversation when its session is over.

Daily cannot be reached from here, so the worker's bot never gets into the room: its join fails
(after daily-python's ~19 s of lookups), which ends the session like any other end.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from tavus_fakes import REPLICA_ID, TAVUS_KEY, FakeTavusApi

from runner.loader import load_bot

from conftest import make_config, serve, wait_for

BOT = "async def bot(transport):\n    await transport.wait_connected()\n"


async def test_a_worker_opens_runs_and_ends_the_conversation(tmp_path: Path) -> None:
    pytest.importorskip("daily")
    (tmp_path / "bot.py").write_text(BOT)
    with FakeTavusApi() as api:
        environ = {"TAVUS_API_KEY": TAVUS_KEY, "TAVUS_REPLICA_ID": REPLICA_ID,
                   "TAVUS_API_URL": api.url}
        config = make_config(environ=environ, transport="tavus", isolation="process",
                             prewarm="1")
        async with serve(config, load_bot(str(tmp_path / "bot.py"))) as served, \
                httpx.AsyncClient(timeout=15) as http:
            pool = served.app.state.workers
            await wait_for(lambda: len(pool.idle) == 1, 20)
            (idle,) = pool.idle
            api.fail("POST", "/conversations", 402, {"message": "Insufficient credits"})
            refused = await http.post(f"{served.http}/start", json={})
            assert refused.status_code == 502 and "402 out of credits" in refused.json()["detail"]
            assert idle not in pool.idle  # asked in a worker, as a session would have been
            assert not served.sessions.active and api.ends() == []

            await wait_for(lambda: len(pool.idle) == 1, 20)
            answer = await http.post(f"{served.http}/start", json={})
            assert answer.status_code == 200 and answer.json()["conversationId"] == "c1"
            await wait_for(lambda: api.ends() == ["c1"], 45)
            await wait_for(lambda: not served.sessions.active, 15)
            assert dict(served.sessions.outcomes) == {"tavus:client_left": 1}
        assert api.ends() == ["c1"]
