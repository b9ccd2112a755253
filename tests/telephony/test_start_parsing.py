"""Start messages read strictly where the sound depends on it, liberally where only the wording
differs: Exotel's own Voicebot start (`"encoding": "base64"`) is an 8 kHz PCM16 call, through
the codec, through detection and through the real server on `/ws` and `/ws/exotel`."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import websockets
from fastapi import FastAPI, WebSocket

import runner
from runner.audio import dominant_frequency, tone
from runner.smoke.callers.phone import Data
from runner.smoke.callers.telephony import ExotelCaller
from runner.transports.telephony.codec import Audio, Codec, Malformed, b64encode, dumps
from runner.transports.telephony.exotel import ExotelCodec
from runner.transports.telephony.formats import AudioFormat, Encoding
from runner.transports.telephony.plivo import PlivoCodec
from runner.transports.telephony.telnyx import TelnyxCodec
from runner.transports.telephony.twilio import TwilioCodec
from runner.transports.telephony.vonage import VonageCodec
from telephony.support import PhoneBot, phone_config, serve_asgi, target

from conftest import as_bot, serve, wait_for

#: Exotel's Voicebot start as its own example writes it (the ids are ours): `media_format` names
#: the payload's transport (base64), not the codec, and its bit rate is 8000 Hz x 16 bits.
EXOTEL_DOCS_START = {
    "event": "start", "sequence_number": 1, "stream_sid": "b7c6a1f0d3e24c5b9e8f7a6d5c4b3a21",
    "start": {
        "stream_sid": "b7c6a1f0d3e24c5b9e8f7a6d5c4b3a21",
        "call_sid": "a1b2c3d4e5f60718293a4b5c6d7e8f90", "account_sid": "exotel1",
        "from": "09876543210", "to": "08012345678", "custom_parameters": {"lang": "hi"},
        "media_format": {"encoding": "base64", "sample_rate": "8000", "bit_rate": "128kbps"},
    },
}
PCM16_8K = AudioFormat(Encoding.L16, 8000)


class DocumentedExotel(ExotelCaller):
    """Exotel as its Voicebot documentation shows it: `connected`, then EXOTEL_DOCS_START."""

    def new_ids(self) -> tuple[str, str, str]:
        start = EXOTEL_DOCS_START["start"]
        return start["call_sid"], start["stream_sid"], start["account_sid"]

    def start_messages(self) -> list[Data]:
        return [dumps({"event": "connected"}), dumps(EXOTEL_DOCS_START)]


def with_format(start: dict[str, Any], key: str, media_format: dict[str, Any]) -> dict[str, Any]:
    """`start` with `start[key]` (the provider's media format object) replaced."""
    return {**start, "start": {**start["start"], key: media_format}}


def assumptions(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The log lines that say what a start left to assume."""
    return [message for message in (record.getMessage() for record in caplog.records)
            if "read as" in message or "assumed" in message]


def test_exotels_documented_start_is_8khz_pcm16_and_the_label_is_noted() -> None:
    start = ExotelCodec.parse_start(EXOTEL_DOCS_START)
    assert start.audio == PCM16_8K
    assert start.assumed == ("encoding label 'base64' read as l16",)
    assert start.parameters == {"lang": "hi"}
    pcm = tone(440, 0.1, 8000).pcm  # 16-bit little-endian, as Exotel sends it
    media = {"event": "media", "media": {"payload": b64encode(pcm)}}
    assert ExotelCodec(start).parse(media) == Audio(pcm)


TWILIO = {"event": "start", "streamSid": "MZ1", "start": {
    "streamSid": "MZ1", "callSid": "CA1", "accountSid": "AC1"}}
TELNYX = {"event": "start", "stream_id": "s1", "start": {"call_control_id": "v3:1"}}
PLIVO = {"event": "start", "start": {"streamId": "s1", "callId": "c1"}}
EXOTEL = {"event": "start", "stream_sid": "e1", "start": {"stream_sid": "e1", "call_sid": "c1"}}


@pytest.mark.parametrize(("codec", "start", "audio", "assumed"), [
    # Labels: case, MIME type or codec name, the base64 transport label, a rate in the label.
    (TwilioCodec, with_format(TWILIO, "mediaFormat", {"encoding": "MULAW", "sampleRate": "8000"}),
     AudioFormat(Encoding.MULAW, 8000), ()),
    (TelnyxCodec, with_format(TELNYX, "media_format", {"encoding": "pcma", "sample_rate": 8000.0}),
     AudioFormat(Encoding.ALAW, 8000), ()),
    (TelnyxCodec, with_format(TELNYX, "media_format", {"encoding": "audio/L16",
                                                       "sample_rate": "16000"}),
     AudioFormat(Encoding.L16_BE, 16000), ()),
    (PlivoCodec, with_format(PLIVO, "mediaFormat", {"encoding": "audio/x-l16;rate=16000"}),
     AudioFormat(Encoding.L16, 16000), ()),
    (PlivoCodec, with_format(PLIVO, "mediaFormat", {"encoding": "Audio/X-Mulaw",
                                                    "sampleRate": " 8000 Hz"}),
     AudioFormat(Encoding.MULAW, 8000), ()),
    (ExotelCodec, with_format(EXOTEL, "media_format", {"encoding": "AUDIO/X-RAW",
                                                       "sample_rate": 16000, "bit_rate": "16"}),
     AudioFormat(Encoding.L16, 16000), ()),
    (ExotelCodec, with_format(EXOTEL, "media_format", {"encoding": "base64",
                                                       "sample_rate": "24000"}),
     AudioFormat(Encoding.L16, 24000), ("encoding label 'base64' read as l16",)),
    (TwilioCodec, with_format(TWILIO, "mediaFormat", {"encoding": "base64", "sampleRate": 8000}),
     AudioFormat(Encoding.MULAW, 8000), ("encoding label 'base64' read as mulaw",)),
    # What the start leaves out: the provider's (or our answer's) format, said once.
    (TwilioCodec, TWILIO, AudioFormat(Encoding.MULAW, 8000),
     ("no encoding given, mulaw assumed", "no sample rate given, 8000 Hz assumed")),
    (ExotelCodec, with_format(EXOTEL, "media_format", {"sample_rate": "8000"}), PCM16_8K,
     ("no encoding given, l16 assumed",)),
])
def test_labels_are_read_liberally_and_assumptions_noted(
        codec: type[Codec], start: dict[str, Any], audio: AudioFormat,
        assumed: tuple[str, ...]) -> None:
    assert codec.is_start(start)
    parsed = codec.parse_start(start)
    assert (parsed.audio, parsed.assumed) == (audio, assumed)


def test_vonage_reads_its_rate_from_content_type_in_any_case() -> None:
    start = VonageCodec.parse_start({"event": "websocket:connected",
                                     "content-type": "Audio/L16; Rate=8000"})
    assert (start.audio, start.assumed) == (PCM16_8K, ())
    assert VonageCodec.audio_first_start().assumed  # audio before the start: the NCCO's rate


@pytest.mark.parametrize(("codec", "start", "problem"), [
    # What changes the sound stays strict, however loosely the rest is written.
    (TelnyxCodec, with_format(TELNYX, "media_format", {"encoding": "G722", "sample_rate": 16000}),
     "unsupported audio encoding 'G722'"),
    (PlivoCodec, with_format(PLIVO, "mediaFormat", {"encoding": "audio/x-l16;rate=16000",
                                                    "sampleRate": 8000}),
     "sample rate 8000 disagrees with encoding"),
    (ExotelCodec, with_format(EXOTEL, "media_format", {"encoding": "base64",
                                                       "sample_rate": "11025"}),
     "unsupported sample rate 11025"),
    (TwilioCodec, with_format(TWILIO, "mediaFormat", {"encoding": "audio/x-mulaw",
                                                      "sampleRate": "8000.5"}),
     "not a whole number"),
])
def test_a_codec_or_rate_we_cannot_play_is_refused(codec: type[Codec], start: dict[str, Any],
                                                  problem: str) -> None:
    with pytest.raises(Malformed, match=problem):
        codec.parse_start(start)


async def test_detection_reads_exotels_documented_start_as_8khz_pcm16(
        caplog: pytest.LogCaptureFixture) -> None:
    app = FastAPI()

    @app.websocket("/mine")
    async def mine(websocket: WebSocket) -> None:
        stream = await runner.parse_telephony_websocket(websocket, timeout=2)
        await websocket.send_text(json.dumps({
            "provider": stream.provider, "encoding": stream.start.audio.encoding,
            "rate": stream.start.audio.sample_rate, "call": stream.call.call_id}))

    with caplog.at_level(logging.INFO, "runner.telephony"):
        async with serve_asgi(app) as url:
            async with websockets.connect(url.replace("http", "ws") + "/mine") as ws:
                for data in DocumentedExotel().start_messages():
                    await ws.send(data)
                answer = json.loads(await ws.recv())
    assert answer == {"provider": "exotel", "encoding": "l16", "rate": 8000,
                      "call": EXOTEL_DOCS_START["start"]["call_sid"]}
    assert assumptions(caplog) == [
        f"exotel call {answer['call']}: encoding label 'base64' read as l16"]


@pytest.mark.parametrize("path", ["/ws", "/ws/exotel"])
async def test_exotels_documented_start_gets_the_echo_back_over_the_real_server(
        path: str, caplog: pytest.LogCaptureFixture) -> None:
    bot = PhoneBot()
    with caplog.at_level(logging.INFO, "runner.telephony"):
        async with serve(phone_config("exotel"), as_bot(bot)) as served:
            phone = DocumentedExotel()
            _, headers = await phone.dial(target(served))  # Basic auth, as the applet URL has it
            await phone.connect(served.ws + path, headers)
            await phone.send_audio(tone(1000, 0.6, 8000).pcm)
            await phone.wait_heard(0.5)
            assert abs(dominant_frequency(bytes(phone.heard), 8000) - 1000) < 10
            assert bot.transport.kind == "exotel" and bot.transport.wire_rate == 8000
            await phone.hang_up()
            await wait_for(lambda: not served.sessions.active)
    assert phone.errors == [] and phone.close_code != 1003
    assert served.sessions.outcomes["exotel:client_left"] == 1
    # Six media messages, one line about the label: per call, not per message.
    assert len(assumptions(caplog)) == 1
