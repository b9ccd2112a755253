"""Start-up and memory: `--help` wall time, spawn-to-ready, idle memory (PSS), and a leak check.

The leak check runs short Twilio calls one after another (connect, `start`, a few frames, wait for
audio back, `stop`) and compares the server's RSS after a warm-up with its RSS at the end.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from benchmarks import servers, twilio_load
from benchmarks.probe import FRAME_SECONDS
from benchmarks.sampler import tree_usage

MB = 1024 * 1024
WARM_UP_SESSIONS = 50
SHORT_CALL_FRAMES = 100  # at most 2 s of audio while waiting for the echo


def help_seconds(argv: list[str], repeats: int = 5) -> float:
    """Median wall time of `argv` (a `--help`), run `repeats` times after one warm-up run."""
    times = []
    for attempt in range(repeats + 1):
        began = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True, cwd=servers.ROOT)
        if attempt:
            times.append(time.perf_counter() - began)
    return statistics.median(times)


def help_argv(name: str) -> list[str]:
    if name in servers.RUNNERS:
        return [str(servers.RUNNER), "--help"]
    return [str(servers.REF_PYTHON), str(servers.REF_BOT), "--help"]


def ready_and_idle(name: str, repeats: int = 3, log_dir: Path | None = None) -> dict[str, Any]:
    """Spawn-to-ready (median of `repeats` cold starts) and RSS once idle, serving Twilio."""
    readies, rss = [], []
    for _ in range(repeats):
        server = servers.make_server(name, "twilio", log_dir / f"startup-{name}.log" if log_dir else None)
        try:
            readies.append(server.start())
            time.sleep(1.0)
            rss.append(_rss(server))
        finally:
            server.stop()
    return {"ready_s": round(statistics.median(readies), 3),
            "rss_idle_mb": round(statistics.median(rss) / MB, 1)}


def _rss(server: servers.Server) -> int:
    import psutil

    return tree_usage(psutil.Process(server.pid)).memory


async def short_call(url: str) -> bool:
    """One short Twilio call: frames in real time until audio comes back (or 2 s), then `stop`."""
    stream_sid, call_sid, account = twilio_load.sid("MZ"), twilio_load.sid("CA"), twilio_load.sid("AC")
    payload = twilio_load.QUIET[0]
    async with connect(url, open_timeout=10, compression=None, ping_interval=None) as ws:
        for message in twilio_load.opening(stream_sid, call_sid, account):
            await ws.send(message)

        async def heard() -> None:
            async for message in ws:
                if isinstance(message, str) and '"media"' in message:
                    return

        listener = asyncio.create_task(heard())
        index = 0
        while not listener.done() and index < SHORT_CALL_FRAMES:
            await ws.send(twilio_load.media(stream_sid, index, payload))
            index += 1
            await asyncio.wait({listener}, timeout=FRAME_SECONDS)
        answered = listener.done() and not listener.cancelled() and listener.exception() is None
        listener.cancel()
        await ws.send(twilio_load.stop(stream_sid, call_sid, index, account))
    return answered


def leak_check(name: str, sessions: int, log_dir: Path | None = None) -> dict[str, Any]:
    """RSS after a warm-up and after `sessions` sequential short calls."""
    server = servers.make_server(name, "twilio", log_dir / f"leak-{name}.log" if log_dir else None)
    server.start()
    try:
        url = server.url("twilio")

        errors: list[str] = []

        async def calls(count: int) -> int:
            heard = 0
            for _ in range(count):
                try:
                    heard += await short_call(url)
                except Exception as error:  # counted as unanswered; the first few are kept
                    if len(errors) < 3:
                        errors.append(f"{type(error).__name__}: {error}")
            return heard

        asyncio.run(calls(min(WARM_UP_SESSIONS, sessions)))
        time.sleep(2.0)
        before = _rss(server)
        began = time.monotonic()
        heard = asyncio.run(calls(sessions))
        seconds = time.monotonic() - began
        time.sleep(3.0)  # let the last sessions end
        after = _rss(server)
    finally:
        server.stop()
    return {
        "sessions": sessions,
        "answered": heard,
        "errors": errors,
        "seconds": round(seconds, 1),
        "rss_before_mb": round(before / MB, 1),
        "rss_after_mb": round(after / MB, 1),
        "growth_kb_per_session": round((after - before) / 1024 / sessions, 2),
    }
