"""`runner smoke`: choose transports, load the bot and the input, run, report, exit status."""

from __future__ import annotations

import asyncio
from pathlib import Path

from runner.audio import read_wav
from runner.config import Config, ConfigError
from runner.loader import BotLoadError, load_bot
from runner.logs import configure_logging
from runner.selection import expand
from runner.smoke.harness import SmokeOptions, run_smoke, test_signal
from runner.smoke.report import exit_status, table, write_json, write_junit


def smoke(config: Config, bot_reference: str, *, input_path: str | None, duration: float,
          expect_audio: bool, expect_message: bool, json_path: str | None,
          junit_path: str | None, record_dir: str | None, parallel: bool) -> int:
    configure_logging(config.log_level if config.source("log_level") != "default" else "warning",
                      config.log_format)
    if duration <= 0:
        raise ConfigError("--duration must be more than 0 seconds")
    kinds = expand(config.transport or "all")
    if input_path:
        try:
            audio = read_wav(input_path)
        except (OSError, ValueError) as error:
            raise ConfigError(f"--input {input_path}: {error}") from None
    else:
        audio = test_signal()
    try:
        bot, load_error = load_bot(bot_reference), None
    except BotLoadError as error:
        bot, load_error = None, str(error)
    options = SmokeOptions(duration=duration, expect_audio=expect_audio,
                           expect_message=expect_message,
                           record=Path(record_dir) if record_dir else None)
    results = asyncio.run(run_smoke(config, bot, load_error, kinds, audio, options, parallel))
    print(table(results))
    if json_path:
        write_json(results, Path(json_path))
    if junit_path:
        write_junit(results, Path(junit_path))
    return exit_status(results)
