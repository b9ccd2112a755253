"""Daily's pinless dial-in webhook (`room_creation_api`): who is calling, and is it really Daily.

While a caller listens to hold music, Daily POSTs `{"To", "From", "callId", "callDomain",
"sipHeaders"?}`; runner makes a SIP dial-in room, starts the bot, and once the room's SIP endpoint
is ready tells Daily where to send the call (`pinlessCallUpdate`). When the webhook is first
configured Daily sends a test body without `callId`, which is answered 200 and starts nothing.

Daily can sign this webhook with the `hmac` of the dial-in config, but documents neither the
header nor the algorithm, and a guessed check would refuse every real call. So the endpoint is
protected by a shared secret the operator puts in the webhook URL (`?secret=`) or, behind a
proxy that can add one, an `X-Dialin-Secret` header.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SECRET_PARAMETER = "secret"
SECRET_HEADER = "x-dialin-secret"


class BadDialin(ValueError):
    """The webhook body is not what Daily sends; the message says what is wrong."""


@dataclass(frozen=True)
class DialinCall:
    call_id: str
    call_domain: str
    caller: str | None = None
    called: str | None = None
    sip_headers: Mapping[str, Any] = field(default_factory=dict)


def parse_call(body: Mapping[str, Any]) -> DialinCall | None:
    """The call the webhook announces, or None for Daily's configuration test."""
    if "callId" not in body and "callDomain" not in body:
        return None
    call_id, call_domain = body.get("callId"), body.get("callDomain")
    if not isinstance(call_id, str) or not call_id or not isinstance(call_domain, str) or not call_domain:
        raise BadDialin("callId and callDomain must be non-empty strings")
    headers = body.get("sipHeaders") or {}
    if not isinstance(headers, dict):
        raise BadDialin("sipHeaders must be an object")
    return DialinCall(call_id=call_id, call_domain=call_domain, caller=_text(body.get("From")),
                      called=_text(body.get("To")), sip_headers=headers)


def secret_matches(secret: str, query: Mapping[str, str], headers: Mapping[str, str]) -> bool:
    """True when the request carries the shared secret (compared in constant time)."""
    given = query.get(SECRET_PARAMETER) or headers.get(SECRET_HEADER) or ""
    return hmac.compare_digest(given.encode(), secret.encode())


def admitted(secret: str | None, verify: bool, query: Mapping[str, str],
             headers: Mapping[str, str]) -> bool:
    """Whether a dial-in webhook may start a call: it carries the secret, or none is configured
    and checks are off (dev)."""
    return secret_matches(secret, query, headers) if secret else not verify


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
