"""Provider REST calls (hang-ups) through one shared httpx client.

A hang-up is best effort by design: the media socket is already closed when it runs, an
already-ended call counts as success, and no answer from the provider may break a session.
"""

from __future__ import annotations

import base64
import logging

import httpx

log = logging.getLogger("runner.telephony")

TIMEOUT_SECONDS = 5.0
ALREADY_ENDED = (404, 422)  # Twilio 20404, Plivo 404, Telnyx 90018, Vonage: the call is gone


def basic_auth(user: str, password: str) -> str:
    """An `Authorization` header value for HTTP Basic auth."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


class RestClient:
    """One AsyncClient for every REST call this process makes; opened on first use."""

    def __init__(self, timeout: float = TIMEOUT_SECONDS) -> None:
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None

    async def hang_up(self, provider: str, request: httpx.Request) -> bool:
        """Send a prepared hang-up request; True when the call is over (or already was)."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout)
        try:
            response = await self._client.send(request)
        except httpx.HTTPError as error:
            log.warning("%s hang-up request failed: %s", provider, error or type(error).__name__)
            return False
        if response.is_success:
            log.info("%s call ended through the REST API", provider)
            return True
        if response.status_code in ALREADY_ENDED:
            log.info("%s call had already ended (HTTP %d)", provider, response.status_code)
            return True
        log.warning("%s hang-up refused: HTTP %d %s", provider, response.status_code,
                    response.text[:200])
        return False

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
