"""`runner smoke`: choose transports, load the bot and the input, run, report, exit status.

Exit statuses: 0 every check that ran passed, 1 a check failed, 2 a usage or configuration error
(the bot does not load, a bad `transport_options` key: one line on stderr, as `dev` and `serve`),
3 nothing was tested (every check skipped, e.g. Daily without DAILY_API_KEY).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from runner.audio import read_wav
from runner.config import Config, ConfigError
from runner.loader import load_bot
from runner.logs import configure_logging
from runner.selection import expand
from runner.smoke.harness import SmokeOptions, run_smoke, test_signal
from runner.smoke.report import (
    EXIT_NOTHING_TESTED,
    exit_status,
    nothing_tested,
    table,
    write_json,
    write_junit,
)


def smoke(config: Config, bot_reference: str, *, input_path: str | None, duration: float,
          expect_audio: bool, expect_message: bool, json_path: str | None,
          junit_path: str | None, parallel: bool) -> int:
    configure_logging(config.log_level if config.source("log_level") != "default" else "warning",
                      config.log_format)
    if duration <= 0:
        raise ConfigError("--duration must be more than 0 seconds")
    kinds = in_given_order(config.transport or "all")
    if input_path:
        try:
            audio = read_wav(input_path)
        except (OSError, ValueError) as error:
            raise ConfigError(f"--input {input_path}: {error}") from None
    else:
        audio = test_signal()
    bot = load_bot(bot_reference)
    options = SmokeOptions(duration=duration, expect_audio=expect_audio,
                           expect_message=expect_message,
                           record=Path(config.record) if config.record else None)
    results = asyncio.run(run_smoke(config, bot, kinds, audio, options, parallel))
    status = exit_status(results)
    if status == EXIT_NOTHING_TESTED:
        print(f"runner: {nothing_tested(results)}", file=sys.stderr)
    else:
        print(table(results))
    if json_path:
        write_json(results, Path(json_path))
    if junit_path:
        write_junit(results, Path(junit_path))
    return status


def in_given_order(value: str) -> list[str]:
    """`--transport` as transport names in the order written ("telephony" and "all" keep their
    own order), so the report reads as the command line does; `expand` alone gives the
    registry's order, which is what mounting needs."""
    kinds: list[str] = []
    for part in [part for part in value.split(",") if part.strip()] or [value]:
        kinds.extend(kind for kind in expand(part) if kind not in kinds)
    return kinds
