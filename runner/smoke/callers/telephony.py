"""Synthetic phone callers, one per provider, speaking exactly what PROTOCOLS.md lists.

Each class phrases the provider's messages (field names, counters as strings or numbers, audio
encoding, data size) and its rules for what we send back; phone.py holds the call itself.
`caller(kind)` is the entry point `runner smoke` uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlencode
from xml.etree import ElementTree

import httpx
import websockets

from runner.audio import AudioConverter, AudioFrame
from runner.config import Config
from runner.smoke.callers import Caller, CallResult, Target
from runner.smoke.callers.phone import (
    Data,
    PhoneCaller,
    Violation,
    b64,
    local_url,
    name_at,
    parse_json,
    payload_of,
)
from runner.transports.telephony import plivo, twilio
from runner.transports.telephony.codec import dumps
from runner.transports.telephony.formats import Encoding
from runner.transports.telephony.rest import basic_auth
from runner.transports.telephony.tokens import path_key


class TwilioCaller(PhoneCaller):
    provider = "twilio"
    confirms_cleared = True
    webhook_path = "/twilio"
    stream_key = "streamSid"  # required on everything we send (else error 31924)

    def new_ids(self) -> tuple[str, str, str]:
        return f"CA{secrets.token_hex(16)}", f"MZ{secrets.token_hex(16)}", f"AC{secrets.token_hex(16)}"

    def _message(self, event: str, **fields: Any) -> str:
        return dumps({"event": event, "sequenceNumber": str(self._sequence()),
                      "streamSid": self.stream_id, **fields})

    def start_messages(self) -> list[Data]:
        return [dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
                self._message("start", start={
                    "accountSid": self.account_id, "streamSid": self.stream_id,
                    "callSid": self.call_id, "tracks": ["inbound"],
                    "customParameters": self.parameters,
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                })]

    def media_message(self, payload: bytes) -> Data:
        return self._message("media", media={
            "track": "inbound", "chunk": str(next(self._chunks)),
            "timestamp": str(self._timestamp_ms()), "payload": b64(payload)})

    def dtmf_frame(self, digit: str) -> str:
        return self._message("dtmf", dtmf={"track": "inbound_track", "digit": digit})

    def stop_frame(self) -> str | None:
        return self._message("stop", stop={"accountSid": self.account_id, "callSid": self.call_id})

    def confirm_frame(self, name: str) -> str:
        return self._message("mark", mark={"name": name})

    def sign(self, config: Config, url: str, form: dict[str, str], body: bytes,
             signing_key: Any) -> dict[str, str]:
        if not config.twilio_auth_token:
            return {}
        params = {name: [value] for name, value in form.items()}
        return {"X-Twilio-Signature": twilio.signature(config.twilio_auth_token, url, params)}


class TelnyxCaller(PhoneCaller):
    provider = "telnyx"
    confirms_cleared = True
    webhook_path = "/telnyx"

    def new_ids(self) -> tuple[str, str, str]:
        return f"v3:{secrets.token_urlsafe(24)}", str(uuid.uuid4()), str(uuid.uuid4())

    def _message(self, event: str, **fields: Any) -> str:
        return dumps({"event": event, "sequence_number": str(self._sequence()),
                      "stream_id": self.stream_id, **fields})

    def start_messages(self) -> list[Data]:
        name = {Encoding.MULAW: "PCMU", Encoding.ALAW: "PCMA"}.get(self.audio.encoding, "L16")
        return [dumps({"event": "connected", "version": "1.0.0"}),
                self._message("start", start={
                    "user_id": self.account_id, "call_control_id": self.call_id,
                    "call_session_id": str(uuid.uuid4()), "from": self.from_number,
                    "to": self.to_number, "tags": [], "client_state": None,
                    "custom_parameters": self.parameters,
                    "media_format": {"encoding": name, "sample_rate": self.audio.sample_rate,
                                     "channels": 1},
                })]

    def media_message(self, payload: bytes) -> Data:
        return self._message("media", media={
            "track": "inbound", "chunk": str(next(self._chunks)),
            "timestamp": str(self._timestamp_ms()), "payload": b64(payload)})

    def dtmf_frame(self, digit: str) -> str:
        return self._message("dtmf", occurred_at=datetime.now(UTC).isoformat(),
                             dtmf={"digit": digit})

    def stop_frame(self) -> str | None:
        return self._message("stop", stop={"user_id": self.account_id,
                                           "call_control_id": self.call_id})

    def confirm_frame(self, name: str) -> str:
        return self._message("mark", mark={"name": name})

    def sign(self, config: Config, url: str, form: dict[str, str], body: bytes,
             signing_key: Any) -> dict[str, str]:
        """Ed25519 over `timestamp|body`, with the private half of TELNYX_PUBLIC_KEY."""
        if signing_key is None:
            return {}
        timestamp = str(int(time.time()))
        signature = signing_key.sign(timestamp.encode() + b"|" + body)
        return {"telnyx-signature-ed25519": b64(signature), "telnyx-timestamp": timestamp}


class PlivoCaller(PhoneCaller):
    provider = "plivo"
    webhook_path = "/plivo"
    server_events: ClassVar[dict[str, str]] = {"playAudio": "media", "checkpoint": "mark",
                                               "clearAudio": "clear"}
    mark_name = ("name",)
    stream_key = "streamId"

    def new_ids(self) -> tuple[str, str, str]:
        return str(uuid.uuid4()), str(uuid.uuid4()), f"MA{secrets.token_hex(9).upper()}"

    @property
    def _content_type(self) -> str:
        return "audio/x-l16" if self.audio.is_pcm else "audio/x-mulaw"

    def _extra_headers(self) -> str:
        return ",".join(f"{key}={value}" for key, value in self.parameters.items())

    def start_messages(self) -> list[Data]:
        return [dumps({"event": "start", "sequenceNumber": self._sequence(), "start": {
            "callId": self.call_id, "streamId": self.stream_id, "accountId": self.account_id,
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": self._content_type, "sampleRate": self.audio.sample_rate},
        }, "extra_headers": self._extra_headers()})]

    def media_message(self, payload: bytes) -> Data:
        return dumps({"event": "media", "sequenceNumber": self._sequence(),
                      "streamId": self.stream_id, "media": {
                          "track": "inbound", "timestamp": str(int(time.time() * 1000)),
                          "chunk": next(self._chunks), "payload": b64(payload)},
                      "extra_headers": self._extra_headers()})

    def dtmf_frame(self, digit: str) -> str:
        return dumps({"event": "dtmf", "sequenceNumber": self._sequence(),
                      "streamId": self.stream_id, "dtmf": {
                          "track": "inbound", "digit": digit,
                          "timestamp": str(int(time.time() * 1000))}})

    def confirm_frame(self, name: str) -> str:
        return dumps({"event": "playedStream", "sequenceNumber": self._sequence(),
                      "streamId": self.stream_id, "name": name})

    def clear_ack(self) -> str | None:
        return dumps({"event": "clearedAudio", "sequenceNumber": self._sequence(),
                      "streamId": self.stream_id})

    def interpret(self, data: Data) -> tuple[str, Any]:
        message = parse_json(data)
        if message.get("event") != "playAudio":  # playAudio carries no streamId
            return super().interpret(data)
        media = message.get("media") or {}
        if media.get("contentType") != self._content_type:
            raise Violation(f"playAudio contentType {media.get('contentType')!r}")
        if str(media.get("sampleRate")) != str(self.audio.sample_rate):
            raise Violation(f"playAudio sampleRate {media.get('sampleRate')!r}")
        return "media", self.audio.decode(payload_of(message))

    def webhook_form(self) -> dict[str, str]:
        return {"CallUUID": self.call_id, "From": self.from_number, "To": self.to_number,
                "Direction": "inbound", "CallStatus": "in-progress", "Event": "StartApp"}

    def sign(self, config: Config, url: str, form: dict[str, str], body: bytes,
             signing_key: Any) -> dict[str, str]:
        if not config.plivo_auth_token:
            return {}
        nonce = secrets.token_hex(10)
        params = {name: [value] for name, value in form.items()}
        base = plivo.signature_base("POST", url, params)
        return {"X-Plivo-Signature-V3": plivo.signature(config.plivo_auth_token, base, nonce),
                "X-Plivo-Signature-V3-Nonce": nonce}

    def stream_url_in(self, answer: httpx.Response) -> str:
        """Plivo's answer has the URL as the `<Stream>` element's text."""
        stream = ElementTree.fromstring(answer.text).find(".//Stream")
        if stream is None or not (stream.text or "").strip():
            raise Violation(f"answer without a <Stream> URL: {answer.text[:200]}")
        return (stream.text or "").strip()


class ExotelCaller(PhoneCaller):
    provider = "exotel"
    encoding = Encoding.L16
    frame_seconds = 0.1  # Exotel delivers about every 100 ms
    stream_key = "stream_sid"

    def new_ids(self) -> tuple[str, str, str]:
        return secrets.token_hex(16), secrets.token_hex(16), f"exotel{secrets.token_hex(4)}"

    def _message(self, event: str, **fields: Any) -> str:
        return dumps({"event": event, "sequence_number": str(self._sequence()),
                      "stream_sid": self.stream_id, **fields})

    def start_messages(self) -> list[Data]:
        return [dumps({"event": "connected"}), self._message("start", start={
            "stream_sid": self.stream_id, "call_sid": self.call_id,
            "account_sid": self.account_id, "from": self.from_number, "to": self.to_number,
            "custom_parameters": self.parameters,
            "media_format": {"encoding": "audio/x-raw",
                             "sample_rate": str(self.audio.sample_rate), "bit_rate": "16"},
        })]

    def media_message(self, payload: bytes) -> Data:
        return self._message("media", media={
            "chunk": str(next(self._chunks)), "timestamp": str(self._timestamp_ms()),
            "payload": b64(payload)})

    def dtmf_frame(self, digit: str) -> str:
        return self._message("dtmf", dtmf={"digit": digit, "duration": "100"})

    def stop_frame(self) -> str | None:
        return self._message("stop", stop={"call_sid": self.call_id,
                                           "account_sid": self.account_id, "reason": "callended"})

    def confirm_frame(self, name: str) -> str:
        return self._message("mark", mark={"name": name})

    def media_pcm(self, message: dict[str, Any]) -> bytes:
        payload = payload_of(message)
        unit = 320 * self.audio.sample_rate // 8000  # 20 ms
        if len(payload) % unit or len(payload) < 10 * unit:
            raise Violation(f"media chunk of {len(payload)} bytes: Exotel needs multiples of "
                            f"{unit} bytes, at least {10 * unit}")
        return self.audio.decode(payload)

    async def dial(self, target: Target, *, query: dict[str, str] | None = None,
                   signing_key: Any = None) -> tuple[str, dict[str, str]]:
        """No webhook: the applet holds our URL, with Basic auth written into it."""
        self.parameters.update(query or {})
        config = target.config
        headers = {}
        if config.exotel_api_key and config.exotel_api_token:
            headers["Authorization"] = basic_auth(config.exotel_api_key, config.exotel_api_token)
        suffix = f"?{urlencode(query)}" if query else ""
        return f"{target.ws}/ws/exotel{suffix}", headers


class VonageCaller(PhoneCaller):
    provider = "vonage"
    encoding = Encoding.L16
    default_rate = 16000

    #: The `headers` of our NCCO, which Vonage repeats at the top of `websocket:connected`.
    ncco_headers: dict[str, str] | None = None

    def new_ids(self) -> tuple[str, str, str]:
        return str(uuid.uuid4()), "", ""

    @property
    def headers(self) -> dict[str, str]:
        return self.ncco_headers or {"uuid": self.call_id, "from": self.from_number,
                                     "to": self.to_number, **self.parameters}

    def start_messages(self) -> list[Data]:
        return [dumps({"event": "websocket:connected",
                       "content-type": f"audio/l16;rate={self.audio.sample_rate}",
                       **self.headers})]

    def media_message(self, payload: bytes) -> Data:
        return payload

    def dtmf_frame(self, digit: str) -> str:
        return dumps({"event": "websocket:dtmf", "digit": digit, "duration": 100})

    def confirm_frame(self, name: str) -> str:
        return dumps({"event": "websocket:notify", "payload": {"name": name}})

    def clear_ack(self) -> str | None:
        return dumps({"event": "websocket:cleared"})

    def interpret(self, data: Data) -> tuple[str, Any]:
        if isinstance(data, bytes):
            expected = self.audio.sample_rate // 50 * 2
            if len(data) != expected:
                raise Violation(f"audio data of {len(data)} bytes, not 20 ms ({expected})")
            return "media", data
        message = parse_json(data)
        action = message.get("action")
        if action == "notify":
            return "mark", name_at(message, "payload", "name")
        if action == "clear":
            return "clear", None
        raise Violation(f"action {action!r} is not one Vonage accepts")

    async def dial(self, target: Target, *, query: dict[str, str] | None = None,
                   signing_key: Any = None) -> tuple[str, dict[str, str]]:
        """GET our answer URL as Vonage does and connect where the NCCO says."""
        params = {"uuid": self.call_id, "conversation_uuid": f"CON-{uuid.uuid4()}",
                  "from": self.from_number, "to": self.to_number, **(query or {})}
        url = f"{target.http}/vonage/answer/{path_key(target.config, 'vonage')}"
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.get(url, params=params)
        if answer.status_code != 200:
            raise Violation(f"answer URL: HTTP {answer.status_code} {answer.text[:200]}")
        endpoint = answer.json()[0]["endpoint"][0]
        self.ncco_headers = dict(endpoint.get("headers") or {})
        return local_url(target, endpoint["uri"]), {}


CALLERS: dict[str, type[PhoneCaller]] = {
    phone.provider: phone
    for phone in (TwilioCaller, TelnyxCaller, PlivoCaller, ExotelCaller, VonageCaller)
}


def caller(kind: str) -> Caller:
    """The smoke-test call for one provider: answer, stream `audio` in real time, hang up."""
    phone_class = CALLERS[kind]

    async def call(target: Target, audio: AudioFrame, duration: float) -> CallResult:
        phone = phone_class()
        result = CallResult()
        started = time.monotonic()
        try:
            url, headers = await phone.dial(target)
            await phone.connect(url, headers)
        except (Violation, httpx.HTTPError, OSError, websockets.InvalidHandshake) as error:
            result.detail = f"the {kind} call did not connect: {error}"
            if target.config.verify_signatures and "403" in str(error):
                result.detail += (" (signature checks are on: set the provider's secrets, or "
                                  "RUNNER_VERIFY_SIGNATURES=false for a local smoke test)")
            return result
        result.connected = True
        result.connect_seconds = time.monotonic() - started
        rate = phone.audio.sample_rate
        pcm = AudioConverter(rate).convert(audio).pcm or bytes(2 * rate)
        needed = int(duration * rate) * 2
        sent_at = time.monotonic()
        with contextlib.suppress(websockets.ConnectionClosed):
            await phone.send_audio((pcm * (needed // len(pcm) + 1))[:needed], realtime=True)
            await asyncio.sleep(0.3)  # the tail of the bot's answer
        await phone.hang_up()
        result.received = AudioFrame(bytes(phone.heard), rate)
        if phone.first_heard_at is not None:
            result.first_audio_seconds = phone.first_heard_at - sent_at
        if phone.errors:
            result.detail = f"{len(phone.errors)} protocol errors, first: {phone.errors[0]}"
        return result

    return call
