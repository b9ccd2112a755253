"""The Tavus transport's logic, driven by the Daily stand-in: what the bot says becomes echo
messages for the replica, the replica is never taken for the person.

As in the Daily transport's tests, the loop runs in debug mode and the stand-in keeps whatever
its thread raised; every test checks it stayed empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from daily_fakes import in_room
from tavus_fakes import PERSONA_NAME, REPLICA_ID, FakeSdk, echoed_pcm, echoes

from runner.audio import AudioFrame, dominant_frequency, tone
from runner.transports.base import (
    AppMessage,
    ClientConnected,
    ClientLeft,
    MarkReached,
    SessionInfo,
    TransportError,
)
from runner.transports.daily.transport import ParticipantJoined
from runner.transports.tavus.transport import ECHO_RATE, UTTERANCE_GAP, TavusTransport

from conftest import wait_for

ROOM = "https://tavus.daily.co/c123456"
INTERRUPT = {"message_type": "conversation", "event_type": "conversation.interrupt",
             "conversation_id": "c123456"}


@contextlib.asynccontextmanager
async def running(sdk: FakeSdk | None = None) -> AsyncIterator[tuple[TavusTransport, FakeSdk]]:
    """A transport in a joined room; on the way out it must have left and released."""
    asyncio.get_running_loop().set_debug(True)
    sdk = sdk or FakeSdk()
    transport = TavusTransport(SessionInfo(id="s1", kind="tavus"), sdk, room_url=ROOM,
                               conversation_id="c123456", replica_names=(PERSONA_NAME, REPLICA_ID),
                               bot_name="Ava", leave_grace=0.1)
    async with in_room(transport, sdk):
        yield transport, sdk


async def with_people(transport: TavusTransport, sdk: FakeSdk) -> None:
    """The replica joins first (Tavus starts it with the conversation), then the person."""
    sdk.client.participant_joins("replica-1", PERSONA_NAME)
    sdk.client.participant_joins("user-1", "Ann")
    assert await asyncio.wait_for(transport.wait_connected(), 2)


async def next_event(transport: TavusTransport, kind: type, timeout: float = 3.0) -> Any:
    async def read() -> Any:
        async for event in transport.events():
            if isinstance(event, kind):
                return event
        raise AssertionError(f"events ended before {kind.__name__}")

    return await asyncio.wait_for(read(), timeout)


def sent(sdk: FakeSdk) -> list[Any]:
    sdk.settle()
    return [message for message, _ in sdk.client.sent]


async def test_joins_the_conversation_room_publishing_nothing() -> None:
    async with running() as (_, sdk):
        url, token, settings = sdk.client.joined_with
        assert (url, token) == (ROOM, None)
        assert settings["inputs"] == {"camera": {"isEnabled": False},
                                      "microphone": {"isEnabled": False}}
        assert settings["publishing"]["microphone"]["isPublishing"] is False
        assert sdk.sources == []  # no audio track: the replica is the bot's voice
        assert ("set_user_name", "Ava") in sdk.client.calls


async def test_the_replica_is_not_the_person_and_is_not_heard() -> None:
    async with running() as (transport, sdk):
        sdk.client.participant_joins("replica-1", PERSONA_NAME)
        await wait_for(lambda: ("update_subscriptions", {"replica-1": {
            "media": {"microphone": "unsubscribed"}}}) in sdk.client.calls)
        assert not transport.connected and "replica-1" not in sdk.client.audio_renderers
        sdk.client.participant_joins("user-1", "Ann")
        assert await next_event(transport, ParticipantJoined) == ParticipantJoined("user-1", "Ann")
        assert transport.connected and list(sdk.client.audio_renderers) == ["user-1"]
        sdk.client.speaks("replica-1", tone(300, 0.5, 48000).pcm, 48000)  # not rendered at all
        sdk.client.speaks("user-1", tone(440, 0.5, 48000).pcm, 48000)
        heard = bytearray()
        async for frame in transport.audio(sample_rate=16000):
            heard += frame.pcm
            if len(heard) >= 0.4 * 16000 * 2:
                break
        assert abs(dominant_frequency(bytes(heard), 16000) - 440) < 5


async def test_a_replica_known_by_its_id_or_already_there_is_recognised_too() -> None:
    sdk = FakeSdk()
    async with running(sdk) as (transport, sdk):
        sdk.client.participant_joins("replica-2", REPLICA_ID)
        await wait_for(lambda: ("update_subscriptions", {"replica-2": {
            "media": {"microphone": "unsubscribed"}}}) in sdk.client.calls)
        sdk.client.participant_leaves("replica-2", "leftCall")  # not the person leaving
        sdk.settle()
        await asyncio.sleep(0.2)
        assert not transport.ended


async def test_speech_becomes_echo_chunks_at_real_time_closed_by_done() -> None:
    async with running() as (transport, sdk):
        await with_people(transport, sdk)
        said = tone(440, 0.6, 16000)
        started = time.monotonic()
        await transport.send_audio(said)
        await wait_for(lambda: any(m["properties"]["done"] for m in echoes(sdk.client.sent)), 3)
        elapsed = time.monotonic() - started
        messages = echoes(sent(sdk))
        assert all(m["conversation_id"] == "c123456" and m["message_type"] == "conversation"
                   for m in messages)
        properties = [m["properties"] for m in messages]
        assert {p["modality"] for p in properties} == {"audio"}
        assert {p["sample_rate"] for p in properties} == {ECHO_RATE}
        assert len({p["inference_id"] for p in properties}) == 1  # one utterance
        assert [p["done"] for p in properties] == [False] * (len(properties) - 1) + [True]
        pcm = echoed_pcm(messages[:-1])
        # Resampled as announced: 0.6 s at 24 kHz, the same pitch; chunks of 40 ms.
        assert abs(len(pcm) / (2 * ECHO_RATE) - 0.6) < 0.045
        assert abs(dominant_frequency(pcm, ECHO_RATE) - 440) < 5
        assert {len(m["properties"]["audio"]) for m in messages[:-1]} == {2560}  # 1920 bytes
        # Paced in real time, then closed once the bot had been quiet for a moment.
        assert 0.6 + UTTERANCE_GAP - 0.1 < elapsed < 0.6 + UTTERANCE_GAP + 0.5


async def test_each_utterance_has_its_own_inference_id() -> None:
    async with running() as (transport, sdk):
        await with_people(transport, sdk)
        for _ in range(2):
            await transport.send_audio(tone(440, 0.2, 16000))
            await transport.mark("said")
            assert (await next_event(transport, MarkReached)) == MarkReached("said")
        await transport.send_audio(tone(440, 0.2, 16000))  # closed by the quiet after it
        await wait_for(lambda: sum(m["properties"]["done"] for m in echoes(sdk.client.sent)) == 3,
                       3)
        properties = [m["properties"] for m in echoes(sent(sdk))]
        ids = list(dict.fromkeys(p["inference_id"] for p in properties))
        assert len(ids) == 3
        for inference_id in ids:
            utterance = [p["done"] for p in properties if p["inference_id"] == inference_id]
            assert utterance[-1] is True and not any(utterance[:-1])


async def test_a_mark_closes_the_utterance_when_its_audio_has_gone() -> None:
    async with running() as (transport, sdk):
        await with_people(transport, sdk)
        await transport.send_audio(tone(440, 0.2, 16000))
        await transport.mark("end")
        await next_event(transport, MarkReached)
        last = echoes(sent(sdk))[-1]["properties"]
        assert last["done"] is True  # at once, not after the quiet gap
        assert len(echoed_pcm(echoes(sent(sdk))[:-1])) >= 0.2 * ECHO_RATE * 2


async def test_clear_audio_interrupts_the_replica_and_starts_a_new_utterance() -> None:
    async with running() as (transport, sdk):
        await with_people(transport, sdk)
        await transport.send_audio(tone(440, 1.0, 16000))
        await wait_for(lambda: len(echoes(sdk.client.sent)) >= 3)
        await transport.clear_audio()
        assert sent(sdk)[-1] == INTERRUPT
        count = len(echoes(sent(sdk)))
        await asyncio.sleep(0.2)
        assert len(echoes(sent(sdk))) == count  # the rest was dropped, not sent
        first = echoes(sent(sdk))[0]["properties"]["inference_id"]
        await transport.send_audio(tone(440, 0.1, 16000))
        await wait_for(lambda: len(echoes(sdk.client.sent)) > count)
        assert echoes(sent(sdk))[-1]["properties"]["inference_id"] != first


async def test_clear_audio_with_nothing_said_still_interrupts() -> None:
    async with running() as (transport, sdk):
        await with_people(transport, sdk)
        await transport.clear_audio()
        assert sent(sdk) == [INTERRUPT]


async def test_the_person_s_app_messages_reach_the_bot_the_replica_s_do_not() -> None:
    async with running() as (transport, sdk):
        await with_people(transport, sdk)
        sdk.client.app_message({"message_type": "conversation",
                                "event_type": "conversation.replica.started_speaking"},
                               "replica-1")
        sdk.client.app_message({"hello": "bot"}, "user-1")
        assert await next_event(transport, AppMessage) == AppMessage({"hello": "bot"})
        assert transport.stats.messages_in == 1
        await transport.send_message({"to": "everyone"})
        await wait_for(lambda: ({"to": "everyone"}, None) in sdk.client.sent)


async def test_the_person_leaving_ends_it_the_replica_leaving_does_not() -> None:
    async with running() as (transport, sdk):
        await with_people(transport, sdk)
        events: list[Any] = []
        sdk.client.participant_leaves("replica-1", "leftCall")
        sdk.client.participant_leaves("user-1", "leftCall")
        async for event in transport.events():
            events.append(event)
        assert [type(e) for e in events].count(ClientLeft) == 1
        assert ClientConnected() in events
        assert transport.ended and "the last participant left" in transport.end_reason


async def test_video_is_the_person_s_camera_and_the_bot_sends_none() -> None:
    from daily_fakes import FakeVideoFrame

    async with running() as (transport, sdk):
        await with_people(transport, sdk)
        frames = transport.video()
        reading = asyncio.ensure_future(frames.__anext__())
        await wait_for(lambda: "user-1" in sdk.client.video_renderers)
        assert "replica-1" not in sdk.client.video_renderers
        sdk.client.shows("user-1", FakeVideoFrame(b"\x00" * 12, 2, 2))
        frame = await asyncio.wait_for(reading, 2)
        assert (frame.width, frame.height, frame.participant_id) == (2, 2, "user-1")
        await frames.aclose()
        with pytest.raises(TransportError, match="the replica"):
            await transport.send_video(frame)


async def test_nothing_is_sent_after_the_session_ends() -> None:
    async with running() as (transport, sdk):
        await with_people(transport, sdk)
        await transport.send_audio(AudioFrame.silence(1.0, 16000))
        await wait_for(lambda: len(echoes(sdk.client.sent)) >= 1)
        await transport.close("bot hung up")
        count = len(sent(sdk))
        await asyncio.sleep(UTTERANCE_GAP + 0.2)
        assert len(sent(sdk)) == count
