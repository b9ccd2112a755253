"""Shared pieces of the worker tests: the bot file, process-isolation configs, a WebSocket echo."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

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


async def stream(ws: Any, pcm: bytes, realtime: bool = True) -> None:
    for offset in range(0, len(pcm), FRAME):
        await ws.send(pcm[offset:offset + FRAME])
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
