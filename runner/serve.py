"""Serve: check what the user controls, bind once, print the banner, and run the uvicorn server
that drains.

Stop without cutting a call: on SIGTERM, refuse new sessions, let running ones finish, then exit.

uvicorn on its own closes every connection within its shutdown timeout. Calls last minutes, so
the first signal only starts a drain: `/ready` turns 503 at once (the load balancer stops sending
work), new sessions get 503 / WebSocket 1013, and the server waits for the running sessions up to
`--drain-timeout` before ending them (calls are hung up). A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from collections.abc import Sequence
from dataclasses import replace
from types import FrameType
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from runner.config import Config
from runner.errors import UserError
from runner.heads import protocol_factory
from runner.logs import configure_logging

if TYPE_CHECKING:
    from runner.loader import LoadedBot
    from runner.selection import Choice

log = logging.getLogger("runner")

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
        # Request heads are read with a cap and a deadline first (runner.heads); a process-
        # isolated server routes WebSocket sessions to workers from there.
        http=getattr(getattr(app, "state", None), "http_protocol", None)
        or protocol_factory(None, AutoHTTPProtocol),
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


def run(config: Config, bot_reference: str) -> None:
    """`runner dev` / `runner serve`: with the reload supervisor in dev, else serve directly.

    With `--isolation process` the server never runs the bot: each session gets a fresh worker,
    forked from a zygote that imported the file, and `--reload` only replaces the zygote and the
    idle workers on a change (see supervisors/workers.py), so a save never restarts the server
    nor cuts a call.
    """
    configure_logging(config.log_level, config.log_format)
    if config.mode == "dev" and config.reload and config.isolation == "task":
        from runner.supervisors.reload import run_with_reload

        run_with_reload(config, bot_reference)
        return
    serve(config, bot_reference)


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind the listening socket once (a supervisor hands it to each child it starts)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(config: Config, bot_reference: str, sock: socket.socket | None = None) -> None:
    """Load the bot, build the app, and serve until stopped."""
    from runner.banner import banner
    from runner.loader import load_bot
    from runner.selection import select_transports

    selection = select_transports(config)
    bot = load_bot(bot_reference)
    sock = sock or bind_socket(config.host, config.port)
    config = replace(config, port=sock.getsockname()[1])
    app = serving_app(config, bot, selection)
    config = app.state.context.config  # as the app runs it (isolation, a dev key for workers)
    print(banner(config, selection, bot_reference), file=sys.stderr, flush=True)
    if bot.pipecat:  # said once here, not discovered in a session
        from runner.handover import NOTE

        print(f"bot {bot_reference}: {NOTE}", file=sys.stderr, flush=True)
    DrainingServer(app, config).run(sockets=[sock])


def serving_app(config: Config, bot: LoadedBot, selection: Sequence[Choice] | None = None) -> Any:
    """The app as this server runs it: with process isolation, wrapped so that sessions go to
    worker processes (runner.supervisors.relay); the app itself never knows."""
    from runner.app import create_app

    app = create_app(config, bot, selection)
    if app.state.context.config.isolation == "process":
        from runner.supervisors.relay import install_relay

        install_relay(app, app.state.context)  # last, so outermost: workers answer CORS themselves
    return app
