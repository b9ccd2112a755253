"""Fixtures for the webrtc tests: aiortc clients that are always closed, a headless browser."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from runner.smoke.callers.webrtc import Client


@pytest.fixture
async def clients() -> AsyncIterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(base_url: str, **options: Any) -> Client:
        client = Client(base_url, **options)
        made.append(client)
        return client

    yield make
    await asyncio.gather(*(client.close() for client in made), return_exceptions=True)


CHROMIUM = Path("/usr/bin/chromium")
HAVE_CHROMIUM = CHROMIUM.exists()
CHROMIUM_ARGS = [
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection", "--no-sandbox", "--disable-gpu",
    "--disable-background-networking", "--disable-component-update", "--no-first-run",
    "--disable-sync",
]


@pytest.fixture
async def browser_page() -> AsyncIterator[Any]:
    """A headless Chromium page with a fake microphone and camera; page errors fail the test."""
    if not HAVE_CHROMIUM:
        pytest.skip("Chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    from playwright.async_api import async_playwright

    errors: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                   args=CHROMIUM_ARGS)
        page = await browser.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        try:
            yield page
        finally:
            await browser.close()
    assert not errors, errors
