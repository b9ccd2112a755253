"""Hang-ups of connections the server handed to workers, seen by the server itself.

A handed-over connection is the worker's alone, so the server would only learn that its client
left from the worker. A worker whose event loop is blocked says nothing, and its session would
hold its slot until `--worker-timeout`. So the server keeps a duplicate of each handed-over
socket, registered for the peer's hang-up only (EPOLLRDHUP; never for data, which the worker
reads): it costs nothing per message, and when the client leaves, the worker has the grace
period (and a margin) to end the session before it is killed and its slot freed. Linux only
(epoll); elsewhere `--worker-timeout` is the bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
from collections.abc import Callable

log = logging.getLogger("runner.workers")

#: Peer hung up: a FIN (RDHUP), a reset or an error (HUP and ERR are always reported).
_HUNG_UP = getattr(select, "EPOLLRDHUP", 0) | getattr(select, "EPOLLHUP", 0)


class HangupWatch:
    """Tells `on_hangup(key)` once when the client of a watched socket has gone."""

    def __init__(self, on_hangup: Callable[[object], None]) -> None:
        self._on_hangup = on_hangup
        self._keys: dict[int, object] = {}  # our duplicate descriptor -> its key
        self._epoll: select.epoll | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def watch(self, fd: int, key: object) -> int | None:
        """Watch the connection behind `fd` (a duplicate is kept); the duplicate, to `forget`."""
        if not hasattr(select, "epoll"):
            return None
        if self._epoll is None:
            self._epoll = select.epoll()
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(self._epoll.fileno(), self._ready)
        mine = os.dup(fd)
        self._epoll.register(mine, _HUNG_UP)
        self._keys[mine] = key
        return mine

    def forget(self, mine: int | None) -> None:
        """Stop watching and close our duplicate (the worker's own keeps the connection)."""
        if mine is None or self._keys.pop(mine, None) is None:
            return
        assert self._epoll is not None
        with contextlib.suppress(OSError):
            self._epoll.unregister(mine)
        os.close(mine)

    def close(self) -> None:
        for mine in list(self._keys):
            self.forget(mine)
        if self._epoll is not None and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self._loop.remove_reader(self._epoll.fileno())
            self._epoll.close()
            self._epoll = None

    def _ready(self) -> None:
        assert self._epoll is not None
        for mine, _ in self._epoll.poll(0):
            key = self._keys.get(mine)
            self.forget(mine)
            if key is not None:
                self._on_hangup(key)
