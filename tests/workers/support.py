"""Shared pieces of the worker tests: the bot file, process-isolation configs, a WebSocket echo."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import websockets

from runner.audio import dominant_frequency, tone
from runner.config import Config
from runner.loader import LoadedBot, load_bot

from conftest import make_config

BOTS = str(Path(__file__).resolve().parent / "bots.py")
RATE = 16000
FRAME = 640  # 20 ms of PCM16 mono at 16 kHz


def worker_bot() -> LoadedBot:
    return load_bot(BOTS)


def worker_config(transport: str = "websocket", **flags: Any) -> Config:
    flags.setdefault("prewarm", "1")
    return make_config(transport=transport, isolation="process", **flags)


def worker_pids(served: Any) -> set[int]:
    return {handle.pid for handle in served.app.state.workers.handles}


class Listener:
    """A live echo session: streams a tone in real time and notes when each echoed chunk arrives."""

    def __init__(self, ws: websockets.ClientConnection, frequency: int) -> None:
        self.ws = ws
        self.frequency = frequency
        self.arrivals: list[float] = []
        self.audio = bytearray()
        self._tasks = [asyncio.create_task(self._talk()), asyncio.create_task(self._hear())]

    async def _talk(self) -> None:
        pcm = tone(self.frequency, 60, RATE).pcm
        start = time.monotonic()
        for index, offset in enumerate(range(0, len(pcm), FRAME)):
            await self.ws.send(pcm[offset:offset + FRAME])
            await asyncio.sleep(max(0.0, start + (index + 1) * 0.02 - time.monotonic()))

    async def _hear(self) -> None:
        async for message in self.ws:
            if isinstance(message, bytes):
                self.arrivals.append(time.monotonic())
                self.audio += message

    def longest_gap(self, since: float) -> float:
        times = [t for t in self.arrivals if t >= since]
        return max((b - a for a, b in itertools.pairwise(times)), default=float("inf"))

    def check_echo(self, since: float) -> None:
        """Audio kept flowing since `since`, with no gap a listener would hear, at the right pitch."""
        chunks = [t for t in self.arrivals if t >= since]
        assert len(chunks) > 20, f"only {len(chunks)} chunks since the fault"
        assert self.longest_gap(since) < 0.2, f"a {self.longest_gap(since):.2f} s gap"
        recent = bytes(self.audio[-RATE:])  # the last 0.5 s
        assert abs(dominant_frequency(recent, RATE) - self.frequency) < 5

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
