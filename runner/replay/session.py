"""A recorded session as replay needs it, and the comparison of its turns with a new recording.

Turns are matched by when the caller spoke (the same audio was played, so the caller's turns
fall at the same times, give or take the connection's few milliseconds). A turn is slower when
its response time grew by more than `max_slowdown` times and by more than `SLACK_SECONDS`:
without that floor an echo's 20 ms becoming 40 ms would read as twice as slow.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.audio import AudioFrame, read_wav
from runner.errors import UserError

#: A turn is slower only if its response time also grew by at least this much (jitter).
SLACK_SECONDS = 0.1
#: How far apart the caller's turn may start, then and now, and still be the same turn.
SAME_TURN_SECONDS = 0.3
#: Events that say nothing about the bot (their details differ on every run).
_IGNORED = {"connected", "left"}


@dataclass(frozen=True)
class Recorded:
    """One session folder: what the caller did, and what came of it then."""

    folder: Path
    summary: dict[str, Any]
    caller: AudioFrame
    events: list[dict[str, Any]]

    @property
    def kind(self) -> str:
        return str(self.summary.get("transport"))

    @property
    def turns(self) -> list[dict[str, Any]]:
        return list(self.summary.get("turns") or [])

    def caller_events(self) -> list[dict[str, Any]]:
        """What the caller did besides speaking (DTMF, app messages), in time order."""
        return [e for e in self.events if e.get("event") in ("dtmf", "message_in")]


def session_folder(path: Path) -> Path:
    """`path` itself when it is a session folder, else its one session folder (a `--record`
    root with a single session in it)."""
    if (path / "session.json").is_file():
        return path
    found = sorted(p.parent for p in path.glob("*/session.json")) if path.is_dir() else []
    if len(found) == 1:
        return found[0]
    if not found:
        raise UserError(f"{path}: no recorded session here (no session.json); record one with "
                        "--record DIR")
    raise UserError(f"{path} holds {len(found)} recorded sessions: give one of its folders")


def load(path: Path) -> Recorded:
    folder = session_folder(path)
    try:
        summary = json.loads((folder / "session.json").read_text())
        caller = read_wav(folder / "caller.wav")
        events_file = folder / "events.jsonl"
        events = ([json.loads(line) for line in events_file.read_text().splitlines() if line]
                  if events_file.exists() else [])
    except (OSError, ValueError) as error:
        raise UserError(f"{folder}: not a readable recording: {error}") from None
    return Recorded(folder, summary, caller, events)


@dataclass
class TurnComparison:
    index: int
    then: dict[str, Any]
    now: dict[str, Any] | None
    problem: str = ""

    @property
    def measure(self) -> str:
        """Latency (caller end to reply) when both replies waited for the caller; else onset
        (caller start to reply), which stays positive for a bot that talks over the caller."""
        now = self.now or {}
        waited = (self.then.get("latency") or -1) >= 0 and (now.get("latency") or -1) >= 0
        return "latency" if waited else "onset"


@dataclass
class Comparison:
    turns: list[TurnComparison] = field(default_factory=list)
    only_then: list[str] = field(default_factory=list)
    only_now: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(turn.problem for turn in self.turns)


def compare(then: list[dict[str, Any]], now: list[dict[str, Any]], then_events: list[dict[str, Any]],
            now_events: list[dict[str, Any]], max_slowdown: float) -> Comparison:
    result = Comparison()
    for index, old in enumerate(then, 1):
        new = min(now, key=lambda t: abs(t["caller_start"] - old["caller_start"]), default=None)
        if new is not None and abs(new["caller_start"] - old["caller_start"]) > SAME_TURN_SECONDS:
            new = None
        turn = TurnComparison(index, old, new)
        turn.problem = _problem(turn, max_slowdown)
        result.turns.append(turn)
    old_events, new_events = Counter(map(_describe, then_events)), Counter(map(_describe, now_events))
    result.only_then = sorted((old_events - new_events).elements())
    result.only_now = sorted((new_events - old_events).elements())
    return result


def _problem(turn: TurnComparison, max_slowdown: float) -> str:
    if turn.then.get("reply_start") is None:
        return ""  # nothing to lose, nothing to time
    if turn.now is None:
        return f"turn {turn.index}: the caller's turn was not heard this time"
    if turn.now.get("reply_start") is None:
        return f"turn {turn.index} lost its reply"
    name = turn.measure
    old, new = float(turn.then[name]), float(turn.now[name])
    if new > old * max_slowdown and new - old > SLACK_SECONDS:
        return (f"turn {turn.index} is slower: {name} {old:.2f} s then, {new:.2f} s now "
                f"(more than {max_slowdown:g}x)")
    return ""


def _describe(event: dict[str, Any]) -> str:
    fields = {k: v for k, v in event.items() if k not in ("t", "event")}
    return f"{event.get('event')} {json.dumps(fields, sort_keys=True)}" if fields else str(event.get("event"))


def bot_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events worth comparing: everything but connect and leave."""
    return [e for e in events if e.get("event") not in _IGNORED]
