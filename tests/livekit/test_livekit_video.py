"""LiveKit video both ways, through the livekit.rtc stand-in (its pictures come from another
thread): the heard person's camera reaches `video()` as Daily's VideoFrame, the bot's frames
reach a published camera track, and nothing of it happens unless the bot asked for video."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from livekit_fakes import KIND_VIDEO, RGB24, RGBA, SOURCE_CAMERA, SOURCE_SCREENSHARE, FakeRtc

from runner.transports.base import SessionInfo, TransportError
from runner.transports.daily.video import VideoFrame
from runner.transports.livekit.transport import LiveKitTransport

from conftest import wait_for

VIDEO_OFF = re.escape("{'livekit': {'video': True}}")


@asynccontextmanager
async def in_room(**options: Any) -> AsyncIterator[tuple[LiveKitTransport, FakeRtc]]:
    """A transport that has joined its room; on the way out it hangs up and must have left."""
    rtc = FakeRtc()
    transport = LiveKitTransport(SessionInfo(id="s1", kind="livekit"), rtc, url="ws://lk",
                                 token="bot-token", room_name="r1", leave_grace=0.1, **options)
    running = asyncio.create_task(transport.run())
    try:
        await wait_for(lambda: bool(rtc.rooms) and bool(rtc.room.local_participant.published))
        yield transport, rtc
    finally:
        await transport.hangup()
        await asyncio.wait_for(running, 5)
    assert rtc.room.disconnected and rtc.errors == []


async def test_video_is_refused_unless_the_bot_asked_for_it() -> None:
    async with in_room() as (transport, rtc):
        rtc.room.join("ann")
        camera = rtc.room.camera("ann")
        with pytest.raises(TransportError, match=VIDEO_OFF):
            await transport.send_video(VideoFrame(bytes(12), 2, 2))
        with pytest.raises(TransportError, match=VIDEO_OFF):
            await anext(transport.video())
        assert camera.streams == []  # never decoded
        assert len(rtc.room.local_participant.published) == 1  # the microphone only


async def test_the_heard_persons_camera_reaches_video() -> None:
    async with in_room(video=True) as (transport, rtc):
        rtc.room.join("ann")
        rtc.room.join("bob")
        ann = rtc.room.camera("ann")
        bob = rtc.room.camera("bob")
        rtc.room.camera("ann", source=SOURCE_SCREENSHARE)  # a screen share is not the camera
        assert ann.streams == []  # nothing decoded before the bot asks
        frames = transport.video()
        first = asyncio.ensure_future(anext(frames))
        await wait_for(lambda: len(ann.streams) == 1)
        (stream,) = ann.streams
        assert stream.format == RGB24 and stream.capacity == 2 and bob.streams == []
        ann.show(b"\x01\x02\x03" * 6, 3, 2)
        assert await asyncio.wait_for(first, 2) == VideoFrame(b"\x01\x02\x03" * 6, 3, 2, "RGB",
                                                              "ann")

        rtc.room.leave("ann")  # bob is heard now: his camera is watched
        await wait_for(lambda: len(bob.streams) == 1)
        bob.show(b"\x09" * 3, 1, 1)
        frame = await asyncio.wait_for(anext(frames), 2)
        assert (frame.image, frame.participant_id) == (b"\x09" * 3, "bob")
        assert not any(stream.closed for stream in bob.streams)
        await transport.hangup()
        with pytest.raises(StopAsyncIteration):  # the session is over: so is its video
            await asyncio.wait_for(anext(frames), 2)
        assert stream.closed and bob.streams == []


async def test_the_bots_frames_reach_a_published_camera_track() -> None:
    async with in_room(video=True) as (transport, rtc):
        participant = rtc.room.local_participant
        with pytest.raises(TransportError, match="send_video takes a"):
            await transport.send_video(b"\x00" * 12)
        two, three = b"\x02" * 1024, b"\x03" * 1024
        await asyncio.gather(transport.send_video(VideoFrame(two, 16, 16, "RGBA")),
                             transport.send_video(VideoFrame(three, 16, 16, "RGBA")))
        assert len(participant.published) == 2  # the microphone, then one camera
        track, options = participant.published[1]
        assert (track.kind, options.source) == (KIND_VIDEO, SOURCE_CAMERA)
        source = track.source
        assert (source.width, source.height) == (16, 16)
        assert [(bytes(f.data), f.width, f.height, f.type) for f in source.frames] == [
            (two, 16, 16, RGBA), (three, 16, 16, RGBA)]
        with pytest.raises(TransportError, match="the bot's camera is 16x16 RGBA"):
            await transport.send_video(VideoFrame(bytes(768), 16, 16, "RGB"))
        with pytest.raises(TransportError, match="needs 1024 bytes"):
            await transport.send_video(VideoFrame(bytes(12), 16, 16, "RGBA"))
        assert len(source.frames) == 2
    assert source.closed


async def test_a_frame_livekit_cannot_take_publishes_nothing() -> None:
    async with in_room(video=True) as (transport, rtc):
        with pytest.raises(TransportError, match="'ABGR' is not one LiveKit takes"):
            await transport.send_video(VideoFrame(bytes(1024), 16, 16, "ABGR"))
        with pytest.raises(TransportError, match="2x2 is too small"):  # it would abort WebRTC
            await transport.send_video(VideoFrame(bytes(12), 2, 2))
        assert len(rtc.room.local_participant.published) == 1
