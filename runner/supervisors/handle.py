"""One worker process as the server sees it: start it, relay through it, watch it, learn how it ended.

Its sessions are registered with the server's SessionManager as the worker reports them (on the
slot the relay reserved), and concluded with the record the worker sends back, so limits,
/status and metrics do not depend on where a bot runs. A worker that dies with a session or a
connection still open crashed: its connections are told (the relay answers 502 or closes the
socket), its sessions end as `crashed`, the log names the session and the exit signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from runner.logs import current_session
from runner.sessions import Outcome, Session, SessionManager, SessionRecord
from runner.supervisors import wire
from runner.supervisors.hangups import HangupWatch
from runner.supervisors.spawner import ForkedProcess, describe_exit
from runner.transports.base import SessionInfo

log = logging.getLogger("runner.workers")

#: Put in a connection's outbox when its worker is gone: (LOST, why).
LOST = "lost"
#: How long a worker may take to exit once it closed its socket (a bot's leftover non-daemon
#: thread can keep a finished process alive).
EXIT_SECONDS = 5.0


class PoolEvents(Protocol):
    hangups: HangupWatch

    def worker_ready(self, handle: WorkerHandle) -> None: ...

    def worker_exited(self, handle: WorkerHandle) -> None: ...


@dataclass
class Relayed:
    """One connection relayed through a worker: what the worker sends it arrives in `outbox`."""

    id: int
    kind: str
    #: Holds a slot `SessionManager.reserve`d, until a session opens on it or it ends.
    reserved: bool
    outbox: asyncio.Queue[wire.Record] = field(default_factory=asyncio.Queue)
    #: A handed-over connection: our duplicate of its socket, watched for the client's hang-up.
    watched: int | None = None


class WorkerHandle:
    def __init__(self, process: ForkedProcess, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, handoff: socket.socket, sessions: SessionManager,
                 events: PoolEvents, generation: int) -> None:
        self.process = process
        self.pid = process.pid
        self.sessions = sessions
        self.events = events
        self.generation = generation
        self.ready = False
        self.assigned = False  # handed to the relay: its next connection starts its session
        self.retired = False
        self.closing = False  # said goodbye: its session is over, it takes nothing more
        self.stopping = False  # the server is stopping: what it cuts is a shutdown, not a crash
        self.failure: str | None = None  # why it could not start, as it said
        self.kill_reason: str | None = None
        self.returncode: int | None = None
        #: It exited on its own once its sessions were over (not a crash, not killed).
        self.ended_cleanly = False
        self.last_beat = time.monotonic()
        self.connections: dict[int, Relayed] = {}
        self.active: dict[str, Session] = {}
        self.pc_ids: set[str] = set()
        self.exited = asyncio.Event()
        self._reader = reader
        self._writer = writer
        self._handoff = handoff
        self._next_id = 0
        self._ps: Any = None
        self._task = asyncio.create_task(self._read(), name=f"worker:{self.pid}")

    @classmethod
    async def open(cls, process: ForkedProcess, sock: socket.socket, handoff: socket.socket,
                   sessions: SessionManager, events: PoolEvents, generation: int) -> WorkerHandle:
        """Take over a forked worker and the server's ends of its sockets."""
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        return cls(process, reader, writer, handoff, sessions, events, generation)

    @property
    def alive(self) -> bool:
        return (self.returncode is None and not self.retired and not self.closing
                and not self._writer.is_closing())

    # ----------------------------------------------------------------- for the relay

    def connect(self, kind: str, scope: dict[str, Any], reserved: bool,
                held: tuple[str, Any] | None = None, first: list[Any] | None = None) -> Relayed:
        """Begin relaying a connection (`scope` already portable; `first`: messages the client
        sent that were read already)."""
        self._next_id += 1
        relayed = Relayed(self._next_id, kind, reserved)
        if self.returncode is not None:  # it died between being handed out and now
            relayed.outbox.put_nowait((LOST, f"the session's worker process "
                                             f"{self.kill_reason or describe_exit(self.returncode)}"))
            self._unreserve(relayed)
            return relayed
        self.connections[relayed.id] = relayed
        self._write((wire.OPEN, relayed.id, scope, held, first or []))
        return relayed

    async def forward(self, relayed: Relayed, message: dict[str, Any]) -> None:
        """Pass on what the client sent; waits while the worker is behind."""
        if relayed.id in self.connections and self._write((wire.RECEIVE, relayed.id, message)):
            with contextlib.suppress(ConnectionError):
                await self._writer.drain()

    def hand_over(self, kind: str, sock: socket.socket, data: bytes) -> bool:
        """Give the worker a client's connection (its socket, and the bytes read from it so far)
        for a session on the slot reserved for it; False (the slot given back) when the worker
        cannot take it. From here on the worker alone reads and writes that connection."""
        self._next_id += 1
        relayed = Relayed(self._next_id, kind, reserved=True)
        try:
            if self.returncode is not None:
                raise ConnectionError("the worker has ended")
            socket.send_fds(self._handoff, [pickle.dumps((relayed.id, data))], [sock.fileno()])
        except OSError as error:
            log.warning("worker %d could not take a connection: %s", self.pid, error)
            self._unreserve(relayed)
            return False
        self.connections[relayed.id] = relayed
        relayed.watched = self.events.hangups.watch(sock.fileno(), (self, relayed.id))
        return True

    def learn(self, pc_id: str) -> None:
        self.pc_ids.add(pc_id)

    # ----------------------------------------------------------------- for the pool

    async def end(self, reason: str) -> None:
        """Ask the worker to end its session (hang up, leave) as the bot's own hangup would."""
        self._write((wire.END, reason))

    def retire(self) -> None:
        """An idle worker is not needed (stale code, stopping): closing its socket ends it."""
        self.retired = True
        self._writer.close()

    def kill(self, reason: str) -> None:
        if self.returncode is None and self.kill_reason is None:
            self.kill_reason = reason
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()

    def rss(self) -> int:
        """Resident memory in bytes (0 once gone)."""
        import psutil

        try:
            if self._ps is None:
                self._ps = psutil.Process(self.pid)
            return int(self._ps.memory_info().rss)
        except psutil.Error:
            return 0

    # ----------------------------------------------------------------- the socket

    def _write(self, record: wire.Record) -> bool:
        if self._writer.is_closing():
            return False
        self._writer.write(wire.encode(record))
        return True

    async def _read(self) -> None:
        while (record := await wire.read_record(self._reader)) is not None:
            self.last_beat = time.monotonic()
            op = record[0]
            if op in (wire.SEND, wire.DONE):
                self._to_connection(record)
            elif op == wire.OPENED:
                self._opened(record[1], record[2])
            elif op == wire.ENDED:
                self._concluded(record[1])
            elif op == wire.READY:
                self.ready = True
                self.events.worker_ready(self)
            elif op == wire.FAILED:
                self.failure = record[1]
            elif op == wire.BYE:
                self.closing = True
        self._writer.close()
        self._handoff.close()
        returncode: int | None
        try:
            returncode = await asyncio.wait_for(self.process.wait(), EXIT_SECONDS)
        except TimeoutError:
            log.warning("worker %d did not exit after its session; killing it", self.pid)
            self.process.kill()
            returncode = await self.process.wait()
        self._exited(returncode)

    def _to_connection(self, record: wire.Record) -> None:
        relayed = self.connections.get(record[1])
        if relayed is None:
            return
        relayed.outbox.put_nowait(record)
        if record[0] == wire.DONE:
            del self.connections[relayed.id]
            self.events.hangups.forget(relayed.watched)
            self._unreserve(relayed)

    def _opened(self, conn_id: int | None, info: SessionInfo) -> None:
        relayed = self.connections.get(conn_id) if conn_id is not None else None
        reserved = relayed is not None and relayed.reserved
        if relayed is not None:
            relayed.reserved = False
        self.active[info.id] = self.sessions.adopt(info, self.end, reserved)

    def _concluded(self, record: SessionRecord) -> None:
        session = self.active.pop(record.id, None)
        if session is not None:
            self.sessions.conclude(session, record)

    def _unreserve(self, relayed: Relayed) -> None:
        if relayed.reserved:
            relayed.reserved = False
            self.sessions.release()

    def _exited(self, returncode: int | None) -> None:
        why = self.kill_reason or describe_exit(returncode)
        self.returncode = 0 if returncode is None else returncode
        sessions, connections = list(self.active.values()), list(self.connections.values())
        level = logging.WARNING if self.stopping else logging.ERROR
        if returncode == 0 and not sessions:  # a request that came as its session ended
            why = "ended with its session"
            self.ended_cleanly = self.kill_reason is None
        elif sessions or connections:
            kind = sessions[0].info.kind if sessions else connections[0].kind
            if not self.stopping:
                self.sessions.metrics.worker_crashes.labels(kind).inc()
            if not sessions:
                log.log(level, "worker %d %s while serving a %s connection (no session yet)",
                        self.pid, why, kind)
        outcome = Outcome.SHUTDOWN if self.stopping else Outcome.CRASHED
        for session in sessions:
            token = current_session.set((session.id, session.info.kind))
            log.log(level, "worker %d %s; its session ended", self.pid, why)
            current_session.reset(token)
            self.sessions.conclude(session, _cut_short(session, outcome, why))
        self.active.clear()
        for relayed in connections:
            relayed.outbox.put_nowait((LOST, f"the session's worker process {why}"))
            self.events.hangups.forget(relayed.watched)
            self._unreserve(relayed)
        self.connections.clear()
        self.exited.set()
        self.events.worker_exited(self)


def _cut_short(session: Session, outcome: Outcome, why: str) -> SessionRecord:
    """The record of a session its worker could not report: it died, or was killed at shutdown."""
    return SessionRecord(
        id=session.id, kind=session.info.kind, outcome=outcome,
        error=f"worker process {why}", duration=time.monotonic() - session.started,
        connect_time=None, frames_in=0, frames_read=0, frames_dropped=0, audio_seconds_out=0.0,
        first_audio_after=None, messages_out=0,
    )
