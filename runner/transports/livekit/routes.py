"""HTTP for LiveKit: `POST /start`, answered in the reference runner's shape.

`/start` puts a bot in a room and gives the person a token for it, so, like Daily's, it sits
behind RUNNER_API_KEY, and a full or draining server refuses before creating anything. The
room service's refusals are one log line and a 502 that says why. With `--room NAME` no route
starts sessions: the bot keeps itself in that room from startup. Otherwise the page at `/` can
join a session's room (`page`).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request, Response

from runner.config import Config, ConfigError
from runner.context import AppContext
from runner.transports.daily.routes import keep_in_room, open_room
from runner.transports.livekit.page import mount_page
from runner.transports.livekit.rooms import LiveKitRooms
from runner.transports.livekit.service import LiveKitService
from runner.transports.livekit.tokens import Keys

log = logging.getLogger("runner.livekit")


def mount(app: FastAPI, context: AppContext, kinds: list[str]) -> None:
    config = context.config
    _check_config(config)
    keys = Keys(config.livekit_api_key or "", config.livekit_api_secret or "")
    service = LiveKitService(context, LiveKitRooms(config.livekit_url or "", keys), keys)
    app.state.livekit = service

    async def start(request: Request, body: dict[str, Any]) -> Response | dict[str, Any]:
        return await _start(service, body)

    if config.livekit_room:
        keep_in_room(context, service)
    else:
        context.start_handlers["livekit"] = start
        mount_page(app, context)
    context.shutdown_hooks.append(service.close)


def _check_config(config: Config) -> None:
    """Everything missing in one message, before the server starts."""
    missing = [name for name, value in (("LIVEKIT_URL", config.livekit_url),
                                        ("LIVEKIT_API_KEY", config.livekit_api_key),
                                        ("LIVEKIT_API_SECRET", config.livekit_api_secret))
               if not value]
    if missing:
        raise ConfigError(f"transport livekit needs {' and '.join(missing)} (for livekit-server "
                          "--dev: ws://localhost:7880, devkey, secret)")
    parts = urlsplit(config.livekit_url or "")
    if parts.scheme not in {"ws", "wss", "http", "https"} or not parts.hostname:
        raise ConfigError(f"LIVEKIT_URL={config.livekit_url!r} is not a LiveKit server URL like "
                          "wss://your-project.livekit.cloud or ws://localhost:7880")


async def _start(service: LiveKitService, body: dict[str, Any]) -> Response | dict[str, Any]:
    """`{body?}` -> `{url, token, sessionId}`: the person's token, never the bot's."""
    opened = await open_room(service, service.room_for_start, body=body.get("body"))
    if isinstance(opened, Response):
        return opened
    session, grant = opened
    token = service.user_token(session, grant)
    service.launch(session, grant)
    return {"url": grant.url, "token": token, "sessionId": session.id}
