"""Which connections carry a session, and so go to a worker process: the one table of them.

Everything else is served by the server itself: health, readiness, status, metrics, the page,
provider webhooks (they only answer XML), and webrtc's `POST /start`, which only holds a body
until the offer comes (the relay hands that body to the offer's worker).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from starlette.routing import BaseRoute, Match

#: (HTTP method, or "WS"; the route's path) -> the name of what it does.
SESSION_ROUTES: dict[tuple[str, str], str] = {
    ("WS", "/ws-client"): "websocket",
    ("WS", "/ws"): "telephony",
    ("WS", "/ws/{provider}"): "telephony",
    ("WS", "/ws/{provider}/{token}"): "telephony",
    ("POST", "/api/offer"): "offer",
    ("POST", "/sessions/{session_id}/api/offer"): "offer",
    ("PATCH", "/api/offer"): "patch",
    ("PATCH", "/sessions/{session_id}/api/offer"): "patch",
    ("POST", "/start"): "start",
    ("GET", "/daily"): "daily",
    ("POST", "/daily/dialin"): "dialin",
}
#: Routes that need RUNNER_API_KEY (when set): without it they are answered here, never relayed.
KEYED = frozenset({"websocket", "offer", "patch", "start", "daily"})
#: Routes whose decision reads the JSON body.
READS_BODY = frozenset({"offer", "patch", "start"})


@dataclass(frozen=True)
class SessionRoute:
    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """Where a session connection goes: a fresh worker, or the one that owns `pc_id`."""

    kind: str  # the session's transport, as far as known here (a metrics label)
    pc_id: str | None = None
    held: str | None = None  # a `/start` session id: its held body goes along with the offer


def session_route(routes: Iterable[BaseRoute], scope: dict[str, Any]) -> SessionRoute | None:
    """The session route this connection is for, matched as the app itself would match it."""
    method = "WS" if scope["type"] == "websocket" else scope.get("method", "")
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            name = SESSION_ROUTES.get((method, getattr(route, "path", "")))
            return SessionRoute(name, child.get("path_params", {})) if name else None
    return None


def target(route: SessionRoute, body: dict[str, Any] | None, owned: Callable[[str], bool],
           start_transport: Callable[[dict[str, Any]], Any]) -> Target | None:
    """Where to relay; None to answer here (a refusal, a 404, a 400 the app phrases itself)."""
    if route.name in ("websocket", "telephony"):
        return Target(route.params.get("provider") or route.name)
    if route.name in ("daily", "dialin"):
        return Target("daily")
    if body is None:
        return None
    if route.name == "start":
        return Target("daily") if start_transport(body) == "daily" else None
    pc_id = body.get("pc_id") if isinstance(body.get("pc_id"), str) else None
    if pc_id and owned(pc_id):
        return Target("webrtc", pc_id=pc_id)
    if route.name == "patch" or not isinstance(body.get("sdp"), str):
        return None
    if "session_id" in route.params:
        return Target("webrtc", held=route.params["session_id"])
    if pc_id and body.get("restart_pc") is not True:
        return None  # a renegotiation of a peer nobody here has: 404
    return Target("webrtc")
