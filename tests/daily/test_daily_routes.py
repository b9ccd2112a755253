"""`/start`, `/daily`, `/daily/dialin` and `--room-url` through the real server, with Daily's REST
API served on 127.0.0.1 and the stand-in in place of daily-python."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from daily_fakes import API_KEY, FakeDailyApi, FakeSdk

from runner.app import create_app
from runner.config import ConfigError
from runner.transports.base import TransportError
from runner.transports.daily import service as service_module

from conftest import as_bot, make_config, serve, wait_for

WEBHOOK = {"To": "+15559876543", "From": "+15551234567", "callId": "call-uuid",
           "callDomain": "domain-uuid", "sipHeaders": {"X-Account": "42"}}


@pytest.fixture
def sdk(monkeypatch) -> FakeSdk:
    fake = FakeSdk()
    monkeypatch.setattr(service_module, "DailySdk", lambda: fake)
    monkeypatch.setattr(service_module, "REJOIN_PAUSE", 0.01)
    return fake


@pytest.fixture
def api():
    with FakeDailyApi() as fake:
        yield fake


def daily_config(api: FakeDailyApi, mode: str = "serve", env: dict[str, str] | None = None,
                 **flags: Any):
    environ = {"DAILY_API_KEY": API_KEY, "DAILY_API_URL": api.url, **(env or {})}
    return make_config(mode, environ=environ, transport="daily", **flags)


class Recorder:
    """A bot that notes its session, waits for a person, and returns when told (or at once)."""

    def __init__(self, stay: bool = False) -> None:
        self.sessions: list[Any] = []
        self.stay = stay
        self.release = asyncio.Event()

    async def run(self, transport) -> None:
        self.sessions.append(transport.session)
        if await transport.wait_connected() and self.stay:
            await self.release.wait()


async def test_start_gives_the_bot_an_owner_token_and_the_client_its_own(api, sdk) -> None:
    bot = Recorder()
    async with serve(daily_config(api), as_bot(bot.run)) as served, httpx.AsyncClient() as http:
        answer = await http.post(f"{served.http}/start", json={
            "createDailyRoom": True, "body": {"lang": "fr"},
            "dailyRoomProperties": {"enable_chat": True, "start_video_off": False},
            "dailyMeetingTokenProperties": {"is_owner": True, "user_name": "Ann"},
        })
        assert answer.status_code == 200
        data = answer.json()
        room = api.rooms["room-1"]
        assert data["dailyRoom"] == room["url"] and room["privacy"] == "private"
        assert room["config"]["enable_chat"] is True and room["config"]["start_video_off"] is False
        assert room["config"]["eject_at_room_exp"] is True and room["config"]["exp"] > 0
        await wait_for(lambda: sdk.clients and sdk.client.joined_with is not None)
        url, bot_token, _ = sdk.client.joined_with
        assert url == data["dailyRoom"] and bot_token != data["dailyToken"]
        assert api.tokens[bot_token]["is_owner"] is True
        assert api.tokens[bot_token]["room_name"] == "room-1"
        client_token = api.tokens[data["dailyToken"]]
        assert client_token["is_owner"] is False and client_token["user_name"] == "Ann"
        assert client_token["room_name"] == "room-1"
        session = bot.sessions[0]
        assert (session.id, session.body, session.room_url) == (data["sessionId"], {"lang": "fr"},
                                                                 data["dailyRoom"])
        sdk.client.participant_joins("p1")
        await wait_for(lambda: not api.rooms)  # the bot returned: room deleted after leaving
        assert sdk.client.released
        assert dict(served.sessions.outcomes) == {"daily:ok": 1}


async def test_start_reuses_daily_room_url_and_never_deletes_it(api, sdk) -> None:
    url = api.add_room("standing")
    config = daily_config(api, env={"DAILY_ROOM_URL": url})
    async with serve(config, as_bot(Recorder().run)) as served, httpx.AsyncClient() as http:
        data = (await http.post(f"{served.http}/start", json={})).json()
        assert data["dailyRoom"] == url
        assert api.tokens[data["dailyToken"]]["room_name"] == "standing"
        await wait_for(lambda: sdk.clients and sdk.client.joined_with is not None)
        sdk.client.participant_joins("p1")
        await wait_for(lambda: sdk.client.released)
        await wait_for(lambda: not served.sessions.active)
    assert api.calls("POST", "/rooms") == [] and api.calls("DELETE") == []
    assert "standing" in api.rooms


async def test_keep_rooms_keeps_the_rooms_runner_created(api, sdk) -> None:
    config = daily_config(api, env={"RUNNER_DAILY_KEEP_ROOMS": "true"})
    async with serve(config, as_bot(Recorder().run)) as served, httpx.AsyncClient() as http:
        await http.post(f"{served.http}/start", json={})
        await wait_for(lambda: sdk.clients and sdk.client.joined_with is not None)
        sdk.client.participant_joins("p1")
        await wait_for(lambda: sdk.client.released)
    assert api.calls("DELETE") == [] and "room-1" in api.rooms


async def test_start_needs_the_api_key_when_one_is_set(api, sdk) -> None:
    config = daily_config(api, env={"RUNNER_API_KEY": "runner-key"})
    async with serve(config, as_bot(Recorder().run)) as served, httpx.AsyncClient() as http:
        refused = await http.post(f"{served.http}/start", json={})
        assert refused.status_code == 401 and api.requests == []
        allowed = await http.post(f"{served.http}/start", json={},
                                  headers={"Authorization": "Bearer runner-key"})
        assert allowed.status_code == 200


async def test_daily_errors_are_502_with_daily_s_info_and_free_the_slot(api, sdk) -> None:
    api.fail("POST", "/rooms", 400, {"error": "invalid-request-error", "info": "bad exp"})
    async with serve(daily_config(api), as_bot(Recorder().run)) as served, httpx.AsyncClient() as http:
        answer = await http.post(f"{served.http}/start", json={"dailyRoomProperties": {"exp": 1}})
        assert answer.status_code == 502
        assert answer.json()["detail"] == (
            "Daily API POST /rooms failed: 400 invalid-request-error (bad exp)")
        assert not served.sessions.active and sdk.clients == []


async def test_a_room_whose_tokens_fail_is_deleted(api, sdk) -> None:
    api.fail("POST", "/meeting-tokens", 401, {"error": "authentication-error"})
    async with serve(daily_config(api), as_bot(Recorder().run)) as served, httpx.AsyncClient() as http:
        assert (await http.post(f"{served.http}/start", json={})).status_code == 502
        await wait_for(lambda: not api.rooms)


async def test_a_full_server_spends_nothing_at_daily(api, sdk) -> None:
    bot = Recorder(stay=True)
    config = daily_config(api, max_sessions="1")
    async with serve(config, as_bot(bot.run)) as served, httpx.AsyncClient() as http:
        assert (await http.post(f"{served.http}/start", json={})).status_code == 200
        full = await http.post(f"{served.http}/start", json={})
        assert full.status_code == 503 and full.headers["retry-after"]
        assert len(api.calls("POST", "/rooms")) == 1
        bot.release.set()


async def test_bad_overrides_are_400(api, sdk) -> None:
    async with serve(daily_config(api), as_bot(Recorder().run)) as served, httpx.AsyncClient() as http:
        answer = await http.post(f"{served.http}/start", json={"dailyRoomProperties": [1]})
        assert answer.status_code == 400
        assert answer.json()["detail"] == "dailyRoomProperties must be a JSON object"
        assert api.requests == []


async def test_get_daily_in_dev_sends_the_browser_to_the_room(api, sdk) -> None:
    async with serve(daily_config(api, mode="dev"), as_bot(Recorder().run)) as served, \
            httpx.AsyncClient() as http:
        answer = await http.get(f"{served.http}/daily")
        assert answer.status_code == 303
        room, _, token = answer.headers["location"].partition("?t=")
        assert room == api.rooms["room-1"]["url"]
        assert api.tokens[token]["is_owner"] is False
    async with serve(daily_config(api), as_bot(Recorder().run)) as served, httpx.AsyncClient() as http:
        assert (await http.get(f"{served.http}/daily")).status_code == 404


async def test_dialin_needs_its_secret(api, sdk) -> None:
    async with serve(daily_config(api), as_bot(Recorder().run)) as served, httpx.AsyncClient() as http:
        off = await http.post(f"{served.http}/daily/dialin", json=WEBHOOK)
        assert off.status_code == 403 and "RUNNER_DAILY_DIALIN_SECRET" in off.json()["detail"]
    config = daily_config(api, env={"RUNNER_DAILY_DIALIN_SECRET": "s3cret"})
    async with serve(config, as_bot(Recorder().run)) as served, httpx.AsyncClient() as http:
        wrong = await http.post(f"{served.http}/daily/dialin?secret=nope", json=WEBHOOK)
        assert wrong.status_code == 401
        ping = await http.post(f"{served.http}/daily/dialin?secret=s3cret",
                               json={"To": "+15559876543"})
        assert ping.status_code == 200 and ping.json() == {"status": "ok"}
        by_header = await http.post(f"{served.http}/daily/dialin", json={"test": "test"},
                                    headers={"X-Dialin-Secret": "s3cret"})
        assert by_header.status_code == 200
        bad = await http.post(f"{served.http}/daily/dialin?secret=s3cret", json={"callId": 5})
        assert bad.status_code == 400
    assert api.requests == [] and sdk.clients == []


async def test_a_dialin_call_gets_a_sip_room_a_bot_and_is_connected(api, sdk) -> None:
    bot = Recorder(stay=True)
    config = daily_config(api, env={"RUNNER_DAILY_DIALIN_SECRET": "s3cret"})
    async with serve(config, as_bot(bot.run)) as served, httpx.AsyncClient() as http:
        answer = await http.post(f"{served.http}/daily/dialin?secret=s3cret", json=WEBHOOK)
        assert answer.status_code == 200
        room = api.rooms["room-1"]
        assert answer.json()["dailyRoom"] == room["url"] and room["privacy"] == "public"
        assert room["config"]["sip"] == {"display_name": "+15551234567", "video": False,
                                         "sip_mode": "dial-in", "num_endpoints": 1}
        session = bot.sessions[0]
        assert session.call.call_id == "call-uuid" and session.call.account_id == "domain-uuid"
        assert (session.call.from_number, session.call.to_number) == ("+15551234567", "+15559876543")
        assert session.body == WEBHOOK and API_KEY not in repr(session)
        await wait_for(lambda: sdk.clients and sdk.client.joined_with is not None)
        sdk.client.dialin_ready("sip:room-1@fake.sip.daily.co")
        await wait_for(lambda: bool(api.calls("POST", "/dialin/pinlessCallUpdate")))
        assert api.calls("POST", "/dialin/pinlessCallUpdate")[0].body == {
            "callId": "call-uuid", "callDomain": "domain-uuid",
            "sipUri": "sip:room-1@fake.sip.daily.co"}
        sdk.client.participant_joins("sip-caller", "+15551234567")
        await wait_for(lambda: served.sessions.active and bot.sessions and
                       next(iter(served.sessions.active.values())).transport.connected)
        bot.release.set()  # the bot is done: the caller is hung up, the room goes
        await wait_for(lambda: not api.rooms)
        assert ("eject_remote_participants", ["sip-caller"]) in sdk.client.calls


async def test_room_url_joins_at_startup_and_rejoins_after_each_session(api, sdk) -> None:
    url = api.add_room("lobby")
    config = daily_config(api, daily_room_url=url)
    async with serve(config, as_bot(Recorder().run)) as served, httpx.AsyncClient() as http:
        assert (await http.post(f"{served.http}/start", json={})).status_code == 404
        await wait_for(lambda: sdk.clients and sdk.client.joined_with is not None)
        first = sdk.client
        assert first.joined_with[0] == url
        token = api.tokens[first.joined_with[1]]
        assert token["room_name"] == "lobby" and token["is_owner"] is True
        assert api.calls("GET", "/rooms/lobby")
        first.participant_joins("p1")  # the bot returns: that session ends, a new one joins
        await wait_for(lambda: len(sdk.clients) == 2 and sdk.client.joined_with is not None)
        assert first.released
    assert "lobby" in api.rooms and api.calls("DELETE") == []


async def test_room_url_without_an_api_key_joins_without_a_token(sdk) -> None:
    config = make_config("serve", transport="daily", daily_room_url="https://x.daily.co/open")
    async with serve(config, as_bot(Recorder().run)):
        await wait_for(lambda: sdk.clients and sdk.client.joined_with is not None)
        assert sdk.client.joined_with[:2] == ("https://x.daily.co/open", None)


def test_settings_that_cannot_work_are_refused_at_start() -> None:
    with pytest.raises(ConfigError, match="needs DAILY_API_KEY"):
        create_app(make_config("serve", transport="daily", host="127.0.0.1"), as_bot(Recorder().run))
    with pytest.raises(ConfigError, match=r"--room-url: 'https://x\.daily\.co/' is not a Daily room"):
        create_app(make_config("serve", transport="daily", host="127.0.0.1",
                               daily_room_url="https://x.daily.co/"), as_bot(Recorder().run))


def test_mounting_daily_does_not_load_daily_python() -> None:
    """daily-python (a native library) loads with the first session, not with the server."""
    probe = (
        "import sys\n"
        "from conftest import as_bot, make_config\n"
        "from runner.app import create_app\n"
        "async def bot(transport): pass\n"
        "create_app(make_config('serve', environ={'DAILY_API_KEY': 'k'}, transport='daily',\n"
        "                      host='127.0.0.1'), as_bot(bot))\n"
        "print('daily' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=30, cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


async def test_transport_options_name_the_bot_and_unknown_ones_are_refused(api, sdk) -> None:
    bot = Recorder()
    async with serve(daily_config(api), as_bot(bot.run, daily={"bot_name": "Ava"})) as served, \
            httpx.AsyncClient() as http:
        await http.post(f"{served.http}/start", json={})
        await wait_for(lambda: sdk.clients and sdk.client.joined_with is not None)
        assert ("set_user_name", "Ava") in sdk.client.calls
        assert api.tokens[sdk.client.joined_with[1]]["user_name"] == "Ava"
    with pytest.raises(TransportError, match="unknown key 'voice'"):
        create_app(daily_config(api, host="127.0.0.1"), as_bot(bot.run, daily={"voice": "x"}))
