"""What a flaky or hostile peer sends mid-call: skipped and logged, never fatal to the call, and
never felt by the other calls on the server."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from runner.audio import dominant_frequency, tone
from runner.smoke.callers.telephony import CALLERS, TwilioCaller
from runner.transports.base import Dtmf, MarkReached
from telephony.support import ALL, PhoneBot

from conftest import as_bot, make_config, serve, wait_for


def junk(provider: str, phone) -> list[str | bytes]:
    """Frames a broken peer might send once the stream runs: none of them may end the call."""
    frames: list[str | bytes] = ["not json", "[1, 2]", '{"event": "bogus"}', phone.start_messages()[-1],
                                 '{"event": "dtmf", "dtmf": {}}']
    if provider == "vonage":
        return [*frames, b"\x01\x02\x03", '{"event": "websocket:notify", "payload": {}}']
    truncated = json.loads(phone.media_message(b"\x7f" * 160))
    media = truncated.get("media")
    media["payload"] = media["payload"][:-3]  # cut mid-group: not valid base64 any more
    return [*frames, json.dumps(truncated), b"\x00\x01",
            json.dumps({**truncated, "media": {**media, "payload": 12}})]


@pytest.mark.parametrize("provider", list(CALLERS))
async def test_garbage_mid_call_is_logged_and_skipped(provider: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    bot = PhoneBot()
    async with serve(make_config("dev", transport=ALL), as_bot(bot)) as served:
        phone = CALLERS[provider]()
        await phone.connect(f"{served.ws}/ws")
        frames = junk(provider, phone)
        with caplog.at_level(logging.WARNING, "runner.telephony"):
            for frame in frames:
                await phone.send(frame)
            rate = phone.audio.sample_rate
            await phone.send_audio(tone(1000, 0.5, rate).pcm)
            await phone.send_dtmf("1")
            await wait_for(lambda: MarkReached("m1") in bot.events)
            await phone.wait_heard(0.4)
        assert abs(dominant_frequency(bytes(phone.heard), rate) - 1000) < 10
        assert Dtmf("1") in bot.events and served.sessions.active
        skipped = [r for r in caplog.records if r.getMessage().startswith("skipped a")]
        assert len(skipped) == len(frames)
        await phone.hang_up()


async def test_a_flood_of_bad_messages_is_logged_a_few_times_then_counted(
        caplog: pytest.LogCaptureFixture) -> None:
    async with serve(make_config("dev", transport="twilio"), as_bot(PhoneBot())) as served:
        phone = TwilioCaller()
        await phone.connect(f"{served.ws}/ws")
        await wait_for(lambda: bool(served.sessions.active))
        with caplog.at_level(logging.WARNING, "runner.telephony"):
            for _ in range(50):
                await phone.send("{}")
            await phone.hang_up()
            await wait_for(lambda: not served.sessions.active)
        messages = [r.getMessage() for r in caplog.records]
        assert sum(m.startswith("skipped a twilio message") for m in messages) == 10
        assert "skipped 50 unusable messages on this call" in messages


async def test_stop_ends_the_session_and_later_messages_change_nothing() -> None:
    bot = PhoneBot()
    async with serve(make_config("dev", transport="twilio"), as_bot(bot)) as served:
        phone = TwilioCaller()
        await phone.connect(f"{served.ws}/ws")
        await wait_for(lambda: bool(bot.transports))
        await phone.send(phone.stop_frame() or "")
        await phone.send_audio(tone(440, 0.1, 8000).pcm)  # out of order: after stop
        await wait_for(lambda: not served.sessions.active)
        assert served.sessions.outcomes["twilio:client_left"] == 1
        assert bot.transport.end_reason == "twilio stopped the stream"
        await phone.close()


async def test_a_mark_we_never_sent_is_ignored() -> None:
    bot = PhoneBot()
    async with serve(make_config("dev", transport="twilio"), as_bot(bot)) as served:
        phone = TwilioCaller()
        await phone.connect(f"{served.ws}/ws")
        await phone.send(phone.confirm_frame("never-sent"))
        await phone.send_dtmf("1")
        await wait_for(lambda: MarkReached("m1") in bot.events)
        assert bot.marks() == [MarkReached("m1")]
        await phone.hang_up()
        assert served.sessions.outcomes["twilio:client_left"] == 1


async def test_a_broken_call_does_not_disturb_another() -> None:
    bot = PhoneBot()
    async with serve(make_config("dev", transport=ALL), as_bot(bot)) as served:
        broken, good = TwilioCaller(), CALLERS["plivo"]()
        await broken.connect(f"{served.ws}/ws")
        await good.connect(f"{served.ws}/ws")

        async def hostile() -> None:
            for index in range(200):
                await broken.send(["}{", '{"event": "media"}', b"\xff" * 9][index % 3])

        await asyncio.gather(hostile(), good.send_audio(tone(700, 0.5, 8000).pcm))
        await good.wait_heard(0.4)
        assert abs(dominant_frequency(bytes(good.heard), 8000) - 700) < 10
        assert len(served.sessions.active) == 2
        await broken.hang_up()
        await good.hang_up()
