"""Smoke results: a table for people, JSON for scripts, JUnit XML for CI systems."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path

#: `runner smoke` exit statuses; 2, a usage or configuration error, is the CLI's own.
EXIT_PASSED, EXIT_FAILED, EXIT_NOTHING_TESTED = 0, 1, 3


class Status(StrEnum):
    PASSED = "pass"
    FAILED = "fail"
    SKIPPED = "skip"


@dataclass
class Check:
    name: str
    status: Status
    reason: str
    seconds: float | None = None


@dataclass
class TransportResult:
    transport: str
    checks: list[Check] = field(default_factory=list)

    def add(self, name: str, ok: bool, reason: str, seconds: float | None = None) -> bool:
        self.checks.append(Check(name, Status.PASSED if ok else Status.FAILED, reason, seconds))
        return ok

    def skip(self, name: str, reason: str) -> None:
        self.checks.append(Check(name, Status.SKIPPED, reason))

    @property
    def failed(self) -> bool:
        return any(check.status is Status.FAILED for check in self.checks)

    @property
    def skipped(self) -> bool:
        """Nothing of this transport was tested."""
        return all(check.status is Status.SKIPPED for check in self.checks)


def exit_status(results: list[TransportResult]) -> int:
    """1 when a check failed; 3 when every check was skipped, which proves nothing about the bot
    and so must not read as a pass in CI; else 0."""
    if any(result.failed for result in results):
        return EXIT_FAILED
    if all(result.skipped for result in results):
        return EXIT_NOTHING_TESTED
    return EXIT_PASSED


def nothing_tested(results: list[TransportResult]) -> str:
    """The one line for a run in which every check was skipped: each transport and why."""
    reasons = "; ".join(f"{result.transport}: {result.checks[0].reason}" for result in results)
    return f"nothing was tested ({reasons})"


def table(results: list[TransportResult]) -> str:
    rows = [("transport", "check", "result", "time", "reason")]
    for result in results:
        for check in result.checks:
            shown = f"{check.seconds:.2f} s" if check.seconds is not None else ""
            rows.append((result.transport, check.name, check.status.upper(), shown, check.reason))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4]
             for row in rows]
    passed = sum(c.status is Status.PASSED for r in results for c in r.checks)
    failed = sum(c.status is Status.FAILED for r in results for c in r.checks)
    skipped = sum(c.status is Status.SKIPPED for r in results for c in r.checks)
    lines.append(f"\n{passed} passed, {failed} failed, {skipped} skipped")
    return "\n".join(lines)


def write_json(results: list[TransportResult], path: Path) -> None:
    data = {"passed": exit_status(results) == EXIT_PASSED, "transports": [asdict(r) for r in results]}
    path.write_text(json.dumps(data, indent=2))


def write_junit(results: list[TransportResult], path: Path) -> None:
    """One testcase per transport x check, as JUnit readers (GitHub, GitLab, Jenkins) expect."""
    suites = ET.Element("testsuites", name="runner smoke")
    for result in results:
        suite = ET.SubElement(
            suites, "testsuite", name=f"smoke.{result.transport}",
            tests=str(len(result.checks)),
            failures=str(sum(c.status is Status.FAILED for c in result.checks)),
            skipped=str(sum(c.status is Status.SKIPPED for c in result.checks)),
            errors="0",
            time=f"{sum(c.seconds or 0 for c in result.checks):.3f}",
        )
        for check in result.checks:
            case = ET.SubElement(suite, "testcase", classname=f"smoke.{result.transport}",
                                 name=check.name, time=f"{check.seconds or 0:.3f}")
            if check.status is Status.FAILED:
                ET.SubElement(case, "failure", message=check.reason).text = check.reason
            elif check.status is Status.SKIPPED:
                ET.SubElement(case, "skipped", message=check.reason)
            else:
                ET.SubElement(case, "system-out").text = check.reason
    ET.indent(suites)
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)
