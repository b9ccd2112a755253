"""Plivo Audio Streams (PROTOCOLS.md section 3): codec, answer XML, signature V3, REST hang-up.

Plivo opens with `start` (no `connected`), plays `playAudio`, confirms checkpoints with
`playedStream` only when they really played (never after `clearAudio`), and may end a stream by
closing the socket without a `stop`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit, urlunsplit
from xml.sax.saxutils import escape

import httpx

from runner.config import Config
from runner.transports.base import CallInfo
from runner.transports.telephony.codec import Codec, StartFields, dumps
from runner.transports.telephony.formats import AudioFormat, Encoding
from runner.transports.telephony.rest import basic_auth

#: What our answer XML asks for; always set, since Plivo's docs disagree on the default.
CONTENT_TYPE = "audio/x-mulaw;rate=8000"


def _extra_headers(value: Any) -> dict[str, str]:
    """`extraHeaders="k=v,k=v"` as Plivo echoes it in `extra_headers`."""
    if isinstance(value, dict):
        return {str(key): str(item) for key, item in value.items()}
    if not isinstance(value, str):
        return {}
    pairs = (item.partition("=") for item in value.split(",") if "=" in item)
    return {key.strip(): item.strip() for key, _, item in pairs if key.strip()}


class PlivoCodec(Codec):
    provider = "plivo"
    played_event = "playedStream"
    played_name = ("name",)
    quiet_events = frozenset({"clearedAudio"})

    start_fields = StartFields(
        stream_id=("start", "streamId"), call_id=("start", "callId"),
        account_id=("start", "accountId"), media_format=("start", "mediaFormat"),
        encoding="encoding", sample_rate="sampleRate", parameters=("extra_headers",),
    )
    default_audio = AudioFormat(Encoding.MULAW, 8000)  # CONTENT_TYPE, what our answer asks for

    @classmethod
    def start_parameters(cls, message: Mapping[str, Any]) -> dict[str, str]:
        return _extra_headers(message.get("extra_headers"))

    def media_message(self, payload: str) -> dict[str, Any]:
        content_type = "audio/x-l16" if self.audio.is_pcm else "audio/x-mulaw"
        return {"event": "playAudio", "media": {
            "contentType": content_type, "sampleRate": self.audio.sample_rate, "payload": payload,
        }}

    def mark(self, name: str) -> str:
        return dumps({"event": "checkpoint", "streamId": self.start.call.stream_id, "name": name})

    def clear(self) -> str:
        return dumps({"event": "clearAudio", "streamId": self.start.call.stream_id})


def answer(stream_url: str) -> str:
    """A bidirectional stream that keeps the call alive and is all there is: closing the socket
    hangs up."""
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<Response><Stream bidirectional="true" keepCallAlive="true" '
            f'contentType="{CONTENT_TYPE}">{escape(stream_url)}</Stream></Response>')


def _sorted_pairs(params: Mapping[str, Sequence[str]], between: str, joiner: str) -> str:
    return joiner.join(
        between.join(f"{name}{'=' if between else ''}{value}" for value in sorted(params[name]))
        for name in sorted(params)
    )


def signature_base(method: str, url: str, params: Mapping[str, Sequence[str]]) -> str:
    """The string Plivo signs (V3): the URL without its query, then the sorted query, then for
    POST the sorted form fields as `keyvalue` with no separators."""
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    query: dict[str, list[str]] = parse_qs(parts.query, keep_blank_values=True)
    if method.upper() == "GET":
        merged = {**{name: list(values) for name, values in params.items()}, **query}
        encoded = _sorted_pairs(merged, "&", "&")
        return base + (f"?{encoded}" if encoded else "")
    encoded = _sorted_pairs(query, "&", "&")
    if not params:
        return base + (f"?{encoded}" if encoded else "")
    return base + f"?{encoded}" + ("." if encoded else "") + _sorted_pairs(params, "", "")


def signature(auth_token: str, base: str, nonce: str) -> str:
    digest = hmac.new(auth_token.encode(), f"{base}.{nonce}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def check_signature(auth_token: str, method: str, url: str, params: Mapping[str, Sequence[str]],
                    header: str | None, nonce: str | None) -> str | None:
    """Why the request is not Plivo's, or None. The header may list several signatures."""
    if not header or not nonce:
        return "no X-Plivo-Signature-V3 / X-Plivo-Signature-V3-Nonce header"
    expected = signature(auth_token, signature_base(method, url, params), nonce).encode()
    if any(hmac.compare_digest(expected, item.strip().encode()) for item in header.split(",")):
        return None
    return "X-Plivo-Signature-V3 does not match"


def hangup_request(config: Config, call: CallInfo) -> httpx.Request | None:
    """DELETE the call (trailing slash included); None without credentials."""
    if not (config.plivo_auth_id and config.plivo_auth_token and call.call_id):
        return None
    url = (f"{config.plivo_api_url.rstrip('/')}/Account/{quote(config.plivo_auth_id, safe='')}"
           f"/Call/{quote(call.call_id, safe='')}/")
    auth = basic_auth(config.plivo_auth_id, config.plivo_auth_token)
    return httpx.Request("DELETE", url, headers={"Authorization": auth})
