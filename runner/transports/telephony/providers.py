"""The providers, in detection order, with what the transport needs of each beyond its codec."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from runner.config import Config
from runner.transports.base import CallInfo
from runner.transports.telephony import exotel, plivo, telnyx, twilio, vonage
from runner.transports.telephony.codec import Codec

#: Detection order (PROTOCOLS.md section 6); the key sets are disjoint, so only speed depends on it.
CODECS: dict[str, type[Codec]] = {
    codec.provider: codec
    for codec in (vonage.VonageCodec, twilio.TwilioCodec, telnyx.TelnyxCodec, plivo.PlivoCodec,
                  exotel.ExotelCodec)
}

#: Providers that answer a webhook of ours, and so carry a signed stream token.
WEBHOOK_PROVIDERS = ("twilio", "telnyx", "plivo")

HangupRequest = Callable[[Config, CallInfo], httpx.Request | None]

#: REST hang-ups; Exotel has none (closing the socket moves its flow on to a Hangup applet).
HANGUPS: dict[str, HangupRequest] = {
    "twilio": twilio.hangup_request,
    "telnyx": telnyx.hangup_request,
    "plivo": plivo.hangup_request,
    "vonage": vonage.hangup_request,
}
