"""Stop without cutting a call: on SIGTERM, refuse new sessions, let running ones finish, then exit.

uvicorn on its own closes every connection within its shutdown timeout. Calls last minutes, so
the first signal only starts a drain: `/ready` turns 503 at once (the load balancer stops sending
work), new sessions get 503 / WebSocket 1013, and the server waits for the running sessions up to
`--drain-timeout` before ending them (calls are hung up). A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from types import FrameType
from typing import Any

import uvicorn

from runner.config import Config
from runner.pacing import BEAT, FRAME_SECONDS, shared_clock
from runner.wsprotocol import WebSocketProtocol

log = logging.getLogger("runner.drain")

WEBSOCKET_MAX_MESSAGE = 1 << 20
PROGRESS_EVERY = 10.0
#: uvicorn's housekeeping (the Date header, max requests, should_exit) runs every 100 ms of its own;
#: here every 120 ms, on a beat of the frame clock (every third at the default 40 ms beat), which
#: puts its every-tenth-tick Date update 1.2 s apart.
HOUSEKEEPING_EVERY = 3 * BEAT * FRAME_SECONDS


def uvicorn_config(app: Any, config: Config) -> uvicorn.Config:
    """The one uvicorn configuration: our WebSocket protocol, capped messages, our logging.

    runner.wsprotocol negotiates no per-message deflate: audio frames do not compress, and each
    connection that negotiated it (browsers and most libraries offer it) would carry zlib
    contexts both ways and compress every 20 ms frame."""
    return uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        ws=WebSocketProtocol,
        ws_max_size=WEBSOCKET_MAX_MESSAGE,
        ws_per_message_deflate=False,
        lifespan="on",
        timeout_graceful_shutdown=config.grace_period + 2,
    )


class DrainingServer(uvicorn.Server):
    def __init__(self, app: Any, config: Config) -> None:
        super().__init__(uvicorn_config(app, config))
        self.runner_config = config
        self.context = app.state.context
        self._drain: asyncio.Task[None] | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        drains = self.runner_config.mode == "serve"
        if self._drain is not None or not drains or not self.context.sessions.active:
            if self._drain is not None:
                log.warning("second signal: exiting now")
            super().handle_exit(sig, frame)
            self.force_exit = self._drain is not None
            return
        self.context.sessions.draining = True
        self._drain = asyncio.get_event_loop().create_task(self.drain())

    async def main_loop(self) -> None:
        """uvicorn's housekeeping on the shared frame clock's beats: during calls the process is
        awake on those anyway, so it costs no wake-up of its own."""
        clock = shared_clock()
        ticks = 0
        while not await self.on_tick(ticks):
            ticks = (ticks + 1) % 864000  # uvicorn's on_tick counts its own ticks
            soon = time.monotonic() + HOUSEKEEPING_EVERY - clock.period  # woken late or early: same beat
            await clock.sleep_until(clock.boundary(soon, clock.beat))

    async def drain(self) -> None:
        sessions = self.context.sessions
        timeout = self.runner_config.drain_timeout
        log.warning("draining: %d sessions left; new sessions are refused (up to %.0f s)",
                    len(sessions.active), timeout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while sessions.active and loop.time() < deadline:
            await sessions.wait_idle(min(PROGRESS_EVERY, deadline - loop.time()))
            if sessions.active:
                log.warning("draining: %d sessions left", len(sessions.active))
        if sessions.active:
            log.warning("drain timeout: ending %d sessions", len(sessions.active))
            await sessions.end_all("server shutting down")
            await sessions.wait_idle(self.runner_config.grace_period + 3)
        log.info("drained; stopping")
        self.should_exit = True
