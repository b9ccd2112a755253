"""What every load generator shares: the command line, starting N clients, the JSON it prints.

A load generator runs as its own process (so the harness can measure its CPU apart from the
server's) and prints one JSON object: the level summary, the steady window (from the last
client's start to the first client's stop, on the shared monotonic clock) and its own CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import numpy as np

from benchmarks.probe import FRAME_SECONDS, MAX_LATENCY, BurstSignal, CallResult, summarise

Client = Callable[[int], Awaitable[CallResult]]
#: send(frame index, muted): put frame `index` of the signal (or silence, when muted) on the wire.
Send = Callable[[int, bool], Awaitable[None]]


class Ear(Protocol):
    """What hears the audio coming back: probe.EchoMeter (echo mode) or turns.ReplyMeter."""

    def feed(self, arrival: float, samples: np.ndarray) -> None: ...


async def speak(signal: BurstSignal, frames: int, result: CallResult, send: Send) -> list[float]:
    """Send `frames` 20 ms frames in real time; the capture times of the bursts spoken.

    Bursts too close to the end to come back in time are muted. How late each frame left is
    recorded in `result.late` (the client's own health).
    """
    spoken: list[float] = []
    last_burst = frames - round(MAX_LATENCY / FRAME_SECONDS) - 5
    per_period = signal.frames_per_period
    begin = time.monotonic()
    for index in range(frames):
        due = begin + (index + 1) * FRAME_SECONDS
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        now = time.monotonic()
        result.late.append(max(0.0, now - due))
        muted = index - index % per_period + signal.onset_frame > last_burst
        if not muted and signal.starts_burst(index):
            spoken.append(now - FRAME_SECONDS)  # its first sample was captured a frame ago
        await send(index, muted)
    return spoken


def parse_args(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--url", required=True, help="where to connect")
    parser.add_argument("--clients", type=int, default=1, help="concurrent clients")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds each client talks")
    parser.add_argument("--ramp", type=float, default=None,
                        help="seconds over which clients start (default: 20 ms apart, at most 2 s)")
    parser.add_argument("--turns", type=int, default=0,
                        help="conversation mode (turns.py): speak an utterance this many times, "
                        "each after the reply (--duration is then unused); 0: the echo probe")
    return parser.parse_args(argv)


def ramp_seconds(args: argparse.Namespace) -> float:
    return args.ramp if args.ramp is not None else min(2.0, args.clients * FRAME_SECONDS)


async def run_clients(count: int, ramp: float, client: Client) -> list[CallResult]:
    """Start `count` clients spread evenly over `ramp` seconds; wait for all of them."""

    async def delayed(index: int) -> CallResult:
        await asyncio.sleep(ramp * index / count)
        try:
            return await client(index)
        except Exception as error:  # a client must never take the level down with it
            return CallResult(error=f"{type(error).__name__}: {error}")

    return list(await asyncio.gather(*(delayed(i) for i in range(count))))


def steady_window(calls: list[CallResult]) -> tuple[float, float] | None:
    """From the last stream start to the first stop: when every client was talking."""
    starts = [call.started_at for call in calls if call.started_at is not None]
    stops = [call.stopped_at for call in calls if call.stopped_at is not None]
    if not starts or not stops or len(starts) < len(calls):
        return None
    window = (max(starts), min(stops))
    return window if window[1] - window[0] > 0.5 else None


def report(calls: list[CallResult], cpu_seconds: float, wall_seconds: float) -> dict[str, Any]:
    window = steady_window(calls)
    return {
        "summary": summarise(calls),
        "window": list(window) if window else None,
        "client_cpu_seconds": round(cpu_seconds, 3),
        "client_wall_seconds": round(wall_seconds, 3),
    }


def main(description: str, make_client: Callable[[argparse.Namespace], Client],
         argv: list[str] | None = None) -> None:
    """Parse the flags, run the clients on uvloop (when installed), print the JSON report."""
    args = parse_args(description, argv)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is optional for the client
        runner = asyncio.run
    else:
        runner = uvloop.run
    cpu, wall = time.process_time(), time.monotonic()
    calls = runner(run_clients(args.clients, ramp_seconds(args), make_client(args)))
    json.dump(report(calls, time.process_time() - cpu, time.monotonic() - wall), sys.stdout)
    sys.stdout.write("\n")
