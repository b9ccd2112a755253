"""Transport selection rules and the reasons printed for them."""

import pytest

from runner.config import ConfigError
from runner.selection import expand, select_transports
from runner.transports import REGISTRY, TELEPHONY

from conftest import make_config


def names(config) -> list[str]:
    return [choice.name for choice in select_transports(config)]


def test_expand_names_lists_groups_and_all() -> None:
    assert expand("twilio") == ["twilio"]
    assert expand("plivo, twilio,twilio") == ["twilio", "plivo"]
    assert expand("telephony") == list(TELEPHONY)
    assert expand("all") == list(REGISTRY)
    assert expand("websocket,telephony") == ["websocket", *TELEPHONY]


def test_unknown_transport_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="unknown transport 'skype'"):
        expand("skype")
    with pytest.raises(ConfigError, match="empty"):
        expand(" , ")


def test_flag_wins_and_says_so() -> None:
    choices = select_transports(make_config("serve", transport="websocket"))
    assert [(c.name, c.reason) for c in choices] == [("websocket", "flag --transport = websocket")]


def test_environment_transport_is_used_without_flag() -> None:
    choices = select_transports(make_config("serve", environ={"RUNNER_TRANSPORT": "plivo"}))
    assert choices[0].name == "plivo" and "environment RUNNER_TRANSPORT" in choices[0].reason


def test_dev_defaults_to_webrtc() -> None:
    choices = select_transports(make_config("dev"))
    assert [c.name for c in choices] == ["webrtc"] and "dev default" in choices[0].reason


def test_serve_picks_what_is_configured() -> None:
    environ = {"DAILY_API_KEY": "k", "TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "t",
               "PLIVO_AUTH_ID": "MA1"}  # plivo is missing its token: not picked
    choices = select_transports(make_config("serve", environ=environ))
    assert [c.name for c in choices] == ["daily", "twilio"]
    assert choices[0].reason == "DAILY_API_KEY is set"
    assert choices[1].reason == "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are set"


def test_serve_with_nothing_configured_lists_what_to_set() -> None:
    with pytest.raises(ConfigError) as error:
        select_transports(make_config("serve"))
    message = str(error.value)
    for needed in ("--transport", "RUNNER_TRANSPORT", "DAILY_API_KEY", "TWILIO_AUTH_TOKEN",
                   "PLIVO_AUTH_ID", "TELNYX_API_KEY", "EXOTEL_API_KEY"):
        assert needed in message


def test_a_selected_transport_without_its_package_is_a_one_line_install_hint(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from runner.transports import TransportUnavailable, require_available

    monkeypatch.setitem(REGISTRY, "webrtc",
                        replace(REGISTRY["webrtc"], packages=("surely_missing_pkg_xyz",)))
    with pytest.raises(TransportUnavailable) as error:
        require_available(["websocket", "webrtc"])
    assert str(error.value) == ("transport webrtc needs surely_missing_pkg_xyz, which is not "
                                "installed: pip install 'runner[webrtc]'")
