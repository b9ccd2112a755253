"""`runner smoke` exit statuses as README states them, from the installed command: 2 and one line
for a bot that cannot run, 3 when nothing was tested, no failure for a message channel the
transport does not have, and transports reported in the order given."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

RUNNER = Path(sys.executable).with_name("runner")  # .venv/bin/runner
ECHO = ("async def bot(transport):\n"
        "    async for frame in transport.audio():\n"
        "        await transport.send_audio(frame)\n")
#: Says hello as an app message, then echoes (a phone call drops the message, logged once).
GREETER = ("async def bot(transport):\n"
           "    await transport.send_message({'hello': 'smoke'})\n"
           "    async for frame in transport.audio():\n"
           "        await transport.send_audio(frame)\n")
UNRUNNABLE = {
    "sync": ("def bot(transport):\n    pass\n", "regular function"),
    "signature": ("async def bot(transport, extra):\n    pass\n", "exactly one argument"),
    "options": ("transport_options = {'webrtc': {'colour': 'blue'}}\n\n" + ECHO,
                "transport_options['webrtc'] has unknown key 'colour'"),
}


def smoke(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`runner smoke ...` in `cwd` (no .env there), with no settings from this environment."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run([str(RUNNER), "smoke", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120)


def statuses(report: Path) -> dict[str, dict[str, str]]:
    """transport -> check -> status, in the report's order, from `--json`."""
    data = json.loads(report.read_text())
    return {run["transport"]: {check["name"]: check["status"] for check in run["checks"]}
            for run in data["transports"]}


@pytest.mark.parametrize("name", ["missing", *UNRUNNABLE])
def test_a_bot_that_cannot_run_is_one_line_and_exit_2(tmp_path: Path, name: str) -> None:
    if name == "missing":
        expected = "missing.py: no such file"
    else:
        source, expected = UNRUNNABLE[name]
        (tmp_path / f"{name}.py").write_text(source)
    result = smoke(tmp_path, f"{name}.py", "--transport", "webrtc", "--json", "report.json")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("runner: error: ")
    assert expected in result.stderr
    assert not (tmp_path / "report.json").exists()  # no table, no report: nothing ran


def test_a_run_that_tested_nothing_says_so_and_exits_3(tmp_path: Path) -> None:
    (tmp_path / "bot.py").write_text(ECHO)
    result = smoke(tmp_path, "bot.py", "--transport", "daily", "--json", "report.json")
    assert result.returncode == 3
    assert result.stdout == ""
    said = [line for line in result.stderr.splitlines() if line.startswith("runner:")]
    assert said == ["runner: nothing was tested (daily: Daily needs its cloud service: "
                    "DAILY_API_KEY is not set)"]
    assert set(statuses(tmp_path / "report.json")["daily"].values()) == {"skip"}
    assert json.loads((tmp_path / "report.json").read_text())["passed"] is False


def test_phone_calls_skip_the_message_check_and_transports_keep_the_order_given(
        tmp_path: Path) -> None:
    (tmp_path / "bot.py").write_text(GREETER)
    result = smoke(tmp_path, "bot.py", "--transport", "exotel,websocket", "--expect-message",
                   "--duration", "1", "--grace-period", "1", "--json", "report.json")
    assert result.returncode == 0, result.stdout + result.stderr
    checks = statuses(tmp_path / "report.json")
    assert list(checks) == ["exotel", "websocket"]  # not the registry's order (websocket first)
    assert checks["exotel"]["bot sent a message"] == "skip"
    assert "exotel calls have no channel for app messages" in result.stdout
    assert checks["websocket"]["bot sent a message"] == "pass"
    assert "fail" not in checks["exotel"].values()
    assert result.stdout.index("exotel ") < result.stdout.index("websocket ")
