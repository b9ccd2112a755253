"""Stop without cutting a call: on SIGTERM, refuse new sessions, let running ones finish, then exit.

uvicorn on its own closes every connection within its shutdown timeout. Calls last minutes, so
the first signal only starts a drain: `/ready` turns 503 at once (the load balancer stops sending
work), new sessions get 503 / WebSocket 1013, and the server waits for the running sessions up to
`--drain-timeout` before ending them (calls are hung up). A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import logging
from types import FrameType
from typing import Any

import uvicorn

from runner.config import Config

log = logging.getLogger("runner.drain")

WEBSOCKET_MAX_MESSAGE = 1 << 20
PROGRESS_EVERY = 10.0


def uvicorn_config(app: Any, config: Config) -> uvicorn.Config:
    """The one uvicorn configuration: uvicorn's own protocols, capped messages, our logging.

    No per-message deflate: audio does not compress, and each connection that negotiated it
    (browsers and most libraries offer it) would carry zlib contexts both ways and compress
    every 20 ms frame."""
    return uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        # A process-isolated server reads request heads itself first (supervisors/handoff.py).
        http=getattr(getattr(app, "state", None), "http_protocol", "auto"),
        ws="auto",
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
