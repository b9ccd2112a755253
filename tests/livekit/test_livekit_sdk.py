"""The real livekit.rtc, in a child process (its native core must not share the test's): an
AudioSource is built at the bot's rate, takes an AudioFrame and closes cleanly, as the
transport uses them, with the names the transport uses."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import asyncio
from livekit import rtc

async def main():
    source = rtc.AudioSource(24000, 1, queue_size_ms=200)
    track = rtc.LocalAudioTrack.create_audio_track("bot", source)
    rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    assert rtc.TrackKind.KIND_AUDIO and rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
    assert rtc.ParticipantKind.PARTICIPANT_KIND_SIP and rtc.Room and rtc.AudioStream
    await source.capture_frame(rtc.AudioFrame(bytes(960), 24000, 1, 480))
    source.clear_queue()
    await source.aclose()
    print("ok", track.name)

asyncio.run(main())
"""


def test_the_real_sdk_builds_a_source_captures_a_frame_and_closes() -> None:
    pytest.importorskip("livekit.rtc")
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok", "bot"]


VIDEO_SCRIPT = """
import asyncio
from livekit import rtc
from runner.transports.daily.video import VideoFrame
from runner.transports.livekit import video

async def main():
    first = VideoFrame(bytes(range(256)) * 4, 16, 16, "RGBA")
    source = rtc.VideoSource(16, 16)
    track = rtc.LocalVideoTrack.create_video_track("bot-camera", source)
    rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA)
    assert rtc.TrackKind.KIND_VIDEO
    seen = []
    stream = video.open_stream(rtc, track)
    watching = asyncio.create_task(video.watch(stream, "bot", seen.append))
    video.VideoOut(rtc, source, first).write(first)
    for _ in range(200):
        if seen:
            break
        await asyncio.sleep(0.01)
    watching.cancel()
    await asyncio.gather(watching, return_exceptions=True)
    await source.aclose()
    (frame,) = seen[:1]
    assert len(frame.image) == 16 * 16 * 3
    print("ok", frame.width, frame.height, frame.color_format, frame.participant_id)

asyncio.run(main())
"""


def test_the_real_sdk_carries_a_bot_frame_from_a_video_source_to_a_video_stream() -> None:
    """The transport's own video helpers on the real classes: a frame captured into a
    VideoSource comes out of a VideoStream of its track, converted to RGB by the SDK."""
    pytest.importorskip("livekit.rtc")
    done = subprocess.run([sys.executable, "-c", VIDEO_SCRIPT], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok", "16", "16", "RGB", "bot"]
