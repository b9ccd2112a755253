"""Tavus's REST API: conversations (create, end) and personas (their names), nothing more.

A conversation is billed while it is open. So creating one is retried only where the first try
surely did nothing (a 429, a connection never made): a retry after a lost answer could open a
second conversation nobody ends. Ending and reading are retried like any idempotent call. A
failure is a TavusApiError that says in words what went wrong (the key refused, out of credits,
too many at once) with Tavus's own text after it. The API key lives only in the client's
headers: never in a log line, an error or a repr.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

import httpx

from runner.transports.daily.rest import ApiError, JsonApi, json_object

#: The persona a bot that brings its own voice uses: echo mode, the replica speaks what it is sent.
DEFAULT_PERSONA = "pipecat0"

REASONS = {
    400: "bad request",
    401: "the API key was refused (check TAVUS_API_KEY)",
    402: "out of credits",
    403: "not allowed for this API key",
    404: "not found",
    429: "too many requests, or too many conversations at once",
}


class TavusApiError(ApiError):
    """Tavus refused a request (or could not be reached after retries)."""

    provider = "Tavus"


@dataclass(frozen=True)
class Conversation:
    id: str
    url: str  # its Daily room


class TavusRest(JsonApi):
    """The calls runner makes to Tavus."""

    error_type = TavusApiError

    def __init__(self, api_key: str, base_url: str, *, attempts: int = 3, backoff: float = 0.5,
                 timeout: float = 10.0, transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(base_url, {"x-api-key": api_key}, attempts=attempts, backoff=backoff,
                         timeout=timeout, transport=transport)

    async def create_conversation(self, replica_id: str, persona_id: str) -> Conversation:
        """A new conversation: the replica joins its room at once, and billing starts."""
        answer = await self._call("POST", "conversations",
                                  {"replica_id": replica_id, "persona_id": persona_id}, once=True)
        conversation_id = (answer or {}).get("conversation_id")
        url = (answer or {}).get("conversation_url")
        if not isinstance(conversation_id, str) or not isinstance(url, str):
            raise TavusApiError("POST", "conversations", 200, "bad answer",
                                "no conversation_id or conversation_url")
        return Conversation(conversation_id, url)

    async def end_conversation(self, conversation_id: str) -> None:
        await self._call("POST", f"conversations/{quote(conversation_id, safe='')}/end")

    async def persona_name(self, persona_id: str) -> str:
        """The persona's name: the user name its replica has in the room."""
        path = f"personas/{quote(persona_id, safe='')}"
        name = (await self._call("GET", path) or {}).get("persona_name")
        if not isinstance(name, str) or not name:
            raise TavusApiError("GET", path, 200, "bad answer", "no persona_name")
        return name

    def _error(self, method: str, path: str, response: httpx.Response) -> ApiError:
        data = json_object(response)
        detail = next((data[key] for key in ("message", "error", "detail")
                       if isinstance(data.get(key), str)), "")
        text = response.text.strip()
        if not data and not text.startswith(("{", "[")):
            detail = text[:200]  # not JSON: a proxy's or gateway's page
        status = response.status_code
        reason = REASONS.get(status) or ("Tavus server error" if status >= 500 else "error")
        return TavusApiError(method, path, status, reason, detail)


async def problem_reaching(api_key: str, base_url: str, persona_id: str) -> str | None:
    """`runner smoke`'s question: why Tavus cannot be used from here (None: it answered). Asked
    for free, as a persona's name: nothing is created, nothing billed."""
    client = TavusRest(api_key, base_url, attempts=1, timeout=5.0)
    try:
        await client.persona_name(persona_id)
    except TavusApiError as error:
        return str(error)
    finally:
        await client.aclose()
    return None
