"""Exotel Voicebot applet (PROTOCOLS.md section 4): codec and socket authentication.

Exotel streams 16-bit little-endian PCM ("slin") both ways and plays our audio smoothly only in
chunks of at least 3200 bytes that are multiples of 320 bytes (20 ms at 8 kHz). 200 ms chunks
meet that at every rate, whether the rule scales with the rate or not, hence `chunk_seconds`. There is no
answer webhook of ours (the applet is configured with our URL) and no REST hang-up: closing the
socket ends the applet, and the flow's next applet (a Hangup) ends the call.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Any

from runner.transports.telephony.codec import Codec, StartFields, dumps, text
from runner.transports.telephony.formats import AudioFormat, Encoding

STOP_REASONS = {"callended": "the caller hung up", "stopped": "the Voicebot applet ended"}


class ExotelCodec(Codec):
    provider = "exotel"
    chunk_seconds = 0.2

    start_fields = StartFields(
        stream_id=("start", "stream_sid"), call_id=("start", "call_sid"),
        account_id=("start", "account_sid"), media_format=("start", "media_format"),
        encoding="encoding", sample_rate="sample_rate", parameters=("start", "custom_parameters"),
        from_number=("start", "from"), to_number=("start", "to"),
    )
    # Exotel labels its one format variously ("audio/x-raw"; "base64" with "bit_rate": "128kbps"),
    # PROTOCOLS.md section 4.2. The rate (`?sample-rate=` in the applet URL) defaults to 8000.
    default_audio = AudioFormat(Encoding.L16, 8000)
    label_picks_encoding = False

    def stop_reason(self, message: dict[str, Any]) -> str:
        reason = text(message, "stop", "reason") or ""
        return STOP_REASONS.get(reason, f"exotel stopped the stream ({reason or 'no reason'})")

    @property
    def _sid(self) -> str | None:
        return self.start.call.stream_id

    def media_message(self, payload: str) -> dict[str, Any]:
        return {"event": "media", "stream_sid": self._sid, "media": {"payload": payload}}

    def mark(self, name: str) -> str:
        return dumps({"event": "mark", "stream_sid": self._sid, "mark": {"name": name}})

    def clear(self) -> str:
        return dumps({"event": "clear", "stream_sid": self._sid})


def check_basic_auth(header: str | None, api_key: str, api_token: str) -> str | None:
    """Why the socket is not Exotel's, or None: the applet URL `wss://KEY:TOKEN@host/...` arrives
    as `Authorization: Basic base64(KEY:TOKEN)`."""
    scheme, _, credentials = (header or "").partition(" ")
    if scheme.lower() != "basic" or not credentials:
        return "no Basic Authorization header (write the applet URL as wss://KEY:TOKEN@host/...)"
    try:
        given = base64.b64decode(credentials.strip(), validate=True)
    except (binascii.Error, ValueError):
        return "Authorization header is not base64"
    if not hmac.compare_digest(given, f"{api_key}:{api_token}".encode()):
        return "Basic credentials do not match EXOTEL_API_KEY:EXOTEL_API_TOKEN"
    return None
