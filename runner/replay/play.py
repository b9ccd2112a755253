"""Playing a recording's caller side: its audio in real time from the session's first moment,
each DTMF digit and app message at the time it was sent, through smoke's synthetic callers.

The clock is absolute (each frame is due at its time since the start), so the pauses between
the caller's turns are kept however long a send takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import websockets

from runner.audio import AudioConverter
from runner.errors import UserError
from runner.replay.session import Recorded
from runner.smoke.callers import Target
from runner.smoke.callers.websocket import RATE
from runner.smoke.callers.websocket import connect as connect_websocket

#: After the recording's end, how long the bot's last words may still arrive.
TAIL_SECONDS = 0.3
_PHONES = ("twilio", "telnyx", "plivo", "exotel", "vonage")
SUPPORTED = ("websocket", *_PHONES)


def check_supported(kind: str) -> None:
    if kind not in SUPPORTED:
        raise UserError(f"replay does not support {kind} recordings yet (it replays "
                        f"{', '.join(SUPPORTED)})")


async def play(recorded: Recorded, target: Target) -> None:
    """One call into the server at `target` replaying `recorded`'s caller side."""
    if recorded.kind == "websocket":
        await _play_websocket(recorded, target)
    else:
        await _play_phone(recorded, target)


async def _timeline(pcm: bytes, frame_bytes: int, frame_seconds: float,
                    events: list[dict[str, Any]], send_frame: Callable[[bytes], Awaitable[None]],
                    send_event: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    pending = list(events)
    started = time.monotonic()
    frames = range(0, len(pcm), frame_bytes)
    for index, offset in enumerate(frames):
        now = index * frame_seconds
        while pending and float(pending[0].get("t", 0)) <= now:
            await send_event(pending.pop(0))
        await send_frame(pcm[offset:offset + frame_bytes])
        await asyncio.sleep(max(0.0, started + (index + 1) * frame_seconds - time.monotonic()))
    for event in pending:  # after the audio (a session that ended with a keypress)
        await asyncio.sleep(max(0.0, started + float(event.get("t", 0)) - time.monotonic()))
        await send_event(event)
    await asyncio.sleep(TAIL_SECONDS)


async def _play_websocket(recorded: Recorded, target: Target) -> None:
    pcm = AudioConverter(RATE, 1).convert(recorded.caller).pcm
    async with connect_websocket(target) as ws:
        async def drain() -> None:
            with contextlib.suppress(websockets.ConnectionClosed):
                async for _ in ws:
                    pass

        async def send_event(event: dict[str, Any]) -> None:
            if event["event"] == "message_in":
                await ws.send(json.dumps(event.get("data")))
            # DTMF has no place on the plain WebSocket protocol: nothing to replay

        listener = asyncio.create_task(drain())
        with contextlib.suppress(websockets.ConnectionClosed):  # the bot ended the session
            await _timeline(pcm, RATE // 50 * 2, 0.02, recorded.caller_events(), ws.send,
                            send_event)
        listener.cancel()


async def _play_phone(recorded: Recorded, target: Target) -> None:
    from runner.smoke.callers.telephony import CALLERS

    phone = CALLERS[recorded.kind]()
    body = recorded.summary.get("body")
    query = ({k: v for k, v in body.items() if isinstance(v, str) and v != "(redacted)"}
             if isinstance(body, dict) else {})
    url, headers = await phone.dial(target, query=query or None)
    await phone.connect(url, headers)
    rate = phone.audio.sample_rate
    pcm = AudioConverter(rate, 1).convert(recorded.caller).pcm

    async def send_event(event: dict[str, Any]) -> None:
        if event["event"] == "dtmf":
            await phone.send_dtmf(str(event.get("digit")))
        # a phone call carries no app messages

    async def send_frame(chunk: bytes) -> None:
        await phone.send_audio(chunk)

    try:
        with contextlib.suppress(websockets.ConnectionClosed):
            await _timeline(pcm, int(rate * phone.frame_seconds) * 2, phone.frame_seconds,
                            recorded.caller_events(), send_frame, send_event)
    finally:
        await phone.hang_up()

