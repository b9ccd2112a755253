"""The Daily REST client against a local server that answers as Daily's documented API does."""

from __future__ import annotations

import logging
import socket

import pytest
from daily_fakes import API_KEY, FakeDailyApi

from runner.transports.daily.rest import DailyApiError, DailyRest


@pytest.fixture
def api():
    with FakeDailyApi() as fake:
        yield fake


@pytest.fixture
async def rest(api):
    client = DailyRest(API_KEY, api.url, backoff=0.01)
    yield client
    await client.aclose()


async def test_rooms_and_tokens_round_trip_with_the_bearer_key(api, rest) -> None:
    room = await rest.create_room({"exp": 123, "start_video_off": True}, private=True)
    assert room.url == f"https://{api.domain}/{room.name}"
    assert api.rooms[room.name]["privacy"] == "private"
    assert api.rooms[room.name]["config"] == {"exp": 123, "start_video_off": True}
    token = await rest.create_token({"room_name": room.name, "is_owner": True})
    assert api.tokens[token] == {"room_name": room.name, "is_owner": True}
    assert await rest.get_room(room.name) == room
    assert await rest.delete_room(room.name) is True
    assert room.name not in api.rooms
    await rest.pinless_call_update("call-1", "domain-1", "sip:abc@sip.daily.co")
    assert api.calls("POST", "/dialin/pinlessCallUpdate")[0].body == {
        "callId": "call-1", "callDomain": "domain-1", "sipUri": "sip:abc@sip.daily.co"}
    assert {r.headers["authorization"] for r in api.requests} == {f"Bearer {API_KEY}"}


async def test_429_is_retried_after_its_retry_after(api, rest) -> None:
    api.fail("POST", "/rooms", 429, {"error": "rate-limit-error"}, {"Retry-After": "0"})
    room = await rest.create_room({}, private=True)
    assert room.name in api.rooms
    assert len(api.calls("POST", "/rooms")) == 2


async def test_5xx_is_retried_with_backoff_then_succeeds(api, rest) -> None:
    api.fail("POST", "/meeting-tokens", 503, {"error": "server-error"})
    api.fail("POST", "/meeting-tokens", 500, {})
    assert (await rest.create_token({"room_name": "x"})).startswith("token-")
    assert len(api.calls("POST", "/meeting-tokens")) == 3


async def test_retries_run_out_with_daily_s_error(api) -> None:
    rest = DailyRest(API_KEY, api.url, attempts=2, backoff=0.01)
    for _ in range(2):
        api.fail("POST", "/rooms", 429, {"error": "rate-limit-error", "info": "slow down"})
    with pytest.raises(DailyApiError) as caught:
        await rest.create_room({}, private=False)
    await rest.aclose()
    assert caught.value.status == 429
    assert str(caught.value) == "Daily API POST /rooms failed: 429 rate-limit-error (slow down)"


async def test_400_becomes_a_clear_error_without_retrying(api, rest) -> None:
    info = "name contains invalid characters (room names can contain A-Z, a-z, 0-9, '-', and '_')"
    api.fail("POST", "/rooms", 400, {"error": "invalid-request-error", "info": info})
    with pytest.raises(DailyApiError) as caught:
        await rest.create_room({"name": "no spaces"}, private=True)
    assert caught.value.error == "invalid-request-error"
    assert info in str(caught.value)
    assert len(api.calls("POST", "/rooms")) == 1


async def test_404_on_delete_means_already_gone_but_is_an_error_on_get(api, rest) -> None:
    assert await rest.delete_room("never-was") is False
    with pytest.raises(DailyApiError, match="404 not-found \\(room never-was not found\\)"):
        await rest.get_room("never-was")


async def test_a_wrong_key_is_reported_as_daily_says(api) -> None:
    rest = DailyRest("wrong-key", api.url, backoff=0.01)
    with pytest.raises(DailyApiError, match="401 authentication-error"):
        await rest.create_token({})
    await rest.aclose()


async def test_an_unreachable_api_is_retried_then_named() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    rest = DailyRest(API_KEY, f"http://127.0.0.1:{port}/v1", attempts=3, backoff=0.01)
    with pytest.raises(DailyApiError, match="unreachable \\(ConnectError\\)"):
        await rest.get_room("room")
    await rest.aclose()


async def test_the_api_key_is_never_logged_nor_in_errors(api, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    rest = DailyRest(API_KEY, api.url, backoff=0.01)
    api.fail("POST", "/rooms", 429, {"error": "rate-limit-error"})
    api.fail("POST", "/meeting-tokens", 400, {"error": "invalid-request-error", "info": "bad"})
    room = await rest.create_room({}, private=True)
    with pytest.raises(DailyApiError) as caught:
        await rest.create_token({"room_name": room.name})
    await rest.delete_room(room.name)
    await rest.aclose()
    assert caplog.records, "expected the retry to be logged"
    assert API_KEY not in caplog.text
    assert API_KEY not in str(caught.value) and API_KEY not in repr(caught.value)
    assert API_KEY not in repr(rest)
