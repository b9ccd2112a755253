"""runner.pipecat on phone calls: each provider's synthetic caller through the real server (the
REST half answered by a stand-in on 127.0.0.1). The example echoes at the caller's pitch;
speaking over the bot makes Pipecat interrupt and the provider get its `clear`; DTMF reaches the
pipeline; a pipeline that ends hangs the call up."""

from __future__ import annotations

import asyncio

import pytest

# A submodule, not "pipecat": without the extra, this very directory (tests/pipecat, on sys.path)
# would import as a namespace package of that name.
pytest.importorskip("pipecat.frames.frames",
                    reason="runner.pipecat needs the pipecat extra: pip install '.[pipecat]'")

from pipecat.frames.frames import InputDTMFFrame
from pipecat_speech import silence, utterance, voiced_seconds
from pipecat_support import EXAMPLE, PipecatBot
from telephony.support import PROVIDERS, dial, phone_config, provider_api

from runner.audio import dominant_frequency
from runner.transports.telephony.providers import HANGUPS

from conftest import as_bot, serve, wait_for


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_the_example_echoes_a_caller_at_their_pitch(provider: str) -> None:
    async with serve(phone_config(provider), EXAMPLE) as served:
        phone = await dial(served, provider)
        rate = phone.audio.sample_rate
        said = utterance(1.2, rate)
        await phone.send_audio(silence(0.3, rate) + said + silence(1.0, rate), realtime=True)
        await phone.send_audio(silence(1.5, rate), realtime=True)
        reply = bytes(phone.heard)
        assert abs(voiced_seconds(reply, rate) - voiced_seconds(said, rate)) < 0.25
        assert abs(dominant_frequency(reply, rate) - dominant_frequency(said, rate)) < 10
        await phone.hang_up()
        await wait_for(lambda: not served.sessions.active)
        assert phone.errors == []


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_speaking_over_the_bot_sends_the_provider_a_clear(provider: str) -> None:
    async with serve(phone_config(provider), EXAMPLE) as served:
        phone = await dial(served, provider)
        rate = phone.audio.sample_rate
        await phone.send_audio(silence(0.3, rate) + utterance(2.0, rate) + silence(0.6, rate),
                               realtime=True)
        await wait_for(lambda: len(phone.heard) > 0.3 * rate * 2, timeout=3)  # the bot talks
        assert phone.clears == 0
        await phone.send_audio(utterance(0.8, rate), realtime=True)  # ... and is talked over
        await wait_for(lambda: phone.clears >= 1, timeout=3)
        played = len(phone.heard) / 2 / rate
        assert played < 1.7  # the playback of a 2 s turn stopped short
        await phone.hang_up()
        assert phone.errors == []


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_dtmf_reaches_the_pipeline_and_its_end_hangs_up_the_call(provider: str) -> None:
    bot = PipecatBot()
    async with provider_api() as api, \
            serve(phone_config(provider, api_url=api.url), as_bot(bot)) as served:
        phone = await dial(served, provider)
        await phone.send_dtmf("5")
        await wait_for(lambda: [f.button.value for f in bot.of_type(InputDTMFFrame)] == ["5"])
        await phone.send_dtmf("9")  # the test bot ends its pipeline
        await phone.wait_closed(timeout=6)
        assert phone.close_reason == "the pipeline ended"
        await wait_for(lambda: bot.returned and not served.sessions.active)
        # The provider's REST hang-up, where it has one (Exotel's applet ends with the socket).
        assert len(api.requests) == (provider in HANGUPS)
        if provider == "twilio":
            assert api.requests[0].body == b"Status=completed"
        assert phone.errors == []
        await asyncio.sleep(0)
