"""create_app(config, bot) -> the FastAPI app: health, readiness, status, and the selected transports.

Only the routes of selected transports are mounted; everything else answers 404. The app knows
nothing of how it is run: process isolation wraps it (runner.serve.serving_app).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse

from runner import __version__
from runner.config import Config, ConfigError
from runner.context import OPEN_SESSION_KINDS, ROOM_KINDS, AppContext, SessionRoute, start_transport
from runner.guards import (
    LOOPBACK_ORIGIN,
    MAX_BODY_BYTES,
    BodyLimit,
    OriginCheck,
    is_loopback,
    read_json_object,
)
from runner.loader import BotLoadError, LoadedBot
from runner.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from runner.metrics import Metrics
from runner.selection import Choice, select_transports
from runner.sessions import SessionManager
from runner.transports import REGISTRY, require_available
from runner.watchdog import LoopWatchdog

log = logging.getLogger("runner.app")

def create_app(config: Config, bot: LoadedBot, selection: Sequence[Choice] | None = None) -> FastAPI:
    """Build the app. Raises ConfigError/TransportUnavailable for what the user must fix."""
    chosen = list(selection) if selection is not None else select_transports(config)
    require_available([choice.name for choice in chosen])
    if bot.pipecat:
        from runner.handover import prepare

        prepare(config, [choice.name for choice in chosen])
    missing = _settings_missing(config, [choice.name for choice in chosen])
    config = _isolation(config, [choice.name for choice in chosen])
    metrics = Metrics()
    sessions = SessionManager(config, bot, metrics)
    context = AppContext(config=config, bot=bot, sessions=sessions, selection=chosen)
    watchdog = LoopWatchdog(config.block_warning, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if config.isolation == "task" and bot.prewarm is not None:
            await _prewarm(bot)
        watchdog.start()
        for hook in context.startup_hooks:
            await hook()
        try:
            yield
        finally:
            await sessions.shutdown()
            for hook in context.shutdown_hooks:
                await hook()
            await watchdog.stop()

    app = FastAPI(title="runner", version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.state.context = context
    app.state.watchdog = watchdog
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        if sessions.draining:
            return JSONResponse({"ready": False, "reason": "draining"}, status_code=503)
        if sessions.full:
            return JSONResponse({"ready": False, "reason": "at --max-sessions"}, status_code=503)
        if watchdog.stalled_recently():
            return JSONResponse({"ready": False, "reason": "event loop stalled"}, status_code=503)
        return JSONResponse({"ready": True})

    @app.get("/metrics")
    async def metrics_route() -> Response:
        return Response(metrics.render(), media_type=METRICS_CONTENT_TYPE)

    @app.get("/status")
    async def status() -> dict[str, Any]:
        return {
            "version": __version__,
            "mode": config.mode,
            "transports": context.kinds,
            "draining": sessions.draining,
            "sessions": sessions.status(),
        }

    mounted: dict[str, list[str]] = {}
    for choice in chosen:
        mounted.setdefault(REGISTRY[choice.name].module, []).append(choice.name)
    for module_name, kinds in mounted.items():
        try:
            importlib.import_module(module_name).mount(app, context, kinds)
        except ConfigError as error:  # gathered: every missing setting is named in one error
            missing.append(str(error))
    if missing:
        raise ConfigError("\n".join(missing))
    if context.start_handlers:
        _mount_start(app, context)
    # dev: a client app on its own local port (the Pipecat JS client, a Vite app) may call us.
    loopback = LOOPBACK_ORIGIN if config.mode == "dev" else None
    app.add_middleware(OriginCheck, config=config)
    if config.allowed_origins or loopback:
        from fastapi.middleware.cors import CORSMiddleware

        wildcard = "*" in config.allowed_origins
        app.add_middleware(CORSMiddleware, allow_origins=list(config.allowed_origins),
                           allow_origin_regex=loopback, allow_methods=["GET", "POST", "PATCH"],
                           allow_headers=["*"], allow_credentials=not wildcard)
    return app


def _isolation(config: Config, kinds: list[str]) -> Config:
    """The config as this server runs it in its isolation mode."""
    if config.isolation != "process":
        return config
    if not (hasattr(os, "fork") and hasattr(socket, "send_fds")):
        log.warning("--isolation process needs fork() and descriptor passing, which this system "
                    "lacks: sessions run in the server process (--isolation task)")
        return replace(config, isolation="task")
    if config.daily_room_url and set(ROOM_KINDS) & set(kinds):
        log.warning("--room-url keeps one bot in the room from startup: sessions run in the "
                    "server process (--isolation task)")
        return replace(config, isolation="task")
    if config.livekit_room and "livekit" in kinds:
        log.warning("--room keeps one bot in the LiveKit room from startup: sessions run in the "
                    "server process (--isolation task)")
        return replace(config, isolation="task")
    if config.mode == "dev" and not config.secret:
        # Workers check the stream tokens this server's webhooks sign: one key for all of them.
        return replace(config, secret=secrets.token_urlsafe(32))
    return config


async def _prewarm(bot: LoadedBot) -> None:
    """Run the bot file's `prewarm()` (sync or async) once, before this process's first session."""
    assert bot.prewarm is not None
    try:
        result = bot.prewarm()
        if inspect.isawaitable(result):
            await result
    except Exception as error:
        log.error("prewarm() raised", exc_info=error)
        raise BotLoadError(f"{bot.reference}: prewarm() raised {type(error).__name__}: "
                           f"{error}") from None


def _settings_missing(config: Config, kinds: list[str]) -> list[str]:
    """What the user must set before serving, as far as the app itself checks (each transport
    checks its own when mounted)."""
    try:
        _refuse_open_exposure(config, kinds)
    except ConfigError as error:
        return [str(error)]
    return []


def _refuse_open_exposure(config: Config, kinds: list[str]) -> None:
    """`serve` on a public address must not start sessions for anyone without an API key."""
    open_kinds = [kind for kind in kinds if kind in OPEN_SESSION_KINDS
                  and not (kind in ROOM_KINDS and config.daily_room_url)  # --room-url: no /start
                  and not (kind == "livekit" and config.livekit_room)]  # --room: no /start
    if (config.mode == "serve" and open_kinds and not config.api_key
            and not config.allow_unauthenticated and not is_loopback(config.host)):
        raise ConfigError(
            f"refusing to serve {', '.join(open_kinds)} on {config.host} without an API key: "
            "set RUNNER_API_KEY (clients send Authorization: Bearer <key>), bind --host "
            "127.0.0.1, or pass --allow-unauthenticated if anyone may start sessions"
        )


def _mount_start(app: FastAPI, context: AppContext) -> None:
    """`POST /start` as the existing clients call it; each transport answers its own `transport`."""

    async def start(request: Request) -> Response:
        body = await read_json_object(request, allow_empty=True)
        requested = start_transport(body, context.start_handlers)
        if not isinstance(requested, str) or requested not in context.start_handlers:
            served = ", ".join(context.start_handlers)
            raise HTTPException(400, f"transport {requested!r} is not served by /start here "
                                     f"(served: {served})")
        answer = await context.start_handlers[requested](request, body)
        return answer if isinstance(answer, Response) else JSONResponse(answer)

    context.route(app, SessionRoute("POST", "/start", "start", reads_body=True), start)
