"""Vonage Voice API WebSocket (PROTOCOLS.md section 5): codec, NCCO answer, REST hang-up.

Audio is binary L16 both ways in 20 ms frames; control is JSON text. The socket carries no call
id, so our NCCO copies the call's uuid, From and To into `headers`, which Vonage repeats at the
top level of `websocket:connected`.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from runner.config import Config
from runner.transports.base import CallInfo
from runner.transports.telephony.codec import (
    Audio,
    Codec,
    Digit,
    Inbound,
    Malformed,
    Played,
    StreamStart,
    dumps,
    string_map,
    text,
)
from runner.transports.telephony.formats import AudioFormat, Encoding

log = logging.getLogger("runner.telephony")

CONTENT_TYPE = "audio/l16;rate=16000"
DEFAULT_RATE = 16000
JWT_LIFETIME_SECONDS = 300
#: Keys of `websocket:connected` that are Vonage's own, not headers from our NCCO.
_OWN_KEYS = frozenset({"event", "content-type", "uuid", "from", "to"})
#: Answer-webhook query fields Vonage sends; everything else in the query is a custom parameter.
ANSWER_FIELDS = frozenset({"uuid", "conversation_uuid", "from", "to", "region_url",
                           "endpoint_type", "from_user", "custom_data"})


class VonageCodec(Codec):
    provider = "vonage"
    default_audio = AudioFormat(Encoding.L16, DEFAULT_RATE)  # CONTENT_TYPE, what our NCCO asks for
    label_picks_encoding = False  # Vonage streams L16 only; `content-type` says the rate
    max_chunk_seconds = 0.0  # Vonage plays exact 20 ms binary messages (PROTOCOLS.md section 5)

    @classmethod
    def is_start(cls, message: Mapping[str, Any]) -> bool:
        return (message.get("event") == "websocket:connected"
                or str(message.get("content-type", "")).lower().startswith("audio/l16"))

    @classmethod
    def parse_start(cls, message: Mapping[str, Any]) -> StreamStart:
        call = CallInfo(
            provider=cls.provider,
            call_id=text(message, "uuid"),
            from_number=text(message, "from"),
            to_number=text(message, "to"),
        )
        audio, assumed = cls.read_format(text(message, "content-type"), None)
        headers = {key: value for key, value in message.items() if key not in _OWN_KEYS}
        return StreamStart(call, audio, string_map(headers), assumed)

    @classmethod
    def audio_first_start(cls) -> StreamStart:
        """For a socket whose first frame is audio: the rate our NCCO asks for."""
        return StreamStart(CallInfo(provider=cls.provider), cls.default_audio, assumed=(
            f"audio before websocket:connected, {CONTENT_TYPE} of our NCCO assumed",))

    def parse(self, message: dict[str, Any]) -> Inbound:
        event = message.get("event")
        if event == "websocket:dtmf":
            digit = text(message, "digit") or text(message, "dtmf", "digit")
            if not digit:
                raise Malformed("websocket:dtmf without a digit")
            return Digit(digit)
        if event == "websocket:notify":
            name = text(message, "payload", "name")
            if name is None:
                raise Malformed("websocket:notify without payload.name")
            return Played(name)
        if event == "websocket:cleared":
            return None
        if event == "websocket:error":
            raise Malformed(f"vonage reported an error: {json.dumps(message)[:200]}")
        raise Malformed(f"unknown event {event!r}")

    def parse_binary(self, data: bytes) -> Inbound:
        try:
            return Audio(self.audio.decode(data))
        except ValueError as error:
            raise Malformed(str(error)) from None

    def media(self, pcm: bytes) -> bytes:
        return pcm

    def mark(self, name: str) -> str:
        return dumps({"action": "notify", "payload": {"name": name}})

    def clear(self) -> str:
        return dumps({"action": "clear"})


def answer(stream_url: str, call: CallInfo, parameters: Mapping[str, str]) -> list[dict[str, Any]]:
    """The NCCO: connect the call to our socket; nothing follows, so closing it hangs up."""
    headers = {key: value for key, value in
               {**parameters, "uuid": call.call_id, "from": call.from_number,
                "to": call.to_number}.items() if value is not None}
    return [{"action": "connect", "endpoint": [{
        "type": "websocket", "uri": stream_url, "content-type": CONTENT_TYPE, "headers": headers,
    }]}]


@lru_cache(maxsize=4)
def _private_key(pem_or_path: str) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    value = pem_or_path.strip()
    data = value.encode() if value.startswith("-----BEGIN") else Path(value).read_bytes()
    return load_pem_private_key(data, password=None)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def application_jwt(application_id: str, private_key: str, now: float | None = None) -> str:
    """An RS256 JWT for the application, as Vonage's REST API takes it."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    issued = int(time.time() if now is None else now)
    header = _b64url(dumps({"alg": "RS256", "typ": "JWT"}).encode())
    claims = _b64url(dumps({"application_id": application_id, "iat": issued,
                            "exp": issued + JWT_LIFETIME_SECONDS,
                            "jti": str(uuid.uuid4())}).encode())
    signing_input = f"{header}.{claims}".encode()
    signed = _private_key(private_key).sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{claims}.{_b64url(signed)}"


def hangup_request(config: Config, call: CallInfo) -> httpx.Request | None:
    """PUT {"action":"hangup"} on the call; None without the application's credentials."""
    if not (config.vonage_application_id and config.vonage_private_key and call.call_id):
        return None
    try:
        token = application_jwt(config.vonage_application_id, config.vonage_private_key)
    except (OSError, ValueError, TypeError) as error:
        log.warning("cannot sign a Vonage JWT with VONAGE_PRIVATE_KEY: %s", error)
        return None
    url = f"{config.vonage_api_url.rstrip('/')}/v1/calls/{quote(call.call_id, safe='')}"
    return httpx.Request("PUT", url, json={"action": "hangup"},
                         headers={"Authorization": f"Bearer {token}"})
