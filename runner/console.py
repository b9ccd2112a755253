"""`runner console`: talk to a bot from the terminal, no browser, no page, no tunnel.

The bot runs exactly as `serve` would run it on the plain WebSocket transport (the real server,
on an ephemeral 127.0.0.1 port, in this process, `--isolation task`), and the console is its
WebSocket client: so what a user hears here is what a WebSocket client would get, and `--record`
and every session setting apply unchanged. With `--input`/`--output` WAV files the same path runs
with no sound card (CI, containers). Interactive sessions reload the bot on save, between
sessions: the save ends the conversation and the next one starts with the new code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from runner import console_audio as audio
from runner.audio import rms
from runner.config import Config
from runner.errors import UserError
from runner.loader import load_bot
from runner.logs import configure_logging
from runner.smoke.harness import build_server, serving

TAIL_SECONDS = 1.0
SPEAKING_LEVEL = 0.01
QUIET_AFTER = 0.3
METER_EVERY = 0.1


@dataclass(frozen=True)
class ConsoleOptions:
    input_path: str | None = None
    output_path: str | None = None
    device: str | None = None


def console(config: Config, bot_reference: str, options: ConsoleOptions,
            list_devices: bool = False) -> int:
    """Check what the user controls (the WAV, the devices, the bot), then talk until done."""
    if list_devices:
        print(audio.list_devices())
        return 0
    pcm = audio.read_input(options.input_path) if options.input_path else None
    sd = None
    if options.input_path is None or options.output_path is None:
        sd = audio.sounddevice()
        if options.input_path is None:
            audio.check_device(sd, options.device, "input")
        if options.output_path is None:
            audio.check_device(sd, options.device, "output")
    configure_logging(config.log_level if config.source("log_level") != "default" else "warning",
                      config.log_format)
    config = replace(config, transport="websocket", isolation="task", host="127.0.0.1", port=0)
    load_bot(bot_reference)  # a bot that does not load is one line and exit 2, before any audio
    talk = Console(config, bot_reference, options, pcm, sd)
    interrupted = True  # until run() returns: a second Ctrl-C while the first was ending it
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(talk.run())
        interrupted = talk.quitting.is_set()
    if interrupted:
        print("bye", file=sys.stderr)
    return 0


class Console:
    """One conversation after another (only one with an input WAV), each with a fresh server."""

    def __init__(self, config: Config, bot_reference: str, options: ConsoleOptions,
                 pcm: bytes | None, sd: Any) -> None:
        self.config = config
        self.bot_reference = bot_reference
        self.options = options
        self.pcm = pcm
        self.sd = sd
        self.started = time.monotonic()
        self.meter = Meter(enabled=sys.stderr.isatty())
        self.quitting = asyncio.Event()

    def quit(self) -> None:
        """Ctrl-C: end the conversation and the server as a hang-up would, with no task
        cancelled under uvicorn (no traceback); a second Ctrl-C interrupts as Python does."""
        self.quitting.set()
        asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)

    def event(self, text: str) -> None:
        """One line on stdout as it happens, with seconds from the session's start."""
        self.meter.clear()
        print(f"[{time.monotonic() - self.started:6.2f}s] {text}", flush=True)

    async def run(self) -> None:
        from runner.supervisors.reload import watched_folder

        folder = watched_folder(self.bot_reference)
        interactive = self.pcm is None
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows' loop
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self.quit)
        while not self.quitting.is_set():
            try:
                bot = load_bot(self.bot_reference)
            except UserError as error:  # a save with a mistake in it: wait for the fix
                print(f"runner: error: {error}", file=sys.stderr, flush=True)
                bot = None
            changed = False
            if bot is not None:
                changed = await self.session(bot, folder if interactive and self.config.reload
                                             else None)
            if not interactive or not self.config.reload or self.quitting.is_set():
                return
            if not changed:
                print("save a .py file next to the bot to start again; Ctrl-C quits",
                      file=sys.stderr, flush=True)
                if not await self._until_quit(_next_change(folder)):
                    return
            self.event("bot changed: reloading")

    async def _until_quit(self, waiting: Any) -> bool:
        """Await `waiting` unless Ctrl-C comes first: True when it finished."""
        task = asyncio.create_task(waiting)
        quit_task = asyncio.create_task(self.quitting.wait())
        await asyncio.wait({task, quit_task}, return_when=asyncio.FIRST_COMPLETED)
        for pending in (task, quit_task):
            pending.cancel()
        await asyncio.gather(task, quit_task, return_exceptions=True)
        return not self.quitting.is_set()

    async def session(self, bot: Any, watch: Any) -> bool:
        """One conversation; True when a save ended it."""
        built = build_server(self.config, bot, "websocket")
        try:
            async with serving(built, signals=False) as (target, sessions):
                ws_base = target.ws
                headers = ({"Authorization": f"Bearer {self.config.api_key}"}
                           if self.config.api_key else {})
                url = f"{ws_base}/ws-client?sample_rate={audio.RATE}"
                async with websockets.connect(url, additional_headers=headers) as ws:
                    self.started = time.monotonic()
                    self.event(f"connected: {self.bot_reference} over websocket at {audio.RATE} Hz"
                               + (f", recording into {self.config.record}" if self.config.record
                                  else ""))
                    changed = await self._talk(ws, watch)
                await sessions.wait_idle(self.config.grace_period + 3)
                record = sessions.history[-1] if sessions.history else None
                if record is not None:
                    why = f": {record.error}" if record.error else ""
                    self.event(f"session ended ({record.outcome}{why}) after {record.duration:.1f} s")
                return changed
        finally:
            built.sock.close()

    async def _talk(self, ws: ClientConnection, watch: Any) -> bool:
        sink = (audio.WavSink(self.options.output_path) if self.options.output_path
                else audio.SpeakerSink(self.sd, self.options.device))
        sink.start()
        source = (audio.wav_chunks(self.pcm, TAIL_SECONDS) if self.pcm is not None
                  else audio.microphone_chunks(self.sd, self.options.device))
        tasks = {asyncio.create_task(self._send(ws, source), name="input"),
                 asyncio.create_task(self._receive(ws, sink), name="bot")}
        if watch is not None:
            tasks.add(asyncio.create_task(_next_change(watch), name="change"))
        tasks.add(asyncio.create_task(self.quitting.wait(), name="quit"))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await ws.close()
            sink.close()
        names = {task.get_name() for task in done}
        if "input" in names:
            self.event("the input ended; leaving")
        elif "quit" in names:
            self.event("Ctrl-C: leaving")
        return "change" in names

    async def _send(self, ws: ClientConnection, source: AsyncIterator[bytes]) -> None:
        you = Speech("you", self.event)
        async for chunk in source:
            level = rms(chunk)
            you.update(level)
            self.meter.show("you", level)
            try:
                await ws.send(chunk)
            except websockets.ConnectionClosed:
                return

    async def _receive(self, ws: ClientConnection, sink: Any) -> None:
        bot = Speech("bot", self.event)
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    sink.write(message)
                    level = rms(message)
                    bot.update(level)
                    self.meter.show("bot", level)
                else:
                    self.event(f"bot message: {_shown(message)}")
        except websockets.ConnectionClosed:
            pass
        reason = ws.close_reason or "no reason given"
        self.event(f"the bot's side closed the connection ({ws.close_code}: {reason})")


class Speech:
    """'speaking'/'quiet' events from a level: a simple energy detector with a 300 ms hang time,
    so a pause between words is not an event."""

    def __init__(self, who: str, event: Any) -> None:
        self.who = who
        self.event = event
        self.speaking = False
        self.last_loud = 0.0

    def update(self, level: float) -> None:
        now = time.monotonic()
        if level >= SPEAKING_LEVEL:
            self.last_loud = now
            if not self.speaking:
                self.speaking = True
                self.event(f"{self.who}: speaking")
        elif self.speaking and now - self.last_loud > QUIET_AFTER:
            self.speaking = False
            self.event(f"{self.who}: quiet")


class Meter:
    """Two level bars on one stderr line, redrawn in place (on a terminal only)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.levels = {"you": 0.0, "bot": 0.0}
        self.drawn = 0.0

    def show(self, who: str, level: float) -> None:
        self.levels[who] = max(level, self.levels[who] * 0.8)
        now = time.monotonic()
        if not self.enabled or now - self.drawn < METER_EVERY:
            return
        self.drawn = now
        bars = "  ".join(f"{who} {_bar(value)}" for who, value in self.levels.items())
        print(f"\r{bars}", end="", file=sys.stderr, flush=True)

    def clear(self) -> None:
        if self.enabled and self.drawn:
            print("\r\033[K", end="", file=sys.stderr, flush=True)


def _bar(level: float, width: int = 20) -> str:
    """A level as a bar on a 60 dB scale, so speech at a normal distance reads in the middle."""
    import math

    db = 20 * math.log10(max(level, 1e-6))
    filled = max(0, min(width, round((db + 60) / 60 * width)))
    return "[" + "#" * filled + " " * (width - filled) + "]"


def _shown(text: str) -> str:
    try:
        return json.dumps(json.loads(text))[:200]
    except ValueError:
        return repr(text[:200])


async def _next_change(folder: Any) -> None:
    """Until a .py file in `folder` is saved."""
    import watchfiles

    async for _ in watchfiles.awatch(folder, watch_filter=watchfiles.PythonFilter()):
        return
