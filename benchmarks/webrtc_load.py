"""N aiortc peers through SmallWebRTC signaling (`POST /api/offer`, PROTOCOLS.md section 11).

Each peer offers one Opus audio track (48 kHz, a quiet carrier with a tone burst each second,
20 ms frames in real time) and the `chat` data channel, sends `ping: <ms>` every second as the
Pipecat clients do, and measures the audio that comes back (with --turns, it speaks an utterance
and waits for each reply instead, turns.py). Host candidates only: run it where loopback is the
only network (scripts/isolated).
Run: python -m benchmarks.webrtc_load --url http://HOST:PORT --clients 5 [--turns 4]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import time

import av
import httpx
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCSessionDescription,
)
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamError

from benchmarks import loadgen, turns
from benchmarks.probe import FRAME_SECONDS, BurstSignal, CallResult, EchoMeter

RATE = 48000
SIGNAL = BurstSignal(RATE)
FRAMES = [frame.astype("<i2").tobytes() for frame in SIGNAL.frames()]
QUIET = [frame.astype("<i2").tobytes() for frame in SIGNAL.frames(False)]
CONNECT_TIMEOUT = 30.0
PING_SECONDS = 1.0
TIME_BASE = fractions.Fraction(1, RATE)


class Microphone(MediaStreamTrack):
    """The caller's voice: aiortc pulls a frame, we hand it over when its 20 ms have passed."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._ready: asyncio.Queue[bytes] = asyncio.Queue()
        self._sent = 0

    async def put(self, index: int, muted: bool) -> None:
        """`loadgen.speak` hands over frame `index` when it is due."""
        self._ready.put_nowait((QUIET if muted else FRAMES)[index % len(FRAMES)])

    async def put_pcm(self, samples: np.ndarray) -> None:
        """`turns.converse` hands over a frame of its own when it is due."""
        self._ready.put_nowait(samples.astype("<i2").tobytes())

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        pcm = await self._ready.get()
        index, self._sent = self._sent, self._sent + 1
        frame = av.AudioFrame(format="s16", layout="mono", samples=SIGNAL.frame_samples)
        frame.planes[0].update(pcm)
        frame.sample_rate = RATE
        frame.pts = index * SIGNAL.frame_samples
        frame.time_base = TIME_BASE
        return frame


def _release_at_once(receiver: RTCRtpReceiver) -> None:
    """Our ear hears each packet as it arrives: aiortc's receiver would hold 4 packets (~80 ms)
    first, the same for every server measured, hiding what the server itself adds."""
    attribute = "_RTCRtpReceiver__jitter_buffer"
    if hasattr(receiver, attribute):
        setattr(receiver, attribute, JitterBuffer(capacity=16, prefetch=0))


async def listen(track: MediaStreamTrack, meter: loadgen.Ear, result: CallResult) -> None:
    with contextlib.suppress(MediaStreamError):
        while True:
            frame = await track.recv()
            arrival = time.monotonic()
            samples = frame.to_ndarray()[0, :: len(frame.layout.channels)]
            if result.first_audio is None and result.started_at is not None:
                result.first_audio = arrival - result.started_at
            meter.feed(arrival, samples)


async def ping(channel: RTCDataChannel) -> None:
    while True:
        if channel.readyState == "open":
            channel.send(f"ping: {int(time.time() * 1000)}")
        await asyncio.sleep(PING_SECONDS)


async def peer(http: httpx.AsyncClient, duration: float, conversation: int = 0) -> CallResult:
    """One peer: the echo probe for `duration` s, or `conversation` turns (turns.py)."""
    result = CallResult()
    meter = EchoMeter(RATE)
    reply = turns.ReplyMeter(RATE)
    ear: loadgen.Ear = reply if conversation else meter
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    microphone = Microphone()
    _release_at_once(pc.addTransceiver(microphone, direction="sendrecv").receiver)
    channel = pc.createDataChannel("chat", ordered=True)
    connected = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    spoken: list[float] = []

    @pc.on("connectionstatechange")
    def on_state() -> None:
        if pc.connectionState == "connected":
            connected.set()

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            tasks.append(asyncio.create_task(listen(track, ear, result)))

    try:
        began = time.monotonic()
        await pc.setLocalDescription(await pc.createOffer())
        response = await http.post("/api/offer", json={
            "sdp": pc.localDescription.sdp, "type": "offer", "pc_id": None, "restart_pc": False,
            "requestData": {}})
        response.raise_for_status()
        answer = response.json()
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
        await asyncio.wait_for(connected.wait(), CONNECT_TIMEOUT)
        result.setup = time.monotonic() - began
        result.started_at = time.monotonic()
        tasks.append(asyncio.create_task(ping(channel)))
        if conversation:
            await turns.converse(conversation, RATE, reply, result, microphone.put_pcm)
        else:
            spoken = await loadgen.speak(SIGNAL, round(duration / FRAME_SECONDS), result,
                                         microphone.put)
        result.stopped_at = time.monotonic()
        meter.stop()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await pc.close()
    result.finish(spoken, meter)
    return result


def make_client(args: argparse.Namespace) -> loadgen.Client:
    http = httpx.AsyncClient(base_url=args.url, timeout=CONNECT_TIMEOUT)

    async def client(index: int) -> CallResult:
        return await peer(http, args.duration, args.turns)

    return client


if __name__ == "__main__":
    loadgen.main(__doc__.splitlines()[0], make_client)
