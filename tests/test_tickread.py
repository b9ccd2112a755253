"""Reading connections on the frame clock's tick (runner.tickread), over real loopback TCP."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
import uvloop

from runner.pacing import FrameClock, shared_clock
from runner.tickread import READ_SIZE, TickReader

from conftest import wait_for

pytestmark = pytest.mark.timeout(20)
#: Both event loops: the server runs on uvloop, whose paused reading differs from asyncio's.
LOOPS: dict[str, Callable[[Coroutine[Any, Any, None]], None]] = {
    "asyncio": asyncio.run, "uvloop": uvloop.run}


def on_both_loops(check: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[str], None]:
    @pytest.mark.parametrize("loop", sorted(LOOPS))
    def test(loop: str) -> None:
        LOOPS[loop](check())

    test.__name__ = test.__qualname__ = check.__name__
    return test


def in_clock_tick() -> bool:
    """Whether the caller runs inside the frame clock's tick callback."""
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code is FrameClock._tick.__code__:
            return True
        frame = frame.f_back
    return False


@dataclass
class Reading(asyncio.Protocol):
    """A server connection whose bytes come only from a TickReader."""

    chunks: list[bytes] = field(default_factory=list)
    from_tick: list[bool] = field(default_factory=list)
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    fail: bool = False
    transport: asyncio.Transport | None = None
    reader: TickReader | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        # After connection_made, as the server does (uvloop starts reading once it returns).
        asyncio.get_running_loop().call_soon(self.attach)

    def attach(self) -> None:
        assert self.transport is not None
        self.reader = TickReader.attach(self.transport, self.on_data)

    def on_data(self, data: bytes) -> None:
        self.chunks.append(data)
        self.from_tick.append(in_clock_tick())
        if self.fail:
            raise RuntimeError("the consumer failed (expected by the test)")

    def data_received(self, data: bytes) -> None:
        raise AssertionError("the event loop read a connection the clock reads")

    def connection_lost(self, exc: Exception | None) -> None:
        if self.reader is not None:
            self.reader.close()
        self.lost.set()

    @property
    def received(self) -> bytes:
        return b"".join(self.chunks)


@dataclass
class Server:
    port: int
    connections: list[Reading]

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Reading]:
        count = len(self.connections)
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        await wait_for(lambda: len(self.connections) > count
                       and self.connections[count].reader is not None)
        return reader, writer, self.connections[count]


@contextlib.asynccontextmanager
async def server() -> AsyncIterator[Server]:
    connections: list[Reading] = []

    def accept() -> Reading:
        connections.append(Reading())
        return connections[-1]

    listening = await asyncio.get_running_loop().create_server(accept, "127.0.0.1", 0)
    try:
        yield Server(listening.sockets[0].getsockname()[1], connections)
    finally:
        for connection in connections:
            if connection.transport is not None:
                connection.transport.abort()
        listening.close()
        await listening.wait_closed()


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@on_both_loops
async def test_bytes_are_read_on_the_clock_tick_not_by_the_event_loop() -> None:
    async with server() as srv:
        _, writer, conn = await srv.connect()
        assert conn.reader is not None and conn.transport is not None
        assert not conn.transport.is_reading()
        for n in range(5):
            writer.write(f"frame {n};".encode())
            await writer.drain()
            await asyncio.sleep(0.007)
        await wait_for(lambda: conn.received.endswith(b"frame 4;"))
        assert conn.received == b"".join(f"frame {n};".encode() for n in range(5))
        assert all(conn.from_tick)
        # Five writes 7 ms apart over about two 20 ms periods: read in a few ticks, not five reads.
        assert len(conn.chunks) < 5
        writer.close()


@on_both_loops
async def test_what_waits_in_the_kernel_is_read_whole_in_one_tick() -> None:
    async with server() as srv:
        _, writer, conn = await srv.connect()
        big = os.urandom(3 * READ_SIZE + 123)
        writer.write(big)
        await writer.drain()
        await wait_for(lambda: len(conn.received) == len(big))
        assert conn.received == big
        writer.close()


@on_both_loops
async def test_bytes_that_came_before_attaching_are_read_at_once() -> None:
    loop = asyncio.get_running_loop()
    left, right = socket.socketpair()
    right.sendall(b"early")
    got: list[bytes] = []
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, left)
    await asyncio.sleep(0)  # the protocol would have read "early" by now: it did not ask to
    reader = TickReader.attach(transport, got.append)
    assert reader is not None
    assert got in ([b"early"], [])  # read at attach, unless the event loop took it first
    right.close()
    transport.close()
    reader.close()


@on_both_loops
async def test_a_peer_that_closes_ends_the_connection_and_leaves_the_clock() -> None:
    async with server() as srv:
        _, writer, conn = await srv.connect()
        writer.write(b"last words")
        writer.write_eof()
        await asyncio.wait_for(conn.lost.wait(), 2)
        assert conn.received == b"last words"
        assert conn.reader is not None and conn.reader._sock.fileno() == -1
        assert conn.reader._tick not in shared_clock()._tickers
        writer.close()


@on_both_loops
async def test_a_peer_that_resets_ends_the_connection() -> None:
    async with server() as srv:
        _, writer, conn = await srv.connect()
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # RST, not FIN
        await asyncio.wait_for(conn.lost.wait(), 2)


@on_both_loops
async def test_a_consumer_that_raises_ends_only_its_own_connection() -> None:
    async with server() as srv:
        _, bad_writer, bad = await srv.connect()
        _, good_writer, good = await srv.connect()
        bad.fail = True
        bad_writer.write(b"poison")
        await asyncio.wait_for(bad.lost.wait(), 2)
        for n in range(3):
            good_writer.write(b"still read %d;" % n)
            await asyncio.sleep(0.03)
        await wait_for(lambda: good.received.endswith(b"still read 2;"))
        assert not good.lost.is_set()
        good_writer.close()


@on_both_loops
async def test_no_descriptor_is_left_behind() -> None:
    async with server() as srv:
        await srv.connect()  # the first connection warms up what stays open (the clock's loop)
        before = open_descriptors()
        for _ in range(20):
            _, writer, conn = await srv.connect()
            writer.write(b"x")
            writer.close()
            await asyncio.wait_for(conn.lost.wait(), 2)
        await asyncio.sleep(0.05)
        assert open_descriptors() <= before
        assert len(shared_clock()._tickers) <= 1  # only the first connection's reader


@on_both_loops
async def test_a_closing_transport_is_not_attached() -> None:
    loop = asyncio.get_running_loop()
    left, right = socket.socketpair()
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, left)
    transport.close()
    assert TickReader.attach(transport, lambda data: None) is None
    right.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's receive times are Linux's")
@on_both_loops
async def test_the_clock_learns_when_bytes_arrive_and_puts_its_boundaries_after_them() -> None:
    """A caller writing every 20 ms at a steady phase: the reads note the kernel's receive
    times, and within a couple of seconds the boundaries fall just after the writes."""
    clock = shared_clock()
    noted: list[float] = []
    arrived = clock.arrived

    def note(when: float) -> None:
        noted.append(when)
        arrived(when)

    clock.arrived = note  # type: ignore[method-assign]
    async with server() as srv:
        _, writer, conn = await srv.connect()
        assert conn.reader is not None and conn.reader._stamped
        written: list[float] = []
        loop = asyncio.get_running_loop()
        start = (loop.time() // clock.period + 2) * clock.period + 0.011  # 11 ms into a period
        for n in range(round(2.5 / clock.period)):
            await asyncio.sleep(max(0.0, start + n * clock.period - loop.time()))
            written.append(time.monotonic())
            writer.write(b"frame %d;" % n)
        await wait_for(lambda: conn.received.endswith(b"frame %d;" % (len(written) - 1)))
        assert len(noted) >= 5
        for when in noted:  # each is a write's arrival: after it, by far less than a frame
            assert min(abs(when - sent) for sent in written) < 0.003
        phases = sorted(sent % clock.period for sent in written)
        typical = phases[len(phases) // 2]
        assert 0.0 < (clock.offset - typical) % clock.period < 0.006
        writer.close()
