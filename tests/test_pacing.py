"""Outbound pacing: real time, marks in order, barge-in, back-pressure, large-chunk providers."""

import asyncio
import time

from runner.pacing import Flag, FrameClock, OutboundAudio

FRAME = 320  # 20 ms at 8 kHz PCM16


def recorder():
    marks: list[tuple[str, bool, int]] = []
    sent: list[bytes] = []

    async def on_mark(name: str, cleared: bool) -> None:
        marks.append((name, cleared, sum(map(len, sent))))

    async def write(chunk: bytes) -> None:
        sent.append(chunk)

    return marks, sent, on_mark, write


async def test_push_mode_sends_one_frame_per_tick_and_marks_in_order() -> None:
    marks, sent, on_mark, write = recorder()
    out = OutboundAudio(FRAME, on_mark)
    runner = asyncio.create_task(out.run(write))
    started = time.monotonic()
    await out.put(bytes(FRAME * 10))
    await out.mark("half")
    await out.put(bytes(FRAME * 10))
    await out.mark("end")
    while len(marks) < 2:
        await asyncio.sleep(0.01)
    elapsed = time.monotonic() - started
    runner.cancel()
    assert [len(chunk) for chunk in sent] == [FRAME] * 20
    assert marks == [("half", False, FRAME * 10), ("end", False, FRAME * 20)]
    assert 0.33 < elapsed < 0.6  # 20 frames of 20 ms, the first one at once


async def test_mark_with_nothing_queued_fires_at_once() -> None:
    marks, _, on_mark, _ = recorder()
    out = OutboundAudio(FRAME, on_mark)
    await out.mark("now")
    assert marks == [("now", False, 0)]


async def test_clear_drops_queued_audio_and_reports_marks_as_cleared() -> None:
    marks, sent, on_mark, write = recorder()
    out = OutboundAudio(FRAME, on_mark)
    runner = asyncio.create_task(out.run(write))
    await out.put(bytes(FRAME * 50))
    await out.mark("never played")
    await asyncio.sleep(0.1)
    await out.clear()
    await asyncio.sleep(0.1)
    runner.cancel()
    assert marks[0][:2] == ("never played", True)
    assert len(sent) < 15 and out.queued_seconds == 0


async def test_back_pressure_waits_when_far_ahead() -> None:
    _, _, on_mark, write = recorder()
    out = OutboundAudio(FRAME, on_mark, max_ahead=0.2)
    runner = asyncio.create_task(out.run(write))
    started = time.monotonic()
    for _ in range(30):  # 0.6 s of audio, at most 0.2 s may wait
        await out.put(bytes(FRAME))
    assert time.monotonic() - started > 0.3
    runner.cancel()


async def test_large_chunks_are_multiples_and_the_tail_is_padded() -> None:
    _, sent, on_mark, write = recorder()
    out = OutboundAudio(FRAME, on_mark, min_chunk_bytes=FRAME * 5)
    runner = asyncio.create_task(out.run(write))
    await out.put(bytes(FRAME * 7))
    await asyncio.sleep(0.35)
    runner.cancel()
    assert [len(chunk) for chunk in sent] == [FRAME * 5, FRAME * 5]


async def test_pull_mode_returns_silence_when_idle_and_audio_when_queued() -> None:
    _, _, on_mark, _ = recorder()
    out = OutboundAudio(FRAME, on_mark)
    assert await out.next_frame() == bytes(FRAME)
    await out.put(b"\x01\x00" * (FRAME // 2))
    assert await out.next_frame() == b"\x01\x00" * (FRAME // 2)
    started = time.monotonic()
    for _ in range(5):
        await out.next_frame()
    assert time.monotonic() - started > 0.06  # 5 frames, each on a shared 20 ms boundary: paced, not a burst


async def test_streams_share_clock_boundaries() -> None:
    clock = FrameClock()
    base = time.monotonic()
    sleepers = [asyncio.create_task(clock.sleep_until(base + 0.001 * i)) for i in range(1, 11)]
    await asyncio.sleep(0)  # every sleeper has registered its boundary
    # Ten deadlines within 10 ms share at most two 20 ms boundaries: two timers, not ten.
    assert 1 <= len(clock._waiters) <= 2
    await asyncio.gather(*sleepers)
    assert not clock._waiters


async def test_a_cancelled_sleeper_does_not_wake_or_cancel_the_others_on_its_boundary() -> None:
    clock = FrameClock()
    deadline = time.monotonic() + 0.005
    sleepers = [asyncio.create_task(clock.sleep_until(deadline)) for _ in range(3)]
    await asyncio.sleep(0)
    sleepers[0].cancel()
    await asyncio.gather(*sleepers[1:])  # the others still wake, on time and not cancelled
    assert sleepers[0].cancelled()
    assert not clock._waiters


async def test_lead_lets_a_buffering_far_end_receive_a_backlog_at_once() -> None:
    _, sent, on_mark, write = recorder()
    out = OutboundAudio(FRAME, on_mark)
    runner = asyncio.create_task(out.run(write, lead=0.1))
    await out.put(bytes(FRAME * 20))
    await asyncio.sleep(0.03)
    early = len(sent)
    await asyncio.sleep(0.4)
    runner.cancel()
    assert 5 <= early <= 8  # ~100 ms ahead at once, then real time
    assert len(sent) == 20


async def test_flag_wakes_every_waiter_and_survives_a_cancelled_one() -> None:
    flag = Flag()
    waiters = [asyncio.create_task(flag.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    waiters[0].cancel()
    await asyncio.sleep(0)
    assert not any(waiter.done() for waiter in waiters[1:])
    flag.set()
    await asyncio.gather(*waiters[1:])
    await asyncio.wait_for(flag.wait(), 0.1)  # set: no wait at all
    flag.clear()
    assert not flag.is_set()
