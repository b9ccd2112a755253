"""`runner dev` as a user runs it: edit the bot, save, and the next connection gets the new code;
a syntax error waits for the next save; Ctrl-C and SIGTERM stop everything; the page reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from runner.smoke.callers.webrtc import Client

BOT = """\
async def bot(transport):
    await transport.send_message({{"version": {version}}})
    await transport.wait_ended()
"""
STARTED = "Application startup complete"


class DevServer:
    """`python -m runner dev bot.py` in its own process group, its stderr collected line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())
        self.url = ""

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            self.lines.append(raw.decode(errors="replace").rstrip())

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)

    async def wait_for(self, text: str, times: int = 1, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while self.count(text) < times:
            if time.monotonic() > deadline or self.process.returncode is not None:
                raise AssertionError(f"never saw {text!r} x{times}:\n" + "\n".join(self.lines))
            await asyncio.sleep(0.05)

    def children(self) -> list[int]:
        return [int(pid) for pid in re.findall(r"Started server process \[(\d+)\]",
                                               "\n".join(self.lines))]

    async def stop(self, signum: int) -> int:
        os.killpg(self.process.pid, signum) if signum == signal.SIGINT \
            else self.process.send_signal(signum)
        return await asyncio.wait_for(self.process.wait(), 15)


@contextlib.asynccontextmanager
async def runner_dev(folder: Path, *flags: str) -> AsyncIterator[DevServer]:
    # Sessions in the server process: a save restarts the server (this reloader), where with
    # worker processes (--isolation process) only idle workers are replaced.
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"),
           "RUNNER_ISOLATION": "task"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runner", "dev", "bot.py", "--port", "0", *flags,
        cwd=folder, env=env, stderr=asyncio.subprocess.PIPE, start_new_session=True)
    server = DevServer(process)
    try:
        await server.wait_for(STARTED)
        server.url = re.search(r"(http://127\.0\.0\.1:\d+)/\s*$",
                               next(line for line in server.lines if "open in a browser" in line)
                               ).group(1)
        yield server
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        server._reader.cancel()


def write_bot(folder: Path, text: str) -> None:
    path = folder / "bot.py"
    path.write_text(text)


async def version_seen(url: str, clients: Callable[..., Client]) -> Any:
    client = clients(url)
    await client.offer()
    await client.wait_connected()
    deadline = time.monotonic() + 5
    while not client.messages:
        assert time.monotonic() < deadline, "the bot sent nothing"
        await asyncio.sleep(0.02)
    await client.pc.close()
    return client.messages[0]["version"]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_a_saved_edit_is_served_on_the_next_connection(
        tmp_path: Path, clients: Callable[..., Client]) -> None:
    write_bot(tmp_path, BOT.format(version=1))
    async with runner_dev(tmp_path) as server:
        assert await version_seen(server.url, clients) == 1

        write_bot(tmp_path, BOT.format(version=2))
        await server.wait_for(STARTED, times=2)
        assert server.count("bot.py changed; restarting") == 1
        assert await version_seen(server.url, clients) == 2

        write_bot(tmp_path, "async def bot(transport)\n")
        await server.wait_for("syntax error")
        await server.wait_for("save a file to start it again")
        assert server.process.returncode is None

        (tmp_path / "__pycache__").mkdir(exist_ok=True)
        (tmp_path / "__pycache__" / "ignored.py").write_text("x = 1\n")
        (tmp_path / "notes.txt").write_text("not python\n")
        await asyncio.sleep(0.5)
        assert server.count("changed; restarting") == 2

        write_bot(tmp_path, BOT.format(version=3))
        await server.wait_for(STARTED, times=3)
        assert await version_seen(server.url, clients) == 3

        children = server.children()
        assert await server.stop(signal.SIGTERM) == 0
        assert all(gone(pid) for pid in children)
        async with httpx.AsyncClient() as http:
            with pytest.raises(httpx.ConnectError):
                await http.get(server.url + "/health", timeout=2)


async def test_ctrl_c_stops_the_supervisor_and_the_server(tmp_path: Path) -> None:
    write_bot(tmp_path, BOT.format(version=1))
    async with runner_dev(tmp_path) as server:
        (child,) = server.children()
        assert await server.stop(signal.SIGINT) == 0
        assert gone(child)
        assert "Traceback" not in "\n".join(server.lines)


async def test_no_reload_serves_without_watching(tmp_path: Path) -> None:
    write_bot(tmp_path, BOT.format(version=1))
    async with runner_dev(tmp_path, "--no-reload") as server:
        assert server.count("reloading on changes") == 0
        write_bot(tmp_path, BOT.format(version=2))
        await asyncio.sleep(1.0)
        assert server.count("changed; restarting") == 0
        assert await server.stop(signal.SIGTERM) in (0, -signal.SIGTERM)


async def test_the_page_reconnects_by_itself_after_a_reload(
        tmp_path: Path, browser_page: Any) -> None:
    page = browser_page
    write_bot(tmp_path, BOT.format(version=1))
    async with runner_dev(tmp_path) as server:
        await page.goto(server.url + "/")
        await page.click("#connect")
        await page.wait_for_selector('#log li.in:has-text("{\\"version\\":1}")', timeout=15000)

        saved = time.monotonic()
        write_bot(tmp_path, BOT.format(version=2))
        await page.wait_for_selector('#log li.in:has-text("{\\"version\\":2}")', timeout=15000)
        print(f"\npage reconnected {time.monotonic() - saved:.1f} s after the save")
        assert await page.get_attribute("#state", "data-state") == "connected"
        assert await server.stop(signal.SIGTERM) == 0
