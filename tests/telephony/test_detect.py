"""Provider detection on `WS /ws` and `/ws/<provider>`: every provider found from its own first
messages with nothing lost, and every way a socket can fail to be a stream closed with a reason."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from fastapi import FastAPI, WebSocket

import runner
from runner.audio import tone
from runner.smoke.callers.telephony import CALLERS, PlivoCaller, TelnyxCaller, TwilioCaller
from runner.transports.base import Transport
from telephony.support import ALL, PhoneBot, serve_asgi

from conftest import as_bot, make_config, serve, wait_for


class Recorder:
    """Keeps every inbound frame at the wire rate, so what arrives can be compared byte for byte."""

    __name__ = "recorder"

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.transports: list[Transport] = []

    async def __call__(self, transport: Transport) -> None:
        self.transports.append(transport)
        async for frame in transport.audio(sample_rate=transport.wire_rate):
            self.frames.append(frame.pcm)


def dev(transport: str = ALL, **flags: object):
    return make_config("dev", transport=transport, **flags)


async def closed_with(url: str, *frames: str | bytes) -> tuple[int | None, str]:
    """Send `frames` on a raw socket and report how the server closed it."""
    async with websockets.connect(url) as ws:
        for frame in frames:
            await ws.send(frame)
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        return ws.close_code, ws.close_reason


@pytest.mark.parametrize("provider", list(CALLERS))
async def test_each_provider_is_detected_and_its_first_audio_frame_kept(provider: str) -> None:
    bot = Recorder()
    async with serve(dev(), as_bot(bot)) as served:
        phone = CALLERS[provider]()
        await phone.connect(f"{served.ws}/ws")
        rate = phone.audio.sample_rate
        sent = [tone(300 * (index + 1), phone.frame_seconds, rate).pcm for index in range(3)]
        for pcm in sent:  # straight after the start, as providers do
            await phone.send_audio(pcm)
        expected = b"".join(phone.audio.decode(phone.audio.encode(pcm)) for pcm in sent)
        # Frames that reach the server together reach the bot joined (base.JOIN_SECONDS).
        await wait_for(lambda: len(b"".join(bot.frames)) == len(expected))
        assert b"".join(bot.frames) == expected
        assert bot.transports[0].kind == provider
        assert bot.transports[0].session.call.call_id == phone.call_id
        await phone.hang_up()


async def test_vonage_audio_before_websocket_connected_is_still_vonage_and_kept() -> None:
    bot = Recorder()
    async with serve(dev(), as_bot(bot)) as served:
        phone = CALLERS["vonage"]()
        await phone.connect(f"{served.ws}/ws", opening=False)
        first = tone(500, 0.02, 16000).pcm
        await phone.send_audio(first)
        await wait_for(lambda: len(bot.frames) == 1)
        assert bot.frames == [first]
        assert bot.transports[0].kind == "vonage" and bot.transports[0].wire_rate == 16000
        await phone.hang_up()


async def test_a_look_alike_speaks_through_the_providers_route() -> None:
    """SignalWire speaks Twilio's protocol: /ws/twilio reads it with Twilio's codec."""
    bot = PhoneBot()
    async with serve(dev("twilio"), as_bot(bot)) as served:
        phone = TwilioCaller()
        await phone.connect(f"{served.ws}/ws/twilio")
        await phone.send_dtmf("1")
        await wait_for(lambda: len(bot.marks()) == 1)
        await phone.hang_up()
        assert phone.errors == []


async def test_parse_telephony_websocket_serves_users_who_mount_their_own_route() -> None:
    app = FastAPI()

    @app.websocket("/mine")
    async def mine(websocket: WebSocket) -> None:
        stream = await runner.parse_telephony_websocket(websocket, timeout=2)
        await websocket.send_text(json.dumps({
            "provider": stream.provider, "call": stream.call.call_id,
            "rate": stream.start.audio.sample_rate, "parameters": dict(stream.parameters),
            "hint": stream.hint}))

    async with serve_asgi(app) as url:
        phone = TelnyxCaller(parameters={"campaign": "spring"})
        async with websockets.connect(url.replace("http", "ws") + "/mine") as ws:
            for frame in phone.start_messages():
                await ws.send(frame)
            answer = json.loads(await ws.recv())
    assert answer == {"provider": "telnyx", "call": phone.call_id, "rate": 8000,
                      "parameters": {"campaign": "spring"}, "hint": "telnyx"}


TWILIO = TwilioCaller()
TELNYX_G722 = TelnyxCaller()


@pytest.mark.parametrize(("path", "frames", "code", "reason"), [
    ("/ws", ["hello"], 1003, "first messages must be JSON"),
    ("/ws", ['{"event":"media","media":{"payload":""}}'], 1008,
     "expected a start message, got 'media'"),
    ("/ws", ['{"event":"connected"}', '{"event":"connected"}'], 1008,
     "expected a start message, got 'connected'"),
    ("/ws", ['{"event":"start","start":{"id":"x"}}'], 1008, "no provider recognises"),
    ("/ws", PlivoCaller().start_messages(), 1008, "plivo streams are not served here"),
    ("/ws/twilio", PlivoCaller().start_messages(), 1008, "not a twilio start message"),
    ("/ws/twilio", [b"\x00\x01"], 1003, "binary message before the twilio start"),
    ("/ws", [TELNYX_G722.start_messages()[0],
             TELNYX_G722.start_messages()[1].replace('"PCMU"', '"G722"')], 1003,
     "unsupported audio encoding 'G722'"),
])
async def test_sockets_that_are_not_streams_are_closed_with_the_reason(
        path: str, frames: list[str | bytes], code: int, reason: str) -> None:
    bot = PhoneBot()
    async with serve(dev("twilio,telnyx"), as_bot(bot)) as served:
        closed = await closed_with(served.ws + path, *frames)
        assert closed[0] == code and reason in closed[1]
        # ... and the server goes on serving calls.
        phone = TwilioCaller()
        await phone.connect(f"{served.ws}/ws")
        await phone.send_dtmf("1")
        await wait_for(lambda: len(bot.marks()) == 1)
        await phone.hang_up()
    assert len(bot.transports) == 1  # only the good call became a session


async def test_a_silent_socket_is_closed_after_the_detection_timeout() -> None:
    async with serve(dev("twilio", detect_timeout="0.3"), as_bot(PhoneBot())) as served:
        loop = asyncio.get_running_loop()
        started = loop.time()
        code, reason = await closed_with(f"{served.ws}/ws")
        assert code == 1008 and reason == "no start message within 0.3 s"
        assert 0.25 < loop.time() - started < 2
        # A caller that leaves before its start costs nothing either.
        async with websockets.connect(f"{served.ws}/ws") as ws:
            await ws.send(TWILIO.start_messages()[0])
        await asyncio.sleep(0.1)
        assert not served.sessions.active
