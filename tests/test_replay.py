"""`runner replay`: a session recorded with `runner smoke --record` over plain WebSocket and a
Twilio call, replayed through the real CLI against the same echo bot (passes) and against a copy
that answers 500 ms later (exit 1, the slow turn named); recordings replay cannot play yet are a
one-line error."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from runner.audio import AudioFrame, tone, write_wav

from conftest import run_cli

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


def two_turns(path: Path) -> float:
    """Two 0.6 s tones, each followed by 1.2 s of quiet: two caller turns."""
    quiet = AudioFrame.silence(1.2, RATE).pcm
    pcm = tone(440, 0.6, RATE).pcm + quiet + tone(660, 0.6, RATE).pcm + quiet
    write_wav(path, AudioFrame(pcm, RATE))
    return len(pcm) / 2 / RATE


@pytest.fixture(scope="module", params=["websocket", "twilio"])
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
