"""Each provider's codec against the message shapes of PROTOCOLS.md (sections 1.2-5)."""

from __future__ import annotations

import base64
import json

import pytest

from runner.audio import alaw_encode, tone, ulaw_encode
from runner.transports.telephony.codec import Audio, Digit, Malformed, Played, Stopped, loads
from runner.transports.telephony.exotel import ExotelCodec
from runner.transports.telephony.formats import AudioFormat, Encoding, encoding_named, rate_in
from runner.transports.telephony.plivo import PlivoCodec
from runner.transports.telephony.telnyx import TelnyxCodec
from runner.transports.telephony.twilio import TwilioCodec
from runner.transports.telephony.vonage import VonageCodec

PCM = tone(440, 0.02, 8000).pcm
B64 = base64.b64encode(ulaw_encode(PCM)).decode()

TWILIO_START = {"event": "start", "sequenceNumber": "1", "streamSid": "MZ01", "start": {
    "accountSid": "AC01", "streamSid": "MZ01", "callSid": "CA01", "tracks": ["inbound"],
    "customParameters": {"session": "9f3c"},
    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}
TELNYX_START = {"event": "start", "sequence_number": "1", "stream_id": "s-1", "start": {
    "user_id": "u-1", "call_control_id": "v3:abc", "call_session_id": "cs", "from": "+1555",
    "to": "+1666", "tags": [], "client_state": None, "custom_parameters": {"k": "v"},
    "media_format": {"encoding": "PCMA", "sample_rate": 8000, "channels": 1}}}
PLIVO_START = {"event": "start", "sequenceNumber": 1, "start": {
    "callId": "c-1", "streamId": "s-1", "accountId": "MA01", "tracks": ["inbound"],
    "mediaFormat": {"encoding": "audio/x-l16", "sampleRate": 16000}},
    "extra_headers": "session=9f3c,bot=supporten"}
EXOTEL_START = {"event": "start", "sequence_number": "1", "stream_sid": "es", "start": {
    "stream_sid": "es", "call_sid": "ec", "account_sid": "ea", "from": "0800", "to": "0900",
    "custom_parameters": {"lang": "hi"},
    "media_format": {"encoding": "audio/x-raw", "sample_rate": "8000", "bit_rate": "16"}}}
VONAGE_START = {"event": "websocket:connected", "content-type": "audio/l16;rate=16000",
                "uuid": "vu", "from": "1555", "to": "1666", "lang": "en"}


def test_starts_are_read_into_call_format_and_parameters() -> None:
    twilio = TwilioCodec.parse_start(TWILIO_START)
    assert (twilio.call.call_id, twilio.call.stream_id, twilio.call.account_id) == (
        "CA01", "MZ01", "AC01")
    assert twilio.audio == AudioFormat(Encoding.MULAW, 8000) and twilio.parameters == {
        "session": "9f3c"}
    telnyx = TelnyxCodec.parse_start(TELNYX_START)
    assert (telnyx.call.call_id, telnyx.call.stream_id, telnyx.call.from_number) == (
        "v3:abc", "s-1", "+1555")
    assert telnyx.audio == AudioFormat(Encoding.ALAW, 8000)
    plivo = PlivoCodec.parse_start(PLIVO_START)
    assert plivo.audio == AudioFormat(Encoding.L16, 16000)
    assert plivo.parameters == {"session": "9f3c", "bot": "supporten"}
    exotel = ExotelCodec.parse_start(EXOTEL_START)
    assert exotel.audio == AudioFormat(Encoding.L16, 8000) and exotel.call.to_number == "0900"
    vonage = VonageCodec.parse_start(VONAGE_START)
    assert (vonage.call.call_id, vonage.audio.sample_rate, dict(vonage.parameters)) == (
        "vu", 16000, {"lang": "en"})


def test_detection_key_sets_are_disjoint() -> None:
    starts = [TWILIO_START, TELNYX_START, PLIVO_START, EXOTEL_START, VONAGE_START]
    codecs = [TwilioCodec, TelnyxCodec, PlivoCodec, ExotelCodec, VonageCodec]
    for index, start in enumerate(starts):
        assert [codec.is_start(start) for codec in codecs] == [i == index for i in range(5)]


def test_outbound_messages_are_exactly_the_documented_shapes() -> None:
    twilio = TwilioCodec(TwilioCodec.parse_start(TWILIO_START))
    assert json.loads(twilio.media(PCM)) == {"event": "media", "streamSid": "MZ01",
                                             "media": {"payload": B64}}
    assert json.loads(twilio.mark("utt-17")) == {"event": "mark", "streamSid": "MZ01",
                                                 "mark": {"name": "utt-17"}}
    assert json.loads(twilio.clear()) == {"event": "clear", "streamSid": "MZ01"}
    telnyx = TelnyxCodec(TelnyxCodec.parse_start(TELNYX_START))
    assert json.loads(telnyx.media(PCM)) == {"event": "media", "media": {
        "payload": base64.b64encode(alaw_encode(PCM)).decode()}}
    assert json.loads(telnyx.mark("m")) == {"event": "mark", "mark": {"name": "m"}}
    assert json.loads(telnyx.clear()) == {"event": "clear"}
    plivo = PlivoCodec(PlivoCodec.parse_start(PLIVO_START))
    assert json.loads(plivo.media(PCM)) == {"event": "playAudio", "media": {
        "contentType": "audio/x-l16", "sampleRate": 16000,
        "payload": base64.b64encode(PCM).decode()}}
    assert json.loads(plivo.mark("m")) == {"event": "checkpoint", "streamId": "s-1", "name": "m"}
    assert json.loads(plivo.clear()) == {"event": "clearAudio", "streamId": "s-1"}
    exotel = ExotelCodec(ExotelCodec.parse_start(EXOTEL_START))
    assert json.loads(exotel.media(PCM)) == {"event": "media", "stream_sid": "es", "media": {
        "payload": base64.b64encode(PCM).decode()}}
    assert json.loads(exotel.mark("m")) == {"event": "mark", "stream_sid": "es",
                                            "mark": {"name": "m"}}
    assert json.loads(exotel.clear()) == {"event": "clear", "stream_sid": "es"}
    vonage = VonageCodec(VonageCodec.parse_start(VONAGE_START))
    assert vonage.media(PCM) == PCM
    assert json.loads(vonage.mark("m")) == {"action": "notify", "payload": {"name": "m"}}
    assert json.loads(vonage.clear()) == {"action": "clear"}



def test_media_text_is_json_dumps_byte_for_byte() -> None:
    """The per-stream template must write exactly what json.dumps would, odd stream ids included."""
    start = {**TWILIO_START, "start": {**TWILIO_START["start"], "streamSid": 'M"Z\\é<payload>'}}
    twilio = TwilioCodec(TwilioCodec.parse_start(start))
    plivo = PlivoCodec(PlivoCodec.parse_start(PLIVO_START))
    for codec, payload in ((twilio, B64), (plivo, base64.b64encode(PCM).decode())):
        expected = json.dumps(codec.media_message(payload), separators=(",", ":"))
        assert codec.media(PCM) == expected
    assert json.loads(twilio.media(PCM))["streamSid"] == 'M"Z\\é<payload>'



@pytest.mark.parametrize("frame", ['{"event":"media"}', ' {"a": [1]}\n', '{"a":1}x', "[1]", "", "x"])
def test_loads_is_json_loads(frame: str) -> None:
    try:
        expected: object = json.loads(frame)
    except ValueError as error:
        with pytest.raises(ValueError, match=str(error).replace("(", r"\(").replace(")", r"\)")):
            loads(frame)
    else:
        assert loads(frame) == expected


def test_inbound_messages_become_events() -> None:
    twilio = TwilioCodec(TwilioCodec.parse_start(TWILIO_START))
    media = {"event": "media", "sequenceNumber": "2", "streamSid": "MZ01",
             "media": {"track": "inbound", "chunk": "1", "timestamp": "5", "payload": B64}}
    event = twilio.parse(media)
    assert isinstance(event, Audio) and len(event.pcm) == len(PCM)
    assert twilio.parse({**media, "media": {**media["media"], "track": "outbound"}}) is None
    for track in (None, "inbound_track", True):  # absent, Telnyx's name, not a name at all
        assert twilio.parse({**media, "media": {**media["media"], "track": track}}) == event
    assert twilio.parse({**media, "media": {**media["media"], "track": 7}}) is None  # not ours
    assert twilio.parse({"event": "dtmf", "dtmf": {"track": "inbound_track",
                                                   "digit": "7"}}) == Digit("7")
    assert twilio.parse({"event": "mark", "mark": {"name": "utt"}}) == Played("utt")
    assert isinstance(twilio.parse({"event": "stop", "stop": {}}), Stopped)
    plivo = PlivoCodec(PlivoCodec.parse_start(PLIVO_START))
    assert plivo.parse({"event": "playedStream", "streamId": "s-1", "name": "n"}) == Played("n")
    assert plivo.parse({"event": "clearedAudio", "streamId": "s-1"}) is None
    exotel = ExotelCodec(ExotelCodec.parse_start(EXOTEL_START))
    assert exotel.parse({"event": "stop", "stop": {"reason": "callended"}}) == Stopped(
        "the caller hung up")
    vonage = VonageCodec(VonageCodec.parse_start(VONAGE_START))
    assert vonage.parse({"event": "websocket:dtmf", "digit": "5"}) == Digit("5")
    assert vonage.parse({"event": "websocket:dtmf", "dtmf": {"digit": "#"}}) == Digit("#")
    assert vonage.parse({"event": "websocket:notify", "payload": {"name": "n"}}) == Played("n")
    assert vonage.parse_binary(PCM) == Audio(PCM)


@pytest.mark.parametrize(("message", "problem"), [
    ({"event": "media", "media": {"payload": B64[:-3]}}, "not valid base64"),
    ({"event": "media", "media": {}}, "without a payload"),
    ({"event": "media"}, "without a payload"),
    ({"event": "media", "media": "AAAA"}, "without a payload"),
    ({"event": "media", "media": {"payload": 1234}}, "without a payload"),
    ({"event": "dtmf", "dtmf": {}}, "dtmf without a digit"),
    ({"event": "mark"}, "mark without a name"),
    ({"event": "start"}, "start after the stream started"),
    ({"event": "telepathy"}, "unknown event 'telepathy'"),
])
def test_unusable_messages_are_malformed(message: dict, problem: str) -> None:
    with pytest.raises(Malformed, match=problem):
        TwilioCodec(TwilioCodec.parse_start(TWILIO_START)).parse(message)


def test_telnyx_errors_and_odd_l16_lengths_are_malformed() -> None:
    telnyx = TelnyxCodec(TelnyxCodec.parse_start(TELNYX_START))
    with pytest.raises(Malformed, match="telnyx reported error 100003: malformed frame"):
        telnyx.parse({"event": "error", "payload": {"code": 100003, "detail": "malformed frame"}})
    vonage = VonageCodec(VonageCodec.parse_start(VONAGE_START))
    with pytest.raises(Malformed, match="not a whole number of samples"):
        vonage.parse_binary(b"\x00\x01\x02")


@pytest.mark.parametrize(("start", "problem"), [
    ({**TWILIO_START, "start": {**TWILIO_START["start"], "mediaFormat": {
        "encoding": "audio/opus", "sampleRate": 48000}}}, "unsupported audio encoding"),
    ({**EXOTEL_START, "start": {**EXOTEL_START["start"], "media_format": {
        "sample_rate": "fast"}}}, "is not a number"),
    ({**PLIVO_START, "start": {**PLIVO_START["start"], "mediaFormat": {
        "encoding": "audio/x-l16", "sampleRate": 11025}}}, "unsupported sample rate"),
])
def test_starts_we_cannot_play_are_refused(start: dict, problem: str) -> None:
    codec = next(c for c in (TwilioCodec, PlivoCodec, ExotelCodec) if c.is_start(start))
    with pytest.raises(Malformed, match=problem):
        codec.parse_start(start)


def test_formats_decode_and_encode_every_encoding() -> None:
    assert encoding_named("audio/x-mulaw;rate=8000") is Encoding.MULAW
    assert encoding_named("PCMA") is Encoding.ALAW and encoding_named("G722") is None
    assert rate_in("audio/l16;rate=16000") == 16000 and rate_in("audio/l16") is None
    big_endian = AudioFormat(Encoding.L16_BE, 8000)
    assert big_endian.encode(b"\x01\x02") == b"\x02\x01"
    assert big_endian.decode(big_endian.encode(PCM)) == PCM
    for encoding in (Encoding.MULAW, Encoding.ALAW):
        audio = AudioFormat(encoding, 8000)
        assert len(audio.decode(audio.encode(PCM))) == len(PCM)
