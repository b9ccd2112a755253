"""`runner console` as a user runs it: WAV files in and out with no sound card, and the device path
as far as a machine without one allows (stand-in `sounddevice` modules play PortAudio's part)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from runner.audio import dominant_frequency, read_wav, rms, tone, write_wav

from conftest import run_cli

TONE_HZ = 440.0
TONE_SECONDS = 2.0
TAIL_SECONDS = 1.0  # runner.console.TAIL_SECONDS: the silence sent after the file


def _tone_wav(tmp_path: Path, rate: int = 16000) -> Path:
    path = tmp_path / "tone.wav"
    write_wav(path, tone(TONE_HZ, TONE_SECONDS, rate))
    return path


def test_echo_bot_writes_the_tone_back_on_the_sessions_timeline(tmp_path: Path) -> None:
    out = tmp_path / "out.wav"
    result = run_cli("console", "--input", str(_tone_wav(tmp_path)), "--output", str(out),
                     "bots/echo.py", timeout=60)
    assert result.returncode == 0, result.stderr
    heard = read_wav(out)
    assert heard.sample_rate == 16000 and heard.channels == 1
    # Real time: the file lasts as long as the session (the tone, then the tail of silence).
    assert abs(heard.duration - (TONE_SECONDS + TAIL_SECONDS)) < 0.5, heard.duration
    samples = np.frombuffer(heard.pcm, np.int16)
    loud = np.nonzero(np.abs(samples) > 3000)[0] / 16000
    assert loud.size, "the echo is silent"
    assert loud[0] < 0.3, f"the echo starts {loud[0]:.2f} s in"
    assert abs((loud[-1] - loud[0]) - TONE_SECONDS) < 0.1, "the echo is not the tone's length"
    echo = heard.pcm[int(loud[0] * 16000) * 2:int(loud[-1] * 16000) * 2]
    assert abs(dominant_frequency(echo, 16000) - TONE_HZ) < 2
    assert rms(echo) > 0.1
    for event in ("connected: bots/echo.py", "you: speaking", "bot: speaking", "bot: quiet",
                  "session ended (client_left)"):
        assert event in result.stdout, result.stdout


def test_a_wav_at_another_rate_is_converted_and_keeps_its_pitch(tmp_path: Path) -> None:
    out = tmp_path / "out.wav"
    result = run_cli("console", "--input", str(_tone_wav(tmp_path, 48000)), "--output", str(out),
                     "bots/echo.py", timeout=60)
    assert result.returncode == 0, result.stderr
    heard = read_wav(out)
    assert abs(dominant_frequency(heard.pcm, 16000) - TONE_HZ) < 2


def test_record_keeps_the_console_session(tmp_path: Path) -> None:
    result = run_cli("console", "--input", str(_tone_wav(tmp_path)), "--output",
                     str(tmp_path / "out.wav"), "--record", str(tmp_path / "rec"), "bots/echo.py",
                     timeout=60)
    assert result.returncode == 0, result.stderr
    (folder,) = (tmp_path / "rec").iterdir()
    assert "websocket" in folder.name
    assert {"caller.wav", "bot.wav", "session.json", "events.jsonl"} <= {p.name for p in folder.iterdir()}


def _stub(tmp_path: Path, source: str) -> dict[str, str]:
    """An environment whose `import sounddevice` finds `source`."""
    folder = tmp_path / "stub"
    folder.mkdir()
    (folder / "sounddevice.py").write_text(source)
    return {"PYTHONPATH": str(folder)}


def _one_line_error(result, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("runner: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_without_sounddevice_the_error_names_the_extra_and_the_wav_flags(tmp_path: Path) -> None:
    env = {"PYTHONPATH": os.devnull}  # the test venv has no sounddevice
    for args in ((), ("--input", str(_tone_wav(tmp_path))), ("--output", "x.wav")):
        result = run_cli("console", *args, "bots/echo.py", env=env)
        _one_line_error(result, "runner[console]", "--input", "--output")
    _one_line_error(run_cli("console", "--list-devices", env=env), "runner[console]")


def test_without_portaudio_the_error_is_one_line(tmp_path: Path) -> None:
    env = _stub(tmp_path, 'raise OSError("PortAudio library not found")\n')
    _one_line_error(run_cli("console", "bots/echo.py", env=env), "PortAudio library not found",
                    "--input", "--output")


NO_CARD = '''
class PortAudioError(Exception):
    pass

def check_input_settings(**kwargs):
    raise PortAudioError("Error querying device -1")

def check_output_settings(**kwargs):
    raise PortAudioError("Error querying device -1")

def query_devices():
    return "(no devices)"
'''


def test_without_a_sound_card_the_error_names_the_flag_to_use(tmp_path: Path) -> None:
    env = _stub(tmp_path, NO_CARD)
    _one_line_error(run_cli("console", "bots/echo.py", env=env), "input device", "--input WAV")
    _one_line_error(run_cli("console", "--input", str(_tone_wav(tmp_path)), "bots/echo.py", env=env),
                    "output device", "--output WAV")
    _one_line_error(run_cli("console", "--device", "7", "--output", "x.wav", "bots/echo.py",
                            env=env), "input device '7'", "--list-devices")
    listed = run_cli("console", "--list-devices", env=env)
    assert listed.returncode == 0 and listed.stdout.strip() == "(no devices)"


def test_bad_input_and_bad_bot_are_one_line(tmp_path: Path) -> None:
    _one_line_error(run_cli("console", "--input", str(tmp_path / "none.wav"), "--output", "x.wav",
                            "bots/echo.py"), "--input")
    _one_line_error(run_cli("console", "--input", str(_tone_wav(tmp_path)), "--output",
                            str(tmp_path / "o.wav"), "bots/missing.py"), "missing.py")


# A sound card in software: the "microphone" plays a 440 Hz tone in 20 ms blocks from a thread of
# its own, as PortAudio does, and the "speaker" writes what it was given to $CONSOLE_SPEAKER.
FAKE_CARD = '''
import math, os, threading, time

def check_input_settings(**kwargs): pass
def check_output_settings(**kwargs): pass

class _Stream:
    def __init__(self, samplerate, blocksize, channels, dtype, device, callback):
        self.rate, self.block, self.callback = samplerate, blocksize, callback
        self.running = False
    def start(self):
        self.running = True
        threading.Thread(target=self._run, daemon=True).start()
    def stop(self): self.running = False
    def close(self): pass
    def __enter__(self): self.start(); return self
    def __exit__(self, *exc): self.stop()

class RawInputStream(_Stream):
    def _run(self):
        n = 0
        while self.running:
            block = b"".join(int(9000 * math.sin(2 * math.pi * 440 * (n + i) / self.rate))
                             .to_bytes(2, "little", signed=True) for i in range(self.block))
            n += self.block
            self.callback(block, self.block, None, None)
            time.sleep(self.block / self.rate)

class RawOutputStream(_Stream):
    def _run(self):
        with open(os.environ["CONSOLE_SPEAKER"], "wb") as out:
            while self.running:
                buffer = bytearray(self.block * 2)
                self.callback(buffer, self.block, None, None)
                out.write(buffer)
                out.flush()
                time.sleep(self.block / self.rate)
'''


def test_microphone_and_speaker_carry_the_conversation(tmp_path: Path) -> None:
    speaker = tmp_path / "speaker.pcm"
    env = {**_stub(tmp_path, FAKE_CARD), "CONSOLE_SPEAKER": str(speaker)}
    result = run_cli("console", "--max-duration", "2", "--no-reload", "bots/echo.py", env=env,
                     timeout=60)
    assert result.returncode == 0, result.stderr
    assert "session ended (timeout)" in result.stdout, result.stdout
    heard = speaker.read_bytes()
    assert rms(heard) > 0.1 and abs(dominant_frequency(heard, 16000) - TONE_HZ) < 2


def test_saving_the_bot_starts_a_new_session_with_the_new_code(tmp_path: Path) -> None:
    import shutil
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT

    bot = tmp_path / "bot.py"
    shutil.copy(ROOT / "bots" / "echo.py", bot)
    env = {**_stub(tmp_path, FAKE_CARD), "CONSOLE_SPEAKER": str(tmp_path / "speaker.pcm"),
           "PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    process = subprocess.Popen([sys.executable, "-m", "runner", "console", str(bot)], cwd=ROOT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        assert process.stdout is not None
        while len([line for line in lines if "connected:" in line]) < 2:
            line = process.stdout.readline()
            assert line, f"the console stopped: {lines} {process.stderr.read() if process.stderr else ''}"
            lines.append(line)
            if "bot: speaking" in line and not any("reloading" in seen for seen in lines):
                time.sleep(0.2)
                bot.write_text(bot.read_text() + "\n# saved\n")
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    text = "".join(lines) + out
    assert "bot changed: reloading" in text and "session ended" in text, text
    # Ctrl-C ends the conversation and the server cleanly: no traceback, then "bye", exit 0.
    assert process.returncode == 0, err
    assert "Traceback" not in err and "CancelledError" not in err, err
    assert err.rstrip().endswith("bye"), err
    assert "Ctrl-C: leaving" in text, text
