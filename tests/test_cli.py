"""The command line as a user meets it: help, errors (one line, exit 2), transports table."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runner.config import SETTINGS

from conftest import ROOT, run_cli


def test_help_lists_every_option_with_env_and_default() -> None:
    result = run_cli("serve", "--help", env={"COLUMNS": "200"})
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for setting in SETTINGS:
        if setting.flag and setting.name != "reload":
            assert setting.flag in text
            assert f"env: {setting.env}; default: {setting.describe_default()}" in text
    dev = run_cli("dev", "--help", env={"COLUMNS": "200"})
    assert "--reload / --no-reload" in dev.stdout and "RUNNER_RELOAD" in dev.stdout


def test_root_help_does_not_import_heavy_transports() -> None:
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "runner", "--help"],
                            capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert result.returncode == 0
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    for heavy in ("aiortc", "daily", "av", "numpy", "fastapi", "uvicorn"):
        assert heavy not in imported, heavy


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("runner: error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def bot_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bot.py"
    path.write_text(text)
    return str(path)


GOOD = "async def bot(transport):\n    pass\n"


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["serve", "{missing}", "--transport", "websocket"], {}, "no such file"),
        (["serve", "{good}", "--transport", "skype"], {}, "unknown transport 'skype'"),
        (["serve", "{good}", "--transport", "websocket", "--port", "99999"], {},
         "--port='99999': must be between 0 and 65535"),
        (["serve", "{good}", "--transport", "websocket", "--max-sessions", "x"], {},
         "--max-sessions='x': expected a whole number"),
        (["serve", "{good}", "--transport", "websocket"], {"RUNNER_MAX_DURATION": "soon"},
         "RUNNER_MAX_DURATION='soon'"),
        (["serve", "{good}"], {}, "nothing to serve"),
        (["serve", "{sync}", "--transport", "websocket"], {}, "is a regular function"),
        (["serve", "{arity}", "--transport", "websocket"], {}, "must take exactly one argument"),
        (["serve", "{nofunc}", "--transport", "websocket"], {}, "has no function 'bot'"),
        (["serve", "{syntax}", "--transport", "websocket"], {}, ":2: syntax error"),
        (["serve", "{good}", "--transport", "websocket", "--bogus"], {}, "No such option"),
    ],
)
def test_user_errors_are_one_line_exit_2(tmp_path: Path, args: list[str], env: dict,
                                         expected: str) -> None:
    files = {
        "good": GOOD, "sync": "def bot(t):\n    pass\n", "arity": "async def bot():\n    pass\n",
        "nofunc": "x = 1\n", "syntax": "async def bot(t):\n  pass pass\n",
    }
    paths = {"missing": str(tmp_path / "missing.py")}
    for name, text in files.items():
        path = tmp_path / f"{name}.py"
        path.write_text(text)
        paths[name] = str(path)
    argv = [arg.format(**paths) for arg in args]
    line = one_error_line(run_cli(*argv, env=env, cwd=tmp_path))
    assert expected in line


def test_transports_table_and_json(tmp_path: Path) -> None:
    env = {"TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "s3cr3t-value"}
    table = run_cli("transports", env=env, cwd=tmp_path)
    assert table.returncode == 0
    assert "websocket" in table.stdout and "WS /ws-client" in table.stdout
    assert "no: set PLIVO_AUTH_ID, PLIVO_AUTH_TOKEN" in table.stdout
    rows = {row["transport"]: row for row in json.loads(
        run_cli("transports", "--json", env=env, cwd=tmp_path).stdout)}
    assert rows["twilio"]["configured"] is True
    assert rows["twilio"]["set"] == ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"]
    assert rows["daily"]["missing"] == ["DAILY_API_KEY"]
    assert rows["websocket"]["available"] is True
    assert "s3cr3t-value" not in table.stdout


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("runner ")
