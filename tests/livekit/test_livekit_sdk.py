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
