"""daily-python, imported here and only here, behind the few factories the transport needs.

The transport never names a daily class, so tests can hand it a stand-in with the same method
names, and `runner --help` never loads the native library. One CallClient per session, with a
custom audio track per session: daily's virtual microphone and speaker are process-global (one
of each per process), so they cannot carry many calls at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

_init_lock = threading.Lock()
_initialized = False


class Sdk(Protocol):
    """What the transport builds from daily-python (or from a stand-in in tests)."""

    def call_client(self, events: object) -> Any:
        """A CallClient whose event callbacks go to `events`' `on_*` methods of the same name."""

    def audio_source(self, sample_rate: int, channels: int) -> Any: ...

    def audio_track(self, source: Any) -> Any: ...

    def video_source(self, width: int, height: int, color_format: str) -> Any: ...

    def video_track(self, source: Any) -> Any: ...


class DailySdk:
    """The real daily-python. `Daily.init()` runs once per process, on first use."""

    def __init__(self) -> None:
        import daily

        self._daily = daily
        self._handlers: dict[type, Callable[[object], Any]] = {}
        global _initialized
        with _init_lock:
            if not _initialized:
                daily.Daily.init(log_level=daily.LogLevel.Error)
                _initialized = True

    def call_client(self, events: object) -> Any:
        make = self._handlers.get(type(events))
        if make is None:
            make = self._handlers[type(events)] = _forwarding_handler(self._daily.EventHandler, events)
        return self._daily.CallClient(event_handler=make(events))

    def audio_source(self, sample_rate: int, channels: int) -> Any:
        return self._daily.CustomAudioSource(sample_rate, channels, True)

    def audio_track(self, source: Any) -> Any:
        return self._daily.CustomAudioTrack(source)

    def video_source(self, width: int, height: int, color_format: str) -> Any:
        return self._daily.CustomVideoSource(width, height, color_format)

    def video_track(self, source: Any) -> Any:
        return self._daily.CustomVideoTrack(source)


def _forwarding_handler(base: Any, events: object) -> Callable[[object], Any]:
    """A daily EventHandler subclass whose callbacks call `events`' methods of the same name.

    daily calls only the methods its EventHandler declares, and needs an instance of it; the
    subclass forwards those the transport implements and inherits no-ops for the rest.
    """
    names = [name for name in dir(base)
             if name.startswith("on_") and callable(getattr(events, name, None))]

    def forward(name: str) -> Callable[..., None]:
        def method(self: Any, *args: Any) -> None:
            getattr(self._target, name)(*args)

        return method

    def new(cls: type, target: object) -> Any:
        return base.__new__(cls)  # daily's native __new__ takes no arguments

    def init(self: Any, target: object) -> None:
        base.__init__(self)
        self._target = target

    namespace: dict[str, Any] = {name: forward(name) for name in names}
    namespace.update(__new__=new, __init__=init)
    return type("RunnerEventHandler", (base,), namespace)
