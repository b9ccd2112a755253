"""Which connections carry a session, and so go to a worker process: read from the session
routes the transports declared (`AppContext.session_routes`), never a table of our own.

Everything else is served by the server itself: health, readiness, status, metrics, the page,
provider webhooks (they only answer XML), and webrtc's `POST /start`, which only holds a body
until the offer comes (the relay hands that body to the offer's worker).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from starlette.convertors import Convertor
from starlette.routing import compile_path

from runner.context import JOINING_KINDS, SessionRoute


@dataclass(frozen=True)
class Matched:
    """A connection's session route, as its transport declared it, and the path's parameters."""

    route: SessionRoute
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def role(self) -> str:
        return self.route.role

    def refusal(self, scope: dict[str, Any]) -> str | None:
        """Why the route would refuse this connection from its request alone (None: go ahead)."""
        return self.route.refusal(scope, self.params) if self.route.refusal else None


@dataclass(frozen=True)
class Target:
    """Where a session connection goes: a fresh worker, or the one that owns `pc_id`."""

    kind: str  # the session's transport, as far as known here (a metrics label)
    pc_id: str | None = None
    held: str | None = None  # a `/start` session id: its held body goes along with the offer


def session_route(declared: Iterable[SessionRoute], scope: dict[str, Any]) -> Matched | None:
    """The declared session route this connection is for (None: not a session route)."""
    method = "WS" if scope["type"] == "websocket" else scope.get("method", "")
    for route in declared:
        if route.method != method:
            continue
        regex, _, convertors = _compiled(route.path)
        match = regex.match(scope["path"])
        if match:
            params = {name: convertors[name].convert(value)
                      for name, value in match.groupdict().items()}
            return Matched(route, params)
    return None


@functools.cache
def _compiled(path: str) -> tuple[re.Pattern[str], str, dict[str, Convertor[Any]]]:
    return compile_path(path)


def target(route: Matched, body: dict[str, Any] | None, owned: Callable[[str], bool],
           start_transport: Callable[[dict[str, Any]], Any]) -> Target | None:
    """Where to relay; None to answer here (a refusal, a 404, a 400 the app phrases itself)."""
    if route.role in ("websocket", "telephony"):
        return Target(route.params.get("provider") or route.role)
    if route.role in JOINING_KINDS:
        return Target(route.role)
    if route.role == "dialin":
        return Target("daily")
    if body is None:
        return None
    if route.role == "start":  # a room's bot runs where its CallClient lives: in a worker
        requested = start_transport(body)
        return Target(requested) if requested in JOINING_KINDS else None
    pc_id = body.get("pc_id") if isinstance(body.get("pc_id"), str) else None
    if pc_id and owned(pc_id):
        return Target("webrtc", pc_id=pc_id)
    if route.role == "patch" or not isinstance(body.get("sdp"), str):
        return None
    if "session_id" in route.params:
        return Target("webrtc", held=route.params["session_id"])
    if pc_id and body.get("restart_pc") is not True:
        return None  # a renegotiation of a peer nobody here has: 404
    return Target("webrtc")
