"""N synthetic Twilio callers on a media-stream WebSocket (PROTOCOLS.md section 1).

Each caller sends `connected` and `start`, then a `media` message of mu-law 8 kHz every 20 ms in
real time (a quiet carrier with a tone burst each second, probe.py; with --turns, an utterance
and the silence while the bot replies, turns.py), then `stop`; what the server sends back as
`media` is decoded and measured.
Run: python -m benchmarks.twilio_load --url ws://HOST:PORT/ws --clients 10 [--turns 4]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import time
import uuid
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect

from benchmarks import loadgen, turns
from benchmarks.probe import FRAME_SECONDS, BurstSignal, CallResult, EchoMeter, ulaw_decode, ulaw_encode

RATE = 8000
CLOSE_WAIT = 1.0
SIGNAL = BurstSignal(RATE)
PAYLOADS = [base64.b64encode(ulaw_encode(frame)).decode("ascii") for frame in SIGNAL.frames()]
QUIET = [base64.b64encode(ulaw_encode(frame)).decode("ascii") for frame in SIGNAL.frames(False)]
PERIOD = len(PAYLOADS)
MEDIA = ('{{"event":"media","sequenceNumber":"{}","streamSid":"{}","media":{{"track":"inbound",'
         '"chunk":"{}","timestamp":"{}","payload":"{}"}}}}')


def sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


def opening(stream_sid: str, call_sid: str, account: str) -> list[str]:
    """`connected` and `start`, as Twilio sends them."""
    start = {
        "event": "start", "sequenceNumber": "1", "streamSid": stream_sid,
        "start": {"accountSid": account, "streamSid": stream_sid, "callSid": call_sid,
                  "tracks": ["inbound"], "customParameters": {},
                  "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": RATE, "channels": 1}},
    }
    return [json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
            json.dumps(start)]


def media(stream_sid: str, index: int, payload: str) -> str:
    return MEDIA.format(index + 2, stream_sid, index + 1, index * 20, payload)


def stop(stream_sid: str, call_sid: str, frames: int, account: str) -> str:
    return json.dumps({"event": "stop", "sequenceNumber": str(frames + 2), "streamSid": stream_sid,
                       "stop": {"accountSid": account, "callSid": call_sid}})


async def receive(ws: ClientConnection, meter: loadgen.Ear, result: CallResult) -> None:
    async for message in ws:
        arrival = time.monotonic()
        if not isinstance(message, str) or '"media"' not in message:
            continue
        data: dict[str, Any] = json.loads(message)
        if data.get("event") != "media":
            continue
        if result.first_audio is None and result.started_at is not None:
            result.first_audio = arrival - result.started_at
        meter.feed(arrival, ulaw_decode(base64.b64decode(data["media"]["payload"])))


async def call(url: str, duration: float, conversation: int = 0) -> CallResult:
    """One call: the echo probe for `duration` s, or `conversation` turns (turns.py)."""
    result = CallResult()
    meter = EchoMeter(RATE)
    reply = turns.ReplyMeter(RATE)
    ear: loadgen.Ear = reply if conversation else meter
    stream_sid, call_sid, account = sid("MZ"), sid("CA"), sid("AC")
    frames = round(duration / FRAME_SECONDS)
    began = time.monotonic()
    async with connect(url, open_timeout=20, max_size=1 << 20, compression=None,
                       ping_interval=None) as ws:
        result.setup = time.monotonic() - began
        for message in opening(stream_sid, call_sid, account):
            await ws.send(message)
        result.started_at = time.monotonic()
        receiver = asyncio.create_task(receive(ws, ear, result))
        async def send(index: int, muted: bool) -> None:
            await ws.send(media(stream_sid, index, (QUIET if muted else PAYLOADS)[index % PERIOD]))

        sent = 0

        async def send_pcm(samples: np.ndarray) -> None:
            nonlocal sent
            payload = base64.b64encode(ulaw_encode(samples)).decode("ascii")
            await ws.send(media(stream_sid, sent, payload))
            sent += 1

        spoken: list[float] = []
        if conversation:
            await turns.converse(conversation, RATE, reply, result, send_pcm)
            frames = sent
        else:
            spoken = await loadgen.speak(SIGNAL, frames, result, send)
        result.stopped_at = time.monotonic()
        meter.stop()
        await ws.send(stop(stream_sid, call_sid, frames, account))
        done, _ = await asyncio.wait({receiver}, timeout=CLOSE_WAIT)
        if not done:
            receiver.cancel()
        await asyncio.gather(receiver, return_exceptions=True)
    result.finish(spoken, meter)
    return result


def make_client(args: argparse.Namespace) -> loadgen.Client:
    async def client(index: int) -> CallResult:
        return await call(args.url, args.duration, args.turns)

    return client


if __name__ == "__main__":
    loadgen.main(__doc__.splitlines()[0], make_client)
