"""The page's level meters hold their peak for a moment, so a glance shows audio is flowing."""

from __future__ import annotations

import asyncio
from typing import Any

from webrtc.bots import echo

from conftest import as_bot, make_config, serve

CONNECTED = '#state[data-state="connected"]'

#: Where each meter's peak marker stands, as a fraction of its meter (0 when hidden), and the
#: meter's own level: sampled every 50 ms for `ms`.
SAMPLE = """async (ms) => {
  const at = (side) => {
    const meter = document.getElementById(`level-${side}`);
    const marker = document.getElementById(`peak-${side}`);
    const m = meter.getBoundingClientRect(), p = marker.getBoundingClientRect();
    return { level: meter.value, peak: marker.hidden ? 0 : (p.left - m.left) / (m.width - p.width) };
  };
  const samples = [];
  for (const end = performance.now() + ms; performance.now() < end;) {
    samples.push({ in: at("in"), out: at("out") });
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return samples;
}"""


async def marker(page: Any, side: str) -> float:
    (sample,) = await page.evaluate(SAMPLE, 1)
    return sample[side]["peak"]


async def test_the_meters_hold_their_peak(browser_page: Any) -> None:
    page = browser_page
    async with serve(make_config("dev"), as_bot(echo)) as served:
        await page.goto(served.http + "/")
        assert await page.is_hidden("#peak-in") and await page.is_hidden("#peak-out")
        await page.click("#connect")
        await page.wait_for_selector(CONNECTED, timeout=15000)
        await page.wait_for_function("runnerPage.peaks.output.level > 0.2", timeout=10000)

        # The fake microphone beeps with silence between; echoed back, the bot's meter falls to
        # nothing between beeps, and its peak marker stays up across the gaps.
        samples = [sample["out"] for sample in await page.evaluate(SAMPLE, 2000)]
        assert any(sample["level"] < 0.05 for sample in samples), samples
        assert all(sample["peak"] > 0.1 for sample in samples), samples
        assert all(sample["peak"] >= sample["level"] - 0.02 for sample in samples), samples
        await page.screenshot(path="/tmp/meters.png")

        # Muted, the microphone's meter drops at once; its marker stays up to a second, then falls.
        loop = asyncio.get_running_loop()
        await page.click("#mute")
        muted = loop.time()
        await asyncio.sleep(0.3)
        assert await page.eval_on_selector("#level-in", "meter => meter.value") == 0
        assert await marker(page, "in") > 0.1
        await page.wait_for_selector("#peak-in", state="hidden", timeout=4000)
        assert 0.5 < loop.time() - muted < 3.0
