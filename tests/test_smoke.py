"""`runner smoke` end to end: good bots pass, broken bots fail the right checks, JUnit parsed."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import ROOT, run_cli

BROKEN = {
    "raises": ("import asyncio\n\nasync def bot(transport):\n"
               "    async for frame in transport.audio():\n"
               "        await transport.send_audio(frame)\n"
               "        if transport.stats.frames_read > 50:\n"
               "            raise RuntimeError('exploded after a second')\n"),
    "silent": ("async def bot(transport):\n"
               "    async for frame in transport.audio():\n"
               "        pass\n"),
    "stubborn": ("import asyncio\n\nasync def bot(transport):\n"
                 "    async for frame in transport.audio():\n"
                 "        await transport.send_audio(frame)\n"
                 "    await asyncio.sleep(3600)\n"),
}


def junit_cases(path: Path) -> dict[tuple[str, str], str]:
    """(transport, check) -> 'passed' | 'failure' | 'skipped', from the parsed JUnit file."""
    cases = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        kind = case.get("classname").removeprefix("smoke.")
        state = "failure" if case.find("failure") is not None else (
            "skipped" if case.find("skipped") is not None else "passed")
        cases[(kind, case.get("name"))] = state
    return cases


def smoke(tmp_path: Path, bot: str, *extra: str) -> tuple[int, dict, dict]:
    junit, report = tmp_path / "junit.xml", tmp_path / "report.json"
    result = run_cli("smoke", bot, "--transport", "websocket", "--duration", "2", "--expect-audio",
                     "--grace-period", "1", "--junit", str(junit), "--json", str(report), *extra,
                     timeout=90)
    return result.returncode, junit_cases(junit), json.loads(report.read_text())


def test_echo_bot_passes_every_check(tmp_path: Path) -> None:
    code, cases, report = smoke(tmp_path, str(ROOT / "bots" / "echo.py"), "--record",
                                str(tmp_path / "rec"))
    assert code == 0
    assert set(cases.values()) == {"passed"} and len(cases) == 6
    assert report["passed"] is True
    assert (tmp_path / "rec" / "websocket.wav").stat().st_size > 16000


@pytest.mark.parametrize(
    ("name", "failing"),
    [
        ("raises", {"no bot error"}),
        ("silent", {"bot sent audio"}),
        ("stubborn", {"clean end"}),
    ],
)
def test_broken_bots_fail_the_matching_checks(tmp_path: Path, name: str, failing: set[str]) -> None:
    bot = tmp_path / f"{name}.py"
    bot.write_text(BROKEN[name])
    code, cases, report = smoke(tmp_path, str(bot))
    assert code == 1
    failed = {check for (_, check), state in cases.items() if state == "failure"}
    assert failed == failing
    assert report["passed"] is False


def test_a_bot_that_does_not_load_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bot = tmp_path / "syntax.py"
    bot.write_text("async def bot(t):\n  pass pass\n")
    result = run_cli("smoke", str(bot), "--transport", "websocket", "--junit",
                     str(tmp_path / "junit.xml"))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "syntax error" in result.stderr
    assert not (tmp_path / "junit.xml").exists()  # nothing ran


def test_daily_without_credentials_is_skipped_never_passed(tmp_path: Path) -> None:
    code, cases, _ = smoke(tmp_path, str(ROOT / "bots" / "echo.py"), "--transport", "daily")
    assert code == 3  # nothing was tested: not green
    assert {state for (kind, _), state in cases.items() if kind == "daily"} == {"skipped"}


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    result = run_cli("smoke", str(ROOT / "bots" / "echo.py"), "--transport", "nope")
    assert result.returncode == 2 and "unknown transport" in result.stderr
    result = run_cli("smoke", str(ROOT / "bots" / "echo.py"), "--input", str(tmp_path / "x.wav"))
    assert result.returncode == 2 and "--input" in result.stderr
