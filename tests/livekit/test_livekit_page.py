"""The page's LiveKit mode, against the real server with LiveKit's room service on 127.0.0.1
(whose GETs, a client's signaling connection, are only recorded): served alone or beside webrtc,
the one-line hint when livekit-client is not built, and, in headless Chromium, the page calling
`/start` and then opening LiveKit's signaling connection with the person's token."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from livekit import api
from livekit_fakes import API_KEY, API_SECRET, FakeLiveKitServer, FakeRtc
from webrtc.conftest import browser_page  # noqa: F401  (a fixture)

from runner.transports.base import Transport
from runner.transports.daily import service as daily_service
from runner.transports.livekit import page as page_module
from runner.transports.livekit import service as service_module
from runner.transports.livekit import tokens
from runner.transports.livekit.transport import DATA_TOPIC

from conftest import as_bot, make_config, serve, wait_for

needs_client = pytest.mark.skipif(not page_module.client_built(),
                                  reason=page_module.BUILD_HINT)


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


@pytest.fixture
def unbuilt(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(page_module, "CLIENT", tmp_path / "livekit-client.esm.mjs")


def livekit_config(server: FakeLiveKitServer, transport: str = "livekit") -> Any:
    return make_config("dev", environ={"LIVEKIT_URL": server.url, "LIVEKIT_API_KEY": API_KEY,
                                       "LIVEKIT_API_SECRET": API_SECRET}, transport=transport)


async def idle(transport: Transport) -> None:
    await transport.wait_ended()


async def test_livekit_alone_serves_the_page_and_what_it_needs(server, rtc) -> None:
    async with serve(livekit_config(server), as_bot(idle)) as served:
        async with httpx.AsyncClient(base_url=served.http) as http:
            index = await http.get("/")
            assert index.status_code == 200 and "/page/app.js" in index.text
            for asset in ("/page/app.js", "/page/livekit.js"):
                assert (await http.get(asset)).status_code == 200
            answer = await http.get("/livekit/page")
            assert answer.headers["cache-control"] == "no-store"
            config = answer.json()
            assert config["topic"] == DATA_TOPIC and config["webrtc"] is False
            if page_module.client_built():
                assert config["client"] == page_module.CLIENT_URL and config["build"] is None
                assert (await http.get(config["client"])).status_code == 200
            assert (await http.get("/page/config")).status_code == 404  # webrtc's, not served


async def test_beside_webrtc_the_page_offers_both(server, rtc) -> None:
    async with serve(livekit_config(server, "webrtc,livekit"), as_bot(idle)) as served:
        async with httpx.AsyncClient(base_url=served.http) as http:
            assert (await http.get("/livekit/page")).json()["webrtc"] is True
            assert (await http.get("/page/config")).json()["livekit"] is True


async def test_without_the_client_the_page_and_the_log_say_how_to_build_it(
        server, rtc, unbuilt, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="runner.livekit"):
        async with serve(livekit_config(server), as_bot(idle)) as served:
            async with httpx.AsyncClient(base_url=served.http) as http:
                config = (await http.get("/livekit/page")).json()
    assert config["client"] is None and "make livekit-client" in config["build"]
    hints = [record for record in caplog.records if "make livekit-client" in record.message]
    assert len(hints) == 1


async def test_the_page_without_the_client_shows_the_hint_and_starts_nothing(
        browser_page, server, rtc, unbuilt) -> None:  # noqa: F811
    page = browser_page
    starts: list[str] = []
    page.on("request", lambda request: starts.append(request.url)
            if request.url.endswith("/start") else None)
    async with serve(livekit_config(server), as_bot(idle)) as served:
        await page.goto(served.http + "/")
        await page.wait_for_selector("#livekit-note", state="visible")
        note = await page.text_content("#livekit-note")
        assert "make livekit-client" in note and "\n" not in note
        await page.click("#connect")
        await page.wait_for_selector('#state[data-state="error"]')
        assert "make livekit-client" in await page.text_content("#state")
    assert starts == [] and not rtc.rooms


async def test_beside_webrtc_the_page_offers_both_webrtc_first(
        browser_page, server, rtc) -> None:  # noqa: F811
    page = browser_page
    async with serve(livekit_config(server, "webrtc,livekit"), as_bot(idle)) as served:
        await page.goto(served.http + "/")
        await page.wait_for_selector("#mode-livekit", state="visible")
        assert await page.is_visible("#mode-webrtc") and await page.is_hidden("#mode-phone")
        assert await page.is_checked('input[name="mode"][value="webrtc"]')
        assert await page.text_content("#connect") == "Connect"
        await page.check('input[name="mode"][value="livekit"]')
        assert await page.text_content("#connect") == "Join room"
        assert await page.is_visible("#send-form")  # a room carries app messages


@needs_client
async def test_the_page_starts_a_session_and_joins_its_room_with_the_persons_token(
        browser_page, server, rtc) -> None:  # noqa: F811
    page = browser_page
    async with serve(livekit_config(server), as_bot(idle)) as served:
        await page.goto(served.http + "/")
        await page.wait_for_selector("#mode", state="visible")
        assert await page.is_hidden("#mode-webrtc") and await page.is_hidden("#livekit-note")
        assert await page.is_checked('input[name="mode"][value="livekit"]')
        assert await page.text_content("#connect") == "Join room"
        async with page.expect_request(lambda request: request.url.endswith("/start")) as asked, \
                page.expect_response(lambda response: response.url.endswith("/start")) as started:
            await page.click("#connect")
        assert (await asked.value).post_data_json == {"transport": "livekit"}
        answer = await (await started.value).json()
        assert answer["url"] == server.url

        def signaling() -> list[str]:
            return [path for path in server.connections
                    if urlsplit(path).path.rstrip("/") in ("/rtc", "/rtc/v1")]

        await wait_for(lambda: bool(signaling()), timeout=15)
        # The stand-in speaks no signaling: the page gives up and says so.
        await page.wait_for_selector('#state[data-state="error"]', timeout=30000)
        assert await page.evaluate("runnerPage.room") is None

    verifier = api.TokenVerifier(API_KEY, API_SECRET)
    (room,) = [call["name"] for call in server.calls("CreateRoom")]
    bot = verifier.verify(rtc.room.connected_with[1])
    for path in signaling():
        (token,) = parse_qs(urlsplit(path).query)["access_token"]
        assert token == answer["token"]
        person = verifier.verify(token)
        assert person.identity == tokens.user_identity(answer["sessionId"]) != bot.identity
        assert person.video.room == room and person.video.room_join and person.video.can_publish
        assert not person.video.agent and not person.video.room_admin and bot.video.agent
