"""Daily's REST API (rooms, meeting tokens, pinless dial-in): async, one client per process.

Every session costs two or three calls (a room, tokens) and Daily limits each account (about 20
requests/s; `DELETE /rooms` about 2/s), so connections are reused and 429/5xx answers are retried
with exponential backoff, honouring Retry-After. Any other failure becomes a DailyApiError that
carries Daily's own `error` and `info`. The API key lives only in the client's default headers:
it never reaches a log line, an exception message or a repr. `JsonApi` is that machinery without
Daily's calls, for the providers whose rooms are Daily rooms (Tavus).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

log = logging.getLogger("runner.daily.rest")

RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
#: What a request that must not run twice (one that creates something billed) may retry: a
#: refusal that did nothing.
RETRIED_ONCE_ONLY = frozenset({429})
MAX_RETRY_AFTER = 10.0


class ApiError(Exception):
    """A provider's REST API refused a request (or could not be reached after retries)."""

    provider: ClassVar[str] = "REST"

    def __init__(self, method: str, path: str, status: int, error: str, info: str = "") -> None:
        self.status = status
        self.error = error
        self.info = info
        where = f"{status} {error}" if status else error
        super().__init__(f"{self.provider} API {method} /{path} failed: {where}"
                         + (f" ({info})" if info else ""))


class DailyApiError(ApiError):
    """Daily refused a request (or could not be reached after retries)."""

    provider = "Daily"


@dataclass(frozen=True)
class Room:
    name: str
    url: str


class JsonApi:
    """A JSON REST API behind a key: pooled connections, retries with backoff where a retry is
    safe, failures raised as `error_type`. Subclasses add the calls."""

    error_type: ClassVar[type[ApiError]] = ApiError

    def __init__(self, base_url: str, headers: Mapping[str, str], *, attempts: int = 4,
                 backoff: float = 0.5, timeout: float = 10.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._attempts = max(attempts, 1)
        self._backoff = backoff
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/", timeout=timeout, transport=transport,
            headers={**headers, "Content-Type": "application/json"},
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self._http.base_url)!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None, *,
                    missing_ok: bool = False, once: bool = False) -> dict[str, Any] | None:
        """One request, retried while safe. `once`: the request must not take effect twice
        (it creates something billed), so only what was surely not done is retried: a 429, or
        a connection never made."""
        retried = RETRIED_ONCE_ONLY if once else RETRIED_STATUSES
        attempt = 0
        while True:
            attempt += 1
            last = attempt >= self._attempts
            try:
                response = await self._http.request(method, path, json=body)
            except httpx.TransportError as error:
                unsent = isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout))
                if last or (once and not unsent):
                    raise self.error_type(method, path, 0, "unreachable",
                                          type(error).__name__) from None
                await self._pause(method, path, type(error).__name__, attempt, None)
                continue
            if response.status_code < 400:
                return json_object(response)
            if missing_ok and response.status_code == 404:
                return None
            if response.status_code not in retried or last:
                raise self._error(method, path, response)
            await self._pause(method, path, str(response.status_code), attempt,
                              response.headers.get("retry-after"))

    async def _pause(self, method: str, path: str, why: str, attempt: int,
                     retry_after: str | None) -> None:
        delay = self._backoff * 2 ** (attempt - 1) * (1 + random.random() / 4)
        if retry_after and retry_after.strip().isdigit():
            delay = max(delay, min(float(retry_after), MAX_RETRY_AFTER))
        log.warning("%s API %s /%s: %s; retrying in %.1f s", self.error_type.provider, method,
                    path, why, delay)
        await asyncio.sleep(delay)

    def _error(self, method: str, path: str, response: httpx.Response) -> ApiError:
        """The error for a refusal, from Daily's `{"error", "info"}` body shape."""
        data = json_object(response)
        error, info = data.get("error"), data.get("info")
        if not data:
            info = response.text[:200].strip()
        return self.error_type(method, path, response.status_code,
                               error if isinstance(error, str) else "error",
                               info if isinstance(info, str) else "")


class DailyRest(JsonApi):
    """The calls runner makes to Daily, nothing more."""

    error_type = DailyApiError

    def __init__(self, api_key: str, base_url: str, *, attempts: int = 4, backoff: float = 0.5,
                 timeout: float = 10.0, transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(base_url, {"Authorization": f"Bearer {api_key}"}, attempts=attempts,
                         backoff=backoff, timeout=timeout, transport=transport)

    async def create_room(self, properties: Mapping[str, Any], *, private: bool) -> Room:
        body = {"privacy": "private" if private else "public", "properties": dict(properties)}
        return _room(await self._call("POST", "rooms", body), "POST", "rooms")

    async def get_room(self, name: str) -> Room:
        path = f"rooms/{quote(name, safe='')}"
        return _room(await self._call("GET", path), "GET", path)

    async def delete_room(self, name: str) -> bool:
        """Delete a room; False when it was already gone (Daily answers 404)."""
        answer = await self._call("DELETE", f"rooms/{quote(name, safe='')}", missing_ok=True)
        return answer is not None

    async def create_token(self, properties: Mapping[str, Any]) -> str:
        answer = await self._call("POST", "meeting-tokens", {"properties": dict(properties)})
        token = answer.get("token") if answer else None
        if not isinstance(token, str):
            raise DailyApiError("POST", "meeting-tokens", 200, "bad-response", "no token in the answer")
        return token

    async def pinless_call_update(self, call_id: str, call_domain: str, sip_uri: str) -> None:
        """Connect a held dial-in call to the room whose SIP endpoint is `sip_uri`."""
        await self._call("POST", "dialin/pinlessCallUpdate",
                         {"callId": call_id, "callDomain": call_domain, "sipUri": sip_uri})


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The answer's JSON object; empty when it is not one (an HTML error page, no body)."""
    try:
        data = response.json() if response.content else {}
    except ValueError:
        data = None
    return data if isinstance(data, dict) else {}


def _room(data: dict[str, Any] | None, method: str, path: str) -> Room:
    name, url = (data or {}).get("name"), (data or {}).get("url")
    if not isinstance(name, str) or not isinstance(url, str):
        raise DailyApiError(method, path, 200, "bad-response", "no room name or url in the answer")
    return Room(name=name, url=url)
