"""runner.handover's ReplayWebSocket: a Pipecat runner bot reads the messages runner's detection
already read, then the rest of the call; only those first messages are ever kept."""

from __future__ import annotations

from starlette.types import Message
from starlette.websockets import WebSocket

from runner.handover import ReplayWebSocket


def text(index: int) -> Message:
    return {"type": "websocket.receive", "text": f"message {index}"}


async def test_the_bot_reads_the_detected_messages_again_and_nothing_more_is_kept() -> None:
    incoming = [{"type": "websocket.connect"}, *(text(i) for i in range(500))]

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        pass

    socket = WebSocket({"type": "websocket", "path": "/ws", "headers": []}, receive, send)
    await socket.accept()
    recording = ReplayWebSocket(socket, record=True)
    assert [await recording.receive() for _ in range(2)] == [text(0), text(1)]  # detection
    bot_socket = recording.replaying()
    assert [await bot_socket.receive() for _ in range(500)] == [text(i) for i in range(500)]
    assert recording.recorded == []  # the call's messages went to the bot, not into a list
    assert bot_socket.messages == 498  # what it took from the call (the two replayed aside)
