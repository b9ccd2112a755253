"""The fault suite's bot, in a module of its own so worker processes can import it by path."""

from __future__ import annotations

import asyncio
import time

from runner.transports.base import Transport

RATE = 16000


async def fault_bot(transport: Transport) -> None:
    """Echoes, unless the session's body names a fault to commit."""
    body = transport.session.body or {}
    fault = body.get("fault")
    if fault == "raise_now":
        raise RuntimeError("fault: raise_now")
    if fault == "block":
        time.sleep(2.0)  # noqa: ASYNC251 - the fault under test: a sync call blocking the loop
    if fault == "never_return":
        await asyncio.sleep(3600)
    if fault == "ignore_cancel":  # swallows its cancellation, then lingers another 4 s
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(4)
        return
    if fault == "leak_task":
        asyncio.create_task(asyncio.sleep(3600), name="leaked-by-bot")  # noqa: RUF006 - the fault
    heard = 0.0  # seconds, not frames: frames that wait together come joined
    async for frame in transport.audio(sample_rate=RATE):
        heard += frame.duration
        if fault == "raise_later" and heard > 0.2:
            raise RuntimeError("fault: raise_later")
        await transport.send_audio(frame)
