"""Shared pieces of the worker tests: the bot file, process-isolation configs, a WebSocket echo."""

from __future__ import annotations

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


