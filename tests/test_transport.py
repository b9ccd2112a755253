"""The Transport every bot sees (runner.transports.base), on a wire of its own."""

from __future__ import annotations

from typing import Any

from runner.transports.base import JOIN_SECONDS, SessionInfo, Transport

RATE = 8000
FRAME = 320  # 20 ms at 8 kHz PCM16


class Wire(Transport):
    """A transport whose wire is the test: audio goes in through `_receive_audio`."""

    kind = "websocket"

    def __init__(self) -> None:
        super().__init__(SessionInfo("session", self.kind), wire_rate=RATE)

    async def run(self) -> None:
        await self.wait_ended()

    async def _write_message(self, data: Any) -> None:
        pass

    async def _close_wire(self, reason: str) -> None:
        pass


async def test_frames_waiting_for_the_bot_reach_it_joined_up_to_the_limit() -> None:
    wire = Wire()
    for index in range(12):
        wire._receive_audio(bytes([index]) * FRAME)
    wire._client_left()
    frames = [frame async for frame in wire.audio(sample_rate=RATE)]
    limit = round(JOIN_SECONDS / 0.020) * FRAME
    assert [len(frame.pcm) for frame in frames] == [limit, limit, 12 * FRAME - 2 * limit]
    assert b"".join(frame.pcm for frame in frames) == b"".join(bytes([i]) * FRAME for i in range(12))
    assert wire.stats.frames_read == 12


async def test_frames_of_another_format_are_not_joined() -> None:
    wire = Wire()
    wire._receive_audio(bytes(FRAME))
    wire._receive_audio(bytes(2 * FRAME), 16000)  # the far end changed its rate
    wire._receive_audio(bytes(FRAME))
    wire._client_left()
    frames = [frame async for frame in wire.audio(sample_rate=RATE)]
    assert len(frames) == 3 and wire.stats.frames_read == 3


async def test_a_bot_that_keeps_up_gets_each_frame_as_it_came() -> None:
    wire = Wire()
    got: list[int] = []
    reader = wire.audio(sample_rate=RATE)
    for index in range(3):
        wire._receive_audio(bytes([index]) * FRAME)
        frame = await anext(reader)
        got.append(len(frame.pcm))
    await reader.aclose()
    assert got == [FRAME] * 3
