"""A bot file written for Pipecat's own development runner (bots/pipecat_unchanged.py: `bot(
runner_args)` and `create_transport`) runs under runner unchanged: over plain WebSocket, calls
from the four providers Pipecat's runner serves, and WebRTC, its reply comes back at the caller's
pitch and length (on Exotel in the chunks Exotel plays smoothly, runner.regroup)."""

from __future__ import annotations

import asyncio

import pytest

# A submodule, not "pipecat": without the extra, this very directory (tests/pipecat, on sys.path)
# would import as a namespace package of that name.
pytest.importorskip("pipecat.frames.frames",
                    reason="runner.pipecat needs the pipecat extra: pip install '.[pipecat]'")

import websockets
from pipecat_speech import silence, utterance, voiced_seconds
from telephony.support import dial, phone_config

from runner.audio import dominant_frequency
from runner.config import ConfigError
from runner.loader import load_bot, takes_runner_args
from runner.serve import serving_app

from conftest import ROOT, collect, make_config, serve, stream, wait_for

RATE = 16000
BOT = load_bot(str(ROOT / "bots" / "pipecat_unchanged.py"))


def assert_echo(reply: bytes, said: bytes, rate: int) -> None:
    assert abs(voiced_seconds(reply, rate) - voiced_seconds(said, rate)) < 0.3
    assert abs(dominant_frequency(reply, rate) - dominant_frequency(said, rate)) < 10


def test_a_pipecat_runner_bot_is_recognised_by_its_parameter() -> None:
    from pipecat.runner.types import RunnerArguments

    async def annotated(args: RunnerArguments) -> None: ...
    async def named(runner_args) -> None: ...
    async def plain(transport) -> None: ...

    assert BOT.pipecat
    assert takes_runner_args(annotated) and takes_runner_args(named)
    assert not takes_runner_args(plain)


def test_a_transport_pipecat_cannot_hand_it_is_refused_at_start() -> None:
    with pytest.raises(ConfigError, match="not vonage; pass --transport twilio"):
        serving_app(phone_config("twilio,vonage"), BOT)


async def test_plain_websocket_plays_each_turn_back() -> None:
    async with serve(make_config(transport="websocket"), BOT) as served:
        async with websockets.connect(f"{served.ws}/ws-client?sample_rate={RATE}") as ws:
            said = utterance(1.2, RATE)
            reader = asyncio.create_task(collect(ws, 5.0))
            await stream(ws, silence(0.3) + said + silence(1.0))
            await stream(ws, silence(2.0))
            heard, _ = await reader
        assert_echo(bytes(heard), said, RATE)
        await wait_for(lambda: not served.sessions.active)


@pytest.mark.parametrize("provider", ["twilio", "telnyx", "plivo", "exotel"])
async def test_a_phone_call_sees_its_first_messages_and_is_echoed(
        provider: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # What Pipecat's serializers hang up with (runner passes its own settings on).
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TELNYX_API_KEY", "PLIVO_AUTH_ID",
                 "PLIVO_AUTH_TOKEN"):
        monkeypatch.setenv(name, "placeholder")
    async with serve(phone_config(provider), BOT) as served:
        phone = await dial(served, provider)
        rate = phone.audio.sample_rate
        said = utterance(1.2, rate)
        await phone.send_audio(silence(0.3, rate) + said + silence(1.0, rate), realtime=True)
        await phone.send_audio(silence(1.5, rate), realtime=True)
        assert_echo(bytes(phone.heard), said, rate)
        session = served.sessions.status()[0]
        assert session["kind"] == provider
        await phone.hang_up()
        await wait_for(lambda: not served.sessions.active)
        assert phone.errors == []


async def test_webrtc_through_pipecats_own_connection() -> None:
    pytest.importorskip("aiortc", reason="the webrtc extra is not installed")
    from runner.smoke.callers.webrtc import RATE as WEBRTC_RATE
    from runner.smoke.callers.webrtc import Client

    # --idle-timeout watches the RTP packets of Pipecat's peer: a live call is never idle.
    async with serve(make_config("dev", idle_timeout="1"), BOT) as served:
        client = Client(served.http)
        await client.offer()
        await client.wait_connected()
        try:
            said = utterance(1.2, WEBRTC_RATE)
            client.mic.play(silence(0.3, WEBRTC_RATE) + said + silence(1.0, WEBRTC_RATE))
            await asyncio.sleep(4.5)
            assert_echo(b"".join(pcm for _, pcm in client.audio), said, WEBRTC_RATE)
            assert served.sessions.active
        finally:
            await client.close()
        await wait_for(lambda: not served.sessions.active, timeout=10)


async def test_idle_timeout_watches_the_connection_of_a_pipecat_runner_bot() -> None:
    """Runner sees no audio of such a bot, so it watches the socket's messages: a caller that
    talks is never idle, one that goes quiet is ended."""
    async with serve(make_config(transport="websocket", idle_timeout="1"), BOT) as served:
        async with websockets.connect(f"{served.ws}/ws-client?sample_rate={RATE}") as ws:
            await stream(ws, silence(2.0))  # twice the limit, talking all along
            assert served.sessions.active
            started = asyncio.get_running_loop().time()
            await asyncio.wait_for(ws.wait_closed(), 5)  # ... then nothing either way
            assert asyncio.get_running_loop().time() - started < 3
        await wait_for(lambda: not served.sessions.active)
        assert dict(served.sessions.outcomes) == {"websocket:timeout": 1}
