"""Small bots the webrtc tests serve."""

from __future__ import annotations

import asyncio

from runner.transports.base import Transport


async def echo(transport: Transport) -> None:
    """Audio back at 16 kHz, messages back as {"echo": message}."""

    async def messages() -> None:
        async for message in transport.messages():
            await transport.send_message({"echo": message})

    task = asyncio.create_task(messages())
    try:
        async for frame in transport.audio(sample_rate=16000):
            await transport.send_audio(frame)
    finally:
        task.cancel()
