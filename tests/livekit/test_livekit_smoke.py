"""`runner smoke --transport livekit`: skipped, with the reason, when LIVEKIT_URL is not set or
not reachable; otherwise its second participant joins with the token `/start` gives the
person, publishes the test signal and hears the bot. Here the room is the livekit.rtc stand-in
(one for the bot, one for the participant, wired together as an SFU would forward tracks and
data), and the room service is LiveKit's Twirp on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from livekit import api
from livekit_fakes import (
    AGENT,
    API_KEY,
    API_SECRET,
    SOURCE_MICROPHONE,
    FakeLiveKitServer,
    FakeRoom,
    FakeRtc,
    FakeTrack,
)

from runner.smoke import harness
from runner.smoke.callers import livekit as livekit_caller
from runner.smoke.report import Status
from runner.transports.base import Transport
from runner.transports.daily import service as daily_service
from runner.transports.livekit import service as service_module
from runner.transports.livekit import tokens

from conftest import ROOT, as_bot, make_config, run_cli


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_livekit_is_skipped_with_the_url_in_the_reason(tmp_path: Path) -> None:
    url = f"ws://127.0.0.1:{closed_port()}"
    junit = tmp_path / "junit.xml"
    result = run_cli("smoke", str(ROOT / "bots" / "echo.py"), "--transport", "livekit",
                     "--duration", "1", "--junit", str(junit),
                     env={"LIVEKIT_URL": url, "LIVEKIT_API_KEY": API_KEY,
                          "LIVEKIT_API_SECRET": API_SECRET})
    assert result.returncode == 3, result.stderr  # nothing was tested: not green
    cases = list(ET.parse(junit).getroot().iter("testcase"))
    assert cases and all(case.find("skipped") is not None for case in cases)
    reasons = {case.find("skipped").get("message") for case in cases}
    assert len(reasons) == 1 and f"LiveKit at {url} cannot be reached" in reasons.pop()


def test_without_livekit_variables_it_is_skipped_naming_them(tmp_path: Path) -> None:
    result = run_cli("smoke", str(ROOT / "bots" / "echo.py"), "--transport", "livekit",
                     "--duration", "1", env={"LIVEKIT_URL": "ws://127.0.0.1:7880"})
    assert result.returncode == 3
    assert "LIVEKIT_API_KEY and LIVEKIT_API_SECRET are not set" in result.stderr


async def test_reaching_a_listening_server_is_no_problem() -> None:
    with FakeLiveKitServer() as server:
        assert await livekit_caller.problem_reaching(server.url) is None
    assert "is not a LiveKit server URL" in await livekit_caller.problem_reaching("ws://")


@contextlib.asynccontextmanager
async def forwarding(rtc: FakeRtc) -> AsyncIterator[list[str]]:
    """Forward between the bot's room and the participant's, as LiveKit would: each one's
    published audio reaches the other as a subscribed track, the bot's data packets reach the
    participant, and the participant leaving reaches the bot. Yields the identities that joined."""
    joined: list[str] = []
    verifier = api.TokenVerifier(API_KEY, API_SECRET)

    def rooms() -> tuple[FakeRoom, FakeRoom] | None:
        connected = [room for room in rtc.rooms if room.connected_with]
        bots = [room for room in connected if verifier.verify(room.connected_with[1]).video.agent]
        people = [room for room in connected if room not in bots]
        return (bots[0], people[0]) if bots and people else None

    async def forward() -> None:
        while (pair := rooms()) is None or not pair[1].local_participant.published:
            await asyncio.sleep(0.01)
        bot_room, person_room = pair
        person = verifier.verify(person_room.connected_with[1]).identity
        bot = verifier.verify(bot_room.connected_with[1]).identity
        joined.append(person)
        mic = bot_room.join(person)
        person_room.join(bot, kind=AGENT, audio=False)
        while not bot_room.local_participant.published:
            await asyncio.sleep(0.01)
        bot_voice = FakeTrack("bot-voice")
        person_room.emit("track_subscribed", bot_voice,
                         SimpleNamespace(sid="TR_bot", source=SOURCE_MICROPHONE),
                         person_room.remote_participants[bot])
        said = bot_room.local_participant.published[0][0].source
        spoken = person_room.local_participant.published[0][0].source
        sent = heard = packets = 0
        while not person_room.disconnected:
            for frame in spoken.frames[heard:]:
                mic.push(frame.data, frame.sample_rate)
            for frame in said.frames[sent:]:
                bot_voice.push(frame.data, frame.sample_rate)
            for data, _, topic in bot_room.local_participant.data[packets:]:
                person_room.send_data(data, topic, bot)
            heard, sent = len(spoken.frames), len(said.frames)
            packets = len(bot_room.local_participant.data)
            await asyncio.sleep(0.01)
        bot_room.leave(person)

    task = asyncio.create_task(forward())
    try:
        yield joined
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


async def echo_and_greet(transport: Transport) -> None:
    if not await transport.wait_connected():
        return
    await transport.send_message({"hello": "person"})
    async for frame in transport.audio(sample_rate=16000):
        await transport.send_audio(frame)


async def test_the_participant_speaks_hears_and_leaves_with_the_persons_token(
        monkeypatch: pytest.MonkeyPatch) -> None:
    rtc = FakeRtc()
    monkeypatch.setattr(service_module, "load_rtc", lambda: rtc)
    monkeypatch.setattr(livekit_caller, "load_rtc", lambda: rtc)
    monkeypatch.setattr(daily_service, "REJOIN_PAUSE", 0.01)
    with FakeLiveKitServer() as server:
        config = make_config("serve", environ={"LIVEKIT_URL": server.url,
                                               "LIVEKIT_API_KEY": API_KEY,
                                               "LIVEKIT_API_SECRET": API_SECRET},
                             host="127.0.0.1", grace_period=2)
        options = harness.SmokeOptions(duration=2, expect_audio=True, expect_message=True)
        async with forwarding(rtc) as joined:
            (result,) = await harness.run_smoke(config, as_bot(echo_and_greet), ["livekit"],
                                        harness.test_signal(1.0), options, parallel=False)
    failed = [(check.name, check.reason) for check in result.checks
              if check.status is not Status.PASSED]
    assert not failed, failed
    assert not rtc.errors, rtc.errors
    (session,) = [call["name"] for call in server.calls("CreateRoom")]
    assert server.calls("DeleteRoom") == [{"room": session}]
    assert len(joined) == 1 and joined[0].startswith(tokens.USER_PREFIX + "-")


def test_the_real_participant_asks_livekit_for_the_room_with_the_persons_token(
        tmp_path: Path) -> None:
    """The real livekit.rtc (in the smoke process) against the stand-in, which refuses its
    signaling: the check fails with LiveKit's answer, after the person's token was presented."""
    pytest.importorskip("livekit.rtc")
    junit = tmp_path / "junit.xml"
    with FakeLiveKitServer() as server:
        result = run_cli("smoke", str(ROOT / "bots" / "echo.py"), "--transport", "livekit",
                         "--duration", "1", "--junit", str(junit),
                         env={"LIVEKIT_URL": server.url, "LIVEKIT_API_KEY": API_KEY,
                              "LIVEKIT_API_SECRET": API_SECRET}, timeout=60)
        connections = list(zip(server.connections, server.tokens, strict=True))
    assert result.returncode == 1, result.stderr
    (established,) = [case for case in ET.parse(junit).getroot().iter("testcase")
                      if case.get("name") == "session established"]
    assert "404" in established.find("failure").get("message")
    (room,) = [call["name"] for call in server.calls("CreateRoom")]
    verifier = api.TokenVerifier(API_KEY, API_SECRET)
    presented = [verifier.verify(token) for path, token in connections if path.startswith("/rtc")]
    people = [claims for claims in presented if not claims.video.agent]
    assert people and {claims.video.room for claims in people} == {room}
    assert all(claims.identity.startswith(tokens.USER_PREFIX + "-") for claims in people)
