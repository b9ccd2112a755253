"""Twilio Media Streams (PROTOCOLS.md section 1): codec, TwiML answer, signature, REST hang-up.

Bidirectional streams come from `<Connect><Stream>`: mu-law 8 kHz both ways, JSON text frames
only, `streamSid` on everything we send. Marks come back when played or when a clear drops them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit
from xml.sax.saxutils import quoteattr

import httpx

from runner.config import Config
from runner.transports.base import CallInfo
from runner.transports.telephony.codec import Codec, StartFields, dumps
from runner.transports.telephony.formats import AudioFormat, Encoding
from runner.transports.telephony.rest import basic_auth


class TwilioCodec(Codec):
    provider = "twilio"
    confirms_cleared_marks = True

    start_fields = StartFields(
        stream_id=("start", "streamSid"), call_id=("start", "callSid"),
        account_id=("start", "accountSid"), media_format=("start", "mediaFormat"),
        encoding="encoding", sample_rate="sampleRate", parameters=("start", "customParameters"),
    )
    default_audio = AudioFormat(Encoding.MULAW, 8000)  # the only format Twilio streams

    @property
    def _sid(self) -> str | None:
        return self.start.call.stream_id

    def media_message(self, payload: str) -> dict[str, Any]:
        return {"event": "media", "streamSid": self._sid, "media": {"payload": payload}}

    def mark(self, name: str) -> str:
        return dumps({"event": "mark", "streamSid": self._sid, "mark": {"name": name}})

    def clear(self) -> str:
        return dumps({"event": "clear", "streamSid": self._sid})


def answer(stream_url: str) -> str:
    """TwiML that connects the call to our stream; nothing follows, so closing the socket hangs up.

    Per-call data rides in the signed token inside `stream_url` rather than in `<Parameter>`s, so it
    cannot be altered and Twilio, Telnyx and Plivo calls carry it the same way.
    """
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Response><Connect><Stream url={quoteattr(stream_url)}/></Connect></Response>")


def signature(auth_token: str, url: str, params: Mapping[str, Sequence[str]]) -> str:
    """X-Twilio-Signature: HMAC-SHA1 over the URL and the sorted form parameters, base64."""
    message = url + "".join(
        name + value for name in sorted(params) for value in sorted(set(params[name]))
    )
    digest = hmac.new(auth_token.encode(), message.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _url_variants(url: str) -> set[str]:
    """Twilio signs with or without the default port, inconsistently: accept both forms."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.username is not None:
        userinfo = parts.username + (f":{parts.password}" if parts.password is not None else "")
        host = f"{userinfo}@{host}"
    default = 443 if parts.scheme in ("https", "wss") else 80
    port = parts.port or default
    return {urlunsplit(parts._replace(netloc=netloc))
            for netloc in (host, f"{host}:{port}")} | {url}


def check_signature(auth_token: str, url: str, params: Mapping[str, Sequence[str]],
                    header: str | None) -> str | None:
    """Why the request is not Twilio's, or None when its signature holds."""
    if not header:
        return "no X-Twilio-Signature header"
    for candidate in _url_variants(url):
        if hmac.compare_digest(signature(auth_token, candidate, params).encode(), header.encode()):
            return None
    return "X-Twilio-Signature does not match"


def hangup_request(config: Config, call: CallInfo) -> httpx.Request | None:
    """POST Status=completed to the call resource; None without credentials."""
    account = call.account_id or config.twilio_account_sid
    if not (config.twilio_account_sid and config.twilio_auth_token and account and call.call_id):
        return None
    url = (f"{config.twilio_api_url.rstrip('/')}/2010-04-01/Accounts/{quote(account, safe='')}"
           f"/Calls/{quote(call.call_id, safe='')}.json")
    auth = basic_auth(config.twilio_account_sid, config.twilio_auth_token)
    return httpx.Request("POST", url, data={"Status": "completed"},
                         headers={"Authorization": auth, "Accept": "application/json"})
