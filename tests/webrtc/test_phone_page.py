"""The page's Phone mode, driven in headless Chromium with a fake microphone: for each provider
the browser calls `/ws/<provider>` in that provider's protocol, the bot hears it, the page hears
the bot's echo at 8 kHz, a keypad press reaches the bot as `Dtmf`, a mark is confirmed once
played, and hanging up ends the session."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from runner.audio import rms, tone
from runner.transports.base import Dtmf, Event, MarkReached, Transport
from runner.transports.telephony.formats import AudioFormat, Encoding

from conftest import as_bot, make_config, serve, wait_for

CONNECTED = '#state[data-state="connected"]'


class Recorder:
    """A bot that echoes the caller's audio, records its events, and answers a DTMF digit with
    a tone and a mark (which the page confirms once the tone has played); `0` clears a long
    answer, `#` hangs up."""

    def __init__(self) -> None:
        self.transports: list[Transport] = []
        self.events: list[Event] = []
        self.loud_frames = 0

    async def run(self, transport: Transport) -> None:
        self.transports.append(transport)
        events = asyncio.create_task(self._events(transport))
        try:
            async for frame in transport.audio(sample_rate=8000):
                if rms(frame.pcm) > 0.05:  # of full scale
                    self.loud_frames += 1
                await transport.send_audio(frame)
        finally:
            events.cancel()

    async def _events(self, transport: Transport) -> None:
        async for event in transport.events():
            self.events.append(event)
            if event == Dtmf("#"):
                await transport.hangup()
            elif event == Dtmf("0"):  # a long answer, interrupted
                await transport.send_audio(tone(300, 3.0, 8000))
                await transport.mark("long")
                await asyncio.sleep(0.5)
                await transport.clear_audio()
            elif isinstance(event, Dtmf):
                await transport.send_audio(tone(440, 0.2, 8000))
                await transport.mark(f"after-{event.digit}")


@pytest.mark.parametrize("choice", ["twilio", "telnyx", "telnyx:alaw", "plivo", "exotel",
                                    "vonage"])
async def test_a_phone_call_from_the_page(browser_page: Any, choice: str) -> None:
    page = browser_page
    provider = choice.split(":")[0]
    bot = Recorder()
    async with serve(make_config("dev", transport="webrtc,telephony,vonage"), as_bot(bot.run)) as served:
        await page.goto(served.http + "/")
        await page.wait_for_selector("#mode", state="visible")
        await page.check('input[name="mode"][value="phone"]')
        await page.select_option("#provider", choice)
        assert await page.text_content("#connect") == "Call"
        await page.click("#connect")
        await page.wait_for_selector(CONNECTED, timeout=15000)
        assert await page.text_content("#connect") == "Hang up"

        await wait_for(lambda: bot.loud_frames > 10, timeout=10)  # the bot hears the beeps
        session = bot.transports[0].session
        assert session.kind == provider
        await page.wait_for_function(  # and the page hears them echoed, at 8 kHz
            "runnerPage.call.heardSamples > 8000 && runnerPage.peaks.output.level > 0.3",
            timeout=10000)

        await page.click('#keypad button:text-is("5")')
        await wait_for(lambda: Dtmf("5") in bot.events, timeout=5)
        await wait_for(lambda: MarkReached("after-5") in bot.events, timeout=5)

        await page.click("#connect")  # Hang up
        await page.wait_for_selector('#state[data-state="idle"]')
        await wait_for(lambda: not served.sessions.active, timeout=5)
        assert bot.transports[0].ended and len(bot.transports) == 1


@pytest.mark.parametrize("provider", ["twilio", "plivo", "vonage"])
async def test_a_clear_stops_the_page_playing(browser_page: Any, provider: str) -> None:
    page = browser_page
    bot = Recorder()
    async with serve(make_config("dev", transport=f"webrtc,{provider}"), as_bot(bot.run)) as served:
        await page.goto(served.http + "/")
        await page.wait_for_selector("#mode", state="visible")
        await page.check('input[name="mode"][value="phone"]')
        await page.click("#connect")
        await page.wait_for_selector(CONNECTED, timeout=15000)
        await page.click('#keypad button:text-is("0")')
        await page.wait_for_selector('#log li:has-text("the bot cleared its audio")', timeout=5000)
        # The 3 s answer never plays out: its mark is settled as the provider settles it.
        if provider == "twilio":  # Twilio reports a cleared mark as reached
            await wait_for(lambda: any(isinstance(event, MarkReached) and event.name == "long"
                                       for event in bot.events), timeout=5)
        await asyncio.sleep(1.0)
        assert not [event for event in bot.events
                    if isinstance(event, MarkReached) and event.name == "long"
                    and not event.cleared]
        await page.click("#connect")
        await wait_for(lambda: not served.sessions.active, timeout=5)


async def test_the_bot_hangs_up_on_the_page(browser_page: Any) -> None:
    page = browser_page
    bot = Recorder()
    async with serve(make_config("dev", transport="webrtc,twilio"), as_bot(bot.run)) as served:
        await page.goto(served.http + "/")
        await page.wait_for_selector("#mode", state="visible")
        await page.check('input[name="mode"][value="phone"]')
        await page.click("#connect")
        await page.wait_for_selector(CONNECTED, timeout=15000)
        await page.screenshot(path="/tmp/phone-page.png")
        await page.click('#keypad button:text-is("#")')
        await page.wait_for_selector('#state[data-state="idle"]', timeout=5000)
        await wait_for(lambda: not served.sessions.active, timeout=5)
        assert await page.text_content("#connect") == "Call"
        print(await page.text_content("#state"))


async def test_phone_mode_shows_only_when_ws_is_served(browser_page: Any) -> None:
    page = browser_page
    bot = Recorder()
    async with serve(make_config("dev"), as_bot(bot.run)) as served:
        async with httpx.AsyncClient(base_url=served.http) as http:
            config = (await http.get("/page/config")).json()
            assert config["phone"] == [] and config["livekit"] is False
        await page.goto(served.http + "/")
        await page.wait_for_timeout(500)
        assert await page.is_hidden("#mode") and await page.is_hidden("#keypad")
    async with serve(make_config("dev", transport="webrtc,twilio"), as_bot(bot.run)) as served:
        await page.goto(served.http + "/")
        await page.wait_for_selector("#mode", state="visible")
        options = await page.eval_on_selector_all("#provider option", "os => os.map(o => o.value)")
        assert options == ["twilio"]


async def test_the_page_codecs_match_the_server(browser_page: Any) -> None:
    """The page's G.711 and L16 against the server's: what one encodes the other decodes."""
    page = browser_page
    bot = Recorder()
    samples = [*range(-32768, 32768, 97), 32767, 0, -1, 1]
    pcm = b"".join(value.to_bytes(2, "little", signed=True) for value in samples)
    async with serve(make_config("dev"), as_bot(bot.run)) as served:
        await page.goto(served.http + "/")
        for name, encoding in (("mulaw", Encoding.MULAW), ("alaw", Encoding.ALAW),
                               ("l16", Encoding.L16)):
            server = AudioFormat(encoding, 8000)
            encoded, decoded = await page.evaluate(
                """async ([name, samples, bytes]) => {
                  const phone = await import("/page/phone.js");
                  return [[...phone.encode(name, Int16Array.from(samples))],
                          [...phone.decode(name, Uint8Array.from(bytes))]];
                }""", [name, samples, list(server.encode(pcm))])
            assert bytes(encoded) == server.encode(pcm), name
            assert decoded == list(memoryview(server.decode(server.encode(pcm))).cast("h")), name
