"""Pipecat on Daily, with Daily's REST API served on 127.0.0.1. A Pipecat runner bot gets
Pipecat's `DailyRunnerArguments` from `/start`, from which Pipecat's own `create_transport` builds
its DailyTransport (joining needs Daily's cloud, out of reach here: the bot stops at the
transport, and runner deletes the room it made). A runner.pipecat bot runs over runner's own
Daily transport, daily-python's stand-in in the room."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path

import httpx
import pytest

# A submodule, not "pipecat": without the extra, this very directory (tests/pipecat, on sys.path)
# would import as a namespace package of that name.
pytest.importorskip("pipecat.frames.frames",
                    reason="runner.pipecat needs the pipecat extra: pip install '.[pipecat]'")
pytest.importorskip("daily", reason="the daily extra is not installed")

from runner.loader import load_bot

from conftest import ROOT, make_config, serve, wait_for

# tests/daily's stand-ins, by path: a package named "daily" would be daily-python's.
_spec = importlib.util.spec_from_file_location("daily_fakes",
                                               ROOT / "tests" / "daily" / "daily_fakes.py")
assert _spec is not None and _spec.loader is not None
daily_fakes = sys.modules.setdefault("daily_fakes", importlib.util.module_from_spec(_spec))
if not hasattr(daily_fakes, "FakeDailyApi"):
    _spec.loader.exec_module(daily_fakes)

BOT = '''
from pipecat.runner.types import RunnerArguments
from pipecat.runner.utils import create_transport
from pipecat.transports.daily.transport import DailyParams

seen = []


async def bot(runner_args: RunnerArguments):
    transport = await create_transport(runner_args, {
        "daily": lambda: DailyParams(audio_in_enabled=True, audio_out_enabled=True)})
    seen.append((runner_args, transport))
'''


async def test_start_hands_a_pipecat_runner_bot_its_daily_room(tmp_path: Path) -> None:
    from pipecat.runner.types import DailyRunnerArguments
    from pipecat.transports.daily.transport import DailyTransport

    path = tmp_path / "daily_bot.py"
    path.write_text(BOT)
    bot = load_bot(str(path))
    seen = bot.func.__wrapped__.__globals__["seen"]  # type: ignore[attr-defined]
    with daily_fakes.FakeDailyApi() as api:
        config = make_config("serve", transport="daily", environ={
            "DAILY_API_KEY": daily_fakes.API_KEY, "DAILY_API_URL": api.url})
        async with serve(config, bot) as served, httpx.AsyncClient() as http:
            answer = await http.post(f"{served.http}/start",
                                     json={"createDailyRoom": True, "body": {"lang": "fr"}})
            assert answer.status_code == 200, answer.text
            data = answer.json()
            await wait_for(lambda: seen)
            runner_args, transport = seen[0]
            assert isinstance(runner_args, DailyRunnerArguments)
            assert isinstance(transport, DailyTransport)
            assert runner_args.room_url == data["dailyRoom"] == api.rooms["room-1"]["url"]
            assert runner_args.session_id == data["sessionId"]
            assert runner_args.body == {"lang": "fr"}
            # The bot's own token, not the client's: an owner of that room.
            assert runner_args.token != data["dailyToken"]
            assert api.tokens[runner_args.token]["is_owner"] is True
            assert api.tokens[runner_args.token]["room_name"] == "room-1"
            await wait_for(lambda: not served.sessions.active and not api.rooms)


async def test_a_runner_pipecat_bot_echoes_a_daily_participant(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """runner.pipecat over runner's own Daily transport (daily-python's stand-in in the room):
    the participant's turn comes back at its pitch and length, and an app message reaches the
    pipeline."""
    from pipecat.frames.frames import InputTransportMessageFrame
    from pipecat_speech import silence, utterance, voiced_seconds
    from pipecat_support import PipecatBot

    from runner.audio import dominant_frequency
    from runner.transports.daily import service as service_module

    from conftest import as_bot

    sdk = daily_fakes.FakeSdk()
    monkeypatch.setattr(service_module, "DailySdk", lambda: sdk)
    bot = PipecatBot()
    with daily_fakes.FakeDailyApi() as api:
        config = make_config("serve", transport="daily", environ={
            "DAILY_API_KEY": daily_fakes.API_KEY, "DAILY_API_URL": api.url})
        async with serve(config, as_bot(bot)) as served, httpx.AsyncClient() as http:
            assert (await http.post(f"{served.http}/start", json={})).status_code == 200
            await wait_for(lambda: sdk.clients and sdk.client.joined_with is not None)
            sdk.client.participant_joins("p1")
            await wait_for(lambda: "p1" in sdk.client.audio_renderers)
            rate = sdk.client.audio_renderers["p1"][1]["sample_rate"]
            said = utterance(1.2, rate)
            frame = rate // 50 * 2
            talk = silence(0.3, rate) + said + silence(2.5, rate)
            for offset in range(0, len(talk), frame):  # in real time, as a person talks
                sdk.client.speaks("p1", talk[offset:offset + frame], rate)
                await asyncio.sleep(0.02)
            sdk.client.app_message({"hello": "pipeline"}, "p1")
            await wait_for(lambda: bot.of_type(InputTransportMessageFrame))
            (source,) = sdk.sources
            reply = source.pcm
            assert abs(voiced_seconds(reply, source.sample_rate) - 1.2) < 0.3
            assert abs(dominant_frequency(reply, source.sample_rate)
                       - dominant_frequency(said, rate)) < 10
            sdk.client.participant_leaves("p1")
            await wait_for(lambda: not served.sessions.active and not api.rooms)
        sdk.settle()
        assert sdk.errors == []
