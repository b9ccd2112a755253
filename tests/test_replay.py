"""`runner replay`: a session recorded with `runner smoke --record` over plain WebSocket and a
call from each phone provider, replayed through the real CLI against the same echo bot (passes)
and against a copy that answers 500 ms later (exit 1, the slow turn named); a Twilio call with a
key press replays the key at its time, and a bot that no longer answers it shows in the events
that differ; recordings replay cannot play yet are a one-line error."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from telephony.support import dial, phone_config

from runner.audio import AudioFrame, tone, write_wav
from runner.loader import load_bot

from conftest import run_cli, serve, wait_for

RATE = 16000
SLOW_ECHO = '''"""The echo bot, 500 ms late: every frame goes back half a second after it came."""

import asyncio
import time


async def bot(transport):
    queue = asyncio.Queue()

    async def later():
        while True:
            due, frame = await queue.get()
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            await transport.send_audio(frame)

    sender = asyncio.create_task(later())
    try:
        async for frame in transport.audio(sample_rate=16000):
            queue.put_nowait((time.monotonic() + 0.5, frame))
    finally:
        sender.cancel()
'''

KEYS_ECHO = '''"""The echo bot that also answers each key press: a mark named after the key."""

import asyncio

from runner import Dtmf


async def bot(transport):
    async def keys():
        async for event in transport.events():
            if isinstance(event, Dtmf):
                await transport.mark(f"key-{event.digit}")

    answering = asyncio.create_task(keys())
    try:
        async for frame in transport.audio(sample_rate=16000):
            await transport.send_audio(frame)
    finally:
        answering.cancel()
'''


def two_turns(path: Path) -> float:
    """Two 0.6 s tones, each followed by 1.2 s of quiet: two caller turns."""
    quiet = AudioFrame.silence(1.2, RATE).pcm
    pcm = tone(440, 0.6, RATE).pcm + quiet + tone(660, 0.6, RATE).pcm + quiet
    write_wav(path, AudioFrame(pcm, RATE))
    return len(pcm) / 2 / RATE


@pytest.fixture(scope="module", params=["websocket", "twilio", "telnyx", "plivo", "exotel", "vonage"])
def recording(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp(f"rec-{request.param}")
    seconds = two_turns(root / "input.wav")
    done = run_cli("smoke", "bots/echo.py", "-t", request.param, "--input",
                   str(root / "input.wav"), "--duration", f"{seconds:.1f}", "--record",
                   str(root / "rec"), timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    (session,) = [p for p in (root / "rec").iterdir() if p.is_dir()]
    turns = json.loads((session / "session.json").read_text())["turns"]
    assert len(turns) == 2 and all(t["reply_start"] is not None for t in turns), turns
    return session


def test_a_replay_against_the_same_bot_passes(recording: Path, tmp_path: Path) -> None:
    done = run_cli("replay", str(recording), "bots/echo.py", "--junit", str(tmp_path / "j.xml"),
                   "--record", str(tmp_path / "new"), timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAILED" not in done.stdout and done.stdout.count(" ok") == 2, done.stdout
    assert "the new recording:" in done.stdout
    (new,) = [p for p in (tmp_path / "new").iterdir() if p.is_dir()]
    assert json.loads((new / "session.json").read_text())["transport"] == recording.name.split(
        "-")[2]
    suite = ET.parse(tmp_path / "j.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "2" and suite.get("failures") == "0"


def test_a_bot_that_answers_500_ms_later_fails_naming_the_turn(recording: Path,
                                                               tmp_path: Path) -> None:
    slow = tmp_path / "slow_echo.py"
    slow.write_text(SLOW_ECHO)
    done = run_cli("replay", str(recording), str(slow), "--junit", str(tmp_path / "j.xml"),
                   timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAILED: turn 1 is slower" in done.stdout, done.stdout
    assert "FAILED: turn 2 is slower" in done.stdout, done.stdout
    suite = ET.parse(tmp_path / "j.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "2"


def test_a_recording_replay_cannot_play_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "session.json").write_text(json.dumps({"transport": "daily", "turns": []}))
    write_wav(tmp_path / "caller.wav", AudioFrame.silence(0.1, RATE))
    done = run_cli("replay", str(tmp_path), "bots/echo.py")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "does not support daily" in done.stderr


def test_a_folder_without_a_recording_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = run_cli("replay", str(tmp_path), "bots/echo.py")
    assert done.returncode == 2 and "no recorded session here" in done.stderr, done.stderr


def _events(folder: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]


async def test_a_key_press_replays_at_its_time_and_a_bot_that_ignores_it_differs(
        tmp_path: Path) -> None:
    keys = tmp_path / "keys_echo.py"
    keys.write_text(KEYS_ECHO)
    config = phone_config("twilio", record=str(tmp_path / "rec"))
    async with serve(config, load_bot(str(keys))) as served:
        phone = await dial(served, "twilio")
        await phone.send_audio(tone(440, 0.6, 8000).pcm, realtime=True)
        await phone.send_dtmf("1")
        await phone.send_audio(AudioFrame.silence(1.2, 8000).pcm, realtime=True)
        await phone.hang_up()
        await wait_for(lambda: not served.sessions.active, 10)
    (recording,) = [p for p in (tmp_path / "rec").iterdir() if p.is_dir()]
    (pressed,) = [e for e in _events(recording) if e["event"] == "dtmf"]
    assert any(e["event"] == "mark" and e["name"] == "key-1" for e in _events(recording))

    same = await asyncio.to_thread(run_cli, "replay", str(recording), str(keys), "--record",
                                   str(tmp_path / "new"), timeout=60)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "events: the same" in same.stdout, same.stdout
    (new,) = [p for p in (tmp_path / "new").iterdir() if p.is_dir()]
    (replayed,) = [e for e in _events(new) if e["event"] == "dtmf"]
    assert replayed["digit"] == "1"
    assert abs(float(replayed["t"]) - float(pressed["t"])) < 0.2, (pressed, replayed)  # type: ignore[arg-type]

    deaf = await asyncio.to_thread(run_cli, "replay", str(recording), "bots/echo.py", timeout=60)
    assert deaf.returncode == 0, deaf.stdout + deaf.stderr  # the turns are as fast as ever
    assert "events that differ:" in deaf.stdout, deaf.stdout
    assert 'then only: mark {"name": "key-1"}' in deaf.stdout, deaf.stdout
    assert "now only" not in deaf.stdout, deaf.stdout
