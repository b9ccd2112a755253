"""Who may open a media socket: a public phone endpoint must not let anyone start a bot session.

With verification on (the default in `serve`):
- Twilio, Telnyx, Plivo: the signed single-use token our answer webhook put in the stream URL
  (`/ws/<provider>/<token>`); Twilio's `X-Twilio-Signature` on the upgrade is checked when sent.
- Exotel: HTTP Basic auth EXOTEL_API_KEY:EXOTEL_API_TOKEN (written into the applet URL), on
  `/ws/exotel` or `/ws`.
- Vonage: the static key in `/ws/vonage/<key>` that the banner prints and our NCCO uses.
With it off (the default in `dev`) every socket is let in; a valid token still supplies call data.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass

from starlette.websockets import WebSocket

from runner.config import Config
from runner.transports.telephony import exotel, twilio
from runner.transports.telephony.providers import CODECS, WEBHOOK_PROVIDERS
from runner.transports.telephony.tokens import StreamClaims, StreamTokens, TokenError, path_key
from runner.transports.telephony.urls import public_url

log = logging.getLogger("runner.telephony")


class Refused(Exception):
    """The socket may not open; the message says why (logged, never sent to the caller)."""


@dataclass(frozen=True)
class Admission:
    """What is known before the first message: the provider (if the URL or credentials say it)
    and what the webhook vouched for."""

    provider: str | None
    claims: StreamClaims | None = None


class Gate:
    def __init__(self, config: Config, tokens: StreamTokens, kinds: list[str]) -> None:
        self.config = config
        self.tokens = tokens
        self.kinds = kinds

    def admit(self, websocket: WebSocket, provider: str | None, token: str | None) -> Admission:
        """Let the socket in (saying what we know), or raise Refused."""
        if provider is not None and provider not in self.kinds:
            known = "unknown provider" if provider not in CODECS else "not served here"
            raise Refused(f"/ws/{provider}: {known} (serving {', '.join(self.kinds)})")
        if not self.config.verify_signatures:
            return Admission(provider, self._claims_if_valid(provider, token))
        self._check_twilio_upgrade(websocket, provider)
        if provider in WEBHOOK_PROVIDERS:
            if not token:
                raise Refused(f"{provider} streams need the token in the URL our answer webhook "
                              f"returns (POST /{provider})")
            try:
                return Admission(provider, self.tokens.redeem(token, provider))
            except TokenError as error:
                raise Refused(f"{provider} stream token refused: {error}") from None
        if provider == "vonage":
            if not token or not hmac.compare_digest(token, path_key(self.config, "vonage")):
                raise Refused("vonage streams need the key in the URL the banner prints")
            return Admission(provider)
        if provider == "exotel" or (provider is None and "authorization" in websocket.headers):
            self._check_exotel(websocket)
            return Admission("exotel")
        raise Refused("/ws needs credentials with signature checks on: Exotel uses Basic auth; "
                      "other providers use the stream URL their answer webhook returns")

    def _claims_if_valid(self, provider: str | None, token: str | None) -> StreamClaims | None:
        if provider not in WEBHOOK_PROVIDERS or not token:
            return None
        try:
            return self.tokens.verify(token, provider)
        except TokenError as error:
            log.debug("ignored a %s stream token (%s): signature checks are off", provider, error)
            return None

    def _check_twilio_upgrade(self, websocket: WebSocket, provider: str | None) -> None:
        header = websocket.headers.get("x-twilio-signature")
        if header is None or provider not in (None, "twilio"):
            return
        if not self.config.twilio_auth_token:
            log.debug("cannot check X-Twilio-Signature on a stream: TWILIO_AUTH_TOKEN is not set")
            return
        url = public_url(self.config, websocket.scope, websocket=True)
        problem = twilio.check_signature(self.config.twilio_auth_token, url, {}, header)
        if problem:
            raise Refused(f"twilio stream upgrade: {problem}")

    def _check_exotel(self, websocket: WebSocket) -> None:
        if "exotel" not in self.kinds:
            raise Refused(f"exotel is not served here (serving {', '.join(self.kinds)})")
        key, secret = self.config.exotel_api_key, self.config.exotel_api_token
        if not (key and secret):
            raise Refused("EXOTEL_API_KEY and EXOTEL_API_TOKEN are not set, so Exotel streams "
                          "cannot be authenticated; set them (or --no-verify-signatures)")
        problem = exotel.check_basic_auth(websocket.headers.get("authorization"), key, secret)
        if problem:
            raise Refused(f"exotel stream: {problem}")
