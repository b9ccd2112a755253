"""`--record DIR`: each session's caller and bot audio, its events and a summary, in a folder.

The transport calls the `Recorder`'s hooks on the event loop, as audio arrives and as it leaves
for the wire, and each hook only stamps the time and hands the bytes to a bounded queue: a
recording must never block or slow the media path. One writer thread per session resamples,
places the audio on the session's timeline (silence where nothing was heard or sent, so
`caller.wav` and `bot.wav` line up when played side by side), writes the files and measures the
turns. When the disk fails (full, read-only), the recording stops with one log line; the call
goes on. Nothing secret is written: call data keeps identifiers, not credentials, and the body's
secret-looking keys are redacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import queue
import re
import threading
import time
import wave
from pathlib import Path
from typing import Any, BinaryIO

from runner.audio import AudioConverter, AudioFrame
from runner.transports.base import (
    AppMessage,
    ClientConnected,
    ClientLeft,
    Dtmf,
    Event,
    MarkReached,
    SessionInfo,
)
from runner.turns import Levels, turns

log = logging.getLogger("runner.recording")

RATE = 16000
#: Items waiting for the writer (a frame or an event each): about 20 s of both sides' 20 ms frames.
QUEUE_ITEMS = 2000
#: A frame arriving this close after the end of the audio before it continues it: network
#: jitter is not written as clicks of silence.
JITTER_SECONDS = 0.06
#: Longest wait for the writer to finish its files when the session ends.
FINISH_SECONDS = 10.0
_SECRET_KEY = re.compile(r"token|secret|password|passwd|signature|auth|key|credential", re.I)
_EVENT_NAMES: dict[type[Event], str] = {ClientConnected: "connected", ClientLeft: "left",
                                        Dtmf: "dtmf", MarkReached: "mark_reached",
                                        AppMessage: "message_in"}


class Recorder:
    """One session's recording. The hooks run on the loop and never wait; the writer thread
    does everything else."""

    def __init__(self, root: Path, info: SessionInfo) -> None:
        self.info = info
        self.started = time.monotonic()
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(info.started_at))
        self.folder = root / f"{stamp}-{info.kind}-{info.id}"
        self.dropped = 0
        self.stopped = False  # the writer gave up (disk full, unwritable): the hooks do nothing
        self._queue: queue.Queue[tuple[Any, ...]] = queue.Queue(QUEUE_ITEMS)
        self._thread = threading.Thread(target=self._write_all, name=f"record:{info.id}",
                                        daemon=True)
        self._done: asyncio.Future[None] | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self._thread.start()

    # ----------------------------------------------------------------- the loop's side

    def caller_audio(self, pcm: bytes, sample_rate: int, channels: int) -> None:
        self._put(("caller", time.monotonic() - self.started, pcm, sample_rate, channels))

    def bot_audio(self, pcm: bytes, sample_rate: int, channels: int) -> None:
        self._put(("bot", time.monotonic() - self.started, pcm, sample_rate, channels))

    def event(self, event: Event) -> None:
        """A transport event (connected, left, DTMF, mark reached, app message)."""
        name = _EVENT_NAMES.get(type(event), type(event).__name__.lower())
        self.note(name, **dataclasses.asdict(event))

    def note(self, kind: str, /, **fields: Any) -> None:
        """Something the bot or the transport did (mark placed, clear, hang-up, message out)."""
        self._put(("event", time.monotonic() - self.started, kind, fields))

    async def finish(self, summary: dict[str, Any]) -> None:
        """Write the summary and close the files; waits (off the loop) for the writer, bounded."""
        item = ("end", time.monotonic() - self.started, summary)
        while not self.stopped:
            try:  # the end must reach the writer, even behind a full queue
                self._queue.put_nowait(item)
                break
            except queue.Full:
                await asyncio.sleep(0.01)
        if self._done is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._done), FINISH_SECONDS)
            except TimeoutError:
                log.warning("the recording of session %s is still being written after %.0f s",
                            self.info.id, FINISH_SECONDS)

    def _put(self, item: tuple[Any, ...]) -> None:
        if self.stopped:
            return
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    # ----------------------------------------------------------------- the writer thread

    def _write_all(self) -> None:
        writer: _Files | None = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            writer = _Files(self.folder)
            while True:
                item = self._queue.get()
                if item[0] == "end":
                    writer.close(item[1])
                    _write_text(self.folder / "session.json", json.dumps(
                        self._summary(item[2], item[1], writer), indent=2, default=str) + "\n")
                    writer.mix()
                    break
                writer.add(item)
        except Exception as error:
            self.stopped = True
            log.warning("recording of session %s stopped, the call goes on: %s", self.info.id,
                        error)
            if writer is not None:
                writer.abandon()
        finally:
            self._signal_done()

    def _signal_done(self) -> None:
        done = self._done
        if done is None:
            return
        loop = done.get_loop()
        if not loop.is_closed():
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

    def _summary(self, summary: dict[str, Any], ended: float, files: _Files) -> dict[str, Any]:
        info = self.info
        call = dataclasses.asdict(info.call) if info.call is not None else None
        return {
            "id": info.id,
            "transport": info.kind,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(info.started_at)),
            "call": call,
            "body": redact(info.body),
            "room_url": info.room_url.split("?", 1)[0] if info.room_url else None,
            "duration": round(ended, 3),
            "caller_seconds": round(files.caller.seconds, 3),
            "bot_seconds": round(files.bot.seconds, 3),
            "sample_rate": RATE,
            "turns": turns(files.caller.levels, files.bot.levels),
            "frames_not_recorded": self.dropped,
            **summary,
        }


class _Track:
    """One side's WAV: audio placed at its time on the session's timeline, and its levels."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed by close()/abandon()
        self.wav = wave.open(self.file, "wb")  # noqa: SIM115
        self.wav.setnchannels(1)
        self.wav.setsampwidth(2)
        self.wav.setframerate(RATE)
        self.samples = 0
        self.levels = Levels(RATE)
        self._convert = AudioConverter(RATE, 1)

    @property
    def seconds(self) -> float:
        return self.samples / RATE

    def add(self, at: float, frame: AudioFrame) -> None:
        pcm = self._convert.convert(frame).pcm
        if not pcm:
            return
        gap = int(at * RATE) - self.samples
        if gap > JITTER_SECONDS * RATE:
            self._append(bytes(2 * gap))
        self._append(pcm)

    def pad_to(self, seconds: float) -> None:
        """Silence to the session's end, so both files are as long as the session."""
        gap = int(seconds * RATE) - self.samples
        if gap > 0:
            self._append(bytes(2 * gap))

    def _append(self, pcm: bytes) -> None:
        write_frames(self.wav, pcm)
        self.samples += len(pcm) // 2
        self.levels.add(pcm)

    def close(self) -> None:
        self.wav.close()
        self.file.close()


class _Files:
    """caller.wav, bot.wav, events.jsonl and, at the end, mix.wav."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.caller = _Track(folder / "caller.wav")
        self.bot = _Track(folder / "bot.wav")
        self.events: BinaryIO = open(folder / "events.jsonl", "wb")  # noqa: SIM115

    def add(self, item: tuple[Any, ...]) -> None:
        side, at = item[0], item[1]
        if side == "event":
            line = {"t": round(at, 3), "event": item[2], **_jsonable(item[3])}
            write_frames(self.events, json.dumps(line, default=str).encode() + b"\n")
            self.events.flush()
            return
        track = self.caller if side == "caller" else self.bot
        track.add(at, AudioFrame(item[2], item[3], item[4]))

    def close(self, ended: float) -> None:
        end = max(ended, self.caller.seconds, self.bot.seconds)
        for track in (self.caller, self.bot):
            track.pad_to(end)
            track.close()
        self.events.close()

    def abandon(self) -> None:
        for closing in (self.caller.close, self.bot.close, self.events.close):
            with contextlib.suppress(Exception):  # the disk failed once: one log line is enough
                closing()

    def mix(self) -> None:
        """Both sides summed (clipped) in one file, a second at a time."""
        import numpy as np

        with wave.open(str(self.caller.path), "rb") as caller, \
                wave.open(str(self.bot.path), "rb") as bot, \
                wave.open(str(self.folder / "mix.wav"), "wb") as mix:
            mix.setnchannels(1)
            mix.setsampwidth(2)
            mix.setframerate(RATE)
            while True:
                a = np.frombuffer(caller.readframes(RATE), "<i2").astype(np.int32)
                b = np.frombuffer(bot.readframes(RATE), "<i2").astype(np.int32)
                if not a.size and not b.size:
                    break
                size = max(a.size, b.size)
                total = np.zeros(size, np.int32)
                total[:a.size] += a
                total[:b.size] += b
                write_frames(mix, np.clip(total, -32768, 32767).astype("<i2").tobytes())


def write_frames(out: Any, data: bytes) -> None:
    """Every write of a recording goes through here (one place for tests to make the disk fail)."""
    if isinstance(out, wave.Wave_write):
        out.writeframes(data)
    else:
        out.write(data)


def _write_text(path: Path, text: str) -> None:
    with open(path, "wb") as file:
        write_frames(file, text.encode())


def redact(value: Any) -> Any:
    """`value` with the values of secret-looking keys (token, secret, key, auth...) replaced."""
    if isinstance(value, dict):
        return {k: "(redacted)" if isinstance(k, str) and _SECRET_KEY.search(k) else redact(v)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def _jsonable(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: redact(v) for k, v in fields.items()}


def recorder_for(root: str | None, info: SessionInfo) -> Recorder | None:
    """The session's recorder when `--record` is set (started on the running loop)."""
    if not root:
        return None
    recorder = Recorder(Path(root), info)
    recorder.start()
    return recorder
