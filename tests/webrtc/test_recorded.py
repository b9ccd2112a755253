"""--record on WebRTC (issue 23, item 1): a real aiortc peer's tone and the bot's echo, recorded
at the transport, on one timeline: the WAVs last as long as the session and cross-correlation
lines the tone up with the echo."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from test_recording import check_audio, events_of, session_folder

from runner.smoke.callers.webrtc import Client
from webrtc.bots import echo

from conftest import as_bot, make_config, serve, wait_for


async def test_a_webrtc_echo_is_recorded_on_one_timeline(clients: Callable[..., Client],
                                                         tmp_path: Path) -> None:
    async with serve(make_config("dev", record=str(tmp_path)), as_bot(echo)) as served:
        client = clients(served.http)
        await client.offer()
        await client.wait_connected()
        await asyncio.sleep(0.4)  # silence first, as the other transports' recordings have
        heard, latency = await client.echo(440.0, seconds=0.6)
        assert abs(heard - 440) < 5
        await asyncio.sleep(0.5)
        await client.close()
        await wait_for(lambda: not served.sessions.active, 10)
    folder = session_folder(tmp_path)
    assert folder.name.endswith("-webrtc-" + served.sessions.history[-1].id)
    summary = check_audio(folder, 440)
    assert summary["transport"] == "webrtc"
    (turn,) = summary["turns"]
    assert abs(turn["caller_end"] - turn["caller_start"] - 0.6) < 0.15, turn
    # At the transport the echo follows the tone at once; the peer's mouth to ear adds the
    # network and both jitter buffers on top.
    assert 0 <= turn["onset"] <= latency + 0.05, (turn, latency)
    names = [event["event"] for event in events_of(folder)]
    assert names[0] == "connected" and names[-1] == "left"
