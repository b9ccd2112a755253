"""A Pipecat runner bot on Daily: `/start` creates the room through Daily's REST API (served on
127.0.0.1) and the bot gets Pipecat's `DailyRunnerArguments`, from which Pipecat's own
`create_transport` builds its DailyTransport. Joining needs Daily's cloud, which is out of reach
here: the bot stops at the transport, and runner deletes the room it made."""

from __future__ import annotations

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
