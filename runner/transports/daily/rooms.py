"""What runner asks Daily for: room properties and meeting tokens, with their defaults.

Rooms expire on their own (`exp` + `eject_at_room_exp`) so a crash never leaves one running up a
bill; runner also deletes the rooms it created when their session ends. The bot's token is an
owner token (needed for dial-in, ejecting and recording); the person's token never is, whatever
the client asked for, so a client can never hold the bot's powers.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

#: Seconds a room outlives the session cap, so a late join or a slow leave is not cut off.
ROOM_SLACK_SECONDS = 600
#: Room lifetime when sessions have no time cap (--max-duration 0).
UNCAPPED_ROOM_SECONDS = 4 * 3600

AUDIO_BOT_ROOM = {"eject_at_room_exp": True, "enable_prejoin_ui": False, "start_video_off": True}


@dataclass(frozen=True)
class RoomGrant:
    """A room a session runs in, and the tokens to enter it."""

    url: str
    name: str
    bot_token: str | None
    client_token: str | None = None
    created: bool = False  # runner created it, so runner deletes it afterwards


def room_name(url: str) -> str:
    """'https://acme.daily.co/hello' -> 'hello'; ValueError when the URL names no room."""
    parts = urlsplit(url)
    name = parts.path.strip("/").split("/")[-1]
    if parts.scheme not in {"http", "https"} or not parts.hostname or not name:
        raise ValueError(f"{url!r} is not a Daily room URL like https://your-domain.daily.co/room")
    return name


def expiry(max_duration: float, now: float | None = None) -> int:
    """Unix time at which a room (and its tokens) for one session should expire."""
    lifetime = max_duration if max_duration > 0 else UNCAPPED_ROOM_SECONDS
    return int((time.time() if now is None else now) + lifetime + ROOM_SLACK_SECONDS)


def room_properties(exp: int, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Audio-bot defaults, then whatever the caller asked for (`dailyRoomProperties`)."""
    return {"exp": exp, **AUDIO_BOT_ROOM, **(overrides or {})}


def dialin_room_properties(exp: int, caller: str | None) -> dict[str, Any]:
    """A room that takes one SIP dial-in leg, named after the caller's number."""
    sip = {"display_name": caller or "caller", "video": False, "sip_mode": "dial-in",
           "num_endpoints": 1}
    return room_properties(exp, {"sip": sip})


def bot_token_properties(name: str, exp: int, bot_name: str) -> dict[str, Any]:
    return {"room_name": name, "is_owner": True, "user_name": bot_name, "exp": exp}


def client_token_properties(name: str, exp: int,
                            overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The person's token: caller overrides allowed, but never ownership and never another room."""
    return {"exp": exp, **(overrides or {}), "room_name": name, "is_owner": False}
