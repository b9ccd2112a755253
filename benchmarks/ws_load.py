"""N clients of runner's plain WebSocket transport (`/ws-client`): binary PCM16 at 16 kHz both ways.

Same signal and meter as the Twilio callers. The reference speaks Pipecat's own serializer on its
`/ws-client`, so this generator measures runner only.
Run: python -m benchmarks.ws_load --url ws://HOST:PORT/ws-client?sample_rate=16000
"""

from __future__ import annotations

import argparse
import asyncio
import time

import numpy as np
from websockets.asyncio.client import ClientConnection, connect

from benchmarks import loadgen
from benchmarks.probe import FRAME_SECONDS, BurstSignal, CallResult, EchoMeter

RATE = 16000
CLOSE_WAIT = 1.0
SIGNAL = BurstSignal(RATE)
FRAMES = [frame.astype("<i2").tobytes() for frame in SIGNAL.frames()]
QUIET = [frame.astype("<i2").tobytes() for frame in SIGNAL.frames(False)]


async def receive(ws: ClientConnection, meter: EchoMeter, result: CallResult) -> None:
    async for message in ws:
        arrival = time.monotonic()
        if not isinstance(message, bytes):
            continue
        if result.first_audio is None and result.started_at is not None:
            result.first_audio = arrival - result.started_at
        meter.feed(arrival, np.frombuffer(message, dtype="<i2"))


async def call(url: str, duration: float) -> CallResult:
    result = CallResult()
    meter = EchoMeter(RATE)
    frames = round(duration / FRAME_SECONDS)
    began = time.monotonic()
    async with connect(url, open_timeout=20, max_size=1 << 20, compression=None,
                       ping_interval=None) as ws:
        result.setup = time.monotonic() - began
        result.started_at = time.monotonic()
        receiver = asyncio.create_task(receive(ws, meter, result))
        async def send(index: int, muted: bool) -> None:
            await ws.send((QUIET if muted else FRAMES)[index % len(FRAMES)])

        spoken = await loadgen.speak(SIGNAL, frames, result, send)
        result.stopped_at = time.monotonic()
        meter.stop()
        await ws.close()
        done, _ = await asyncio.wait({receiver}, timeout=CLOSE_WAIT)
        if not done:
            receiver.cancel()
        await asyncio.gather(receiver, return_exceptions=True)
    result.finish(spoken, meter)
    return result


def make_client(args: argparse.Namespace) -> loadgen.Client:
    async def client(index: int) -> CallResult:
        return await call(args.url, args.duration)

    return client


if __name__ == "__main__":
    loadgen.main(__doc__.splitlines()[0], make_client)
