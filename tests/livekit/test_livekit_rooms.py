"""The room service through livekit-api against a 127.0.0.1 server answering LiveKit's Twirp."""

from __future__ import annotations

import socket

import pytest
from livekit_fakes import API_KEY, API_SECRET, FakeLiveKitServer

from runner.transports.livekit.rooms import LiveKitApiError, LiveKitRooms
from runner.transports.livekit.tokens import Keys

KEYS = Keys(API_KEY, API_SECRET)


async def test_create_and_delete_a_room_with_a_signed_request() -> None:
    with FakeLiveKitServer() as server:
        rooms = LiveKitRooms(server.url, KEYS)
        try:
            await rooms.create("runner-abc", 300)
            assert server.rooms["runner-abc"]["empty_timeout"] == 300
            await rooms.delete("runner-abc")
        finally:
            await rooms.aclose()
        assert server.rooms == {} and server.refused == []
        assert [name for name, _, _ in server.requests] == ["CreateRoom", "DeleteRoom"]


async def test_a_wrong_secret_or_a_refusal_is_one_error_that_says_why() -> None:
    with FakeLiveKitServer() as server:
        rooms = LiveKitRooms(server.url, Keys(API_KEY, "not-the-secret-at-all-0123456789"))
        with pytest.raises(LiveKitApiError, match="401 unauthenticated"):
            await rooms.create("runner-abc", 300)
        await rooms.aclose()
        assert server.refused and server.rooms == {}

        rooms = LiveKitRooms(server.url, KEYS)
        server.fail("CreateRoom", 429, "resource_exhausted", "too many rooms")
        with pytest.raises(LiveKitApiError) as caught:
            await rooms.create("runner-abc", 300)
        assert str(caught.value) == ("LiveKit API POST /twirp/livekit.RoomService/CreateRoom "
                                     "failed: 429 resource_exhausted (too many rooms)")
        with pytest.raises(LiveKitApiError, match="404 not_found"):
            await rooms.delete("nobody-made-this")
        await rooms.aclose()


async def test_an_unreachable_server_is_named() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    rooms = LiveKitRooms(f"ws://127.0.0.1:{port}", KEYS, timeout=2)
    with pytest.raises(LiveKitApiError, match="LiveKit could not be reached"):
        await rooms.create("runner-abc", 300)
    await rooms.aclose()
