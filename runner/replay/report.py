"""What replay prints (a side-by-side table of the turns, the events that differ) and its JUnit
file (one testcase per turn, read by CI systems as smoke's are)."""

from __future__ import annotations

from pathlib import Path

from runner.replay.session import Comparison, Recorded, TurnComparison
from runner.smoke.report import TransportResult
from runner.smoke.report import write_junit as write_smoke_junit


def _seconds(value: object) -> str:
    return f"{value:.2f} s" if isinstance(value, int | float) else "-"


def _length(turn: dict[str, object] | None) -> str:
    if not turn or turn.get("reply_start") is None:
        return "no reply"
    return _seconds(float(turn["reply_end"]) - float(turn["reply_start"]))  # type: ignore[arg-type]


def _row(turn: TurnComparison) -> tuple[str, ...]:
    then, now = turn.then, turn.now or {}
    return (str(turn.index), f"{then['caller_start']:.2f}-{then['caller_end']:.2f} s",
            turn.measure, _seconds(then.get(turn.measure)), _seconds(now.get(turn.measure)),
            _length(then), _length(turn.now), "FAIL" if turn.problem else "ok")


def print_comparison(recorded: Recorded, new: Recorded, comparison: Comparison, bot: str,
                     max_slowdown: float, kept: str | None) -> None:
    print(f"replay of {recorded.folder} ({recorded.kind}, {len(comparison.turns)} turns) "
          f"against {bot}, failing above {max_slowdown:g}x")
    rows = [("turn", "caller spoke", "measure", "then", "now", "reply then", "reply now",
             "result"), *map(_row, comparison.turns)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    if comparison.only_then or comparison.only_now:
        print("events that differ:")
        for line in comparison.only_then:
            print(f"  then only: {line}")
        for line in comparison.only_now:
            print(f"  now only:  {line}")
    else:
        print("events: the same")
    for turn in comparison.turns:
        if turn.problem:
            print(f"FAILED: {turn.problem}")
    if kept:
        print(f"the new recording: {new.folder}")


def write_junit(recorded: Recorded, comparison: Comparison, path: Path) -> None:
    result = TransportResult(f"replay.{recorded.kind}")
    for turn in comparison.turns:
        name = f"turn {turn.index}"
        if turn.then.get("reply_start") is None:
            result.skip(name, "no reply in the recording to compare with")
        else:
            now = (turn.now or {}).get(turn.measure)
            result.add(name, not turn.problem, turn.problem or
                       f"{turn.measure} {_seconds(turn.then.get(turn.measure))} then, "
                       f"{_seconds(now)} now")
    write_smoke_junit([result], path)
