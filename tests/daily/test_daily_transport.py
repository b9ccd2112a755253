"""The Daily transport's logic, driven by a stand-in CallClient that calls back from its own thread.

The event loop runs in debug mode, where asyncio raises if a loop or future is touched from any
other thread; the stand-in keeps what its thread raised, and every test checks it stayed empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from daily_fakes import FakeSdk, FakeVideoFrame, in_room

from runner.audio import dominant_frequency, tone
from runner.logs import current_session
from runner.transports.base import (
    ClientConnected,
    ClientLeft,
    Dtmf,
    MarkReached,
    SessionInfo,
    TransportError,
)
from runner.transports.daily.transport import DailyTransport, ParticipantJoined, ParticipantLeft
from runner.transports.daily.video import VideoFrame

from conftest import wait_for

ROOM = "https://fake.daily.co/room-1"


@contextlib.asynccontextmanager
async def running(sdk: FakeSdk | None = None,
                  **options: Any) -> AsyncIterator[tuple[DailyTransport, FakeSdk]]:
    """A transport in a joined room; on the way out it is closed and must have left and released."""
    asyncio.get_running_loop().set_debug(True)
    sdk = sdk or FakeSdk()
    options.setdefault("leave_grace", 0.1)
    transport = DailyTransport(SessionInfo(id="s1", kind="daily"), sdk, room_url=ROOM,
                               token="bot-token", bot_name="Ava", **options)
    async with in_room(transport, sdk):
        yield transport, sdk


async def collect_events(transport: DailyTransport, until: type, timeout: float = 2.0) -> list[Any]:
    seen: list[Any] = []

    async def read() -> None:
        async for event in transport.events():
            seen.append(event)
            if isinstance(event, until):
                return

    await asyncio.wait_for(read(), timeout)
    return seen


async def read_audio(transport: DailyTransport, seconds: float, rate: int = 16000) -> bytes:
    pcm = bytearray()
    async for frame in transport.audio(sample_rate=rate):
        pcm += frame.pcm
        if len(pcm) >= seconds * rate * 2:
            break
    return bytes(pcm)


async def test_the_stand_in_catches_asyncio_touched_from_its_thread() -> None:
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    sdk = FakeSdk()
    future = loop.create_future()
    future.add_done_callback(lambda _: None)
    sdk.run(future.set_result, 1)  # what the transport must never do
    sdk.settle()
    assert len(sdk.errors) == 1 and "thread" in str(sdk.errors[0])


async def test_joins_with_its_custom_track_as_microphone_and_its_name() -> None:
    async with running() as (_, sdk):
        url, token, settings = sdk.client.joined_with
        assert (url, token) == (ROOM, "bot-token")
        source = sdk.sources[0]
        assert (source.sample_rate, source.channels) == (48000, 1)
        microphone = settings["inputs"]["microphone"]
        assert microphone == {"isEnabled": True, "settings": {"customTrack": {"id": "audio-track-1"}}}
        assert settings["publishing"]["microphone"]["isPublishing"] is True
        assert settings["inputs"]["camera"]["isEnabled"] is False
        assert ("set_user_name", "Ava") in sdk.client.calls


async def test_first_participant_connects_and_is_heard() -> None:
    async with running() as (transport, sdk):
        sdk.client.participant_joins("p1", "Ann")
        assert await asyncio.wait_for(transport.wait_connected(), 2)
        events = await collect_events(transport, ParticipantJoined)
        assert events == [ClientConnected(), ParticipantJoined("p1", "Ann")]
        _, settings = sdk.client.audio_renderers["p1"]
        assert settings == {"audio_source": "microphone", "sample_rate": 48000,
                            "callback_interval_ms": 20}
        assert ("update_subscriptions", {"p1": {"media": {"microphone": "subscribed"}}}) \
            in sdk.client.calls
        sdk.client.speaks("p1", tone(440, 0.5, 48000).pcm, 48000)
        heard = await asyncio.wait_for(read_audio(transport, 0.4), 2)
        assert abs(dominant_frequency(heard, 16000) - 440) < 5


async def test_the_next_participant_is_heard_when_the_first_leaves() -> None:
    async with running() as (transport, sdk):
        sdk.client.participant_joins("p1")
        sdk.client.participant_joins("p2")
        await wait_for(lambda: "p1" in sdk.client.audio_renderers)
        assert "p2" not in sdk.client.audio_renderers  # one voice at a time
        sdk.client.participant_leaves("p1")
        await wait_for(lambda: "p2" in sdk.client.audio_renderers)
        sdk.client.speaks("p2", tone(660, 0.5, 48000).pcm, 48000)
        heard = await asyncio.wait_for(read_audio(transport, 0.4), 2)
        assert abs(dominant_frequency(heard, 16000) - 660) < 5
        assert not transport.ended


async def test_people_already_in_the_room_count_as_joined() -> None:
    async with running(FakeSdk(present=("p0",))) as (transport, sdk):
        assert await asyncio.wait_for(transport.wait_connected(), 2)
        assert "p0" in sdk.client.audio_renderers


async def test_bot_audio_leaves_in_20_ms_frames_at_48_khz_in_real_time() -> None:
    async with running() as (transport, sdk):
        sdk.client.participant_joins("p1")
        await transport.wait_connected()
        started = time.monotonic()
        await transport.send_audio(tone(300, 0.4, 16000))
        await transport.mark("said")
        await collect_events(transport, MarkReached)
        elapsed = time.monotonic() - started
        source = sdk.sources[0]
        assert {len(chunk) for chunk in source.chunks} == {1920}
        assert abs(len(source.pcm) - 0.4 * 48000 * 2) <= 1920
        assert abs(dominant_frequency(source.pcm, 48000) - 300) < 5
        assert elapsed > 0.3  # paced, not dumped


async def test_app_messages_both_ways() -> None:
    async with running() as (transport, sdk):
        sdk.client.participant_joins("p1")
        sdk.client.app_message({"type": "hello", "n": 1}, "p1")
        messages = transport.messages()
        assert await asyncio.wait_for(anext(messages), 2) == {"type": "hello", "n": 1}
        await transport.send_message({"type": "reply"})
        assert sdk.client.sent == [({"type": "reply"}, None)]


async def test_dtmf_becomes_an_event() -> None:
    async with running() as (transport, sdk):
        sdk.client.participant_joins("p1")
        sdk.client.dtmf("7")
        events = await collect_events(transport, Dtmf)
        assert events[-1] == Dtmf("7")


async def test_last_participant_leaving_ends_the_session_after_the_grace() -> None:
    async with running(leave_grace=0.2) as (transport, sdk):
        sdk.client.participant_joins("p1")
        await transport.wait_connected()
        sdk.client.participant_leaves("p1")
        await asyncio.sleep(0.05)
        sdk.client.participant_joins("p1")  # a reload within the grace keeps the session
        await asyncio.sleep(0.3)
        assert not transport.ended
        sdk.client.participant_leaves("p1", "hidden")
        events = await collect_events(transport, ClientLeft)
        assert ParticipantLeft("p1", "hidden") in events
        assert transport.end_reason == "the last participant left (hidden)"
        assert transport.client_gone
        assert [frame async for frame in transport.audio()] == []
        await asyncio.wait_for(transport.left(), 2)
        names = [name for name, _ in sdk.client.calls]
        assert names.index("leave") < names.index("release")


async def test_hangup_leaves_and_releases() -> None:
    async with running() as (transport, sdk):
        sdk.client.participant_joins("p1")
        await transport.wait_connected()
        await transport.hangup("done talking")
        await asyncio.wait_for(transport.left(), 2)
        assert sdk.client.left and sdk.client.released
        assert ("eject_remote_participants", ["p1"]) not in sdk.client.calls
        assert transport.end_reason == "done talking"


async def test_a_phone_caller_is_hung_up_with_the_bot() -> None:
    async with running(eject_on_hangup=True) as (transport, sdk):
        sdk.client.participant_joins("sip-caller")
        await transport.wait_connected()
        await transport.hangup()
        names = [name for name, _ in sdk.client.calls]
        assert ("eject_remote_participants", ["sip-caller"]) in sdk.client.calls
        assert names.index("eject_remote_participants") < names.index("leave")


async def test_a_failed_join_ends_the_session_and_releases_the_client() -> None:
    async with running(FakeSdk(join_error="room not found")) as (transport, _):
        await wait_for(lambda: transport.ended)
        assert transport.end_reason == "could not join the Daily room: room not found"
        assert not await transport.wait_connected()


async def test_nobody_coming_ends_the_wait() -> None:
    async with running(wait_timeout=0.1) as (transport, _):
        assert not await asyncio.wait_for(transport.wait_connected(), 2)
        assert transport.end_reason == "nobody joined within 0.1 s"


async def test_being_removed_from_the_room_ends_the_session() -> None:
    async with running() as (transport, sdk):
        sdk.client.participant_joins("p1")
        await transport.wait_connected()
        sdk.client.removed()
        await wait_for(lambda: transport.ended)
        assert transport.end_reason == "the bot was removed from the room"


async def test_dialin_ready_connects_the_caller_once() -> None:
    endpoints: list[str] = []

    async def connect(sip: str) -> None:
        endpoints.append(sip)

    async with running(on_dialin_ready=connect) as (_, sdk):
        sdk.client.dialin_ready("sip:room-1@sip.daily.co")
        sdk.client.dialin_ready("sip:room-1@sip.daily.co")
        await wait_for(lambda: bool(endpoints))
        await asyncio.sleep(0.05)
        assert endpoints == ["sip:room-1@sip.daily.co"]


async def test_a_failed_dialin_update_ends_the_session() -> None:
    async def connect(sip: str) -> None:
        raise RuntimeError("pinlessCallUpdate refused")

    async with running(on_dialin_ready=connect) as (transport, sdk):
        sdk.client.dialin_ready("sip:x@sip.daily.co")
        await wait_for(lambda: transport.ended)
        assert transport.end_reason == "dial-in failed: pinlessCallUpdate refused"


async def test_video_is_refused_unless_the_bot_asked_for_it() -> None:
    async with running() as (transport, _):
        with pytest.raises(TransportError, match="'video': True"):
            await transport.send_video(VideoFrame(bytes(12), 2, 2))
        with pytest.raises(TransportError, match="'video': True"):
            await anext(transport.video())


async def test_video_both_ways() -> None:
    async with running(video=True) as (transport, sdk):
        sdk.client.participant_joins("p1")
        await transport.wait_connected()
        frames = transport.video()
        reader = asyncio.ensure_future(anext(frames))
        await wait_for(lambda: "p1" in sdk.client.video_renderers)
        sdk.client.shows("p1", FakeVideoFrame(b"\x01" * 12, 2, 2))
        frame = await asyncio.wait_for(reader, 2)
        assert frame == VideoFrame(b"\x01" * 12, 2, 2, "RGB", "p1")
        await transport.send_video(VideoFrame(b"\x02" * 48, 4, 4))
        await transport.send_video(VideoFrame(b"\x03" * 48, 4, 4))
        assert sdk.video_sources[0].frames == [b"\x02" * 48, b"\x03" * 48]
        camera = {"isEnabled": True, "settings": {"customTrack": {"id": "video-track-1"}}}
        assert ("update_inputs", {"camera": camera}) in sdk.client.calls
        assert ("update_publishing", {"camera": {"isPublishing": True}}) in sdk.client.calls
        with pytest.raises(TransportError, match="4x4 RGB"):
            await transport.send_video(VideoFrame(bytes(12), 2, 2))


async def test_what_sdk_callbacks_log_carries_the_session(caplog) -> None:
    caplog.set_level(logging.INFO, logger="runner.daily")
    token = current_session.set(("s1", "daily"))
    try:
        async with running() as (transport, sdk):
            sdk.client.participant_joins("p1")
            await transport.wait_connected()
    finally:
        current_session.reset(token)
    joined = [r for r in caplog.records if r.getMessage() == "participant p1 joined"]
    assert joined and joined[0].session_id == "s1"
