"""The servers under test, as subprocesses on 127.0.0.1: runner in both isolation modes and the
reference.

runner runs `runner serve bots/echo.py` (or the real-bot benchmark's bot) as a user would in
production (loopback, no API key, signature checks off so synthetic callers need no webhook):
"runner" in serve's own default isolation (process: each session in a worker forked from a
zygote, prewarmed workers as the default `--prewarm auto` keeps them; RUNNER_ISOLATION and
RUNNER_PREWARM are removed from its environment so nothing overrides the defaults),
"runner-task" with RUNNER_ISOLATION=task (every session in the server process). The reference
runs our Pipecat echo bot (or the real-bot benchmark's, the same file runner serves) under the
Pipecat development runner from its own venv (benchmarks/.ref-venv).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
REF_VENV = ROOT / "benchmarks" / ".ref-venv"
REF_PYTHON = REF_VENV / "bin" / "python"
REF_BOT = ROOT / "benchmarks" / "reference" / "echo_bot.py"
RUNNER_BOT = "bots/echo.py"
#: The real-bot benchmark's bot (Silero VAD + Smart Turn v3), one file run by every server.
REAL_BOT = "benchmarks/realbot_bot.py"
RUNNER = Path(sys.executable).parent / "runner"
#: Every implementation measured, in the order the tables show them (runner's default first).
IMPLEMENTATIONS = ("runner", "runner-task", "reference")
RUNNERS = ("runner", "runner-task")
#: RUNNER_ISOLATION for each of runner's modes (None: removed, so serve's default applies).
ISOLATION: dict[str, str | None] = {"runner": None, "runner-task": "task"}
#: What each transport of the benchmark is called on the command line of each implementation.
RUNNER_TRANSPORTS = {"twilio": "twilio", "webrtc": "webrtc", "websocket": "websocket"}
REF_TRANSPORTS = {"twilio": "twilio", "webrtc": "webrtc"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def reference_available() -> bool:
    return REF_PYTHON.exists() and subprocess.run(
        [str(REF_PYTHON), "-c", "import pipecat.runner.run"], capture_output=True,
        check=False).returncode == 0


def pipecat_version() -> str | None:
    if not REF_PYTHON.exists():
        return None
    done = subprocess.run([str(REF_PYTHON), "-c", "import importlib.metadata as m; "
                           "print(m.version('pipecat-ai'))"], capture_output=True, text=True,
                          check=False)
    return done.stdout.strip() or None


@dataclass
class Server:
    """One server process: how to start it, where it answers, and its log."""

    name: str
    transports: tuple[str, ...]
    argv: list[str]
    port: int
    ready_path: str
    env: dict[str, str | None] = field(default_factory=dict)  # None: removed from os.environ
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    ready_seconds: float | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def url(self, transport: str) -> str:
        """Where a load generator for `transport` connects."""
        ws = f"ws://127.0.0.1:{self.port}"
        return {"twilio": f"{ws}/ws", "websocket": f"{ws}/ws-client?sample_rate=16000",
                "webrtc": self.http}[transport]

    def start(self, timeout: float = 60.0) -> float:
        """Start and wait until it answers `ready_path`; returns seconds from spawn to ready."""
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        began = time.monotonic()
        env = {key: value for key, value in {**os.environ, **self.env}.items() if value is not None}
        self.process = subprocess.Popen(self.argv, cwd=ROOT, env=env, stdout=log,
                                        stderr=subprocess.STDOUT)
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() - began < timeout:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.process.returncode} "
                                       f"before it was ready (log: {self.log_path})")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(self.http + self.ready_path).status_code == 200:
                        self.ready_seconds = time.monotonic() - began
                        return self.ready_seconds
                time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"{self.name} was not ready within {timeout:.0f} s (log: {self.log_path})")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def runner_server(transports: tuple[str, ...], log_path: Path | None = None,
                  name: str = "runner", bot: str = RUNNER_BOT) -> Server:
    """runner in the isolation mode `name` stands for (ISOLATION), serving `bot`."""
    port = free_port()
    argv = [str(RUNNER), "serve", bot,
            "--transport", ",".join(RUNNER_TRANSPORTS[t] for t in transports),
            "--host", "127.0.0.1", "--port", str(port), "--public-url", f"http://127.0.0.1:{port}",
            "--no-verify-signatures", "--max-sessions", "100000"]
    env = {"RUNNER_SECRET": "benchmark-only-secret", "RUNNER_ISOLATION": ISOLATION[name],
           "RUNNER_PREWARM": None}
    return Server(name, transports, argv, port, "/ready", env=env, log_path=log_path)


def reference_server(transport: str, log_path: Path | None = None,
                     bot: str | Path = REF_BOT) -> Server:
    """The Pipecat development runner running `bot` (a file with its `__main__` block)."""
    port = free_port()
    argv = [str(REF_PYTHON), str(bot), "-t", REF_TRANSPORTS[transport],
            "--host", "127.0.0.1", "--port", str(port), "-x", f"127.0.0.1:{port}"]
    return Server("reference", (transport,), argv, port, "/status", log_path=log_path)


def make_server(name: str, transport: str, log_path: Path | None = None,
                real_bot: bool = False) -> Server:
    """`name` serving the echo bots, or (`real_bot`) REAL_BOT, over `transport`."""
    if name in RUNNERS:
        return runner_server((transport,), log_path, name, REAL_BOT if real_bot else RUNNER_BOT)
    return reference_server(transport, log_path, REAL_BOT if real_bot else REF_BOT)
