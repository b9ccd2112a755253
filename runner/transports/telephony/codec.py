"""A provider's media-stream protocol as data: what its messages mean, and ours in its words.

Every provider speaks a variation of one protocol (start, media, dtmf, mark, stop), so `Codec`
holds the shared reading and each provider module fills in its names. The transport never sees
a provider's JSON: it gets `Audio`, `Digit`, `Played` and `Stopped`, and hands back PCM16, mark
names and clears for the codec to phrase.
"""

from __future__ import annotations

import binascii
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

from runner.transports.base import CallInfo
from runner.transports.telephony.formats import (
    AudioFormat,
    Encoding,
    encoding_named,
    names_transport_only,
    rate_in,
)

RATES = (8000, 16000, 24000, 32000, 48000)
INBOUND_TRACKS = (None, "inbound", "inbound_track")
#: Stands for the payload while a media message's JSON is built; the payload is its last field.
PAYLOAD_SLOT = "<payload>"


class Malformed(Exception):
    """A message we cannot use; the call goes on without it (the reason is logged)."""


@dataclass(frozen=True)
class StreamStart:
    """What the first messages of a stream told us: the call, the audio format, custom data."""

    call: CallInfo
    audio: AudioFormat
    parameters: Mapping[str, str] = field(default_factory=dict)
    #: What the start left unsaid or put in other words, and what we took it to mean: logged
    #: once for the call, so a wrong guess can be found without logging every message.
    assumed: tuple[str, ...] = ()

    @property
    def provider(self) -> str:
        return self.call.provider


# The inbound events are not frozen: Audio is made fifty times a second and read once, and a
# frozen dataclass costs more to make.
@dataclass(slots=True)
class Audio:
    pcm: bytes


@dataclass(slots=True)
class Digit:
    digit: str


@dataclass(slots=True)
class Played:
    """The provider reports a mark we sent as reached (played, or dropped by a clear)."""

    name: str


@dataclass(slots=True)
class Stopped:
    reason: str


Inbound = Audio | Digit | Played | Stopped | None  # None: nothing for the bot (acks, keep-alives)


def dig(message: Any, *path: str) -> Any:
    """`message[path[0]][path[1]]...`, or None where a level is missing or not an object."""
    for key in path:
        if not isinstance(message, dict):
            return None
        message = message.get(key)
    return message


def text(message: Any, *path: str) -> str | None:
    """A field as text (providers write counters as strings or numbers); None when absent."""
    value = dig(message, *path)
    if value is None or isinstance(value, bool | dict | list):
        return None
    return str(value)


def sample_rate(value: Any) -> int | None:
    """A sample rate however a provider writes it (8000, "8000", 8000.0, "8000 Hz"); None when
    absent. Malformed when present but not a whole number: a guess would play the call at the
    wrong speed."""
    if value is None or value == "":
        return None
    written = str(value).strip().lower().removesuffix("hz").strip()
    try:
        number = float(written)
    except ValueError:
        raise Malformed(f"sample rate {value!r} is not a number") from None
    if isinstance(value, bool) or not number.is_integer():
        raise Malformed(f"sample rate {value!r} is not a whole number")
    return int(number)


def b64decode(value: Any) -> bytes:
    """Strict base64 (as `base64.b64decode(validate=True)`, without its wrapper: once a frame)."""
    if not isinstance(value, str):
        raise Malformed("media without a payload")
    try:
        return binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        raise Malformed(f"media payload is not valid base64 ({len(value)} characters)") from None


def b64encode(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def dumps(message: Mapping[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


_DECODER = json.JSONDecoder()


def loads(frame: str) -> Any:
    """`json.loads(frame)`, about twice as fast on a frame without surrounding whitespace (every
    provider's): `json.loads` runs two regular expressions around the parse. ValueError as it."""
    try:
        value, end = _DECODER.raw_decode(frame)
    except ValueError:
        return json.loads(frame)  # leading whitespace, or the error json.loads reports
    return value if end == len(frame) else json.loads(frame)


def string_map(value: Any) -> dict[str, str]:
    """Custom parameters as str -> str (providers send objects; anything else means none)."""
    if not isinstance(value, dict):
        return {}
    return {str(key): item if isinstance(item, str) else json.dumps(item)
            for key, item in value.items()}


@dataclass(frozen=True)
class StartFields:
    """Where one provider's `start` message keeps each fact (paths into its JSON)."""

    stream_id: tuple[str, ...]
    call_id: tuple[str, ...]
    account_id: tuple[str, ...]
    media_format: tuple[str, ...]
    encoding: str
    sample_rate: str
    parameters: tuple[str, ...]
    from_number: tuple[str, ...] | None = None
    to_number: tuple[str, ...] | None = None


class Codec(ABC):
    """One provider's side of one stream. Subclasses set the names; the shape is shared."""

    provider: ClassVar[str]
    #: Where the start message keeps the call and the format (Vonage, which has none, overrides
    #: `is_start` and `parse_start` instead).
    start_fields: ClassVar[StartFields]
    #: The stream's format where its start does not say: what our answer asks for, or the only
    #: format the provider streams.
    default_audio: ClassVar[AudioFormat]
    #: Whether the start's encoding label picks the codec. Not where the provider streams one
    #: encoding only (Exotel, Vonage: 16-bit PCM): the label is then a label, never a reason to
    #: refuse a call.
    label_picks_encoding: ClassVar[bool] = True
    #: Smallest outbound chunk the provider plays smoothly (Exotel: 200 ms); 0 = 20 ms frames.
    chunk_seconds: ClassVar[float] = 0.0
    #: Largest outbound message: frames due at the same tick leave in one message, up to this
    #: long (the providers that play messages of any length); 0 = one 20 ms frame per message.
    max_chunk_seconds: ClassVar[float] = 0.1
    #: Whether the provider echoes marks that a clear discarded (Twilio, Telnyx). Where it does
    #: not, or nobody has documented it, the transport reports those marks as cleared itself.
    confirms_cleared_marks: ClassVar[bool] = False
    #: The event that confirms a mark, and where its name is.
    played_event: ClassVar[str] = "mark"
    played_name: ClassVar[tuple[str, ...]] = ("mark", "name")
    #: Events that need no action (acks, the provider's own bookkeeping).
    quiet_events: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, start: StreamStart) -> None:
        self.start = start
        self.audio = start.audio

    @classmethod
    def is_start(cls, message: Mapping[str, Any]) -> bool:
        """Whether `message` is this provider's start (the key sets of PROTOCOLS.md section 6)."""
        fields = cls.start_fields
        return (message.get("event") == "start" and bool(dig(message, *fields.stream_id))
                and bool(dig(message, *fields.call_id)))

    @classmethod
    def parse_start(cls, message: Mapping[str, Any]) -> StreamStart:
        """The call and audio format from the start message; Malformed if they are unusable."""
        fields = cls.start_fields
        media_format = dig(message, *fields.media_format)
        call = CallInfo(
            provider=cls.provider,
            call_id=text(message, *fields.call_id),
            stream_id=text(message, *fields.stream_id),
            account_id=text(message, *fields.account_id),
            from_number=text(message, *fields.from_number) if fields.from_number else None,
            to_number=text(message, *fields.to_number) if fields.to_number else None,
        )
        audio, assumed = cls.read_format(text(media_format, fields.encoding),
                                         dig(media_format, fields.sample_rate))
        return StreamStart(call, audio, cls.start_parameters(message), assumed)

    @classmethod
    def read_format(cls, label: str | None, rate: Any) -> tuple[AudioFormat, tuple[str, ...]]:
        """The format from a start's encoding label and sample rate, and what had to be assumed.

        Strict about what changes the sound: a codec we cannot play, a rate we do not support, a
        label and a rate field that disagree are Malformed (the call is refused with the reason).
        Liberal about how it is written: case, `audio/x-mulaw` or `PCMU`, `"8000"` or 8000, a
        `;rate=` in the label, a missing field (the default, noted).
        """
        encoding, encoding_note = cls._encoding_labelled(label)
        value, rate_note = cls._rate_given(label, rate)
        return AudioFormat(encoding, value), tuple(filter(None, (encoding_note, rate_note)))

    @classmethod
    def _encoding_labelled(cls, label: str | None) -> tuple[Encoding, str | None]:
        default = cls.default_audio.encoding
        if not label:
            return default, f"no encoding given, {default} assumed"
        named = cls.encoding_for(label)
        if cls.label_picks_encoding and named is not None:
            return named, None
        if cls.label_picks_encoding and not names_transport_only(label):
            raise Malformed(f"unsupported audio encoding {label!r}")
        return default, None if named is default else f"encoding label {label!r} read as {default}"

    @classmethod
    def _rate_given(cls, label: str | None, rate: Any) -> tuple[int, str | None]:
        given, labelled = sample_rate(rate), rate_in(label) if label else None
        if given is not None and labelled is not None and given != labelled:
            raise Malformed(f"sample rate {given} disagrees with encoding {label!r}")
        value = labelled if given is None else given
        if value is None:
            value = cls.default_audio.sample_rate
            return value, f"no sample rate given, {value} Hz assumed"
        if value not in RATES:
            raise Malformed(f"unsupported sample rate {value}")
        return value, None

    @classmethod
    def encoding_for(cls, name: str) -> Encoding | None:
        return encoding_named(name)

    @classmethod
    def start_parameters(cls, message: Mapping[str, Any]) -> dict[str, str]:
        return string_map(dig(message, *cls.start_fields.parameters))

    # ------------------------------------------------------------------ provider -> us

    def parse(self, message: dict[str, Any]) -> Inbound:
        """One JSON message after the start; Malformed for what cannot be used."""
        event = message.get("event")
        if event == "media":  # fifty a second: the fields are read without dig() and text()
            media = message.get("media")
            if not isinstance(media, dict):
                raise Malformed("media without a payload")
            track = media.get("track")
            if track is not None and (track if isinstance(track, str)
                                      else text(media, "track")) not in INBOUND_TRACKS:
                return None  # the bot's own audio, when a provider streams both tracks
            try:
                return Audio(self.audio.decode(b64decode(media.get("payload"))))
            except ValueError as error:
                raise Malformed(str(error)) from None
        if event == "dtmf":
            digit = text(message, "dtmf", "digit")
            if not digit:
                raise Malformed("dtmf without a digit")
            return Digit(digit)
        if event == self.played_event:
            name = text(message, *self.played_name)
            if name is None:
                raise Malformed(f"{event} without a name")
            return Played(name)
        if event == "stop":
            return Stopped(self.stop_reason(message))
        if event in self.quiet_events:
            return None
        if event in ("connected", "start"):
            raise Malformed(f"{event} after the stream started")
        raise Malformed(f"unknown event {event!r}")

    def parse_binary(self, data: bytes) -> Inbound:
        raise Malformed(f"binary message of {len(data)} bytes on a JSON protocol")

    def stop_reason(self, message: dict[str, Any]) -> str:
        return f"{self.provider} stopped the stream"

    # ------------------------------------------------------------------ us -> provider

    def media(self, pcm: bytes) -> str | bytes:
        """Outbound audio (PCM16 at the stream's rate) as the provider's message."""
        head, tail = self._media_text
        return head + b64encode(self.audio.encode(pcm)) + tail

    def media_message(self, payload: str) -> dict[str, Any]:
        """The media message of a JSON provider, `payload` (base64) its last field."""
        raise NotImplementedError(f"{self.provider} sends audio as binary messages")

    @cached_property
    def _media_text(self) -> tuple[str, str]:
        """`media_message` as the text before and after its payload, built once per stream: a
        frame then costs a concatenation instead of a `json.dumps` (same bytes either way)."""
        head, _, tail = dumps(self.media_message(PAYLOAD_SLOT)).rpartition(PAYLOAD_SLOT)
        return head, tail

    @abstractmethod
    def mark(self, name: str) -> str:
        """Ask to be told when what was sent so far has played."""

    @abstractmethod
    def clear(self) -> str:
        """Drop what the provider buffered."""
