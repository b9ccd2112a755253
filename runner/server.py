"""create_app(config, bot) -> the FastAPI app: health, readiness, status, and the selected transports.

Only the routes of selected transports are mounted; everything else answers 404.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from runner import __version__
from runner.config import Config
from runner.loader import LoadedBot
from runner.selection import Choice, select_transports
from runner.sessions import SessionManager
from runner.transports import REGISTRY, require_available

log = logging.getLogger("runner.server")

RETRY_AFTER_SECONDS = 5


@dataclass
class AppContext:
    """What route modules need: the config, the bot, the session registry, the selection."""

    config: Config
    bot: LoadedBot
    sessions: SessionManager
    selection: list[Choice]
    shutdown_hooks: list[Any] = field(default_factory=list)

    @property
    def kinds(self) -> list[str]:
        return [choice.name for choice in self.selection]

    def refused(self, reason: str) -> JSONResponse:
        """The HTTP answer when no session can be started: 503 with Retry-After."""
        return JSONResponse(
            {"detail": f"cannot start a session: {reason}"},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )


def create_app(config: Config, bot: LoadedBot, selection: Sequence[Choice] | None = None) -> FastAPI:
    """Build the app. Raises ConfigError/TransportUnavailable for what the user must fix."""
    chosen = list(selection) if selection is not None else select_transports(config)
    require_available([choice.name for choice in chosen])
    sessions = SessionManager(config, bot)
    context = AppContext(config=config, bot=bot, sessions=sessions, selection=chosen)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await sessions.shutdown()
        for hook in context.shutdown_hooks:
            await hook()

    app = FastAPI(title="runner", version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.state.context = context

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        if sessions.draining:
            return JSONResponse({"ready": False, "reason": "draining"}, status_code=503)
        if sessions.full:
            return JSONResponse({"ready": False, "reason": "at --max-sessions"}, status_code=503)
        return JSONResponse({"ready": True})

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
        importlib.import_module(module_name).mount(app, context, kinds)
    return app
