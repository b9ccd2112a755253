"""runner: start a real-time voice/video bot and connect it to people over the right transport."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "AppMessage",
    "AudioFrame",
    "ClientConnected",
    "ClientLeft",
    "Dtmf",
    "MarkReached",
    "Transport",
    "__version__",
    "parse_telephony_websocket",
    "read_wav",
    "tone",
    "write_wav",
]

if TYPE_CHECKING:
    from runner.audio import AudioFrame, read_wav, tone, write_wav
    from runner.transports.base import (
        AppMessage,
        ClientConnected,
        ClientLeft,
        Dtmf,
        MarkReached,
        Transport,
    )
    from runner.transports.telephony.detect import parse_telephony_websocket

# Public name -> the module that defines it. Importing those modules pulls in numpy, soxr and
# Starlette, so they are imported on first use, not by `import runner`.
_LAZY = {
    "AudioFrame": "runner.audio",
    "tone": "runner.audio",
    "read_wav": "runner.audio",
    "write_wav": "runner.audio",
    "Transport": "runner.transports.base",
    "ClientConnected": "runner.transports.base",
    "ClientLeft": "runner.transports.base",
    "Dtmf": "runner.transports.base",
    "MarkReached": "runner.transports.base",
    "AppMessage": "runner.transports.base",
    "parse_telephony_websocket": "runner.transports.telephony.detect",
}


def __getattr__(name: str) -> Any:
    """Import public names on first use so `import runner` (and `runner --help`) stays light."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'runner' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
