"""`runner replay`: load the recording and the bot, serve the bot on the recording's transport,
play the caller, record the bot's new side, compare, report, exit status.

Exit statuses as smoke's: 0 no turn got slower or lost its reply, 1 one did, 2 a usage error
(no recording there, a transport replay cannot play yet, the bot does not load).
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
from pathlib import Path

from runner.config import Config, ConfigError
from runner.loader import LoadedBot, load_bot
from runner.logs import configure_logging
from runner.replay.play import check_supported, play
from runner.replay.report import print_comparison, write_junit
from runner.replay.session import Recorded, bot_events, compare, load
from runner.smoke.harness import END_MARGIN, build_server, serving
from runner.smoke.report import EXIT_FAILED, EXIT_PASSED
from runner.transports import require_available


def replay(config: Config, folder: str, bot_reference: str, *, max_slowdown: float,
           junit_path: str | None) -> int:
    configure_logging(config.log_level if config.source("log_level") != "default" else "warning",
                      config.log_format)
    if max_slowdown < 1:
        raise ConfigError("--max-slowdown must be 1 or more (1.5: 50% slower fails)")
    recorded = load(Path(folder))
    check_supported(recorded.kind)
    require_available([recorded.kind])
    bot = load_bot(bot_reference)
    kept = config.record  # --record: where the new recording stays; else a scratch folder
    with tempfile.TemporaryDirectory(prefix="runner-replay-") as scratch:
        out = Path(kept or scratch)
        config = dataclasses.replace(config, transport=recorded.kind, record=str(out))
        new = _new_recording(out, asyncio.run(_replay(config, bot, recorded)))
        comparison = compare(recorded.turns, new.turns, bot_events(recorded.events),
                             bot_events(new.events), max_slowdown)
        print_comparison(recorded, new, comparison, bot_reference, max_slowdown,
                         kept=kept)
    if junit_path:
        write_junit(recorded, comparison, Path(junit_path))
    return EXIT_FAILED if comparison.failed else EXIT_PASSED


async def _replay(config: Config, bot: LoadedBot, recorded: Recorded) -> str | None:
    """The replayed session's id; the server records it as `--record` records any session."""
    built = build_server(config, bot, recorded.kind)
    try:
        async with serving(built) as (target, sessions):
            await play(recorded, target)
            await sessions.wait_idle(built.config.grace_period + END_MARGIN)
            record = sessions.history[-1] if sessions.history else None
    finally:
        built.sock.close()
    return record.id if record is not None else None


def _new_recording(out: Path, session_id: str | None) -> Recorded:
    if session_id is None:
        raise ConfigError("the server never started a session for the replayed call")
    folders = list(out.glob(f"*-{session_id}"))
    if not folders:
        raise ConfigError(f"the replayed session was not recorded in {out}")
    return load(folders[0])
