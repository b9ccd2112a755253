"""--record: one folder per session, with both sides' audio on one timeline, the events and a
summary; through the real server, over plain WebSocket and a Twilio call, in both isolation
modes; and a recording that cannot be written never touches the call."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import websockets
from telephony.support import SECRETS, dial, phone_config
from workers.support import worker_bot

from runner import recording
from runner.audio import AudioFrame, dominant_frequency, read_wav, rms, tone
from runner.turns import Levels, segments, turns

from conftest import make_config, serve, wait_for

RATE = 16000
FRAME = 640
TONE = 0.6
PHONE = {"role": "phone", "bot_id": "support-en"}


def session_folder(root: Path) -> Path:
    (folder,) = [path for path in root.iterdir() if path.is_dir()]
    return folder


def onset(frame: AudioFrame) -> float:
    """Seconds to the first loud 20 ms block."""
    block = int(frame.sample_rate * 0.02) * 2
    for offset in range(0, len(frame.pcm), block):
        if rms(frame.pcm[offset:offset + block]) > 0.01:
            return offset / 2 / frame.sample_rate
    raise AssertionError("no sound in the file")


def events_of(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]


def check_audio(folder: Path, frequency: float) -> dict[str, Any]:
    """Both WAVs on the session's timeline: same length as the session, the echo just after the
    caller's tone; returns session.json."""
    summary = json.loads((folder / "session.json").read_text())
    caller, bot, mix = (read_wav(folder / name) for name in ("caller.wav", "bot.wav", "mix.wav"))
    for wav in (caller, bot, mix):
        assert wav.sample_rate == RATE and wav.channels == 1
        assert abs(wav.duration - summary["duration"]) < 0.15
    lag = onset(bot) - onset(caller)
    # Each side is placed when it crossed the transport; the caller's frames may sit a frame or
    # two off when the machine is loaded, so the echo may seem to start a little early.
    assert -0.04 <= lag <= 0.12, f"the echo starts {lag:.3f} s after the tone in the files"
    start = int((onset(bot) + 0.1) * RATE) * 2
    assert abs(dominant_frequency(bot.pcm[start:start + RATE], RATE) - frequency) < 10
    # The caller's tone and the bot's echo line up: the cross-correlation of their envelopes
    # (5 ms blocks: a pure tone's own waveform correlates as well at every period) at the onsets'
    # lag is as good as at its best lag. Frames that crossed the transport in a burst flatten the
    # peak, so its position alone would say little; a file off by more shows a clear loss.
    block = RATE // 200
    window = int((onset(caller) + TONE + 0.3) * RATE) // block * block
    a, b = (np.abs(np.frombuffer(wav.pcm, "<i2")[:window].astype(np.float64))
            .reshape(-1, block).mean(axis=1) for wav in (caller, bot))
    scores = [float(np.dot(a[:len(a) - k], b[k:])) for k in range(24)]  # up to 120 ms
    at_lag = scores[min(round(max(lag, 0.0) * RATE / block), len(scores) - 1)]
    assert at_lag >= 0.95 * max(scores), (lag, scores)
    return summary


async def echo_over_websocket(served: Any) -> float:
    """0.4 s of silence, a tone, silence; returns the echo delay the client measured."""
    heard: list[float] = []
    async with websockets.connect(f"{served.ws}/ws-client?sample_rate=16000") as ws:
        async def listen() -> None:
            async for message in ws:
                if isinstance(message, bytes) and rms(message) > 0.01 and not heard:
                    heard.append(time.monotonic())

        listener = asyncio.create_task(listen())
        await ws.send(json.dumps({"hello": "there"}))
        pcm = bytes(int(0.4 * RATE) * 2) + tone(440, TONE, RATE).pcm + bytes(int(0.8 * RATE) * 2)
        started = time.monotonic()
        sent_tone = started + 0.4
        for index, offset in enumerate(range(0, len(pcm), FRAME)):
            await ws.send(pcm[offset:offset + FRAME])
            await asyncio.sleep(max(0.0, started + (index + 1) * 0.02 - time.monotonic()))
        listener.cancel()
    assert heard, "no echo heard"
    return heard[0] - sent_tone


@pytest.mark.parametrize("isolation", ["task", "process"])
async def test_a_websocket_echo_is_recorded_on_one_timeline(tmp_path: Path, isolation: str) -> None:
    config = make_config(transport="websocket", record=str(tmp_path), isolation=isolation,
                         prewarm="1")
    async with serve(config, worker_bot()) as served:
        delay = await echo_over_websocket(served)
        await wait_for(lambda: not served.sessions.active, 10)
    folder = session_folder(tmp_path)
    assert folder.name.endswith("-websocket-" + served.sessions.history[-1].id)
    summary = check_audio(folder, 440)
    assert summary["transport"] == "websocket" and summary["outcome"] == "client_left"
    assert summary["connected_after"] is not None
    (turn,) = summary["turns"]
    # The caller's audio is placed when it arrives: a client stalled on a loaded machine
    # stretches its tone in the file by the stall.
    assert abs(turn["caller_end"] - turn["caller_start"] - TONE) < 0.15, turn
    assert abs(turn["onset"] - delay) < 0.1, (turn, delay)
    assert abs(turn["latency"] - (turn["caller_start"] + turn["onset"] - turn["caller_end"])) < 0.01
    names = [event["event"] for event in events_of(folder)]
    assert names[0] == "connected" and names[-1] == "left" and "message_in" in names
    assert next(e for e in events_of(folder) if e["event"] == "message_in")["data"] == {
        "hello": "there"}
    times = [event["t"] for event in events_of(folder)]
    assert times == sorted(times) and times[-1] <= summary["duration"]


async def first_loud(phone: Any) -> float:
    """When the caller first hears the bot say something (not silence)."""
    seen = 0
    while True:
        heard = bytes(phone.heard)
        if rms(heard[seen:]) > 0.01:
            return time.monotonic()
        seen = len(heard)
        await asyncio.sleep(0.005)


@pytest.mark.parametrize("isolation", ["task", "process"])
async def test_a_twilio_call_is_recorded_with_dtmf_marks_and_no_secrets(
        tmp_path: Path, isolation: str) -> None:
    config = phone_config("twilio", record=str(tmp_path), isolation=isolation, prewarm="1")
    async with serve(config, worker_bot()) as served:
        phone = await dial(served, "twilio", query=PHONE)
        loud = asyncio.create_task(first_loud(phone))
        await phone.send_audio(bytes(int(0.3 * 8000) * 2), realtime=True)
        sent = time.monotonic()
        await phone.send_audio(tone(700, TONE, 8000).pcm + bytes(int(0.5 * 8000) * 2),
                               realtime=True)
        heard_at = await asyncio.wait_for(loud, 5)
        await phone.send_dtmf("1")
        await phone.wait_confirmed("m1", timeout=10)
        await phone.hang_up()
        await wait_for(lambda: not served.sessions.active, 10)
    folder = session_folder(tmp_path)
    summary = check_audio(folder, 700)
    assert summary["transport"] == "twilio"
    assert summary["call"]["call_id"] == phone.call_id
    assert summary["call"]["provider"] == "twilio"
    assert summary["body"]["bot_id"] == "support-en"
    (turn,) = summary["turns"]
    assert abs(turn["onset"] - (heard_at - sent)) < 0.1, (turn, heard_at - sent)
    events = events_of(folder)
    assert {"event": "dtmf", "digit": "1"} in [{k: v for k, v in e.items() if k != "t"}
                                                for e in events]
    assert any(e["event"] == "mark" and e["name"] == "m1" for e in events)
    assert any(e["event"] == "mark_reached" and e["name"] == "m1" for e in events)
    assert events[0]["event"] == "connected" and events[-1]["event"] == "left"
    for path in folder.iterdir():
        if path.suffix in (".json", ".jsonl"):
            text = path.read_text()
            for name, secret in SECRETS.items():
                if name != "TWILIO_ACCOUNT_SID":  # an identifier, not a credential
                    assert secret not in text, f"{name} in {path.name}"


async def echo_briefly(served: Any) -> bytes:
    async with websockets.connect(f"{served.ws}/ws-client?sample_rate=16000") as ws:
        async def hear() -> bytes:
            audio = bytearray()
            async for message in ws:
                if isinstance(message, bytes):
                    audio += message
            return bytes(audio)

        listener = asyncio.create_task(hear())
        pcm = tone(440, 0.8, RATE).pcm
        for offset in range(0, len(pcm), FRAME):
            await ws.send(pcm[offset:offset + FRAME])
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        await ws.close()
        return await listener


async def test_a_full_disk_ends_the_recording_with_one_line_and_never_the_call(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    def full(out: Any, data: bytes) -> None:
        calls.append(len(data))
        if len(calls) > 5:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(recording, "write_frames", full)
    caplog.set_level(logging.INFO)
    async with serve(make_config(transport="websocket", record=str(tmp_path)),
                     worker_bot()) as served:
        heard = await echo_briefly(served)
        await wait_for(lambda: not served.sessions.active, 10)
    assert len(heard) > 0.6 * RATE * 2  # the echo went on to the end
    assert served.sessions.history[-1].outcome == "client_left"
    lines = [r.getMessage() for r in caplog.records if r.name == "runner.recording"]
    assert len(lines) == 1 and "No space left" in lines[0], lines
    assert len(calls) == 6  # nothing more was tried after the failure


async def test_an_unwritable_folder_leaves_the_call_alone(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    caplog.set_level(logging.INFO)
    async with serve(make_config(transport="websocket", record=str(blocker / "rec")),
                     worker_bot()) as served:
        heard = await echo_briefly(served)
        await wait_for(lambda: not served.sessions.active, 10)
    assert len(heard) > 0.6 * RATE * 2
    assert served.sessions.history[-1].outcome == "client_left"
    lines = [r.getMessage() for r in caplog.records if r.name == "runner.recording"]
    assert len(lines) == 1 and "the call goes on" in lines[0], lines


def test_turns_measure_from_the_end_of_the_caller_to_the_bot() -> None:
    caller, bot = Levels(RATE), Levels(RATE)
    silence = bytes(int(0.5 * RATE) * 2)
    caller.add(silence + tone(300, 1.0, RATE).pcm + bytes(int(2.0 * RATE) * 2))
    bot.add(silence + bytes(int(1.3 * RATE) * 2) + tone(500, 0.5, RATE).pcm)
    assert segments(caller) == [(0.5, 1.5)]
    (turn,) = turns(caller, bot)
    assert turn["latency"] == pytest.approx(0.3, abs=0.021)
    assert turn["reply_start"] == pytest.approx(1.8, abs=0.021)


def test_secret_looking_keys_are_redacted() -> None:
    body = {"bot_id": "x", "api_key": "k", "nested": [{"authToken": "t"}], "Signature": "s"}
    assert recording.redact(body) == {"bot_id": "x", "api_key": "(redacted)",
                                      "nested": [{"authToken": "(redacted)"}],
                                      "Signature": "(redacted)"}
