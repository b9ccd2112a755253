"""`/start` and `--room` through the real server, with LiveKit's room service on 127.0.0.1 and
the livekit.rtc stand-in in place of the SDK (its events come from another thread)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from livekit import api
from livekit_fakes import AGENT, API_KEY, API_SECRET, SIP, FakeLiveKitServer, FakeRtc

from runner.app import create_app
from runner.audio import tone
from runner.config import ConfigError
from runner.selection import select_transports
from runner.transports.base import AppMessage, ClientConnected, ClientLeft, Dtmf
from runner.transports.daily import service as daily_service
from runner.transports.livekit import service as service_module
from runner.transports.livekit.transport import DATA_TOPIC, LiveKitTransport

from conftest import as_bot, make_config, serve, wait_for


@pytest.fixture
def rtc(monkeypatch) -> FakeRtc:
    fake = FakeRtc()
    monkeypatch.setattr(service_module, "load_rtc", lambda: fake)
    monkeypatch.setattr(daily_service, "REJOIN_PAUSE", 0.01)
    return fake


@pytest.fixture
def server():
    with FakeLiveKitServer() as fake:
        yield fake


def livekit_env(server: FakeLiveKitServer, **extra: str) -> dict[str, str]:
    return {"LIVEKIT_URL": server.url, "LIVEKIT_API_KEY": API_KEY,
            "LIVEKIT_API_SECRET": API_SECRET, **extra}


class Bot:
    """Notes its transport and what it got, speaks once the person is there, echoes messages."""

    def __init__(self) -> None:
        self.transports: list[LiveKitTransport] = []
        self.events: list[Any] = []
        self.heard = bytearray()
        self.release = asyncio.Event()

    async def run(self, transport) -> None:
        self.transports.append(transport)
        if not await transport.wait_connected():
            return

        async def events() -> None:
            async for event in transport.events():
                self.events.append(event)
                if isinstance(event, AppMessage):
                    await transport.send_message({"echo": event.data})

        async def listen() -> None:
            async for frame in transport.audio(sample_rate=16000):
                self.heard.extend(frame.pcm)

        tasks = [asyncio.create_task(events()), asyncio.create_task(listen())]
        await transport.send_audio(tone(440, 0.2, 24000))
        await self.release.wait()
        for task in tasks:
            task.cancel()


async def test_start_creates_a_room_the_bot_joins_and_deletes_it_afterwards(server, rtc) -> None:
    bot = Bot()
    config = make_config("serve", environ=livekit_env(server), transport="livekit")
    async with serve(config, as_bot(bot.run, livekit={"sample_rate": 24000})) as served, \
            httpx.AsyncClient() as http:
        answer = await http.post(f"{served.http}/start", json={"body": {"lang": "fr"}})
        assert answer.status_code == 200
        data = answer.json()
        assert set(data) == {"url", "token", "sessionId"} and data["url"] == server.url
        (room_name,) = server.rooms
        assert room_name.startswith("runner-")
        user = api.TokenVerifier(API_KEY, API_SECRET).verify(data["token"])
        assert user.video is not None and user.video.room == room_name
        assert not user.video.room_admin and not user.video.agent

        await wait_for(lambda: bool(rtc.rooms) and bool(rtc.room.local_participant.published))
        room = rtc.room
        bot_claims = api.TokenVerifier(API_KEY, API_SECRET).verify(room.connected_with[1])
        assert bot_claims.video is not None and bot_claims.video.agent
        assert bot_claims.video.room == room_name and bot_claims.identity != user.identity
        ((track, options),) = room.local_participant.published
        assert track.source.sample_rate == 24000 and options.source == 2  # the bot's rate

        room.join("other-bot", kind=AGENT)  # another agent is nobody the bot waits for
        mic = room.join(user.identity)
        assert mic is not None
        await wait_for(lambda: bool(bot.transports) and bot.transports[0].connected)
        transport = bot.transports[0]
        assert (transport.session.id, transport.session.body) == (data["sessionId"], {"lang": "fr"})
        assert transport.room_name == room_name
        await wait_for(lambda: len(track.source.pcm) >= 24000 * 2 // 5 - 960)  # 0.2 s, paced
        assert len(track.source.pcm) <= 24000 * 2 // 5 + 960

        mic.push(tone(300, 0.02, 48000).pcm)
        await wait_for(lambda: len(bot.heard) > 0)
        room.send_data(json.dumps({"hi": 1}).encode(), DATA_TOPIC, user.identity)
        room.send_data(b'{"ignored": true}', "lk-chat-topic", user.identity)
        await wait_for(lambda: bool(room.local_participant.data))
        ((sent, reliable, topic),) = room.local_participant.data
        assert (json.loads(sent), reliable, topic) == ({"echo": {"hi": 1}}, True, DATA_TOPIC)

        await transport.clear_audio()
        assert track.source.cleared == 1
        assert server.calls("DeleteRoom") == []  # the session runs: the room stays
        room.leave(user.identity)
        await wait_for(lambda: transport.ended, 5)
        bot.release.set()
        await wait_for(lambda: server.rooms == {})
        assert room.disconnected and rtc.errors == []
        assert [type(e) for e in bot.events if not isinstance(e, AppMessage)][:1] == [ClientConnected]
        assert isinstance(bot.events[-1], ClientLeft)
        assert [e.data for e in bot.events if isinstance(e, AppMessage)] == [{"hi": 1}]
    assert [body["room"] for body in server.calls("DeleteRoom")] == [room_name]  # once


async def test_a_phone_caller_fills_the_call_and_dials_digits(server, rtc) -> None:
    bot = Bot()
    environ = livekit_env(server, LIVEKIT_ROOM_NAME="support")
    config = make_config("serve", environ=environ, transport="livekit")
    async with serve(config, as_bot(bot.run)) as served, httpx.AsyncClient() as http:
        answer = await http.post(f"{served.http}/start", json={})
        assert answer.status_code == 200
        assert server.calls("CreateRoom") == []  # LIVEKIT_ROOM_NAME: not runner's to create
        await wait_for(lambda: bool(rtc.rooms) and rtc.room.connected_with is not None)
        rtc.room.join("sip_+15551234567", kind=SIP, attributes={
            "sip.callID": "SCL_1", "sip.phoneNumber": "+15551234567",
            "sip.trunkPhoneNumber": "+15559876543"})
        await wait_for(lambda: bool(bot.transports) and bot.transports[0].connected)
        call = bot.transports[0].session.call
        assert call is not None
        assert (call.provider, call.call_id, call.from_number, call.to_number) == (
            "livekit", "SCL_1", "+15551234567", "+15559876543")
        rtc.room.dtmf("5", "sip_+15551234567")
        await wait_for(lambda: Dtmf("5") in bot.events)
        await bot.transports[0].hangup()
        bot.release.set()
        await wait_for(lambda: rtc.room.disconnected)
    assert server.calls("DeleteRoom") == []


async def test_room_flag_keeps_a_bot_in_that_room_from_startup(server, rtc) -> None:
    bot = Bot()
    config = make_config("serve", environ=livekit_env(server), transport="livekit",
                         livekit_room="lobby")
    async with serve(config, as_bot(bot.run)) as served, httpx.AsyncClient() as http:
        await wait_for(lambda: bool(rtc.rooms) and rtc.room.connected_with is not None)
        claims = api.TokenVerifier(API_KEY, API_SECRET).verify(rtc.room.connected_with[1])
        assert claims.video is not None and claims.video.room == "lobby"
        assert (await http.post(f"{served.http}/start", json={})).status_code != 200
        rtc.room.join("ann")
        await wait_for(lambda: bool(bot.transports) and bot.transports[0].connected)
        bot.release.set()
        await wait_for(lambda: len(rtc.rooms) >= 2)  # a fresh session once the last one ended
    assert server.requests == []  # the room is the developer's: never created, never deleted


async def test_a_refusing_room_service_is_a_502_and_no_session(server, rtc) -> None:
    server.fail("CreateRoom", 429, "resource_exhausted", "too many rooms")
    config = make_config("serve", environ=livekit_env(server), transport="livekit")
    async with serve(config, as_bot(Bot().run)) as served, httpx.AsyncClient() as http:
        answer = await http.post(f"{served.http}/start", json={"transport": "livekit"})
        assert answer.status_code == 502 and "429 resource_exhausted" in answer.json()["detail"]
        assert not served.sessions.active and rtc.rooms == []


def test_missing_variables_are_named_in_one_error() -> None:
    config = make_config("serve", environ={"LIVEKIT_API_KEY": API_KEY}, transport="livekit")
    with pytest.raises(ConfigError, match="LIVEKIT_URL and LIVEKIT_API_SECRET"):
        create_app(config, as_bot(Bot().run))


def test_serve_picks_livekit_when_its_three_variables_are_set(server) -> None:
    config = make_config("serve", environ=livekit_env(server))
    (choice,) = select_transports(config)
    assert choice.name == "livekit"
    assert choice.reason == "LIVEKIT_URL and LIVEKIT_API_KEY and LIVEKIT_API_SECRET are set"


def test_a_bot_option_that_is_not_livekits_is_refused(server) -> None:
    config = make_config("serve", environ=livekit_env(server), transport="livekit")
    with pytest.raises(Exception, match="unknown key 'camera'"):
        create_app(config, as_bot(Bot().run, livekit={"camera": True}))


