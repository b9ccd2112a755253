"""The Tavus REST client against a local server that answers as Tavus's API does."""

from __future__ import annotations

import logging
import socket

import pytest
from tavus_fakes import TAVUS_KEY, FakeTavusApi

from runner.transports.tavus.rest import TavusApiError, TavusRest


@pytest.fixture
def api():
    with FakeTavusApi() as fake:
        yield fake


@pytest.fixture
async def rest(api):
    client = TavusRest(TAVUS_KEY, api.url, backoff=0.01)
    yield client
    await client.aclose()


async def test_conversations_and_personas_round_trip_with_the_key_header(api, rest) -> None:
    assert await rest.persona_name("pipecat0") == "Echo Persona"
    conversation = await rest.create_conversation("r1", "pipecat0")
    assert (conversation.id, conversation.url) == ("c1", "https://tavus.daily.co/c1")
    (created,) = api.calls("POST", "/conversations")
    assert created.body == {"replica_id": "r1", "persona_id": "pipecat0"}
    await rest.end_conversation("c1")
    assert api.conversations["c1"]["status"] == "ended" and api.ends() == ["c1"]
    assert {r.headers["x-api-key"] for r in api.requests} == {TAVUS_KEY}
    assert {r.headers["content-type"] for r in api.requests if r.body} == {"application/json"}


@pytest.mark.parametrize(("status", "body", "expected"), [
    (401, {"message": "Invalid access token"},
     "Tavus API POST /conversations failed: 401 the API key was refused (check TAVUS_API_KEY) "
     "(Invalid access token)"),
    (402, {"message": "Insufficient credits"},
     "Tavus API POST /conversations failed: 402 out of credits (Insufficient credits)"),
    (400, {"error": "Invalid replica_id"},
     "Tavus API POST /conversations failed: 400 bad request (Invalid replica_id)"),
    (500, {}, "Tavus API POST /conversations failed: 500 Tavus server error"),
])
async def test_refusals_say_why_and_creating_is_not_repeated(api, rest, status, body,
                                                             expected) -> None:
    api.fail("POST", "/conversations", status, body)
    with pytest.raises(TavusApiError) as caught:
        await rest.create_conversation("r1", "pipecat0")
    assert str(caught.value) == expected and caught.value.status == status
    # A create that may have taken effect is never sent twice: a second conversation would be
    # billed with nobody to end it.
    assert len(api.calls("POST", "/conversations")) == 1 and api.conversations == {}


async def test_429_is_retried_even_for_a_create(api, rest) -> None:
    api.fail("POST", "/conversations", 429, {"message": "Too many requests"}, {"Retry-After": "0"})
    assert (await rest.create_conversation("r1", "p1")).id == "c1"
    assert len(api.calls("POST", "/conversations")) == 2


async def test_a_429_that_lasts_is_the_concurrency_limit_in_words(api) -> None:
    rest = TavusRest(TAVUS_KEY, api.url, attempts=2, backoff=0.01)
    for _ in range(2):
        api.fail("POST", "/conversations", 429, {"message": "Concurrent conversation limit"})
    with pytest.raises(TavusApiError, match="429 too many requests, or too many conversations "
                                            "at once \\(Concurrent conversation limit\\)"):
        await rest.create_conversation("r1", "p1")
    await rest.aclose()


async def test_ending_is_retried_on_5xx(api, rest) -> None:
    await rest.create_conversation("r1", "p1")
    api.fail("POST", "/conversations/c1/end", 503, {"message": "unavailable"})
    await rest.end_conversation("c1")
    assert api.ends() == ["c1", "c1"] and api.conversations["c1"]["status"] == "ended"


async def test_a_wrong_key_is_a_401_in_words(api) -> None:
    rest = TavusRest("wrong-key", api.url, backoff=0.01)
    with pytest.raises(TavusApiError, match="GET /personas/pipecat0 failed: 401 the API key was "
                                            "refused"):
        await rest.persona_name("pipecat0")
    await rest.aclose()


async def test_an_unreachable_api_is_retried_then_named() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    rest = TavusRest(TAVUS_KEY, f"http://127.0.0.1:{port}/v2", attempts=2, backoff=0.01)
    with pytest.raises(TavusApiError, match="POST /conversations failed: unreachable "
                                            "\\(ConnectError\\)"):
        await rest.create_conversation("r1", "p1")  # never connected: safe to retry, and was
    await rest.aclose()


async def test_the_api_key_is_never_logged_nor_in_errors(api, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    rest = TavusRest(TAVUS_KEY, api.url, backoff=0.01)
    api.fail("GET", "/personas", 429, {"message": "slow down"})
    api.fail("POST", "/conversations", 402, {"message": "Insufficient credits"})
    await rest.persona_name("pipecat0")
    with pytest.raises(TavusApiError) as caught:
        await rest.create_conversation("r1", "p1")
    await rest.aclose()
    assert caplog.records, "expected the retry to be logged"
    assert TAVUS_KEY not in caplog.text
    assert TAVUS_KEY not in str(caught.value) and TAVUS_KEY not in repr(caught.value)
    assert TAVUS_KEY not in repr(rest)
