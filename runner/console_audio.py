"""The console's ends of the audio: a WAV file or the microphone in, a WAV file or the speaker out.

Everything is PCM16 mono at 16 kHz in 20 ms chunks, the rate the console asks the WebSocket
transport for, so nothing here resamples except a WAV file given at another rate. `sounddevice`
(PortAudio) is imported only when a device is used: `--input`/`--output` need no sound card and
no optional extra, which is what CI and containers have.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any

from runner.audio import AudioConverter, AudioFrame, read_wav, write_wav
from runner.errors import UserError

RATE = 16000
CHUNK_SECONDS = 0.02
CHUNK_BYTES = int(RATE * CHUNK_SECONDS) * 2
WAV_HINT = "use --input WAV and --output WAV to run without audio devices"


def sounddevice() -> ModuleType:
    """`sounddevice`, or one line that says what to install or what to use instead.

    Its import fails with OSError (not ImportError) when the PortAudio library is missing."""
    try:
        import sounddevice as sd
    except ImportError:
        raise UserError("the console's microphone and speaker need sounddevice: "
                        f"pip install 'runner[console]' (or {WAV_HINT})") from None
    except OSError as error:
        raise UserError(f"no audio system ({error}); {WAV_HINT}") from None
    return sd


def check_device(sd: ModuleType, device: str | None, kind: str) -> None:
    """Fail before any session when the machine has no usable `kind` ('input'/'output') device."""
    try:
        sd.check_input_settings(device=_device(device), channels=1, dtype="int16",
                                samplerate=RATE) if kind == "input" else \
            sd.check_output_settings(device=_device(device), channels=1, dtype="int16",
                                     samplerate=RATE)
    except Exception as error:  # PortAudioError, ValueError: no such device, no sound card
        shown = f"{kind} device {device!r}" if device else f"{kind} device"
        flag = "--input" if kind == "input" else "--output"
        raise UserError(f"no usable {shown} ({str(error).strip() or type(error).__name__}); "
                        f"use {flag} WAV to run without one, or --list-devices") from None


def list_devices() -> str:
    """The devices PortAudio sees, as sounddevice prints them ('>' input, '<' output default)."""
    sd = sounddevice()
    try:
        return str(sd.query_devices())
    except Exception as error:
        raise UserError(f"cannot list audio devices ({error}); {WAV_HINT}") from None


def _device(device: str | None) -> int | str | None:
    """`--device 3` is an index, anything else part of a name, as sounddevice takes them."""
    if device is None:
        return None
    return int(device) if device.isdigit() else device


def read_input(path: str) -> bytes:
    """A WAV file as 16 kHz mono PCM16; a bad file is the user's to fix, in one line."""
    try:
        frame = read_wav(path)
    except (OSError, ValueError) as error:
        raise UserError(f"--input {path}: {error}") from None
    if frame.channels != 1 or frame.sample_rate != RATE:
        frame = AudioConverter(RATE).convert(frame)
    return frame.pcm


async def wav_chunks(pcm: bytes, tail: float) -> AsyncIterator[bytes]:
    """The file in 20 ms chunks on a real-time schedule, then `tail` seconds of silence (a
    microphone keeps sending while the bot answers the last words)."""
    pcm = pcm + bytes(int(tail * RATE) * 2)
    started = time.monotonic()
    for index, offset in enumerate(range(0, len(pcm), CHUNK_BYTES)):
        delay = started + index * CHUNK_SECONDS - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        chunk = pcm[offset:offset + CHUNK_BYTES]
        yield chunk + bytes(CHUNK_BYTES - len(chunk))


async def microphone_chunks(sd: ModuleType, device: str | None) -> AsyncIterator[bytes]:
    """The microphone in 20 ms chunks, handed from PortAudio's thread to the loop."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=50)

    def put(chunk: bytes) -> None:
        if queue.full():  # the loop fell behind: drop the oldest, keep the latency bounded
            queue.get_nowait()
        queue.put_nowait(chunk)

    def callback(data: Any, frames: int, when: Any, status: Any) -> None:
        loop.call_soon_threadsafe(put, bytes(data))

    with sd.RawInputStream(samplerate=RATE, blocksize=CHUNK_BYTES // 2, channels=1, dtype="int16",
                           device=_device(device), callback=callback):
        while True:
            yield await queue.get()


class WavSink:
    """The bot's audio on a real-time timeline: each chunk lands where it arrived (silence in the
    gaps), so the file's length is the session's and the echo sits at its real latency."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.started = time.monotonic()
        self.pcm = bytearray()

    def start(self) -> None:
        self.started = time.monotonic()

    def write(self, pcm: bytes) -> None:
        self._pad_to(time.monotonic())  # heard from when it arrived, as a speaker plays it
        self.pcm += pcm

    def close(self) -> None:
        self._pad_to(time.monotonic())
        try:
            write_wav(self.path, AudioFrame(bytes(self.pcm), RATE))
        except OSError as error:
            raise UserError(f"--output {self.path}: {error.strerror or error}") from None

    def _pad_to(self, moment: float) -> None:
        missing = int((moment - self.started) * RATE) * 2 - len(self.pcm)
        if missing > CHUNK_BYTES // 2:  # less than 10 ms behind is network jitter, not a gap
            self.pcm += bytes(missing)


class SpeakerSink:
    """The bot's audio to the speaker: PortAudio's thread pulls from a buffer, silence when empty."""

    def __init__(self, sd: ModuleType, device: str | None) -> None:
        self._buffer = bytearray()
        self._lock = threading.Lock()
        self._stream = sd.RawOutputStream(samplerate=RATE, blocksize=CHUNK_BYTES // 2, channels=1,
                                          dtype="int16", device=_device(device),
                                          callback=self._callback)

    def start(self) -> None:
        self._stream.start()

    def write(self, pcm: bytes) -> None:
        with self._lock:
            self._buffer += pcm

    def close(self) -> None:
        self._stream.stop()
        self._stream.close()

    def _callback(self, out: Any, frames: int, when: Any, status: Any) -> None:
        with self._lock:
            wanted = len(out)
            chunk = bytes(self._buffer[:wanted])
            del self._buffer[:wanted]
        out[:] = chunk + bytes(wanted - len(chunk))
