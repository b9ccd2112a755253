"""runner: start a real-time voice/video bot and connect it to people over the right transport."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["AudioFrame", "Transport", "__version__", "parse_telephony_websocket"]

if TYPE_CHECKING:
    from runner.audio import AudioFrame
    from runner.transports.base import Transport
    from runner.transports.telephony.detect import parse_telephony_websocket

_LAZY = {
    "AudioFrame": "runner.audio",
    "Transport": "runner.transports.base",
    "parse_telephony_websocket": "runner.transports.telephony.detect",
}


def __getattr__(name: str) -> Any:
    """Import public names on first use so `import runner` (and `runner --help`) stays light."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'runner' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
