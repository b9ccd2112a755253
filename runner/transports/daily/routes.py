"""HTTP for Daily: `POST /start` as existing Pipecat clients call it, `GET /daily` (dev), and
`POST /daily/dialin` for Daily's pinless dial-in webhook.

`/start` and `/daily` spend the operator's Daily minutes, so they sit behind RUNNER_API_KEY (the
server refuses to expose them on a public address without one). Daily cannot send that key, so
the dial-in webhook has its own shared secret instead. With `--room-url` no route starts
sessions: the bot keeps itself in that one room from startup.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.requests import HTTPConnection

from runner.config import Config, ConfigError
from runner.context import AppContext, Refusal, SessionRoute
from runner.guards import read_json_object
from runner.sessions import Session, SessionRefused
from runner.transports.base import CallInfo
from runner.transports.daily.dialin import BadDialin, admitted, parse_call
from runner.transports.daily.rest import ApiError, DailyRest
from runner.transports.daily.rooms import RoomGrant, room_name
from runner.transports.daily.service import DailyService, RoomService

log = logging.getLogger("runner.daily")


def mount(app: FastAPI, context: AppContext, kinds: list[str]) -> None:
    config = context.config
    _check_config(config)
    rest = DailyRest(config.daily_api_key, config.daily_api_url) if config.daily_api_key else None
    service = DailyService(context, rest)
    app.state.daily = service

    async def start(request: Request, body: dict[str, Any]) -> Response | dict[str, Any]:
        return await _start(service, body)

    async def browse() -> Response:
        return await _browse(service)

    async def dialin(request: Request) -> Response:
        return await _dialin(service, request)

    if config.daily_room_url:
        keep_in_room(context, service)
    else:
        context.start_handlers["daily"] = start
        if config.mode == "dev":
            context.route(app, SessionRoute("GET", "/daily", "daily"), browse)
    if rest is not None:
        context.route(app, SessionRoute("POST", "/daily/dialin", "dialin", keyed=False,
                                        refusal=_dialin_refusal(config)), dialin)
    context.shutdown_hooks.append(service.close)


def _check_config(config: Config) -> None:
    for flag, url in (("--room-url", config.daily_room_url),
                      ("DAILY_ROOM_URL", config.daily_start_room_url)):
        if url:
            try:
                room_name(url)
            except ValueError as error:
                raise ConfigError(f"{flag}: {error}") from None
    if not config.daily_room_url and not config.daily_api_key:
        raise ConfigError("transport daily needs DAILY_API_KEY to create rooms, or --room-url "
                          "(RUNNER_DAILY_ROOM_URL) to join one existing room")


async def _start(service: DailyService, body: dict[str, Any]) -> Response | dict[str, Any]:
    """`{createDailyRoom?, dailyRoomProperties?, dailyMeetingTokenProperties?, body?}` ->
    `{dailyRoom, dailyToken, sessionId}`; the token is the person's, never the bot's."""
    room_overrides = _object(body, "dailyRoomProperties")
    token_overrides = _object(body, "dailyMeetingTokenProperties")
    opened = await open_room(service,
                             lambda: service.room_for_start(room_overrides, token_overrides),
                             body=body.get("body"))
    if isinstance(opened, Response):
        return opened
    session, grant = opened
    service.launch(session, grant)
    return {"dailyRoom": grant.url, "dailyToken": grant.client_token, "sessionId": session.id}


async def _browse(service: DailyService) -> Response:
    """Dev: a new room with the bot in it, and the browser sent there with its own token."""
    opened = await open_room(service, lambda: service.room_for_start(None, None))
    if isinstance(opened, Response):
        return opened
    session, grant = opened
    service.launch(session, grant)
    return RedirectResponse(f"{grant.url}?t={grant.client_token}", status_code=303)


async def _dialin(service: DailyService, request: Request) -> Response:
    _check_dialin_secret(service.config, request)
    body = await read_json_object(request)
    try:
        call = parse_call(body)
    except BadDialin as error:
        raise HTTPException(400, f"not a Daily dial-in webhook: {error}") from None
    if call is None:
        return JSONResponse({"status": "ok"})  # Daily testing the webhook while it is configured
    info = CallInfo(provider="daily", call_id=call.call_id, account_id=call.call_domain,
                    from_number=call.caller, to_number=call.called)
    opened = await open_room(service, lambda: service.room_for_dialin(call), body=body, call=info)
    if isinstance(opened, Response):
        return opened
    session, grant = opened
    service.launch(session, grant, dialin=call)
    return JSONResponse({"status": "ok", "sessionId": session.id, "dailyRoom": grant.url})


async def open_room(service: RoomService, make_grant: Callable[[], Awaitable[RoomGrant]],
                    **session_args: Any) -> tuple[Session, RoomGrant] | Response:
    """Reserve a session slot first (a full server spends nothing at the provider), then get the room;
    the provider's refusal is one log line and a 502 that says why."""
    context = service.context
    try:
        session = context.sessions.open(service.kind, **session_args)
    except SessionRefused as refused:
        return context.refused(str(refused))
    try:
        grant = await make_grant()
    except ApiError as error:
        session.abandon()
        log.error("%s", error)
        raise HTTPException(502, str(error)) from None
    except BaseException:
        session.abandon()
        raise
    return session, grant


def _object(body: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = body.get(key)
    if value is not None and not isinstance(value, dict):
        raise HTTPException(400, f"{key} must be a JSON object")
    return value


def _check_dialin_secret(config: Config, request: Request) -> None:
    if admitted(config.daily_dialin_secret, config.verify_signatures, request.query_params,
                request.headers):
        return
    if config.daily_dialin_secret:
        raise HTTPException(401, "missing or wrong dial-in secret")
    raise HTTPException(403, "dial-in is off: set RUNNER_DAILY_DIALIN_SECRET and add "
                             "?secret=<it> to the room_creation_api URL")


def keep_in_room(context: AppContext, service: RoomService) -> None:
    """Run `service.stay_in_room` from server startup until shutdown."""
    tasks: list[asyncio.Task[None]] = []

    async def begin() -> None:
        task = asyncio.create_task(service.stay_in_room(), name=f"{service.kind}:room-url")
        task.add_done_callback(functools.partial(_log_failure, service.fixed_room))
        tasks.append(task)

    async def end() -> None:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    context.startup_hooks.append(begin)
    context.shutdown_hooks.append(end)


def _log_failure(room: str | None, task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the bot stopped rejoining the room %s", room, exc_info=task.exception())


def _dialin_refusal(config: Config) -> Refusal:
    """A dial-in webhook without its secret costs no worker."""

    def refusal(scope: dict[str, Any], params: dict[str, Any]) -> str | None:
        request = HTTPConnection(scope)
        if admitted(config.daily_dialin_secret, config.verify_signatures, request.query_params,
                    request.headers):
            return None
        return "dial-in webhook without its secret"

    return refusal
