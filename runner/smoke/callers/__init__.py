"""Synthetic clients: each speaks one transport's protocol exactly, as a person's client would.

A caller connects to a running server, plays audio in real time for a while, collects what the
bot sends back, and leaves the way a person does (hang-up, peer close). Callers are imported
only for the transports being smoke-tested.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from runner.audio import AudioFrame
from runner.config import Config


@dataclass(frozen=True)
class Target:
    """Where the server under test listens, and the config it runs with (for secrets/tokens)."""

    http: str
    ws: str
    config: Config


@dataclass
class CallResult:
    connected: bool = False
    connect_seconds: float | None = None
    first_audio_seconds: float | None = None  # from the first audio sent to the first heard back
    received: AudioFrame | None = None
    messages: list[Any] = field(default_factory=list)
    detail: str = ""


Caller = Callable[[Target, AudioFrame, float], Awaitable[CallResult]]

_CALLERS = {
    "websocket": "runner.smoke.callers.websocket",
    "webrtc": "runner.smoke.callers.webrtc",
    "twilio": "runner.smoke.callers.telephony",
    "telnyx": "runner.smoke.callers.telephony",
    "plivo": "runner.smoke.callers.telephony",
    "exotel": "runner.smoke.callers.telephony",
    "vonage": "runner.smoke.callers.telephony",
    "livekit": "runner.smoke.callers.livekit",  # when LIVEKIT_URL is reachable (harness checks)
}


def has_caller(kind: str) -> bool:
    """Whether `kind` has a synthetic caller (without importing its packages); LiveKit's also
    needs a reachable LiveKit server, which the harness checks."""
    return kind in _CALLERS


def caller_for(kind: str) -> Caller | None:
    """The synthetic caller for a transport, or None where there is none (Daily, Tavus)."""
    module = _CALLERS.get(kind)
    if module is None:
        return None
    return importlib.import_module(module).caller(kind)
