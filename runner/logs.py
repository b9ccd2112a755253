"""Logging: readable text in dev, one JSON object per line in production, session on every line.

The session id and transport travel in a context variable, so every line a session's tasks log
(the bot's own `logging` calls included) carries them without the bot passing anything. A worker
process runs one session at a time, so there a line from outside the session's context (a
library's callback, a task a transport started before its session) carries it too.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
import time

Tag = tuple[str, str]  # (session id, transport)


class SessionVar:
    """`current_session`: the session whose code is running (a context variable: get, set,
    reset), which also knows the sessions running in this process."""

    def __init__(self) -> None:
        self.var: contextvars.ContextVar[Tag | None] = contextvars.ContextVar(
            "runner_session", default=None)
        self.running: dict[int, Tag] = {}  # by id() of the token that set it
        #: This process runs one session at a time: a worker (runner forks nothing else).
        self.one_per_process = False

    def get(self) -> Tag | None:
        return self.var.get()

    def set(self, tag: Tag | None) -> contextvars.Token[Tag | None]:
        token = self.var.set(tag)
        if tag is not None:
            self.running[id(token)] = tag
        return token

    def reset(self, token: contextvars.Token[Tag | None]) -> None:
        self.running.pop(id(token), None)
        self.var.reset(token)

    def for_record(self) -> Tag | None:
        """The session a line logged now belongs to."""
        tag = self.var.get()
        if tag is None and self.one_per_process:
            running = set(self.running.values())
            tag = running.pop() if len(running) == 1 else None
        return tag


current_session = SessionVar()


def _forked() -> None:
    current_session.one_per_process = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)

#: What must never reach a log line: stream tokens and keys in URL paths, bearer credentials,
#: signature headers. uvicorn logs every WebSocket path it accepts, tokens included.
_SECRETS = (
    (re.compile(r"(/ws/[a-z]+/)[A-Za-z0-9_\-.~%]{8,}"), r"\1<redacted>"),
    (re.compile(r"(/vonage/answer/)[A-Za-z0-9_\-.~%]{8,}"), r"\1<redacted>"),
    (re.compile(r"(?i)(bearer\s+)[^\s'\",]+"), r"\1<redacted>"),
    (re.compile(r"(?i)((?:signature|token|secret|api[_-]?key|authorization)[\w-]*['\"]?\s*[:=]\s*['\"]?)"
                r"[^\s'\",}]+"), r"\1<redacted>"),
)


def redact(text: str) -> str:
    """Strip credentials from a log line (applied by both formatters, to every record)."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


_COLOURS = {"DEBUG": "\033[2m", "INFO": "", "WARNING": "\033[33m", "ERROR": "\033[31m",
            "CRITICAL": "\033[1;31m"}
_RESET = "\033[0m"


def _install_record_factory() -> None:
    """Stamp every log record with the current session, whichever handler later sees it."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_runner", False):
        return

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        session = current_session.for_record()
        record.session_id, record.transport = session if session else (None, None)
        return record

    factory._runner = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


_install_record_factory()


class TextFormatter(logging.Formatter):
    def __init__(self, colour: bool) -> None:
        super().__init__()
        self.colour = colour

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        where = f" [{record.transport} {record.session_id}]" if record.session_id else ""
        line = f"{stamp} {record.levelname:<7} {record.name}{where}: {redact(record.getMessage())}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if self.colour:
            line = f"{_COLOURS.get(record.levelname, '')}{line}{_RESET}"
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if record.session_id:
            entry["session_id"] = record.session_id
            entry["transport"] = record.transport
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class _PerConnection(logging.Filter):
    """uvicorn logs every WebSocket it accepts and closes at info: a line per call is noise in
    production (sessions log their own start and end). Its lifecycle lines stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        message = str(record.msg)
        return not (message.startswith('%s - "WebSocket') or message in ("connection open",
                                                                          "connection closed"))


def configure_logging(level: str = "info", fmt: str = "text") -> None:
    """Install our handler on the root logger (once; calling again replaces it)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(sys.stderr.isatty()))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_runner", False)]:
        root.removeHandler(old)
    handler._runner = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    quiet = max(logging.WARNING, root.level)
    for noisy in ("aioice", "aiortc", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(quiet)
    for chatty in ("websockets", "watchfiles"):  # a line per connection, per file change
        logging.getLogger(chatty).setLevel(logging.NOTSET if root.level <= logging.DEBUG else quiet)
    server_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _PerConnection) for f in server_log.filters):
        server_log.addFilter(_PerConnection())
