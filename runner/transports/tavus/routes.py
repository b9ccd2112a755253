"""HTTP for Tavus: `POST /start` (the Daily clients' shape) and, in dev, `GET /tavus`.

Each answered `/start` opens a billed conversation, so, like Daily's, these routes sit behind
RUNNER_API_KEY, and a full or draining server refuses before asking Tavus for anything. Tavus's
refusals (a bad key, no credits left, too many conversations) are one log line and a 502 that
says why. With `--room-url` (a conversation's URL) no route starts sessions: the bot keeps itself
in that conversation from startup.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse

from runner.config import Config, ConfigError
from runner.context import AppContext, SessionRoute
from runner.transports.daily.rooms import room_name
from runner.transports.daily.routes import keep_in_room, open_room
from runner.transports.tavus.rest import TavusRest
from runner.transports.tavus.service import TavusService

log = logging.getLogger("runner.tavus")


def mount(app: FastAPI, context: AppContext, kinds: list[str]) -> None:
    config = context.config
    _check_config(config, context.kinds)
    service = TavusService(context, TavusRest(config.tavus_api_key or "", config.tavus_api_url))
    app.state.tavus = service

    async def start(request: Request, body: dict[str, Any]) -> Response | dict[str, Any]:
        return await _start(service, body)

    async def browse() -> Response:
        return await _browse(service)

    if config.daily_room_url:
        keep_in_room(context, service)
    else:
        context.start_handlers["tavus"] = start
        if config.mode == "dev":
            context.route(app, SessionRoute("GET", "/tavus", "tavus"), browse)
    context.shutdown_hooks.append(service.close)


def _check_config(config: Config, kinds: list[str]) -> None:
    """Everything missing in one message, before the server starts."""
    if config.daily_room_url:
        if "daily" in kinds:
            raise ConfigError("--room-url names one room: serve it with --transport daily or with "
                              "--transport tavus, not both")
        try:
            room_name(config.daily_room_url)
        except ValueError:
            raise ConfigError(f"--room-url: {config.daily_room_url!r} is not a Tavus conversation "
                              "URL like https://tavus.daily.co/c123456") from None
    needed = [("TAVUS_API_KEY", config.tavus_api_key)]
    if not config.daily_room_url:
        needed.append(("TAVUS_REPLICA_ID", config.tavus_replica_id))
    missing = [name for name, value in needed if not value]
    if missing:
        raise ConfigError(f"transport tavus needs {' and '.join(missing)}, from your Tavus account "
                          "(TAVUS_PERSONA_ID is optional: by default pipecat0, the echo persona)")


async def _start(service: TavusService, body: dict[str, Any]) -> Response | dict[str, Any]:
    """`{body?}` -> `{dailyRoom, sessionId, conversationId}`: the person joins the room with any
    Daily client, no token needed; the bot and the replica are already on their way."""
    opened = await open_room(service, service.new_conversation, body=body.get("body"))
    if isinstance(opened, Response):
        return opened
    session, grant = opened
    service.launch(session, grant)
    return {"dailyRoom": grant.url, "sessionId": session.id, "conversationId": grant.name}


async def _browse(service: TavusService) -> Response:
    """Dev: a new conversation with the bot in it, and the browser sent to its room."""
    opened = await open_room(service, service.new_conversation)
    if isinstance(opened, Response):
        return opened
    session, grant = opened
    service.launch(session, grant)
    return RedirectResponse(grant.url, status_code=303)
