"""Starting with telephony selected: what `serve` refuses, what `dev` tolerates, what is printed."""

from __future__ import annotations

import logging
import subprocess
import sys
from dataclasses import replace

import pytest

from runner.app import create_app
from runner.banner import banner
from runner.config import ConfigError
from runner.selection import select_transports
from runner.transports.base import TransportError
from telephony.support import SECRETS, PhoneBot, dial, phone_config

from conftest import ROOT, as_bot, make_config, run_cli, serve


def test_serve_refuses_to_start_without_a_public_url_or_a_secret() -> None:
    bot = as_bot(PhoneBot())
    with pytest.raises(ConfigError, match="--public-url") as error:
        create_app(make_config("serve", {"RUNNER_SECRET": "s"}, transport="twilio"), bot)
    assert "None" not in str(error.value)
    with pytest.raises(ConfigError, match="RUNNER_SECRET"):
        create_app(make_config("serve", transport="vonage", public_url="https://x.example"), bot)


def test_the_cli_reports_a_missing_public_url_as_one_error(tmp_path) -> None:
    bot = tmp_path / "bot.py"
    bot.write_text("async def bot(transport):\n    pass\n")
    result = run_cli("serve", str(bot), "--transport", "twilio", "--port", "0",
                     env={"RUNNER_SECRET": "s", "TWILIO_AUTH_TOKEN": "t"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ["runner: error: settings missing for twilio:",
                     "runner: error:   --public-url (or RUNNER_PUBLIC_URL): the public URL providers "
                     "reach this server at; pass --public-url https://your.host (or --proxy "
                     "your.host)"]


async def test_dev_falls_back_to_the_local_address_with_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    bot = PhoneBot()
    with caplog.at_level(logging.WARNING, "runner.telephony"):
        async with serve(make_config("dev", transport="twilio"), as_bot(bot)) as served:
            phone = await dial(served, "twilio")  # the answer points at ws://127.0.0.1:<port>
            await phone.send_dtmf("1")
            await phone.wait_confirmed("m1")
            await phone.hang_up()
    assert "which they cannot reach" in caplog.text
    assert f"ws://127.0.0.1:{served.port}" in caplog.text


def test_bot_transport_options_are_checked() -> None:
    with pytest.raises(TransportError, match="unknown key 'voice'"):
        create_app(phone_config("twilio"), as_bot(PhoneBot(), twilio={"voice": "alice"}))


def test_the_banner_prints_provider_urls_but_never_the_secret() -> None:
    config = replace(phone_config(), port=7860)
    text = banner(config, select_transports(config), "bot.py")
    assert "wss://bots.example.com/ws/exotel" in text
    assert "https://bots.example.com/twilio" in text
    assert "https://bots.example.com/vonage/answer/" in text
    assert "wss://bots.example.com/ws/vonage/" in text
    assert "{key}" not in text
    for name in ("RUNNER_SECRET", "TWILIO_AUTH_TOKEN", "PLIVO_AUTH_TOKEN", "EXOTEL_API_TOKEN"):
        assert SECRETS[name] not in text


def test_runner_help_does_not_import_telephony() -> None:
    code = ("import sys, runner.cli\n"
            "try:\n    runner.cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print([m for m in sys.modules if 'telephony' in m or m == 'httpx'])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, timeout=30)
    assert result.stdout.strip().splitlines()[-1] == "[]"
