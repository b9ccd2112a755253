"""A plain WebSocket client for `/ws-client`: PCM16 binary both ways, JSON text messages."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import websockets

from runner.audio import AudioConverter, AudioFrame
from runner.smoke.callers import Caller, CallResult, Target

RATE = 16000
FRAME_BYTES = RATE // 50 * 2


def caller(kind: str) -> Caller:
    return call


def connect(target: Target) -> Any:
    """The client's socket to `/ws-client` (with the API key when the server wants one); smoke's
    call and `runner replay` connect the same way."""
    headers = {"Authorization": f"Bearer {target.config.api_key}"} if target.config.api_key else {}
    return websockets.connect(f"{target.ws}/ws-client?sample_rate={RATE}",
                              additional_headers=headers)


async def call(target: Target, audio: AudioFrame, duration: float) -> CallResult:
    result = CallResult()
    pcm = AudioConverter(RATE).convert(audio).pcm
    started = time.monotonic()
    received = bytearray()
    async with connect(target) as ws:
        result.connected = True
        result.connect_seconds = time.monotonic() - started
        first_sent: float | None = None

        async def listen() -> None:
            with contextlib.suppress(websockets.ConnectionClosed):  # the server ended it
                async for message in ws:
                    if isinstance(message, bytes):
                        received.extend(message)
                        if result.first_audio_seconds is None and first_sent is not None:
                            result.first_audio_seconds = time.monotonic() - first_sent
                    else:
                        result.messages.append(json.loads(message))

        listener = asyncio.create_task(listen())
        end = time.monotonic() + duration
        offset = 0
        while time.monotonic() < end and not listener.done():
            chunk = pcm[offset:offset + FRAME_BYTES] or bytes(FRAME_BYTES)
            offset = offset + FRAME_BYTES if offset + FRAME_BYTES < len(pcm) else 0
            if first_sent is None:
                first_sent = time.monotonic()
            try:
                await ws.send(chunk)
            except websockets.ConnectionClosed:
                break  # the server ended the session (the bot returned, raised or hung up)
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # let the tail of the bot's audio arrive
        listener.cancel()
    result.received = AudioFrame(bytes(received), RATE)
    return result
