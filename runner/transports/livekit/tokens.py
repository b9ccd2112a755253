"""Access tokens for a session's room, minted with livekit-api: one for the bot, one for the person.

A token is an HS256 JWT signed with the API secret: whoever holds it joins as its identity with
its grants. So the person's token grants exactly what a person needs in that one room (join,
publish, subscribe, data; never room administration), and the bot's never leaves the server.
Identities carry the session id: a second participant with an identity already in the room
evicts the first, and two sessions in one room (LIVEKIT_ROOM_NAME) must not evict each other.
Tokens live as long as the session may, plus the slack Daily's rooms get.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from livekit import api

from runner.transports.daily.rooms import ROOM_SLACK_SECONDS, UNCAPPED_ROOM_SECONDS

#: The identity prefix of the person's token (the bot's is its name).
USER_PREFIX = "user"
#: How much of the session id an identity carries (as the reference runner's do).
ID_CHARS = 8


@dataclass(frozen=True)
class Keys:
    """The API key pair that signs tokens (and the room service's requests)."""

    api_key: str
    api_secret: str

    def __repr__(self) -> str:
        return f"Keys(api_key={self.api_key!r}, api_secret=***)"


def token_ttl(max_duration: float) -> datetime.timedelta:
    """How long a session's tokens are good for: its time cap (or a day's part), plus slack."""
    lifetime = max_duration if max_duration > 0 else UNCAPPED_ROOM_SECONDS
    return datetime.timedelta(seconds=lifetime + ROOM_SLACK_SECONDS)


def bot_identity(bot_name: str, session_id: str) -> str:
    return f"{bot_name}-{session_id[:ID_CHARS]}"


def user_identity(session_id: str) -> str:
    return f"{USER_PREFIX}-{session_id[:ID_CHARS]}"


def bot_token(keys: Keys, room: str, session_id: str, bot_name: str,
              ttl: datetime.timedelta) -> str:
    """The bot's: joins `room` as an agent (clients and other agents can tell it is a bot)."""
    grants = api.VideoGrants(room_join=True, room=room, agent=True, can_publish=True,
                             can_subscribe=True, can_publish_data=True)
    return (api.AccessToken(keys.api_key, keys.api_secret)
            .with_identity(bot_identity(bot_name, session_id)).with_name(bot_name)
            .with_kind("agent").with_grants(grants).with_ttl(ttl).to_jwt())


def user_token(keys: Keys, room: str, session_id: str, ttl: datetime.timedelta) -> str:
    """The person's: joins `room`, publishes and subscribes; no admin, no other room."""
    grants = api.VideoGrants(room_join=True, room=room, can_publish=True, can_subscribe=True,
                             can_publish_data=True)
    identity = user_identity(session_id)
    return (api.AccessToken(keys.api_key, keys.api_secret).with_identity(identity)
            .with_name(identity).with_grants(grants).with_ttl(ttl).to_jwt())
