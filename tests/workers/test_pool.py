"""The pool: prewarmed workers, secrets through the environment, a bot that does not load, reload."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import httpx
import pytest
import websockets

from runner.loader import load_bot
from workers.support import worker_bot, worker_config, worker_pids

from conftest import collect, make_config, serve, stream, wait_for


def proc(pid: int, name: str) -> bytes:
    return Path(f"/proc/{pid}/{name}").read_bytes()


async def whoami(served, query: str = "") -> dict:
    async with websockets.connect(f"{served.ws}/ws-client?role=whoami{query}") as ws:
        return json.loads(await asyncio.wait_for(ws.recv(), 15))


async def test_prewarm_runs_once_per_worker_before_its_session(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "prewarmed"
    monkeypatch.setenv("WORKER_TEST_PREWARM_LOG", str(log))
    async with serve(worker_config(prewarm="2"), worker_bot()) as served:
        await wait_for(lambda: len(served.app.state.workers.idle) == 2, 20)
        assert log.read_text().split() != []  # before any session: the idle workers prewarmed
        first, second = await whoami(served), await whoami(served)
        await wait_for(lambda: not served.sessions.active)
    for seen in (first, second):
        assert seen["prewarmed"] == [seen["pid"]]  # once, in the process the session ran in
    started = log.read_text().split()
    assert len(started) == len(set(started))  # once per worker
    assert {str(first["pid"]), str(second["pid"])} <= set(started)
    assert first["pid"] != second["pid"]  # one session per worker


async def test_settings_and_secrets_reach_workers_through_the_environment_only() -> None:
    secrets = {"RUNNER_API_KEY": "api-key-not-for-argv", "RUNNER_SECRET": "secret-not-for-argv",
               "TWILIO_AUTH_TOKEN": "token-not-for-argv"}
    async with serve(worker_config(prewarm="2", environ=secrets), worker_bot()) as served:
        await wait_for(lambda: len(served.app.state.workers.idle) == 2, 20)
        for pid in {*worker_pids(served), served.app.state.workers.zygote.process.pid}:
            cmdline, environ = proc(pid, "cmdline"), proc(pid, "environ").split(b"\0")
            for name, value in secrets.items():
                assert value.encode() not in cmdline
                assert f"{name}={value}".encode() in environ
            assert b"RUNNER_ISOLATION=task" in environ


@pytest.mark.parametrize(("text", "reason"), [
    ("async def bot(transport)\n", "bot.py:1: syntax error"),
    ("async def bot(transport):\n    pass\n\ndef prewarm():\n    raise OSError('no model')\n",
     "bot.py: prewarm() raised OSError: no model"),
])
async def test_a_worker_that_cannot_start_is_reported_once_not_retried_in_a_loop(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str, reason: str) -> None:
    bot_file = tmp_path / "bot.py"
    bot_file.write_text("async def bot(transport):\n    pass\n")
    bot = load_bot(str(bot_file))
    bot_file.write_text(text)  # broken after the server loaded it
    async with serve(worker_config(prewarm="2"), bot) as served:
        for _ in range(2):
            async with websockets.connect(f"{served.ws}/ws-client") as ws:
                await collect(ws, 10)
                assert ws.close_code == 1011 and ws.close_reason == (
                    "cannot start a session: the bot cannot start (the server log says why)")
        assert not served.sessions.active and served.sessions.reserved == 0
    failures = [r for r in caplog.records if "cannot start a worker" in r.getMessage()]
    assert len(failures) == 1 and f"{tmp_path}/{reason}" in failures[0].getMessage()


async def test_dev_reload_runs_the_saved_file_in_the_next_session_without_cutting_calls(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "runner.workers")
    bot_file = tmp_path / "bot.py"
    version = ("async def bot(transport):\n"
               "    await transport.send_message({{'version': {0}}})\n"
               "    async for frame in transport.audio():\n"
               "        await transport.send_audio(frame)\n")
    bot_file.write_text(version.format(1))
    config = make_config("dev", transport="websocket", isolation="process", prewarm="1")
    async with serve(config, load_bot(str(bot_file))) as served:
        async with websockets.connect(f"{served.ws}/ws-client") as running:
            assert json.loads(await asyncio.wait_for(running.recv(), 15)) == {"version": 1}
            bot_file.write_text(version.format(2))
            await wait_for(lambda: "bot.py changed" in caplog.text, 10)
            async with websockets.connect(f"{served.ws}/ws-client") as ws:
                assert json.loads(await asyncio.wait_for(ws.recv(), 15)) == {"version": 2}
            reader = asyncio.create_task(collect(running, 0.8))
            await stream(running, bytes(6400))
            audio, _ = await reader
            assert len(audio) > 3200  # the call begun before the save still runs its code
        bot_file.write_text("async def bot(transport)\n")
        await wait_for(lambda: "syntax error" in caplog.text, 10)
        async with websockets.connect(f"{served.ws}/ws-client") as ws:
            await collect(ws, 5)
            assert ws.close_code == 1011 and "bot.py:1: syntax error" in ws.close_reason  # dev
        bot_file.write_text(version.format(3))
        await wait_for(lambda: caplog.text.count("bot.py changed") >= 3, 10)
        async with websockets.connect(f"{served.ws}/ws-client") as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 15)) == {"version": 3}


def test_the_environment_a_worker_gets_resolves_to_the_same_settings() -> None:
    from dataclasses import fields

    from runner.config import load_config, to_environment

    config = make_config(
        transport="websocket,twilio", max_duration="90.5", verify_signatures="false",
        ice_servers='[{"urls": "turn:t.example:3478", "username": "u", "credential": "c"}]',
        allowed_origins="https://a.example,https://b.example", prewarm="3",
        environ={"RUNNER_SECRET": "s3", "TWILIO_AUTH_TOKEN": "tok", "RUNNER_API_KEY": "key"})
    again = load_config("serve", {}, environ=to_environment(config), env_file=False)
    for item in fields(config):
        if item.name != "sources":
            assert getattr(again, item.name) == getattr(config, item.name), item.name


async def test_a_dialin_webhook_without_its_secret_is_refused_without_spending_a_worker() -> None:
    pytest.importorskip("daily")
    environ = {"DAILY_API_KEY": "key", "DAILY_API_URL": "http://127.0.0.1:9",
               "RUNNER_DAILY_DIALIN_SECRET": "s3cret"}
    async with serve(worker_config("daily", environ=environ), worker_bot()) as served:
        pool = served.app.state.workers
        await wait_for(lambda: len(pool.idle) == 1, 20)
        (idle,) = pool.idle
        async with httpx.AsyncClient(timeout=10) as http:
            for query, header in (("?secret=nope", {}), ("", {}), ("", {"X-Dialin-Secret": "no"})):
                answer = await http.post(f"{served.http}/daily/dialin{query}", headers=header,
                                         json={"To": "+1555", "From": "+1666", "callId": "c1",
                                               "callDomain": "d1"})
                assert answer.status_code == 401
                assert answer.json() == {"detail": "missing or wrong dial-in secret"}
            assert list(pool.idle) == [idle] and not idle.connections
            assert served.sessions.reserved == 0 and not served.sessions.active
            # With the secret (here in its header) it goes on to a worker, which answers
            # Daily's configuration test (no callId) without a session.
            ping = await http.post(f"{served.http}/daily/dialin", json={"test": "test"},
                                   headers={"X-Dialin-Secret": "s3cret"})
            assert ping.status_code == 200 and ping.json() == {"status": "ok"}
        assert idle not in pool.idle
