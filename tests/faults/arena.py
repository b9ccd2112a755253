"""The fault arena: one real server, a bystander call that must keep its audio, and a leak check.

Every fault case runs inside `arena()`: a server serving the plain WebSocket and every telephony
provider with signature checks on (as `serve` runs them), plus a bystander session streaming a
tone and checking its echo. The suite runs in both isolation modes (`ISOLATION`, set per test by
test_faults.py): the bot runs in the server process, or in a worker process per session. After
the case, `settle()` asserts that only the bystander is left, that its echo still has the right
pitch, and that tasks, threads and file descriptors are back where they were.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import websockets
from telephony.support import ALL, phone_config

from runner.audio import dominant_frequency, tone
from runner.loader import load_bot

from conftest import Served, serve, wait_for

API_KEY = "fault-suite-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
RATE = 16000
FRAME = 640
BYSTANDER_HZ = 523
BOTS = Path(__file__).resolve().parent / "bots.py"
#: The isolation mode of the arena being built: "task" or "process".
ISOLATION = {"mode": "task"}


@dataclass
class Snapshot:
    tasks: int
    threads: int
    fds: int

    @classmethod
    def take(cls) -> Snapshot:
        return cls(len(asyncio.all_tasks()), threading.active_count(),
                   len(os.listdir("/proc/self/fd")))


class Bystander:
    """A live session on the same server that streams a tone for the whole case."""

    def __init__(self, served: Served) -> None:
        self.served = served
        self.heard = bytearray()
        self._ws: Any = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._ws = await websockets.connect(f"{self.served.ws}/ws-client?role=bystander",
                                            additional_headers=AUTH)
        self._tasks = [asyncio.create_task(self._talk()), asyncio.create_task(self._listen())]
        await wait_for(lambda: len(self.heard) > FRAME * 5)

    async def _talk(self) -> None:
        pcm = tone(BYSTANDER_HZ, 1.0, RATE).pcm
        offset = 0
        started = time.monotonic()
        for index in range(10**9):
            await self._ws.send(pcm[offset:offset + FRAME])
            offset = (offset + FRAME) % len(pcm)
            await asyncio.sleep(max(0.0, started + (index + 1) * 0.02 - time.monotonic()))

    async def _listen(self) -> None:
        async for message in self._ws:
            if isinstance(message, bytes):
                self.heard += message

    async def still_hears(self) -> None:
        """Fresh echo of the right pitch is still arriving now."""
        mark = len(self.heard)
        await wait_for(lambda: len(self.heard) - mark >= RATE * 2 * 0.4, timeout=5)
        recent = bytes(self.heard[mark:])
        assert abs(dominant_frequency(recent, RATE) - BYSTANDER_HZ) < 8

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._ws.close()


class Arena:
    def __init__(self, served: Served, bystander: Bystander, before: Snapshot) -> None:
        self.served = served
        self.bystander = bystander
        self.before = before

    @property
    def sessions(self) -> Any:
        return self.served.sessions

    def outcomes(self) -> dict[str, int]:
        return dict(self.sessions.outcomes)

    async def settle(self) -> None:
        """Only the bystander is left, it still hears itself, and nothing leaked."""
        await wait_for(lambda: len(self.sessions.active) == 1, timeout=10)
        await self.bystander.still_hears()
        await wait_for(lambda: self._within_bounds(Snapshot.take()), timeout=5)

    def _within_bounds(self, now: Snapshot) -> bool:
        # A couple of tasks/fds of slack: uvicorn's keep-alive connections come and go.
        return (now.tasks <= self.before.tasks + 2 and now.threads <= self.before.threads + 1
                and now.fds <= self.before.fds + 3)


@contextlib.asynccontextmanager
async def arena(transports: str = "", **flags: Any) -> AsyncIterator[Arena]:
    """The arena, serving `transports` too (e.g. "webrtc") beside the WebSocket and phones."""
    flags.setdefault("grace_period", "0.5")
    flags.setdefault("detect_timeout", "0.5")
    flags.setdefault("isolation", ISOLATION["mode"])
    if flags["isolation"] == "process":
        flags.setdefault("prewarm", "2")
    config = phone_config(",".join(filter(None, ["websocket", ALL, transports])), **flags)
    config = replace(config, api_key=API_KEY)
    async with serve(config, load_bot(f"{BOTS}:fault_bot")) as served:
        bystander = Bystander(served)
        await bystander.start()
        await asyncio.sleep(0.2)
        arena_ = Arena(served, bystander, Snapshot.take())
        try:
            yield arena_
        finally:
            await bystander.stop()
