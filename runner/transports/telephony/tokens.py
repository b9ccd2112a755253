"""Signed stream tokens: only calls that came through our answer webhook may open a media socket.

The webhook puts a token in the stream URL's last path segment (`wss://host/ws/twilio/<token>`;
Twilio's stream URLs may not carry a query string, and one place suits every provider). The token
carries what the socket needs from the webhook (provider, call id, From, To, the webhook URL's
custom parameters, expiry), HMAC-signed with RUNNER_SECRET. So it needs no shared state: the
webhook and the socket may land on different instances sharing the secret. Within one instance a
token opens one socket only (a used-token set, pruned at expiry).

Vonage and anything else without a webhook of ours use a static `path_key` instead.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import hmac
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from runner.config import Config

TOKEN_TTL_SECONDS = 120
MAX_PARAMETER_CHARS = 1024
_MAC_BYTES = 16
_TOKEN_LABEL = b"runner stream token v1"
_KEY_LABEL = b"runner path key v1|"

_process_secret = secrets.token_bytes(32)


class TokenError(Exception):
    """The token is forged, expired, for another provider, or used already."""


@dataclass(frozen=True)
class StreamClaims:
    """What the webhook vouched for."""

    provider: str
    call_id: str
    from_number: str | None = None
    to_number: str | None = None
    parameters: Mapping[str, str] = field(default_factory=dict)
    expires: int = 0


def secret_for(config: Config) -> bytes:
    """RUNNER_SECRET, or (in dev, where it is optional) a key generated for this process."""
    return config.secret.encode() if config.secret else _process_secret


def path_key(config: Config, label: str) -> str:
    """A static key for URLs pasted at a provider (Vonage): stable while RUNNER_SECRET is."""
    digest = hmac.new(secret_for(config), _KEY_LABEL + label.encode(), hashlib.sha256).digest()
    return _b64(digest[:_MAC_BYTES])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class StreamTokens:
    """Issues and checks the tokens of one process."""

    def __init__(self, secret: bytes, ttl: int = TOKEN_TTL_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self._key = hmac.new(secret, _TOKEN_LABEL, hashlib.sha256).digest()
        self._ttl = ttl
        self._clock = clock
        self._used: set[bytes] = set()
        self._expiries: list[tuple[int, bytes]] = []

    def issue(self, provider: str, call_id: str, from_number: str | None = None,
              to_number: str | None = None, parameters: Mapping[str, str] | None = None) -> str:
        """A token for one stream of this call, valid for `ttl` seconds."""
        claims = {"v": provider, "c": call_id, "f": from_number, "t": to_number,
                  "p": dict(parameters or {}), "e": int(self._clock()) + self._ttl,
                  "n": _b64(secrets.token_bytes(6))}
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        return f"{payload}.{_b64(self._mac(payload))}"

    def verify(self, token: str, provider: str) -> StreamClaims:
        """The claims of a genuine, unexpired token for `provider` (does not use it up)."""
        claims, _ = self._check(token, provider)
        return claims

    def redeem(self, token: str, provider: str) -> StreamClaims:
        """Like `verify`, and the token can never be used again in this process."""
        claims, mac = self._check(token, provider)
        now = int(self._clock())
        while self._expiries and self._expiries[0][0] < now:
            self._used.discard(heapq.heappop(self._expiries)[1])
        if mac in self._used:
            raise TokenError("token already used")
        self._used.add(mac)
        heapq.heappush(self._expiries, (claims.expires, mac))
        return claims

    def _mac(self, payload: str) -> bytes:
        return hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest()[:_MAC_BYTES]

    def _check(self, token: str, provider: str) -> tuple[StreamClaims, bytes]:
        payload, _, signature = token.partition(".")
        try:
            mac = _unb64(signature)
            if not hmac.compare_digest(mac, self._mac(payload)):
                raise TokenError("bad signature")
            data = json.loads(_unb64(payload))
            claims = StreamClaims(
                provider=data["v"], call_id=data["c"], from_number=data["f"],
                to_number=data["t"], parameters=data["p"], expires=int(data["e"]),
            )
        except (binascii.Error, ValueError, UnicodeEncodeError, KeyError, TypeError):
            raise TokenError("malformed token") from None
        if claims.provider != provider:
            raise TokenError(f"token is for {claims.provider}, not {provider}")
        if claims.expires < self._clock():
            raise TokenError("token expired")
        return claims, mac

