"""`runner serve` names every missing setting in one error, the secrets that check provider
requests included, instead of one per run or a server that refuses every call."""

from __future__ import annotations

from pathlib import Path

import pytest
from telephony.support import PUBLIC_URL, PhoneBot

from runner.app import create_app
from runner.config import ConfigError

from conftest import as_bot, make_config, run_cli

HOW_TO = {
    "--public-url": "pass --public-url https://your.host",
    "RUNNER_SECRET": "set it to a long random string",
    "TWILIO_AUTH_TOKEN": "--no-verify-signatures",
}


def serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None):
    bot = tmp_path / "bot.py"
    bot.write_text("async def bot(transport):\n    pass\n")
    return run_cli("serve", str(bot), "--port", "0", *args, env=env, cwd=tmp_path)


def error_lines(result) -> list[str]:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith("runner: error: ") for line in lines), result.stderr
    assert "Traceback" not in result.stderr
    return [line.removeprefix("runner: error: ") for line in lines]


def test_one_message_lists_the_public_url_and_the_secret(tmp_path: Path) -> None:
    lines = error_lines(serve(tmp_path, "-t", "twilio"))
    assert lines[0] == "settings missing for twilio:"
    items = lines[1:]
    assert len(items) == 3
    for (name, how), item in zip(HOW_TO.items(), items, strict=True):
        assert item.strip().startswith(name) and how in item, item


def test_signature_checks_without_their_secret_are_a_start_up_error(tmp_path: Path) -> None:
    lines = error_lines(serve(tmp_path, "-t", "twilio", "--public-url", PUBLIC_URL,
                              env={"RUNNER_SECRET": "s"}))
    assert len(lines) == 2 and lines[1].strip().startswith("TWILIO_AUTH_TOKEN: ")


def test_every_provider_secret_is_named_and_exotel_needs_its_key_and_token() -> None:
    config = make_config("serve", {"RUNNER_SECRET": "s"}, transport="telephony",
                         public_url=PUBLIC_URL)
    with pytest.raises(ConfigError) as error:
        create_app(config, as_bot(PhoneBot()))
    message = str(error.value)
    for name in ("TWILIO_AUTH_TOKEN", "TELNYX_PUBLIC_KEY", "PLIVO_AUTH_TOKEN", "EXOTEL_API_KEY",
                 "EXOTEL_API_TOKEN"):
        assert f"  {name}: " in message
    assert "--public-url" not in message and "RUNNER_SECRET" not in message


def test_without_signature_checks_no_provider_secret_is_needed() -> None:
    config = make_config("serve", {"RUNNER_SECRET": "s"}, transport="telephony",
                         public_url=PUBLIC_URL, verify_signatures="false")
    assert create_app(config, as_bot(PhoneBot())).state.context.kinds == [
        "twilio", "telnyx", "plivo", "exotel"]


def test_the_api_key_is_listed_with_the_phone_settings(tmp_path: Path) -> None:
    """A public WebSocket server without RUNNER_API_KEY, and a phone provider missing its
    settings: both in the one error."""
    lines = error_lines(serve(tmp_path, "-t", "websocket,twilio", "--host", "0.0.0.0"))
    text = "\n".join(lines)
    assert "RUNNER_API_KEY" in text and "RUNNER_SECRET" in text and "--public-url" in text
