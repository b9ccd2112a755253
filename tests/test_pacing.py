"""Outbound pacing: real time, marks in order, barge-in, back-pressure, large-chunk providers,
streams sent from the shared clock's one tick."""

import asyncio
import time

from runner.pacing import Flag, OutboundAudio, PacingClock, shared_clock

FRAME = 320  # 20 ms at 8 kHz PCM16


def recorder():
    marks: list[tuple[str, bool, int]] = []
    sent: list[bytes] = []

    def on_mark(name: str, cleared: bool) -> None:
        marks.append((name, cleared, sum(map(len, sent))))

    def write(chunk: bytes) -> None:
        sent.append(chunk)

    return marks, sent, on_mark, write


async def test_push_mode_sends_one_frame_per_tick_and_marks_in_order() -> None:
    marks, sent, on_mark, write = recorder()
    out = OutboundAudio(FRAME, on_mark)
    out.start(write)
    started = time.monotonic()
    await out.put(bytes(FRAME * 10))
    await out.mark("half")
    await out.put(bytes(FRAME * 10))
    await out.mark("end")
    while len(marks) < 2:
        await asyncio.sleep(0.01)
    elapsed = time.monotonic() - started
    out.stop()
    assert [len(chunk) for chunk in sent] == [FRAME] * 20
    assert marks == [("half", False, FRAME * 10), ("end", False, FRAME * 20)]
    assert 0.33 < elapsed < 1.0  # 20 frames of 20 ms, the first one at once (slack: load)


async def test_mark_with_nothing_queued_fires_at_once() -> None:
    marks, _, on_mark, _ = recorder()
    out = OutboundAudio(FRAME, on_mark)
    await out.mark("now")
    assert marks == [("now", False, 0)]


async def test_clear_drops_queued_audio_and_reports_marks_as_cleared() -> None:
    marks, sent, on_mark, write = recorder()
    out = OutboundAudio(FRAME, on_mark)
    out.start(write)
    await out.put(bytes(FRAME * 50))
    await out.mark("never played")
    await asyncio.sleep(0.1)
    await out.clear()
    await asyncio.sleep(0.1)
    out.stop()
    assert marks[0][:2] == ("never played", True)
    assert len(sent) < 15 and out.queued_seconds == 0


async def test_back_pressure_waits_when_far_ahead() -> None:
    _, _, on_mark, write = recorder()
    out = OutboundAudio(FRAME, on_mark, max_ahead=0.2)
    out.start(write)
    started = time.monotonic()
    for _ in range(30):  # 0.6 s of audio, at most 0.2 s may wait
        await out.put(bytes(FRAME))
    assert time.monotonic() - started > 0.3
    out.stop()


async def test_large_chunks_are_multiples_and_the_tail_is_padded() -> None:
    _, sent, on_mark, write = recorder()
    out = OutboundAudio(FRAME, on_mark, min_chunk_bytes=FRAME * 5)
    out.start(write)
    await out.put(bytes(FRAME * 7))
    await asyncio.sleep(0.35)
    out.stop()
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
    clock = PacingClock()
    base = time.monotonic()
    sleepers = [asyncio.create_task(clock.sleep_until(base + 0.001 * i)) for i in range(1, 11)]
    await asyncio.sleep(0)  # every sleeper has registered its boundary
    # Ten deadlines within 10 ms share at most two 20 ms boundaries: two timers, not ten.
    assert 1 <= len(clock._waiters) <= 2
    await asyncio.gather(*sleepers)
    assert not clock._waiters


async def test_a_cancelled_sleeper_does_not_wake_or_cancel_the_others_on_its_boundary() -> None:
    clock = PacingClock()
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
    out.start(write, lead=0.1)
    await out.put(bytes(FRAME * 20))
    await asyncio.sleep(0.03)
    early = len(sent)
    await asyncio.sleep(0.4)
    out.stop()
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


async def test_push_streams_are_written_from_one_tick_and_leave_the_clock_when_quiet() -> None:
    outs = [OutboundAudio(FRAME, lambda name, cleared: None) for _ in range(3)]
    sent: list[list[float]] = [[], [], []]
    for out, times in zip(outs, sent, strict=True):
        out.start(lambda chunk, times=times: times.append(time.monotonic()))
        await out.put(bytes(FRAME * 4))
    clock = shared_clock()
    assert len(clock._tickers) == 3  # one timer callback serves every stream
    await asyncio.sleep(0.12)
    assert all(len(times) == 4 for times in sent)
    assert not clock._tickers  # quiet streams cost nothing
    # After the first chunk (at once), every stream's chunk of a tick left in the same callback.
    for later in zip(*(times[1:] for times in sent), strict=True):
        assert max(later) - min(later) < 0.005


async def test_a_stream_back_after_a_short_pause_never_goes_faster_than_real_time() -> None:
    times: list[float] = []
    out = OutboundAudio(FRAME, lambda name, cleared: None)
    out.start(lambda chunk: times.append(time.monotonic()))
    await out.put(bytes(FRAME))
    await out.put(bytes(FRAME))
    await asyncio.sleep(0.045)  # the queue ran dry: off the clock
    await out.put(bytes(FRAME))
    await out.put(bytes(FRAME))
    await asyncio.sleep(0.08)
    out.stop()
    assert len(times) == 4
    # The pause did not restart the schedule: frame i leaves at most half a frame before its
    # slot i * 20 ms after the first, so the stream never runs ahead of real time.
    assert all(t - times[0] >= 0.02 * i - 0.0105 for i, t in enumerate(times))


async def test_a_failing_write_stops_only_its_own_stream() -> None:
    good: list[bytes] = []

    def broken(chunk: bytes) -> None:
        raise OSError("the socket is gone")

    bad_out, good_out = (OutboundAudio(FRAME, lambda name, cleared: None) for _ in range(2))
    bad_out.start(broken)
    good_out.start(good.append)
    await good_out.put(bytes(FRAME * 5))
    await bad_out.put(bytes(FRAME * 5))  # its first chunk fails at once: logged, not raised
    await asyncio.sleep(0.12)
    assert len(good) == 5
    assert bad_out._tick not in shared_clock()._tickers


def record_wakes(clock: PacingClock) -> list[tuple[int, float, float]]:
    """Each boundary `clock` wakes for, as it happens: (index, the boundary's time, when the
    timer ran); the times are the clock's, not when a loaded machine got round to it."""
    wakes: list[tuple[int, float, float]] = []
    tick = clock._tick

    def recorded(index: int) -> None:
        wakes.append((index, index * clock.period, time.monotonic()))
        tick(index)

    clock._tick = recorded  # type: ignore[method-assign]
    return wakes


async def test_tickers_tick_on_every_boundary_once_and_the_timer_stops_with_the_last() -> None:
    clock = PacingClock()
    first: list[float] = []
    second: list[float] = []
    woke = record_wakes(clock)
    clock.every_tick(first.append)
    await asyncio.sleep(0.1)
    clock.every_tick(second.append)
    await asyncio.sleep(0.2)
    clock.stop(first.append)
    clock.stop(second.append)
    indexes = [index for index, _, _ in woke]
    assert len(set(indexes)) == len(indexes)  # no boundary ticked twice
    assert indexes == sorted(indexes)
    assert all(ran >= at - 0.002 for _, at, ran in woke)  # on its boundary (a timer may be early by a ms)
    assert first[-len(second):] == second  # both streams ticked from the same boundaries
    assert 7 <= len(second) <= 11 and len(first) >= len(second)
    assert clock._ticking is None  # nothing to tick: no timer


async def test_a_stream_sent_as_it_is_put_never_joins_the_clock() -> None:
    """Telephony echo: each frame is within the far end's lead when put, so it leaves at once
    and the stream costs the clock nothing."""
    _, sent, on_mark, write = recorder()
    out = OutboundAudio(FRAME, on_mark)
    out.start(write, lead=0.2)
    clock = shared_clock()
    for _ in range(5):
        await out.put(bytes(FRAME))
        assert out._tick not in clock._tickers
        await asyncio.sleep(0.02)
    out.stop()
    assert len(sent) == 5


async def test_frames_due_together_leave_as_one_chunk_up_to_the_largest_never_past_a_mark() -> None:
    """A far end that plays messages of any length (Twilio, Telnyx, Plivo) gets what is due at
    once in one message: fewer messages, and marks still exactly where they were put."""
    marks, sent, on_mark, write = recorder()
    out = OutboundAudio(FRAME, on_mark, max_chunk_bytes=5 * FRAME)
    out.start(write, lead=0.2)
    await out.put(bytes(3 * FRAME))
    assert [len(chunk) for chunk in sent] == [3 * FRAME]  # all due: one message
    await out.put(bytes(2 * FRAME))
    await out.mark("after five")
    await out.put(bytes(10 * FRAME))
    assert all(len(chunk) <= 5 * FRAME for chunk in sent)
    assert marks == [("after five", False, 5 * FRAME)]  # a chunk ended at the mark
    while sum(map(len, sent)) < 15 * FRAME:
        await asyncio.sleep(0.01)
    out.stop()
    assert len(sent) < 15

