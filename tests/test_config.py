"""Config precedence (flag > environment > .env > default) and validation messages."""

from pathlib import Path

import pytest

from runner.config import SETTINGS, ConfigError, load_config


def write_env(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.env"
    path.write_text(text)
    return path


def test_defaults_depend_on_mode(tmp_path: Path) -> None:
    empty = write_env(tmp_path, "")
    dev = load_config("dev", {}, environ={}, env_file=empty)
    serve = load_config("serve", {}, environ={}, env_file=empty)
    assert (dev.host, dev.reload, dev.verify_signatures) == ("127.0.0.1", True, False)
    assert (serve.host, serve.reload, serve.verify_signatures) == ("0.0.0.0", False, True)
    assert serve.port == 7860 and serve.source("port") == "default"


def test_flag_beats_environment_beats_dotenv_beats_default(tmp_path: Path) -> None:
    env_file = write_env(tmp_path, "RUNNER_PORT=1111\nRUNNER_MAX_SESSIONS=7\nRUNNER_LOG_LEVEL=debug\n")
    environ = {"RUNNER_PORT": "2222", "RUNNER_MAX_SESSIONS": "8"}
    config = load_config("serve", {"port": "3333"}, environ=environ, env_file=env_file)
    assert config.port == 3333 and config.source("port") == "flag --port"
    assert config.max_sessions == 8 and config.source("max_sessions") == "environment RUNNER_MAX_SESSIONS"
    assert config.log_level == "debug" and config.source("log_level").endswith("RUNNER_LOG_LEVEL")
    assert config.max_duration == 3600.0 and config.source("max_duration") == "default"


def test_dotenv_never_overrides_real_environment(tmp_path: Path) -> None:
    env_file = write_env(tmp_path, "DAILY_API_KEY=from-file\n")
    config = load_config("serve", {}, environ={"DAILY_API_KEY": "from-env"}, env_file=env_file)
    assert config.daily_api_key == "from-env"


def test_dotenv_in_current_directory_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("RUNNER_PORT=4444\n")
    monkeypatch.chdir(tmp_path)
    assert load_config("serve", {}, environ={}).port == 4444


def test_missing_env_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config("serve", {}, environ={}, env_file=tmp_path / "nope.env")


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"RUNNER_PORT": "abc"}, "RUNNER_PORT='abc': expected a whole number"),
        ({"RUNNER_PORT": "70000"}, "RUNNER_PORT='70000': must be between 0 and 65535"),
        ({"RUNNER_MAX_SESSIONS": "0"}, "RUNNER_MAX_SESSIONS='0': must be at least 1"),
        ({"RUNNER_MAX_DURATION": "-1"}, "RUNNER_MAX_DURATION='-1': must not be negative"),
        ({"RUNNER_LOG_LEVEL": "loud"}, "RUNNER_LOG_LEVEL='loud': expected one of debug"),
        ({"RUNNER_RELOAD": "maybe"}, "RUNNER_RELOAD='maybe': expected true or false"),
        ({"RUNNER_PUBLIC_URL": "ftp://x"}, "RUNNER_PUBLIC_URL='ftp://x': expected a URL"),
        ({"RUNNER_ICE_SERVERS": "http://x"}, "is not a stun:, turn: or turns: URL"),
        ({"RUNNER_ICE_SERVERS": "[{"}, "invalid JSON"),
    ],
)
def test_bad_environment_values_name_the_variable(tmp_path: Path, environ: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config("serve", {}, environ=environ, env_file=write_env(tmp_path, ""))
    assert message in str(error.value)


def test_bad_flag_value_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--port='-5': must be between"):
        load_config("serve", {"port": "-5"}, environ={}, env_file=write_env(tmp_path, ""))


def test_secret_values_are_never_echoed(tmp_path: Path) -> None:
    config = load_config("serve", {}, environ={"TWILIO_AUTH_TOKEN": "s3cret"},
                         env_file=write_env(tmp_path, ""))
    assert config.redacted()["twilio_auth_token"] == "(set)"


def test_public_url_accepts_bare_host_and_builds_websocket_urls(tmp_path: Path) -> None:
    config = load_config("serve", {"public_url": "bots.example.com/"}, environ={},
                         env_file=write_env(tmp_path, ""))
    assert config.public_url == "https://bots.example.com"
    assert config.base_url(websocket=True) == "wss://bots.example.com"


def test_local_url_never_uses_the_wildcard_address(tmp_path: Path) -> None:
    config = load_config("serve", {}, environ={}, env_file=write_env(tmp_path, ""))
    assert config.base_url() == "http://127.0.0.1:7860"


def test_ice_servers_forms(tmp_path: Path) -> None:
    empty = write_env(tmp_path, "")
    bare = load_config("dev", {"ice_servers": "stun:a.example:3478, turn:b.example"}, environ={},
                       env_file=empty)
    assert bare.ice_servers == ({"urls": "stun:a.example:3478"}, {"urls": "turn:b.example"})
    obj = load_config("dev", {"ice_servers": '{"urls": ["turn:t"], "username": "u", '
                                             '"credential": "c", "extra": 1}'},
                      environ={}, env_file=empty)
    assert obj.ice_servers == ({"urls": ["turn:t"], "username": "u", "credential": "c"},)


def test_env_example_lists_every_variable() -> None:
    import sys

    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root / "scripts"))
    from env_example import render

    text = (root / ".env.example").read_text()
    assert text == render(), "run: .venv/bin/python scripts/env_example.py"
    for setting in SETTINGS:
        assert f"\n{setting.env}=" in text, setting.env
