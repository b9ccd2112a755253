"""Tokens, checked with livekit-api's own TokenVerifier: grants, identities, room, TTL, agent."""

from __future__ import annotations

import time

import jwt
import pytest
from livekit import api
from livekit_fakes import API_KEY, API_SECRET

from runner.transports.livekit import tokens

KEYS = tokens.Keys(API_KEY, API_SECRET)
SESSION = "1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809"


def test_the_bot_joins_its_room_as_an_agent_named_after_the_session() -> None:
    token = tokens.bot_token(KEYS, "room-1", SESSION, "Bot", tokens.token_ttl(60))
    claims = api.TokenVerifier(API_KEY, API_SECRET).verify(token)
    assert claims.identity == "Bot-1a2b3c4d" and claims.name == "Bot" and claims.kind == "agent"
    video = claims.video
    assert video is not None
    assert (video.room_join, video.room, video.agent) == (True, "room-1", True)
    assert not video.room_admin and not video.room_create


def test_the_person_joins_publishes_and_subscribes_and_is_never_an_admin() -> None:
    token = tokens.user_token(KEYS, "room-1", SESSION, tokens.token_ttl(60))
    claims = api.TokenVerifier(API_KEY, API_SECRET).verify(token)
    assert claims.identity == "user-1a2b3c4d" != tokens.bot_identity("Bot", SESSION)
    video = claims.video
    assert video is not None
    assert (video.room_join, video.room, video.can_publish, video.can_subscribe,
            video.can_publish_data) == (True, "room-1", True, True, True)
    assert not video.room_admin and not video.agent and not video.room_create
    assert claims.kind != "agent"


def test_tokens_live_as_long_as_the_session_may_plus_slack() -> None:
    token = tokens.user_token(KEYS, "room-1", SESSION, tokens.token_ttl(60))
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    assert abs(exp - (time.time() + 60 + 600)) < 5
    assert tokens.token_ttl(0).total_seconds() == 4 * 3600 + 600  # uncapped sessions


def test_another_secret_does_not_verify_and_the_secret_is_never_shown() -> None:
    token = tokens.bot_token(KEYS, "room-1", SESSION, "Bot", tokens.token_ttl(60))
    with pytest.raises(jwt.InvalidSignatureError):
        api.TokenVerifier(API_KEY, "another-secret-that-is-long-enough").verify(token)
    assert API_SECRET not in repr(KEYS)
