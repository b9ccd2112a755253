"""What the server says with a worker process, and with the zygote that forks them, over a socketpair.

A record is a 4-byte length and a pickled tuple `(op, *args)`. Both ends are our own processes
started from the same code, so pickle is safe here, and it carries bytes, ASGI messages and our
dataclasses (SessionInfo, SessionRecord) as they are.
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from collections.abc import Mapping
from typing import Any

Record = tuple[Any, ...]

_HEADER = struct.Struct("!I")

# server -> worker
OPEN = "open"          # (OPEN, conn, scope, held, first): a relayed connection begins
RECEIVE = "receive"    # (RECEIVE, conn, message): what the client sent (ASGI receive)
END = "end"            # (END, reason): end your session (drain timeout, server stopping)
# worker -> server
READY = "ready"        # (READY,): imported, prewarmed, started: may take a connection
FAILED = "failed"      # (FAILED, reason): could not start (the bot does not load, prewarm raised)
BEAT = "beat"          # (BEAT,): the worker's event loop is running
SEND = "send"          # (SEND, conn, message): what the app sends the client (ASGI send)
DONE = "done"          # (DONE, conn): the app returned for this connection
OPENED = "opened"      # (OPENED, conn, SessionInfo): a session started on this connection
ENDED = "ended"        # (ENDED, SessionRecord): a session ended
BYE = "bye"            # (BYE,): every session is over; exiting
# zygote -> server (READY and FAILED too; fork requests go the other way, see zygote.py)
FORKED = "forked"      # (FORKED, request, pid): a worker was forked for that request
EXITED = "exited"      # (EXITED, pid, returncode): a worker ended (negative: killed by a signal)
THREADED = "threaded"  # (THREADED, names): the bot's import started threads; cannot fork it

#: The parts of an ASGI scope that mean the same in another process (not the app, not state).
PORTABLE_SCOPE_KEYS = ("type", "asgi", "http_version", "scheme", "method", "path", "raw_path",
                       "root_path", "query_string", "headers", "client", "server", "subprotocols",
                       "extensions")


def encode(record: Record) -> bytes:
    data = pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


async def read_record(reader: asyncio.StreamReader) -> Record | None:
    """The next record, or None once the other side has gone."""
    try:
        header = await reader.readexactly(_HEADER.size)
        data = await reader.readexactly(_HEADER.unpack(header)[0])
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    record: Record = pickle.loads(data)
    return record


def portable(scope: Mapping[str, Any]) -> dict[str, Any]:
    """The scope as another process can use it. Extensions that are objects rather than the
    usual dicts belong to this process and stay here."""
    moved = {key: scope[key] for key in PORTABLE_SCOPE_KEYS if key in scope}
    if "extensions" in moved:
        moved["extensions"] = {name: value for name, value in moved["extensions"].items()
                               if isinstance(value, dict)}
    return moved
