"""A SmallWebRTC client in aiortc, speaking to the real server as the JS clients do.

It offers audio (and optionally camera video) plus a `chat` data channel, pings every second,
answers the server's `renegotiate` by offering again, and records what it receives with arrival
times, so smoke checks and tests can check frequencies and measure latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import re
import time
from typing import Any

import av
import httpx
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from runner.audio import AudioConverter, AudioFrame, dominant_frequency, to_channels, tone
from runner.smoke.callers import Caller, CallResult, Target

RATE = 48000
FRAME = 960


class PacedAudio(MediaStreamTrack):
    """Microphone stand-in: plays queued 48 kHz mono PCM in real time, silence in between."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._buffer = bytearray()
        self._start: float | None = None
        self._pts = 0
        self.started_at: list[float] = []  # when each play()'s first frame left
        self._marks: list[int] = []  # byte offsets in the stream where a play() starts
        self._taken = 0

    def play(self, pcm: bytes) -> None:
        self._marks.append(self._taken + len(self._buffer))
        self._buffer += pcm

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._pts / RATE
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        chunk = bytes(self._buffer[: FRAME * 2])
        del self._buffer[: FRAME * 2]
        now = time.monotonic()
        while self._marks and self._marks[0] < self._taken + FRAME * 2:
            offset = self._marks.pop(0) - self._taken
            self.started_at.append(now + offset / 2 / RATE)
        self._taken += FRAME * 2
        chunk += bytes(FRAME * 2 - len(chunk))
        frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME)
        frame.planes[0].update(chunk)
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, RATE)
        self._pts += FRAME
        return frame


class ColourVideo(MediaStreamTrack):
    """Camera stand-in: 15 fps frames of one solid colour."""

    kind = "video"

    def __init__(self, rgb: tuple[int, int, int], size: tuple[int, int] = (160, 120)) -> None:
        super().__init__()
        width, height = size
        self._picture = np.full((height, width, 3), rgb, np.uint8)
        self._count = 0
        self._start = time.monotonic()

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        due = self._start + self._count / 15
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        frame = av.VideoFrame.from_ndarray(self._picture, format="rgb24")
        frame.pts = self._count * 6000
        frame.time_base = fractions.Fraction(1, 90000)
        self._count += 1
        return frame


class Client:
    def __init__(self, base_url: str, *, video: bool = False, ping: bool = True,
                 offer_path: str = "/api/offer", api_key: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.AsyncClient(base_url=base_url, timeout=10, headers=headers)
        self.offer_path = offer_path
        self.video = video
        self.ping = ping
        self.audio: list[tuple[float, bytes]] = []  # (arrival, 48 kHz mono PCM) per frame
        self.frames: list[av.VideoFrame] = []
        self.messages: list[Any] = []
        self.signals: list[dict[str, Any]] = []
        self.pc_id: str | None = None
        self.pc = self._new_pc()
        self._tasks: list[asyncio.Task[Any]] = []

    def _new_pc(self) -> RTCPeerConnection:
        """A peer connection with its own tracks (aiortc stops a track when its sender ends)."""
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.mic = PacedAudio()
        pc.addTransceiver(self.mic, direction="sendrecv")
        if self.video:
            pc.addTransceiver(ColourVideo((200, 40, 40)), direction="sendrecv")
        self.channel = pc.createDataChannel("chat", ordered=True)
        self.channel.on("message", self._on_message)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._tasks.append(asyncio.create_task(self._read(track)))

        return pc

    async def _read(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if track.kind == "audio":
                    pcm = frame.to_ndarray().tobytes()
                    self.audio.append((time.monotonic(),
                                       to_channels(pcm, len(frame.layout.channels), 1)))
                else:
                    self.frames.append(frame)

    def _on_message(self, message: str) -> None:
        data = json.loads(message)
        if isinstance(data, dict) and data.get("type") == "signalling":
            self.signals.append(data["message"])
            if data["message"].get("type") == "renegotiate":
                self._tasks.append(asyncio.create_task(self.offer()))
        else:
            self.messages.append(data)

    async def offer(self, *, restart: bool = False, trickle: bool = False,
                    camel_case: bool = False, **extra: Any) -> httpx.Response:
        """Offer (again) and apply the answer; with `trickle`, candidates go by PATCH instead."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        sdp = self.pc.localDescription.sdp
        candidates = re.findall(r"^a=(candidate:.*?)\r?$", sdp, re.M)
        if trickle:
            sdp = re.sub(r"^a=candidate:.*\r\n", "", sdp, flags=re.M)
            sdp = re.sub(r"^a=end-of-candidates\r\n", "", sdp, flags=re.M)
        body = {"sdp": sdp, "type": "offer", "pc_id": self.pc_id, "restart_pc": restart, **extra}
        response = await self.http.post(self.offer_path, json=body)
        if response.status_code != 200:
            return response
        answer = response.json()
        self.pc_id = answer["pc_id"]
        if trickle:
            await self.patch([{"candidate": c, "sdpMid": "0", "sdpMLineIndex": 0}
                              if camel_case else {"candidate": c, "sdp_mid": "0",
                                                  "sdp_mline_index": 0}
                              for c in candidates] + [{"candidate": "", "sdp_mid": "0"}])
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        if self.ping and not any(t.get_name() == "ping" for t in self._tasks if not t.done()):
            self._tasks.append(asyncio.create_task(self._ping(), name="ping"))
        return response

    async def patch(self, candidates: list[dict[str, Any]]) -> httpx.Response:
        response = await self.http.patch(self.offer_path,
                                         json={"pc_id": self.pc_id, "candidates": candidates})
        response.raise_for_status()
        return response

    async def restart(self) -> httpx.Response:
        """Replace the peer connection as the JS client does after ICE fails: a new one offers
        with the old pc_id and restart_pc, then the old one is closed."""
        old = self.pc
        self.pc = self._new_pc()
        response = await self.offer(restart=True)
        await old.close()
        return response

    async def _ping(self) -> None:
        while True:
            if self.channel.readyState == "open":
                self.channel.send(f"ping: {int(time.time() * 1000)}")
            await asyncio.sleep(1)

    def stop_pinging(self) -> None:
        for task in self._tasks:
            if task.get_name() == "ping":
                task.cancel()

    async def wait_connected(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while self.pc.connectionState != "connected" or self.channel.readyState != "open":
            if time.monotonic() > deadline:
                raise TimeoutError(f"not connected within {timeout} s: {self.pc.connectionState}")
            await asyncio.sleep(0.02)

    def send(self, data: Any) -> None:
        self.channel.send(json.dumps(data))

    def heard_at(self, since: float, threshold: int = 2000) -> float | None:
        """When the first loud sample after `since` plays, taking frames to play as they arrive."""
        for at, pcm in self.audio:
            if at < since:
                continue
            loud = np.flatnonzero(np.abs(np.frombuffer(pcm, "<i2")) > threshold)
            if loud.size:
                return at + int(loud[0]) / RATE
        return None

    async def echo(self, frequency: float = 1000.0, seconds: float = 0.3,
                   timeout: float = 5.0) -> tuple[float, float]:
        """Say a tone; return (dominant frequency heard back, mouth-to-ear seconds)."""
        index = len(self.mic.started_at)
        self.mic.play(tone(frequency, seconds, RATE, amplitude=0.5).pcm)
        deadline = time.monotonic() + timeout
        heard = None
        while heard is None:
            if time.monotonic() > deadline:
                raise TimeoutError("the tone never came back")
            await asyncio.sleep(0.02)
            if len(self.mic.started_at) > index:
                heard = self.heard_at(self.mic.started_at[index])
        await asyncio.sleep(seconds + 0.1)
        pcm = b"".join(p for at, p in self.audio if heard - 0.02 <= at <= heard + seconds)
        return dominant_frequency(pcm, RATE), float(heard - self.mic.started_at[index])

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pc.close()
        await self.http.aclose()


def caller(kind: str) -> Caller:
    return call


async def call(target: Target, audio: AudioFrame, duration: float) -> CallResult:
    """Offer, connect, talk for `duration` seconds, then close the peer as a leaving browser does."""
    result = CallResult()
    client = Client(target.http, api_key=target.config.api_key)
    try:
        started = time.monotonic()
        response = await client.offer()
        if response.status_code != 200:
            result.detail = f"offer refused: HTTP {response.status_code} {response.text[:200]}"
            return result
        await client.wait_connected(timeout=target.config.connect_timeout)
        result.connected = True
        result.connect_seconds = time.monotonic() - started
        pcm = AudioConverter(RATE).convert(audio).pcm
        repeats = max(1, int(duration * RATE * 2 / max(len(pcm), 1)) + 1)
        client.mic.play((pcm * repeats)[: int(duration * RATE) * 2])
        await asyncio.sleep(duration + 0.3)
        if client.mic.started_at:
            heard = client.heard_at(client.mic.started_at[0], threshold=200)
            if heard is not None:
                result.first_audio_seconds = max(0.0, heard - client.mic.started_at[0])
        result.messages = list(client.messages)
        result.received = AudioFrame(b"".join(pcm for _, pcm in client.audio), RATE)
        return result
    finally:
        await client.close()
