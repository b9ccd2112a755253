"""Reading a media connection's socket on the shared frame clock, not whenever bytes arrive.

A provider sends a frame every 20 ms on each call, each call on its own phase, so a process with
N calls would wake N times per 20 ms just to read; on a virtual machine a wake-up from idle costs
more CPU than a frame's audio work. Read on the clock's tick instead (the tick that also sends
every paced stream), all calls' frames are read in one wake-up: fifty a second however many
calls there are. A frame waits for the next tick, 10 ms on average and never more than one
period.

The event loop's transport keeps the connection (writes, closing, learning that it ended); only
its reading is paused, and the bytes are read here from a duplicate of its socket's descriptor.
A duplicate, not the number itself: a read can never land on another connection that was given
the same number after this one closed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable

from runner.pacing import FrameClock, shared_clock

log = logging.getLogger("runner.websocket")

READ_SIZE = 65536  # what one recv takes; a tick reads on while the kernel has more


class TickReader:
    """One connection's bytes, read on each tick of the running loop's frame clock."""

    def __init__(self, transport: asyncio.Transport, sock: socket.socket,
                 on_data: Callable[[bytes], None]) -> None:
        self._transport = transport
        self._sock = sock
        self._on_data = on_data
        self._clock: FrameClock = shared_clock()
        transport.pause_reading()
        self._clock.every_frame(self._tick)
        self._tick(0.0)  # what came before the event loop stopped reading

    @classmethod
    def attach(cls, transport: asyncio.Transport,
               on_data: Callable[[bytes], None]) -> TickReader | None:
        """Read `transport`'s connection on the clock from now on; None where that cannot be:
        TLS (the bytes on the socket are not the frames), or no socket to duplicate."""
        raw = transport.get_extra_info("socket")
        if raw is None or transport.get_extra_info("sslcontext") is not None or transport.is_closing():
            return None
        try:
            sock = socket.socket(fileno=os.dup(raw.fileno()))
        except OSError as error:  # out of descriptors: the event loop reads on, as before
            log.debug("cannot read this connection on the clock: %s", error)
            return None
        sock.setblocking(False)
        return cls(transport, sock, on_data)

    def close(self) -> None:
        """The connection has ended: off the clock, and the duplicate descriptor closed."""
        self._clock.stop(self._tick)
        self._sock.close()

    def _tick(self, now: float) -> None:
        transport = self._transport
        while not transport.is_closing():
            try:
                data = self._sock.recv(READ_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # reset by the peer and the like: the connection is over
                log.debug("reading a media connection failed: %s", error)
                transport.abort()
                return
            if not data:  # the peer closed its side; the transport's end tells the app
                transport.close()
                return
            try:
                self._on_data(data)
            except Exception:
                log.exception("handling a media connection's bytes failed; closing it")
                transport.abort()
                return
            if len(data) < READ_SIZE:
                return
