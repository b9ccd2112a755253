"""What a provider's audio bytes mean: one table from encoding to PCM16 and back.

G.711 comes from runner.audio (in C); L16 is PCM16 in either byte order (little-endian on Plivo,
Exotel and Vonage; big-endian where RTP rules, RFC 3551). Every provider module maps its own
names (`audio/x-mulaw`, `PCMU`, ...) through `encoding_named`, so no provider decodes by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property

import numpy as np

from runner.audio import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode


class Encoding(StrEnum):
    MULAW = "mulaw"
    ALAW = "alaw"
    L16 = "l16"  # PCM16 little-endian
    L16_BE = "l16be"  # PCM16 big-endian (network order)


def _swap16(data: bytes) -> bytes:
    return np.frombuffer(data, ">i2").astype("<i2").tobytes()


def _same(data: bytes) -> bytes:
    return data


_CODECS: dict[Encoding, tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]] = {
    Encoding.MULAW: (ulaw_decode, ulaw_encode),
    Encoding.ALAW: (alaw_decode, alaw_encode),
    Encoding.L16: (_same, _same),
    Encoding.L16_BE: (_swap16, _swap16),
}

#: Labels as providers and their look-alikes write them (compared in lower case).
_NAMES = {
    "audio/x-mulaw": Encoding.MULAW, "audio/mulaw": Encoding.MULAW, "audio/pcmu": Encoding.MULAW,
    "pcmu": Encoding.MULAW, "mulaw": Encoding.MULAW, "ulaw": Encoding.MULAW,
    "audio/basic": Encoding.MULAW, "g711_ulaw": Encoding.MULAW,
    "audio/x-alaw": Encoding.ALAW, "audio/alaw": Encoding.ALAW, "audio/pcma": Encoding.ALAW,
    "pcma": Encoding.ALAW, "alaw": Encoding.ALAW, "g711_alaw": Encoding.ALAW,
    "audio/x-l16": Encoding.L16, "audio/l16": Encoding.L16, "audio/x-raw": Encoding.L16,
    "raw/slin": Encoding.L16, "slin": Encoding.L16, "l16": Encoding.L16,
    "linear16": Encoding.L16, "pcm16": Encoding.L16,
}


def _bare(label: str) -> str:
    """`Audio/X-Mulaw; rate=8000` -> `audio/x-mulaw`: a label as compared, without parameters."""
    return label.split(";", 1)[0].strip().lower()


def encoding_named(name: str) -> Encoding | None:
    """`audio/x-mulaw;rate=8000`, `PCMU`, `audio/l16` ... -> the encoding (parameters and case
    ignored); None for a codec we do not play (G722, Opus)."""
    return _NAMES.get(_bare(name))


def names_transport_only(name: str) -> bool:
    """Whether a label says how the payload travels (`base64`, as in Exotel's own start example)
    rather than which codec it carries: the provider's default codec is then meant."""
    return _bare(name) == "base64"


def rate_in(content_type: str) -> int | None:
    """The `rate=` parameter of a content type like `audio/l16;rate=16000`, if any."""
    for part in content_type.split(";")[1:]:
        key, _, value = part.partition("=")
        if key.strip().lower() == "rate" and value.strip().isdigit():
            return int(value.strip())
    return None


@dataclass(frozen=True)
class AudioFormat:
    """One direction of a media stream: encoding and sample rate (always mono on the phone)."""

    encoding: Encoding
    sample_rate: int

    # Cached: each is read once a frame, and an enum comparison costs more than the G.711 itself.
    @cached_property
    def is_pcm(self) -> bool:
        return self.encoding in (Encoding.L16, Encoding.L16_BE)

    @cached_property
    def _codec(self) -> tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]:
        return _CODECS[self.encoding]

    def decode(self, payload: bytes) -> bytes:
        """Provider bytes -> PCM16 little-endian. Raises ValueError for a torn L16 sample."""
        if self.is_pcm and len(payload) % 2:
            raise ValueError(f"{len(payload)} bytes of L16 audio: not a whole number of samples")
        return self._codec[0](payload)

    def encode(self, pcm: bytes) -> bytes:
        """PCM16 little-endian -> provider bytes."""
        return self._codec[1](pcm)
