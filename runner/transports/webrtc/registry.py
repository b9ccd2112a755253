"""Where signaling finds things: live webrtc sessions, and `/start` sessions awaiting their offer.

Live transports are kept by session id and found by `pc_id` by looking at each one's current
peer, so a restarted or ended peer connection can never leave a stale `pc_id` behind. Started
sessions that never get an offer expire, and only so many may wait at once.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runner.sessions import SessionRefused

if TYPE_CHECKING:
    from runner.transports.webrtc.peer import WebRTCTransport


@dataclass(frozen=True)
class Pending:
    """A `/start` body waiting for its session's first offer."""

    expires: float
    body: Any


class Registry:
    def __init__(self, pending_seconds: float, pending_limit: int) -> None:
        self.pending_seconds = pending_seconds
        self.pending_limit = pending_limit
        self._live: dict[str, WebRTCTransport] = {}
        self._pending: dict[str, Pending] = {}

    # ----------------------------------------------------------------- live sessions

    def add(self, transport: WebRTCTransport) -> None:
        self._live[transport.session.id] = transport

    def remove(self, transport: WebRTCTransport) -> None:
        if self._live.get(transport.session.id) is transport:
            del self._live[transport.session.id]

    def find(self, pc_id: str) -> WebRTCTransport | None:
        """The live transport whose current peer connection is `pc_id`."""
        return next((t for t in self._live.values() if t.pc_id == pc_id and not t.ended), None)

    @property
    def live(self) -> int:
        return len(self._live)

    # ----------------------------------------------------------------- started, awaiting an offer

    def hold(self, body: Any) -> str:
        """Keep a `/start` body until its offer comes; returns the session id for the client."""
        self._expire()
        if len(self._pending) >= self.pending_limit:
            raise SessionRefused(f"{self.pending_limit} started sessions are waiting for an offer")
        session_id = uuid.uuid4().hex
        self._pending[session_id] = Pending(time.monotonic() + self.pending_seconds, body)
        return session_id

    def take(self, session_id: str) -> Pending | None:
        """What is held for `session_id`, now removed; None if unknown or expired."""
        self._expire()
        return self._pending.pop(session_id, None)

    def put_back(self, session_id: str, pending: Pending) -> None:
        """Hold it again after its offer failed: the client may retry until it expires."""
        self._pending[session_id] = pending

    def adopt(self, session_id: str, body: Any) -> None:
        """Hold a body another process held for `session_id` (its offer came to this one)."""
        self._pending[session_id] = Pending(time.monotonic() + self.pending_seconds, body)

    @property
    def pending(self) -> int:
        self._expire()
        return len(self._pending)

    def _expire(self) -> None:
        now = time.monotonic()
        for session_id in [sid for sid, held in self._pending.items() if held.expires <= now]:
            del self._pending[session_id]
