"""AppContext: what the app, the transports and the supervisors share (below all three).

The config as the server runs it, the bot, the session registry and the selected transports;
hooks run at start and stop; and the `POST /start` handlers by transport.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from runner.config import Config
from runner.guards import require_api_key
from runner.loader import LoadedBot
from runner.selection import Choice
from runner.sessions import SessionManager

RETRY_AFTER_SECONDS = 5

#: Transports whose routes start sessions for anyone who asks (and so need an API key in public).
OPEN_SESSION_KINDS = ("webrtc", "daily", "livekit", "tavus", "websocket")
#: Transports whose session is a room the bot joins (a Daily room): `--room-url` names one.
ROOM_KINDS = ("daily", "tavus")
#: Transports whose bot joins a room from the process that runs its session (a worker): their
#: `/start` is served there.
JOINING_KINDS = (*ROOM_KINDS, "livekit")

StartHandler = Callable[[Request, dict[str, Any]], Awaitable[Response | dict[str, Any]]]
#: Why the server refuses a session connection from its scope and path parameters alone (None:
#: it may go ahead): the same check the route makes, run before any worker is spent on it.
Refusal = Callable[[dict[str, Any], dict[str, Any]], "str | None"]


class Held(Protocol):
    body: Any


class HeldBodies(Protocol):
    """`/start` bodies held until their offer comes (WebRTC): a process-isolated server moves
    one to the worker that takes the offer."""

    def take(self, session_id: str) -> Held | None:
        """What is held for `session_id`, now removed; None if unknown or expired."""

    def put_back(self, session_id: str, held: Held) -> None:
        """Hold it again (its offer failed: the client may retry)."""

    def adopt(self, session_id: str, body: Any) -> None:
        """Hold `body`, handed over from another process, under `session_id` for a moment."""


@dataclass(frozen=True)
class SessionRoute:
    """A route that starts or steers a session, declared once by its transport (`AppContext.
    route`): the app mounts it, and the supervisors decide from it where a connection goes."""

    method: str  # "WS" for a WebSocket, else the HTTP method
    path: str
    #: What it does: "websocket", "telephony" (a media socket), "offer", "patch" (WebRTC
    #: signaling), "start", "daily" / "tavus" (a room for the caller), "dialin" (a Daily dial-in
    #: webhook).
    role: str
    keyed: bool = True  # needs RUNNER_API_KEY, when one is set
    reads_body: bool = False  # where it goes depends on its JSON body
    refusal: Refusal | None = None


@dataclass
class AppContext:
    """What route modules need: the config, the bot, the session registry, the selection."""

    config: Config
    bot: LoadedBot
    sessions: SessionManager
    selection: list[Choice]
    #: Run once the server is up (e.g. joining a fixed Daily room) and when it stops.
    startup_hooks: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    shutdown_hooks: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    #: `POST /start` handlers by the `transport` value they answer (webrtc, daily).
    start_handlers: dict[str, StartHandler] = field(default_factory=dict)
    #: Every session route mounted, as its transport declared it.
    session_routes: list[SessionRoute] = field(default_factory=list)
    #: Where a transport that holds `/start` bodies until their offer keeps them (WebRTC).
    held: HeldBodies | None = None

    def route(self, app: FastAPI, route: SessionRoute, endpoint: Callable[..., Any]) -> None:
        """Mount a session route and declare it: the one place either happens."""
        if route.method == "WS":
            app.add_api_websocket_route(route.path, endpoint)
        else:
            keyed = [Depends(self.require_api_key)] if route.keyed else None
            app.add_api_route(route.path, endpoint, methods=[route.method], dependencies=keyed)
        self.session_routes.append(route)

    def require_api_key(self, request: Request) -> None:
        """FastAPI dependency for routes that start sessions or spend money."""
        require_api_key(self.config, request)

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


def start_transport(body: dict[str, Any], served: Iterable[str]) -> Any:
    """The transport a `POST /start` body asks for (whether it is served is checked after)."""
    requested = body.get("transport")
    if requested is None and body.get("createDailyRoom"):
        # A Daily client asking for a room: Daily's, else a Tavus conversation's (a Daily room).
        requested = next((kind for kind in ROOM_KINDS if kind in served), "daily")
    elif requested is None:
        requested = next(iter(served))
    return requested
