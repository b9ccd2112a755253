"""Telnyx media streaming (PROTOCOLS.md section 2): codec, TeXML answer, Ed25519 webhook
signature, REST hang-up.

Telnyx drops the audio we send unless the stream is in `rtp` bidirectional mode, and a Telnyx call
outlives its media socket, so hanging up takes the REST call.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

import httpx

from runner.config import Config
from runner.transports.base import CallInfo
from runner.transports.telephony.codec import (
    Codec,
    Inbound,
    Malformed,
    StartFields,
    dumps,
    text,
)
from runner.transports.telephony.formats import AudioFormat, Encoding, encoding_named

SIGNATURE_WINDOW_SECONDS = 300
#: What our TeXML asks for in both directions (Telnyx transcodes PCMA calls to it).
CODEC = "PCMU"
SAMPLE_RATE = 8000


class TelnyxCodec(Codec):
    provider = "telnyx"
    confirms_cleared_marks = True

    start_fields = StartFields(
        stream_id=("stream_id",), call_id=("start", "call_control_id"),
        account_id=("start", "user_id"), media_format=("start", "media_format"),
        encoding="encoding", sample_rate="sample_rate", parameters=("start", "custom_parameters"),
        from_number=("start", "from"), to_number=("start", "to"),
    )
    default_audio = AudioFormat(Encoding.MULAW, SAMPLE_RATE)  # CODEC, what our TeXML asks for

    @classmethod
    def encoding_for(cls, name: str) -> Encoding | None:
        # RTP carries L16 in network byte order (RFC 3551), however the label is written.
        encoding = encoding_named(name)
        return Encoding.L16_BE if encoding is Encoding.L16 else encoding

    def parse(self, message: dict[str, Any]) -> Inbound:
        if message.get("event") == "error":
            code = text(message, "payload", "code")
            detail = text(message, "payload", "detail") or text(message, "payload", "title")
            raise Malformed(f"telnyx reported error {code}: {detail}")
        return super().parse(message)

    # Telnyx's own examples send these without stream_id.
    def media_message(self, payload: str) -> dict[str, Any]:
        return {"event": "media", "media": {"payload": payload}}

    def mark(self, name: str) -> str:
        return dumps({"event": "mark", "mark": {"name": name}})

    def clear(self) -> str:
        return dumps({"event": "clear"})


def answer(stream_url: str) -> str:
    """TeXML for a bidirectional RTP stream (without `bidirectionalMode="rtp"` Telnyx drops our
    audio), PCMU 8 kHz both ways."""
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<Response><Connect><Stream url={quoteattr(stream_url)} bidirectionalMode="rtp" '
            f'codec="{CODEC}" bidirectionalCodec="{CODEC}" '
            f'bidirectionalSamplingRate="{SAMPLE_RATE}"/></Connect></Response>')


def check_signature(public_key: str, body: bytes, signature: str | None, timestamp: str | None,
                    now: float | None = None) -> str | None:
    """Why the request is not Telnyx's, or None: Ed25519 over `timestamp|body`, 300 s window."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if not signature or not timestamp:
        return "no telnyx-signature-ed25519 / telnyx-timestamp header"
    try:
        sent_at = int(timestamp)
    except ValueError:
        return "telnyx-timestamp is not a number"
    if abs((time.time() if now is None else now) - sent_at) > SIGNATURE_WINDOW_SECONDS:
        return f"telnyx-timestamp is more than {SIGNATURE_WINDOW_SECONDS} s away"
    try:
        key = base64.b64decode(public_key, validate=True)
        raw_signature = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return "signature or TELNYX_PUBLIC_KEY is not base64"
    if len(key) != 32:
        return "TELNYX_PUBLIC_KEY is not a 32-byte Ed25519 key"
    if len(raw_signature) != 64:
        return "telnyx-signature-ed25519 is not 64 bytes"
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(raw_signature,
                                                       timestamp.encode() + b"|" + body)
    except InvalidSignature:
        return "telnyx-signature-ed25519 does not match"
    return None


def hangup_request(config: Config, call: CallInfo) -> httpx.Request | None:
    """POST actions/hangup on the call; None without TELNYX_API_KEY."""
    if not (config.telnyx_api_key and call.call_id):
        return None
    url = (f"{config.telnyx_api_url.rstrip('/')}/calls/{quote(call.call_id, safe=':')}"
           "/actions/hangup")
    return httpx.Request("POST", url, json={},
                         headers={"Authorization": f"Bearer {config.telnyx_api_key}"})
