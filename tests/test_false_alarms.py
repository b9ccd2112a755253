"""No false alarms: the loop watchdog is quiet about runner's own start-up, every line a session
causes carries its tag, and a misspelt or bad `.env` entry is reported as such."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from websockets.sync.client import connect

from runner import watchdog
from runner.metrics import Metrics
from runner.watchdog import LoopWatchdog

from conftest import ROOT, run_cli, wait_for


def start_runner(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / "stderr.log"
    environ = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    with log.open("wb") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "runner", *args], cwd=ROOT,
                                   env=environ, stdout=subprocess.DEVNULL, stderr=stderr)
    return process, log


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_for_text(log: Path, pattern: str, timeout: float = 30) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, log.read_text())
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{pattern!r} not logged within {timeout} s:\n{log.read_text()}")


# ----------------------------------------------------------------- the loop watchdog


def test_dev_start_up_raises_no_loop_warning_even_at_a_1_ms_threshold(tmp_path: Path) -> None:
    process, log = start_runner(tmp_path, "dev", "bots/echo.py", "--port", "0",
                                "--block-warning", "0.001")
    try:
        wait_for_text(log, "Application startup complete")
        time.sleep(4)  # the zygote imports, the workers fork and warm up
    finally:
        stop(process)
    assert "runner.watchdog" not in log.read_text()


async def test_start_up_code_is_quiet_but_the_same_block_later_is_not(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    dog = LoopWatchdog(0.05, Metrics())
    dog.start()
    try:
        await asyncio.sleep(0.15)
        time.sleep(0.3)  # noqa: ASYNC251 - start-up work outside any session
        await asyncio.sleep(0.2)
        assert dog.stalls == 0 and "runner.watchdog" not in caplog.text
        monkeypatch.setattr(watchdog, "STARTUP_SECONDS", 0.0)
        time.sleep(0.3)  # noqa: ASYNC251 - after start-up it is worth a warning
        await wait_for(lambda: dog.stalls == 1)
        assert "blocked for over" in caplog.text and "code outside any session" in caplog.text
    finally:
        await dog.stop()


async def test_a_late_loop_running_no_code_is_no_warning(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watchdog, "STARTUP_SECONDS", 0.0)
    dog = LoopWatchdog(0.05, Metrics())
    dog.start()
    try:
        await asyncio.to_thread(lambda: None)  # the thread pool started

        def look_while_the_loop_waits() -> bool:
            time.sleep(0.05)  # this loop is back in select(): nobody's code to blame
            return dog._report(0.2)

        assert await asyncio.to_thread(look_while_the_loop_waits) is False
        assert "runner.watchdog" not in caplog.text
    finally:
        await dog.stop()


# ----------------------------------------------------------------- the session on every line

CHATTY_BOT = """
import logging

async def bot(transport):
    logging.getLogger("mybot").info("hello from the bot")
    async for frame in transport.audio():
        await transport.send_audio(frame)
"""


def test_a_workers_library_lines_carry_the_session(tmp_path: Path) -> None:
    bot = tmp_path / "bot.py"
    bot.write_text(CHATTY_BOT)
    process, log = start_runner(tmp_path, "serve", str(bot), "-t", "websocket", "--host",
                                "127.0.0.1", "--port", "0", "--log-level", "debug",
                                "--log-format", "json")
    try:
        port = wait_for_text(log, r"health: http://127\.0\.0\.1:(\d+)/health")[1]
        wait_for_text(log, "Application startup complete")
        with connect(f"ws://127.0.0.1:{port}/ws-client") as ws:
            for _ in range(5):
                ws.send(bytes(640))
                ws.recv(timeout=5)
        wait_for_text(log, r"session \w+ ended")
    finally:
        stop(process)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    started = next(line for line in lines if re.fullmatch(r"session \w+ started \(websocket\)",
                                                          line["message"]))
    session = started["message"].split()[1]
    frames = [line for line in lines if "BINARY" in line["message"]]  # the websockets library's
    bot_lines = [line for line in lines if line["logger"] == "mybot"]
    assert len(frames) >= 10 and bot_lines
    assert all(line.get("session_id") == session for line in frames + bot_lines), frames


# ----------------------------------------------------------------- .env


def test_a_misspelt_runner_name_in_dotenv_warns_with_the_closest_name(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("RUNNER_PROT=8000\nRUNNER_NOTHING_LIKE_IT=1\nOTHER=x\n")
    result = run_cli("transports", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stderr.splitlines() == [
        "runner: warning: .env: RUNNER_PROT is not a runner setting; did you mean RUNNER_PORT?",
        "runner: warning: .env: RUNNER_NOTHING_LIKE_IT is not a runner setting; it is ignored",
    ]


def test_a_bad_value_from_dotenv_says_it_came_from_the_file(tmp_path: Path) -> None:
    (tmp_path / "prod.env").write_text("RUNNER_PORT=eighty\n")
    result = run_cli("transports", "--env-file", "prod.env", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "runner: error: prod.env: RUNNER_PORT='eighty': expected a whole number")
    environment = run_cli("transports", env={"RUNNER_PORT": "eighty"}, cwd=tmp_path)
    assert "runner: error: RUNNER_PORT='eighty'" in environment.stderr
