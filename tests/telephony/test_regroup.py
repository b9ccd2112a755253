"""runner.regroup: the audio a Pipecat runner bot sends on an Exotel call leaves in the chunks
Exotel plays smoothly (whole 20 ms units, 200 ms at least), the tail of an utterance padded with
silence; a clear drops what is held and other messages keep their order."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from starlette.types import Message
from starlette.websockets import WebSocket

from runner import regroup
from runner.regroup import ExotelRegrouping

RATE = 8000
UNIT = 320  # 20 ms at 8 kHz


async def regrouping() -> tuple[ExotelRegrouping, list[dict[str, Any]]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        if message["type"] == "websocket.send":
            sent.append(json.loads(message["text"]))

    socket = WebSocket({"type": "websocket", "path": "/ws", "headers": []}, receive, send)
    await socket.accept()
    return ExotelRegrouping(socket, [], RATE), sent


def media(pcm: bytes) -> str:
    return json.dumps({"event": "media", "stream_sid": "S1",
                       "media": {"payload": base64.b64encode(pcm).decode()}})


def payloads(sent: list[dict[str, Any]]) -> list[bytes]:
    return [base64.b64decode(event["media"]["payload"]) for event in sent
            if event["event"] == "media"]


async def test_chunks_leave_in_whole_units_of_at_least_200_ms() -> None:
    socket, sent = await regrouping()
    for index in range(12):  # 40 ms at a time, as Pipecat's output sends, with an odd length
        await socket.send_text(media(bytes([index]) * (640 + 5)))
    chunks = payloads(sent)
    assert chunks and all(len(c) % UNIT == 0 and len(c) >= 10 * UNIT for c in chunks)
    assert sent[0]["stream_sid"] == "S1"
    await asyncio.sleep(regroup.TAIL_AFTER + 0.05)  # the utterance ended: its tail goes out
    chunks = payloads(sent)
    assert all(len(c) % UNIT == 0 and len(c) >= 10 * UNIT for c in chunks)
    audio = b"".join(chunks)
    assert audio.rstrip(b"\0")[-645:] == bytes([11]) * 645  # nothing lost, silence after
    assert len(audio) - 12 * 645 < 10 * UNIT


async def test_a_clear_drops_what_is_held_and_other_messages_keep_their_order() -> None:
    socket, sent = await regrouping()
    await socket.send_text(media(bytes(1000)))
    await socket.send_text(json.dumps({"event": "clear", "stream_sid": "S1"}))
    assert [event["event"] for event in sent] == ["clear"]
    await socket.send_text(media(b"\1" * 1000))
    await socket.send_text(json.dumps({"event": "mark", "mark": {"name": "m"}}))
    assert [event["event"] for event in sent] == ["clear", "media", "mark"]
    assert payloads(sent)[0][:1000] == b"\1" * 1000 and len(payloads(sent)[0]) == 10 * UNIT
    await asyncio.sleep(regroup.TAIL_AFTER + 0.05)
    assert len(sent) == 3  # nothing was left to send


async def test_what_is_not_exotel_media_passes_unchanged() -> None:
    socket, sent = await regrouping()
    await socket.send_text(json.dumps({"event": "media", "media": {"payload": "not base64!"}}))
    await socket.send_text(json.dumps(["a", "list"]))
    assert sent == [{"event": "media", "media": {"payload": "not base64!"}}, ["a", "list"]]
