"""What runner asks Daily for: room names from URLs, expiry, and who may own a room."""

from __future__ import annotations

import pytest

from runner.transports.daily import rooms


def test_room_names_come_from_room_urls() -> None:
    assert rooms.room_name("https://acme.daily.co/hello") == "hello"
    assert rooms.room_name("https://acme.daily.co/hello/") == "hello"
    for bad in ("https://acme.daily.co/", "acme.daily.co/hello", "ftp://acme.daily.co/x"):
        with pytest.raises(ValueError, match="not a Daily room URL"):
            rooms.room_name(bad)


def test_rooms_outlive_the_session_cap_and_never_live_forever() -> None:
    assert rooms.expiry(3600, now=1000) == 1000 + 3600 + rooms.ROOM_SLACK_SECONDS
    assert rooms.expiry(0, now=1000) == 1000 + rooms.UNCAPPED_ROOM_SECONDS + rooms.ROOM_SLACK_SECONDS


def test_callers_override_room_defaults() -> None:
    properties = rooms.room_properties(99, {"start_video_off": False, "max_participants": 2})
    assert properties == {"exp": 99, "eject_at_room_exp": True, "enable_prejoin_ui": False,
                          "start_video_off": False, "max_participants": 2}


def test_a_client_token_never_owns_the_room_nor_opens_another() -> None:
    asked = {"is_owner": True, "room_name": "someone-elses", "user_name": "Ann", "exp": 5}
    assert rooms.client_token_properties("mine", 99, asked) == {
        "exp": 5, "is_owner": False, "room_name": "mine", "user_name": "Ann"}
    assert rooms.bot_token_properties("mine", 99, "Ava") == {
        "room_name": "mine", "is_owner": True, "user_name": "Ava", "exp": 99}
