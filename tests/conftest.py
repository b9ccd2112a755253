"""Shared test helpers: the real app served by uvicorn on an ephemeral 127.0.0.1 port."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from runner.config import Config, load_config
from runner.loader import LoadedBot
from runner.serve import bind_socket, serving_app, uvicorn_config

ROOT = Path(__file__).resolve().parent.parent
EMPTY_ENV_FILE = Path(__file__).resolve().parent / "data" / "empty.env"


def make_config(mode: str = "serve", environ: dict[str, str] | None = None, **flags: Any) -> Config:
    """A Config as the CLI would build it, with no real environment and no .env file; in task
    isolation unless the test asks for workers (a test's bot is a closure no worker can import)."""
    raw = {"isolation": "task", **flags}
    return load_config(mode, raw, environ=environ or {}, env_file=EMPTY_ENV_FILE)  # type: ignore[arg-type]


def as_bot(func: Callable[..., Any], **transport_options: Any) -> LoadedBot:
    return LoadedBot(func=func, reference=f"test:{func.__name__}",
                     transport_options=transport_options)


class Served:
    """A running server: its URLs and its app context (sessions, config)."""

    def __init__(self, app: Any, port: int) -> None:
        self.app = app
        self.port = port
        self.http = f"http://127.0.0.1:{port}"
        self.ws = f"ws://127.0.0.1:{port}"

    @property
    def context(self) -> Any:
        return self.app.state.context

    @property
    def sessions(self) -> Any:
        return self.context.sessions


@contextlib.asynccontextmanager
async def serve(config: Config, bot: LoadedBot) -> AsyncIterator[Served]:
    """Serve serving_app(config, bot) in this event loop until the block ends."""
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    from dataclasses import replace

    config = replace(config, port=port, host="127.0.0.1")
    app = serving_app(config, bot)
    async with uvicorn_on(sock, uvicorn_config(app, config)):
        yield Served(app, port)


@contextlib.asynccontextmanager
async def uvicorn_on(sock: socket.socket, config: uvicorn.Config) -> AsyncIterator[uvicorn.Server]:
    """A uvicorn server for `config` on `sock`, in this event loop, until the block ends."""
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield server
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
        sock.close()


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll until `predicate()` holds; fail the test with a clear message if it never does."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)


async def stream(ws: Any, pcm: bytes, realtime: bool = True, frame: int = 640) -> None:
    """Send PCM16 in 20 ms messages (at 16 kHz by default), in real time unless told not to."""
    for offset in range(0, len(pcm), frame):
        await ws.send(pcm[offset:offset + frame])
        if realtime:
            await asyncio.sleep(0.02)


async def collect(ws: Any, seconds: float) -> tuple[bytearray, list[Any]]:
    """What arrives for `seconds` (or until the socket closes): audio bytes and JSON messages."""
    from websockets.exceptions import ConnectionClosed

    audio, texts = bytearray(), []
    deadline = time.monotonic() + seconds
    try:
        while (left := deadline - time.monotonic()) > 0:
            message = await asyncio.wait_for(ws.recv(), left)
            if isinstance(message, bytes):
                audio += message
            else:
                texts.append(json.loads(message))
    except (TimeoutError, ConnectionClosed):
        pass
    return audio, texts


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    needle = f"{name}{{{wanted}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(needle):
            return float(line.split()[-1])
    return 0.0


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run `python -m runner ...` as a user would, with only the environment given."""
    base = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run([sys.executable, "-m", "runner", *args], capture_output=True, text=True,
                          env={**base, **(env or {})}, cwd=cwd or ROOT, timeout=timeout)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def runner_serve(bot: str, *flags: str, env: dict[str, str] | None = None,
                       ) -> tuple[asyncio.subprocess.Process, str]:
    """`runner serve bot` in a process of its own on a free 127.0.0.1 port, once it is ready;
    the process (its stderr piped) and the port."""
    environ = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **(env or {})}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runner", "serve", bot, "--host", "127.0.0.1", "--port", "0", *flags,
        stderr=asyncio.subprocess.PIPE, env=environ, cwd=ROOT)
    while True:
        line = (await asyncio.wait_for(process.stderr.readline(), 20)).decode()
        assert line, "server exited before printing its URL"
        if match := re.search(r"health: http://127\.0\.0\.1:(\d+)/health", line):
            port = match.group(1)
            break
    async with httpx.AsyncClient() as http:
        for _ in range(200):
            try:
                if (await http.get(f"http://127.0.0.1:{port}/ready")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    return process, port
