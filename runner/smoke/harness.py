"""Run one bot against each transport: the real server in-process, a synthetic caller, six checks.

Every transport's app is built before the first call, so what the user must fix (a bad
`transport_options` key, a missing package) stops the run with one line before anything is tested.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from runner.audio import AudioFrame, rms, tone, write_wav
from runner.config import Config
from runner.errors import UserError
from runner.loader import LoadedBot
from runner.serve import bind_socket, serving_app, uvicorn_config
from runner.sessions import Outcome, SessionManager
from runner.smoke.callers import Target, caller_for, has_caller
from runner.smoke.report import TransportResult
from runner.transports import REGISTRY, require_available
from runner.transports.telephony.providers import CODECS

LOADED = "bot loaded, server started"
ESTABLISHED = "session established"
READ_AUDIO = "bot read audio"
SENT_AUDIO = "bot sent audio"
SENT_MESSAGE = "bot sent a message"
NO_ERROR = "no bot error"
CLEAN_END = "clean end"
AFTER_SETUP = (ESTABLISHED, READ_AUDIO, SENT_AUDIO, NO_ERROR, CLEAN_END)
END_MARGIN = 3.0


@dataclass(frozen=True)
class SmokeOptions:
    duration: float = 10.0
    expect_audio: bool = False
    expect_message: bool = False
    record: Path | None = None


def test_signal(seconds: float = 2.0) -> AudioFrame:
    """Speech-like bursts: 300 ms tones at rising pitches with 200 ms pauses, at 16 kHz."""
    rate, pcm = 16000, b""
    frequency = 300.0
    while len(pcm) < seconds * rate * 2:
        pcm += tone(frequency, 0.3, rate).pcm + AudioFrame.silence(0.2, rate).pcm
        frequency = 300.0 if frequency >= 900 else frequency + 150
    return AudioFrame(pcm, rate)


class _ErrorLog(logging.Handler):
    """Error records by session id, to tell whether a bot logged an error."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def for_session(self, session_id: str) -> list[str]:
        return [r.getMessage() for r in self.records if getattr(r, "session_id", None) == session_id]


@dataclass(frozen=True)
class Built:
    """One transport's server, bound to a 127.0.0.1 port and built, not yet serving."""

    sock: socket.socket
    app: FastAPI
    config: Config


def build_server(config: Config, bot: LoadedBot, kind: str) -> Built:
    """The app serving `kind` alone, on a port of its own. Raises UserError for what the user must
    fix, as `runner serve` would at start."""
    sock = bind_socket("127.0.0.1", 0)
    config = replace(config, transport=kind, host="127.0.0.1", port=sock.getsockname()[1])
    try:
        return Built(sock, serving_app(config, bot), config)
    except BaseException:
        sock.close()
        raise


class _SignalFreeServer(uvicorn.Server):
    """uvicorn without its signal handlers, for a caller that handles Ctrl-C itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serving(built: Built, signals: bool = True,
                  ) -> AsyncIterator[tuple[Target, SessionManager]]:
    """The built server serving until the block ends (with `signals` False, Ctrl-C is left to
    the caller: the console quits on it rather than ending only the session)."""
    config = built.config
    server = (uvicorn.Server if signals else _SignalFreeServer)(uvicorn_config(built.app, config))
    task = asyncio.create_task(server.serve(sockets=[built.sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the server stopped while starting")
            await asyncio.sleep(0.01)
        port = config.port
        yield Target(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", config), \
            built.app.state.context.sessions
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 15)


def progress(kind: str, message: str) -> None:
    print(f"[{kind}] {message}", file=sys.stderr, flush=True)


async def smoke_transport(kind: str, config: Config, built: Built | None, audio: AudioFrame,
                          options: SmokeOptions, skipped: str | None = None) -> TransportResult:
    """The checks of one transport; `built` is None for one that has no synthetic caller, or
    one that cannot be called here (`skipped` says why)."""
    result = TransportResult(kind)
    if built is None:
        reason = skipped or await _why_no_caller(kind, config)
        for name in (LOADED, *AFTER_SETUP):
            result.skip(name, reason)
        progress(kind, f"skipped: {reason}")
        return result
    caller = caller_for(kind)
    errors = _ErrorLog()
    logging.getLogger().addHandler(errors)
    started = time.monotonic()
    try:
        async with serving(built) as (target, sessions):
            result.add(LOADED, True, f"listening on {target.http}", time.monotonic() - started)
            progress(kind, f"server up at {target.http}; calling for {options.duration:.0f} s")
            await _call_and_check(kind, caller, target, sessions, audio, options, errors, result)
    except (UserError, OSError, RuntimeError) as error:
        result.add(LOADED, False, f"the server did not start: {error}")
        for name in AFTER_SETUP:
            result.skip(name, "the server did not start")
    finally:
        logging.getLogger().removeHandler(errors)
    progress(kind, "FAILED" if result.failed else "passed")
    return result


async def _call_and_check(kind: str, caller, target: Target, sessions: SessionManager,
                          audio: AudioFrame, options: SmokeOptions, errors: _ErrorLog,
                          result: TransportResult) -> None:
    config = target.config
    try:
        call = await asyncio.wait_for(caller(target, audio, options.duration),
                                      options.duration + config.detect_timeout + 30)
    except Exception as error:
        result.add(ESTABLISHED, False, f"the synthetic {kind} client failed: {error!r}")
        for name in AFTER_SETUP[1:]:
            result.skip(name, "no session")
        return
    if not result.add(ESTABLISHED, call.connected, call.detail or (
            "connected" if call.connected else "the client could not connect"), call.connect_seconds):
        for name in AFTER_SETUP[1:]:
            result.skip(name, "no session")
        return
    left_at = time.monotonic()
    ended = await sessions.wait_idle(config.grace_period + END_MARGIN)
    record = sessions.history[-1] if sessions.history else None
    if record is None:
        result.add(READ_AUDIO, False, "the server never started a session for the client")
        return
    # A Pipecat runner bot's own transport carries the media (runner.handover): runner sees
    # what the client heard, not what the bot read.
    handed_over = sessions.bot.pipecat
    if handed_over:
        result.skip(READ_AUDIO, "the bot's own Pipecat transport reads the audio")
    else:
        result.add(READ_AUDIO, record.frames_read > 0,
                   f"read {record.frames_read} of {record.frames_in} inbound frames")
    heard = call.received.duration if call.received else 0.0
    loud = rms(call.received.pcm) if call.received and call.received.pcm else 0.0
    if options.expect_audio:
        sent = handed_over or record.audio_seconds_out > 0
        result.add(SENT_AUDIO, sent and heard > 0 and loud > 0,
                   f"the client heard {heard:.1f} s of bot audio (level {loud:.3f})",
                   call.first_audio_seconds)
    else:
        result.skip(SENT_AUDIO, f"not expected (--expect-audio); the client heard {heard:.1f} s")
    if options.expect_message and kind in CODECS:  # a phone call carries audio and DTMF only
        result.skip(SENT_MESSAGE, f"{kind} calls have no channel for app messages")
    elif options.expect_message:
        result.add(SENT_MESSAGE, bool(call.messages),
                   f"the client received {len(call.messages)} app messages")
    logged = errors.for_session(record.id)
    raised = record.outcome is Outcome.BOT_ERROR
    result.add(NO_ERROR, not raised and not logged,
               record.error or (f"logged: {logged[0][:200]}" if logged else "no exception, no error logged"))
    # A bot that raised fails "no bot error"; here what matters is that nothing was left running.
    clean = ended and record.outcome in (Outcome.CLIENT_LEFT, Outcome.OK, Outcome.BOT_ERROR)
    reason = (f"ended {record.outcome} within {time.monotonic() - left_at:.1f} s"
              if ended else f"still running {config.grace_period + END_MARGIN:.0f} s after the client left")
    if ended and not clean:
        reason = f"ended as {record.outcome}: the bot did not return when the client left"
    result.add(CLEAN_END, clean, reason, time.monotonic() - left_at)
    if options.record is not None and call.received is not None:
        options.record.mkdir(parents=True, exist_ok=True)
        write_wav(options.record / f"{kind}.wav", call.received)


async def _why_no_caller(kind: str, config: Config) -> str:
    if kind == "daily":
        if not config.daily_api_key:
            return "Daily needs its cloud service: DAILY_API_KEY is not set"
        return ("no offline Daily client: a real Daily smoke test needs a second daily-python "
                "client in the room")
    if kind == "tavus":
        missing = REGISTRY["tavus"].missing_credentials(config)
        if missing:
            verb = "is" if len(missing) == 1 else "are"
            return f"Tavus needs its cloud service: {' and '.join(missing)} {verb} not set"
        from runner.transports.tavus.rest import problem_reaching

        problem = await problem_reaching(config.tavus_api_key or "", config.tavus_api_url,
                                         config.tavus_persona_id)
        if problem:
            return f"Tavus cannot be reached: {problem}"
        return ("no offline Tavus client: a real Tavus smoke test needs a live conversation (billed) "
                "and a second daily-python client in its room")
    return f"no synthetic client for {kind}"


async def _cannot_call(kind: str, config: Config) -> str | None:
    """Why a transport that has a caller cannot be called here: LiveKit's participant needs a
    LiveKit server, named by LIVEKIT_URL and reachable."""
    if kind != "livekit":
        return None
    missing = REGISTRY["livekit"].missing_credentials(config)
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        return f"LiveKit needs a server: {' and '.join(missing)} {verb} not set"
    from runner.smoke.callers.livekit import problem_reaching

    return await problem_reaching(config.livekit_url or "")


async def run_smoke(config: Config, bot: LoadedBot, kinds: list[str], audio: AudioFrame,
                    options: SmokeOptions, parallel: bool) -> list[TransportResult]:
    """Each transport's checks, in the order of `kinds`. Raises UserError, before any call, for
    what the user must fix in any of them."""
    cannot = {kind: reason for kind in kinds if has_caller(kind)
              and (reason := await _cannot_call(kind, config)) is not None}
    testable = [kind for kind in kinds if has_caller(kind) and kind not in cannot]
    require_available(testable)  # every missing package at once, before a caller imports one
    built: dict[str, Built] = {}
    try:
        for kind in testable:
            built[kind] = build_server(config, bot, kind)
        runs = [smoke_transport(kind, config, built.get(kind), audio, options, cannot.get(kind))
                for kind in kinds]
        if parallel:
            return list(await asyncio.gather(*runs))
        return [await run for run in runs]
    finally:
        for server in built.values():
            server.sock.close()
