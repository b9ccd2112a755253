"""The page at `/`, driven in headless Chromium with a fake microphone against the real server."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from runner.audio import tone
from runner.transports.base import Transport

from conftest import as_bot, make_config, serve, wait_for

CONNECTED = '#state[data-state="connected"]'


async def test_page_and_its_assets_are_served() -> None:
    async def bot(transport: Transport) -> None:
        await transport.wait_ended()

    async with serve(make_config("dev"), as_bot(bot)) as served:
        async with httpx.AsyncClient(base_url=served.http) as http:
            index = await http.get("/")
            assert index.status_code == 200 and "text/html" in index.headers["content-type"]
            assert '<html lang="en">' in index.text and "/page/app.js" in index.text
            for asset, kind in (("/page/app.js", "javascript"), ("/page/style.css", "css")):
                response = await http.get(asset)
                assert response.status_code == 200 and kind in response.headers["content-type"]
            config = await http.get("/page/config")
            assert config.headers["cache-control"] == "no-store"
            assert config.json()["iceServers"] == [] and len(config.json()["instance"]) == 32


async def test_the_page_connects_and_hears_the_bot(browser_page: Any) -> None:
    page = browser_page
    heard: list[Transport] = []

    async def talker(transport: Transport) -> None:
        heard.append(transport)

        async def answer() -> None:
            async for message in transport.messages():
                if message == "bye":
                    await transport.hangup()
                    return
                await transport.send_message({"echo": message})

        replies = asyncio.create_task(answer())
        try:
            while not transport.ended:
                await transport.send_audio(tone(440, 0.2, 16000))
        finally:
            replies.cancel()

    async with serve(make_config("dev"), as_bot(talker)) as served:
        await page.goto(served.http + "/")
        unlabelled = await page.evaluate(
            "[...document.querySelectorAll('input, select, textarea, meter')]"
            ".filter(el => !el.labels || el.labels.length === 0).map(el => el.id)")
        assert unlabelled == []
        await page.focus("#connect")
        await page.keyboard.press("Enter")  # the keyboard is enough
        await page.wait_for_selector(CONNECTED, timeout=15000)

        await page.wait_for_function(
            "runnerPage.stats.bytesReceived > 0 && runnerPage.levels.output > 0.3", timeout=10000)
        await wait_for(lambda: heard and heard[0].stats.frames_in > 25, timeout=5)
        assert await page.eval_on_selector("#level-out", "meter => meter.value") > 0

        await page.fill("#message", '{"type": "hello"}')
        await page.press("#message", "Control+Enter")
        await page.wait_for_selector('#log li.in:has-text("{\\"echo\\":{\\"type\\":\\"hello\\"}}")')

        await page.click("#connect")  # Disconnect
        await page.wait_for_selector('#state[data-state="idle"]')
        await wait_for(lambda: not served.sessions.active, timeout=5)
        assert heard[0].end_reason == "the client left"

        await page.click("#connect")
        await page.wait_for_selector(CONNECTED, timeout=15000)
        await page.fill("#message", "bye")
        await page.click("#send")
        await page.wait_for_selector('#state[data-state="idle"]:has-text("the bot ended")')
        await asyncio.sleep(1.0)
        assert not served.sessions.active and len(heard) == 2  # and it did not reconnect
