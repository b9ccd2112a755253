"""`/start`, `/tavus` and `--room-url` through the real server, with Tavus's API served on
127.0.0.1 and the Daily stand-in in place of daily-python."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
from tavus_fakes import PERSONA_NAME, REPLICA_ID, TAVUS_KEY, FakeSdk, FakeTavusApi, echoes

from runner.app import create_app
from runner.config import ConfigError
from runner.selection import select_transports
from runner.transports.daily import service as daily_service
from runner.transports.tavus.transport import TavusTransport

from conftest import as_bot, make_config, serve, wait_for


@pytest.fixture
def sdk(monkeypatch) -> FakeSdk:
    fake = FakeSdk()
    monkeypatch.setattr(daily_service, "DailySdk", lambda: fake)
    monkeypatch.setattr(daily_service, "REJOIN_PAUSE", 0.01)
    return fake


@pytest.fixture
def api():
    with FakeTavusApi() as fake:
        yield fake


def tavus_env(api: FakeTavusApi, **extra: str) -> dict[str, str]:
    return {"TAVUS_API_KEY": TAVUS_KEY, "TAVUS_REPLICA_ID": REPLICA_ID, "TAVUS_API_URL": api.url,
            **extra}


def tavus_config(api: FakeTavusApi, mode: str = "serve", **flags: Any):
    return make_config(mode, environ=tavus_env(api), transport="tavus", **flags)


class Bot:
    """Notes its transport, says something once the person is there, returns when told (or
    raises, to show a crash ends the conversation too)."""

    def __init__(self, stay: bool = False, crash: bool = False) -> None:
        self.transports: list[Any] = []
        self.stay, self.crash = stay, crash
        self.release = asyncio.Event()

    async def run(self, transport) -> None:
        from runner.audio import tone

        self.transports.append(transport)
        if not await transport.wait_connected():
            return
        await transport.send_audio(tone(440, 0.1, 16000))
        await transport.mark("said")
        if self.crash:
            raise RuntimeError("the bot broke")
        if self.stay:
            await self.release.wait()


async def joined(sdk: FakeSdk) -> None:
    await wait_for(lambda: bool(sdk.clients) and sdk.client.joined_with is not None)
    sdk.client.participant_joins("replica-1", PERSONA_NAME)
    sdk.client.participant_joins("user-1", "Ann")


async def test_start_opens_a_conversation_the_bot_joins_and_ends_it_once(api, sdk) -> None:
    bot = Bot(stay=True)
    async with serve(tavus_config(api), as_bot(bot.run)) as served, httpx.AsyncClient() as http:
        answer = await http.post(f"{served.http}/start", json={"body": {"lang": "fr"}})
        assert answer.status_code == 200
        data = answer.json()
        conversation = api.conversations["c1"]
        assert (conversation["replica_id"], conversation["persona_id"]) == (REPLICA_ID, "pipecat0")
        assert data == {"dailyRoom": "https://tavus.daily.co/c1", "sessionId": data["sessionId"],
                        "conversationId": "c1"}
        await joined(sdk)
        assert sdk.client.joined_with[:2] == ("https://tavus.daily.co/c1", None)
        await wait_for(lambda: bool(echoes(sdk.client.sent)))
        transport = bot.transports[0]
        assert isinstance(transport, TavusTransport) and transport.kind == "tavus"
        assert (transport.session.id, transport.session.body) == (data["sessionId"], {"lang": "fr"})
        assert transport.session.room_url == data["dailyRoom"]
        assert {m["conversation_id"] for m in echoes(sdk.client.sent)} == {"c1"}
        assert api.ends() == []  # billed while the session runs, and open
        bot.release.set()
        await wait_for(lambda: api.ends() == ["c1"])
        assert sdk.client.released and conversation["status"] == "ended"
        assert dict(served.sessions.outcomes) == {"tavus:ok": 1}
    assert api.ends() == ["c1"]  # exactly once, the shutdown did not end it again


async def test_a_bot_that_raises_ends_its_conversation_too(api, sdk) -> None:
    bot = Bot(crash=True)
    async with serve(tavus_config(api), as_bot(bot.run)) as served, httpx.AsyncClient() as http:
        assert (await http.post(f"{served.http}/start", json={})).status_code == 200
        await joined(sdk)
        await wait_for(lambda: api.ends() == ["c1"])
        assert dict(served.sessions.outcomes) == {"tavus:bot_error": 1}
    assert api.ends() == ["c1"]


async def test_a_conversation_nobody_joins_is_ended(api, sdk) -> None:
    environ = tavus_env(api, RUNNER_DAILY_WAIT_TIMEOUT="0.3")
    config = make_config("serve", environ=environ, transport="tavus")
    async with serve(config, as_bot(Bot().run)) as served, httpx.AsyncClient() as http:
        assert (await http.post(f"{served.http}/start", json={})).status_code == 200
        await wait_for(lambda: api.ends() == ["c1"])
        assert not served.sessions.active


async def test_stopping_the_server_ends_a_running_conversation(api, sdk) -> None:
    bot = Bot(stay=True)
    async with serve(tavus_config(api), as_bot(bot.run)) as served, httpx.AsyncClient() as http:
        assert (await http.post(f"{served.http}/start", json={})).status_code == 200
        await joined(sdk)
        await wait_for(lambda: bool(served.sessions.active))
    assert api.ends() == ["c1"]


@pytest.mark.parametrize(("status", "body", "reason"), [
    (401, {"message": "Invalid access token"}, "401 the API key was refused (check TAVUS_API_KEY)"),
    (402, {"message": "Insufficient credits"}, "402 out of credits (Insufficient credits)"),
    (429, {"message": "Concurrent conversation limit"}, "429 too many requests, or too many "
                                                         "conversations at once"),
    (500, {"message": "Internal error"}, "500 Tavus server error (Internal error)"),
])
async def test_tavus_refusals_are_a_502_with_the_reason_and_one_log_line(
        api, sdk, caplog, status, body, reason) -> None:
    for _ in range(3):  # a lasting 429 outlives the retries
        api.fail("POST", "/conversations", status, body)
    caplog.set_level(logging.INFO)
    async with serve(tavus_config(api), as_bot(Bot().run)) as served, httpx.AsyncClient() as http:
        answer = await asyncio.wait_for(http.post(f"{served.http}/start", json={}), 15)
        assert answer.status_code == 502
        assert answer.json()["detail"].startswith(
            f"Tavus API POST /conversations failed: {reason}")
        assert not served.sessions.active and sdk.clients == [] and api.ends() == []
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and reason in errors[0].getMessage()
    assert TAVUS_KEY not in caplog.text


async def test_a_persona_that_cannot_be_read_refuses_before_anything_is_billed(api, sdk) -> None:
    api.fail("GET", "/personas/pipecat0", 404, {"message": "Persona not found"})
    async with serve(tavus_config(api), as_bot(Bot().run)) as served, httpx.AsyncClient() as http:
        answer = await http.post(f"{served.http}/start", json={})
        assert answer.status_code == 502 and "Persona not found" in answer.json()["detail"]
        assert api.calls("POST", "/conversations") == []
        # The next /start reads it again (a failure is not remembered) and goes ahead.
        assert (await http.post(f"{served.http}/start", json={})).status_code == 200


async def test_the_persona_is_read_once_per_process(api, sdk) -> None:
    async with serve(tavus_config(api), as_bot(Bot().run)) as served, httpx.AsyncClient() as http:
        for _ in range(2):
            assert (await http.post(f"{served.http}/start", json={})).status_code == 200
        await wait_for(lambda: len(sdk.clients) == 2)
    assert len(api.calls("GET", "/personas")) == 1 and sorted(api.ends()) == ["c1", "c2"]


async def test_a_full_server_spends_nothing_at_tavus(api, sdk) -> None:
    bot = Bot(stay=True)
    config = tavus_config(api, max_sessions="1")
    async with serve(config, as_bot(bot.run)) as served, httpx.AsyncClient() as http:
        assert (await http.post(f"{served.http}/start", json={})).status_code == 200
        full = await http.post(f"{served.http}/start", json={})
        assert full.status_code == 503 and full.headers["retry-after"]
        assert len(api.calls("POST", "/conversations")) == 1
        bot.release.set()


async def test_start_needs_the_runner_api_key_when_one_is_set(api, sdk) -> None:
    config = make_config("serve", environ=tavus_env(api, RUNNER_API_KEY="runner-key"),
                         transport="tavus")
    async with serve(config, as_bot(Bot().run)) as served, httpx.AsyncClient() as http:
        assert (await http.post(f"{served.http}/start", json={})).status_code == 401
        assert api.requests == []


async def test_a_daily_client_asking_for_a_room_gets_the_conversation_s(api, sdk) -> None:
    async with serve(tavus_config(api), as_bot(Bot().run)) as served, httpx.AsyncClient() as http:
        answer = await http.post(f"{served.http}/start", json={"createDailyRoom": True})
        assert answer.status_code == 200 and answer.json()["conversationId"] == "c1"
        explicit = await http.post(f"{served.http}/start", json={"transport": "tavus"})
        assert explicit.json()["conversationId"] == "c2"


async def test_get_tavus_in_dev_sends_the_browser_to_the_conversation(api, sdk) -> None:
    async with serve(tavus_config(api, mode="dev"), as_bot(Bot().run)) as served, \
            httpx.AsyncClient() as http:
        answer = await http.get(f"{served.http}/tavus")
        assert answer.status_code == 303
        assert answer.headers["location"] == "https://tavus.daily.co/c1"
    async with serve(tavus_config(api), as_bot(Bot().run)) as served, httpx.AsyncClient() as http:
        assert (await http.get(f"{served.http}/tavus")).status_code == 404


async def test_room_url_joins_that_conversation_and_never_creates_or_ends_one(api, sdk) -> None:
    config = tavus_config(api, daily_room_url="https://tavus.daily.co/c777")
    async with serve(config, as_bot(Bot().run)) as served, httpx.AsyncClient() as http:
        assert (await http.post(f"{served.http}/start", json={})).status_code == 404
        await joined(sdk)
        first = sdk.client
        assert first.joined_with[:2] == ("https://tavus.daily.co/c777", None)
        await wait_for(lambda: bool(echoes(first.sent)))
        assert {m["conversation_id"] for m in echoes(first.sent)} == {"c777"}
        await wait_for(lambda: len(sdk.clients) == 2)  # the bot returned: a fresh one rejoins
    assert api.calls("POST") == []


def test_settings_that_cannot_work_are_refused_at_start(api) -> None:
    def app(environ: dict[str, str], **flags: Any) -> None:
        create_app(make_config("serve", environ=environ, host="127.0.0.1", **flags),
                   as_bot(Bot().run))

    with pytest.raises(ConfigError, match="needs TAVUS_API_KEY and TAVUS_REPLICA_ID"):
        app({}, transport="tavus")
    with pytest.raises(ConfigError, match="needs TAVUS_API_KEY,"):
        app({}, transport="tavus", daily_room_url="https://tavus.daily.co/c1")
    with pytest.raises(ConfigError, match="not a Tavus conversation URL"):
        app(tavus_env(api), transport="tavus", daily_room_url="https://tavus.daily.co/")
    with pytest.raises(ConfigError, match="not both"):
        app({**tavus_env(api), "DAILY_API_KEY": "k"}, transport="daily,tavus",
            daily_room_url="https://tavus.daily.co/c1")


def test_serve_picks_tavus_when_its_key_and_replica_are_set() -> None:
    choices = select_transports(make_config("serve", environ={
        "TAVUS_API_KEY": "k", "TAVUS_REPLICA_ID": "r1"}))
    assert [(c.name, c.reason) for c in choices] == [
        ("tavus", "TAVUS_API_KEY and TAVUS_REPLICA_ID are set")]
    with pytest.raises(ConfigError, match="tavus: TAVUS_API_KEY \\+ TAVUS_REPLICA_ID"):
        select_transports(make_config("serve", environ={"TAVUS_API_KEY": "k"}))


def test_serving_tavus_publicly_needs_an_api_key(api) -> None:
    with pytest.raises(ConfigError, match=r"refusing to serve tavus on 0\.0\.0\.0"):
        create_app(make_config("serve", environ=tavus_env(api), transport="tavus"),
                   as_bot(Bot().run))
