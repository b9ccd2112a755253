"""The command line feels like its peers: `-t`, help with no arguments, whole summaries, each
command's real defaults, and no INFO chatter from libraries in the default log."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runner.cli import DEV_HELP, SERVE_HELP, SMOKE_HELP, TRANSPORTS_HELP

from conftest import ROOT, run_cli

WIDE = {"COLUMNS": "80"}


def words(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("command", ["dev", "serve", "smoke"])
def test_t_is_short_for_transport(tmp_path: Path, command: str) -> None:
    bot = tmp_path / "bot.py"
    bot.write_text("async def bot(transport):\n    pass\n")
    result = run_cli(command, str(bot), "-t", "skype", cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown transport 'skype'" in result.stderr


def test_runner_alone_prints_the_help_not_an_error() -> None:
    result = run_cli(env=WIDE)
    assert result.returncode == 0
    assert result.stdout.startswith("Usage: runner") and "Commands:" in result.stdout
    assert "error" not in result.stderr


def test_the_command_list_has_whole_summaries() -> None:
    commands = words(run_cli("--help", env=WIDE).stdout.split("Commands:")[1])
    for summary in (DEV_HELP, SERVE_HELP, SMOKE_HELP, TRANSPORTS_HELP):
        assert summary in commands
    assert "..." not in commands


@pytest.mark.parametrize(("command", "default"), [
    ("dev", "webrtc"),
    ("smoke", "all (each transport with an offline test client; Daily is skipped)"),
    ("serve", "every transport whose credentials are set (see `runner transports`)"),
])
def test_help_shows_each_commands_own_transport_default(command: str, default: str) -> None:
    text = words(run_cli(command, "--help", env=WIDE).stdout)
    assert "-t, --transport TRANSPORT" in text
    assert f"[env: RUNNER_TRANSPORT; default: {default}]" in text


LOG_LIBRARIES = """
import logging, sys
from runner.logs import configure_logging
configure_logging(sys.argv[1])
logging.getLogger("websockets.server").info("connection open")
logging.getLogger("watchfiles.main").info("1 change detected")
logging.getLogger("websockets.server").warning("a websockets warning")
"""


@pytest.mark.parametrize(("level", "shown"), [("info", False), ("debug", True)])
def test_websockets_and_watchfiles_info_only_at_debug(level: str, shown: bool) -> None:
    result = subprocess.run([sys.executable, "-c", LOG_LIBRARIES, level], capture_output=True,
                            text=True, cwd=ROOT, timeout=30)
    assert ("connection open" in result.stderr) is shown
    assert ("1 change detected" in result.stderr) is shown
    assert "a websockets warning" in result.stderr
