"""Reading a media connection's socket on the shared frame clock, not whenever bytes arrive.

A provider sends a frame every 20 ms on each call, each call on its own phase, so a process with
N calls would wake N times per 20 ms just to read; on a virtual machine a wake-up from idle costs
more CPU than a frame's audio work. Read on the clock's beat instead (every 40 ms, or 20 ms with
`--read-every 20ms`), all calls' frames are read in one wake-up: twenty-five a second however
many calls there are. A frame waits for the next beat, never more than a beat; the echo of
what a beat reads leaves in the same wake-up. Now and then a read also asks the kernel when its
bytes arrived, and the clock puts its beats just after the arrivals (runner.phaselock): then a
frame waits about a millisecond, or a frame more.

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
import struct
import sys
import time
from collections.abc import Callable

from runner.pacing import FrameClock, shared_clock

log = logging.getLogger("runner.websocket")

READ_SIZE = 65536  # what one recv takes; a tick reads on while the kernel has more
#: Linux's SO_TIMESTAMPNS (the generic value; Python does not name it): each read may carry the
#: kernel's receive time of its newest bytes, a struct timespec on the realtime clock.
SO_TIMESTAMPNS = 35
TIMESPEC = struct.Struct("@ll")
STAMP_SPACE = socket.CMSG_SPACE(TIMESPEC.size)
STAMP_EVERY = 4  # beats between reads that ask when their bytes arrived: 160 ms


class TickReader:
    """One connection's bytes, read on each beat of the running loop's frame clock."""

    def __init__(self, transport: asyncio.Transport, sock: socket.socket,
                 on_data: Callable[[bytes], None]) -> None:
        self._transport = transport
        self._sock = sock
        self._on_data = on_data
        self._clock: FrameClock = shared_clock()
        self._stamped = _ask_for_arrival_times(sock)
        self._until_stamp = 0  # beats until a read asks when its bytes arrived
        transport.pause_reading()
        self._clock.every_frame(self._tick, self._clock.beat)
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
        stamp = False
        if self._stamped:
            self._until_stamp -= 1
            if self._until_stamp <= 0:
                stamp, self._until_stamp = True, STAMP_EVERY
        while not transport.is_closing():
            try:
                if stamp:
                    data, ancillary, _, _ = self._sock.recvmsg(READ_SIZE, STAMP_SPACE)
                    stamp = False
                    if data:
                        self._note_arrival(ancillary)
                else:
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

    def _note_arrival(self, ancillary: list[tuple[int, int, bytes]]) -> None:
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= TIMESPEC.size:
                seconds, nanoseconds = TIMESPEC.unpack_from(data)
                arrived = seconds + nanoseconds * 1e-9 - (time.time() - time.monotonic())
                self._clock.arrived(arrived)


def _ask_for_arrival_times(sock: socket.socket) -> bool:
    """Have the kernel note when bytes arrive (Linux); False where it cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True
