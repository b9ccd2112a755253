"""Conversation mode of the load generators: a caller speaks an utterance, waits for the bot's
reply, lets it finish, and speaks again (`--turns N`).

Turn latency is end of speech to ear: from the moment the frame carrying the utterance's last
speech sample left the caller to the moment the reply's first loud sample would be played by a
listener that plays audio as it arrives. It is what a person waits for, so it includes the
server's VAD and end-of-turn model as much as its transport. The caller streams silence between
utterances in real time, as a phone or a browser microphone does. A turn whose reply has not
begun within REPLY_TIMEOUT is lost.

The utterance, benchmarks/data/utterance.wav, is "What time does the store open tomorrow?"
synthesized by espeak-ng 1.51 (`espeak-ng -v en-us -s 165`), resampled to 16 kHz and cut to
its speech: a finished question, which Smart Turn v3 scores complete (0.92), so turns end on
the model's verdict rather than on its 3 s silence fallback (tests/data/speech_like.wav, a
tone pattern, scores incomplete).
"""

from __future__ import annotations

import asyncio
import time
import wave
from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path

import numpy as np

from benchmarks.probe import FRAME_SECONDS, CallResult

UTTERANCE = Path(__file__).resolve().parent / "data" / "utterance.wav"
LEAD_SECONDS = 0.6       # silence before the first utterance (the VAD's and the server's start)
REPLY_TIMEOUT = 6.0      # Smart Turn's own fallback ends a turn after 3 s of silence
REPLY_END = 0.6          # the reply is over after this long without a loud sample
LOUD = 1000              # |sample| above this (-30 dBFS) is the reply; the caller's pauses are 0
#: send(samples): put one 20 ms frame (int16, at the caller's rate) on the wire.
SendPCM = Callable[[np.ndarray], Awaitable[None]]


@cache
def utterance(rate: int) -> tuple[np.ndarray, ...]:
    """The recorded utterance at `rate` as 20 ms frames, cut from its first to its last speech
    sample (the last frame padded with silence), so the last frame sent ends the speech."""
    with wave.open(str(UTTERANCE)) as wav:
        source_rate = wav.getframerate()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    voiced = np.flatnonzero(samples)
    samples = samples[voiced[0]:voiced[-1] + 1].astype(np.float32)
    if rate != source_rate:  # offline, once: linear interpolation is plenty for a test signal
        positions = np.arange(round(samples.size * rate / source_rate)) * source_rate / rate
        samples = np.interp(positions, np.arange(samples.size), samples)
    size = round(rate * FRAME_SECONDS)
    padded = np.zeros(-(-samples.size // size) * size, dtype=np.int16)
    padded[:samples.size] = np.round(samples).astype(np.int16)
    return tuple(padded.reshape(-1, size))


class ReplyMeter:
    """The caller's ear: when the reply to the current turn began, and when audio was last loud."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.expect_after: float | None = None   # end of the caller's speech this turn
        self.reply_at: float | None = None
        self.last_loud = 0.0

    def expect(self, speech_end: float) -> None:
        """The caller just stopped speaking: the next loud sample is the reply."""
        self.expect_after, self.reply_at = speech_end, None

    def feed(self, arrival: float, samples: np.ndarray) -> None:
        """`samples` (mono int16) arrived at monotonic time `arrival`."""
        loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > LOUD)
        if not loud.size:
            return
        self.last_loud = arrival + int(loud[-1]) / self.rate
        if self.expect_after is not None and self.reply_at is None:
            self.reply_at = reply_start(arrival, loud, self.rate, self.expect_after)

    def stop(self) -> None:
        self.expect_after = None


def reply_start(arrival: float, loud: np.ndarray, rate: int, after: float) -> float | None:
    """When the first of the `loud` sample indices of a chunk that arrived at `arrival` is played
    (sample i at arrival + i / rate), if not before `after` (what was heard earlier is the
    previous reply's tail)."""
    times = arrival + loud / rate
    later = times[times >= after]
    return float(later[0]) if later.size else None


async def converse(turns: int, rate: int, meter: ReplyMeter, result: CallResult,
                   send: SendPCM) -> None:
    """Speak `turns` times, in real time, each time waiting for the reply to begin and to end.

    Turn latencies go to `result.turn_latencies`, turns without a reply to `result.turns_lost`;
    how late each frame left to `result.late`.
    """
    speech = utterance(rate)
    silence = np.zeros_like(speech[0])
    begin = time.monotonic()
    sent = 0

    async def tick(frame: np.ndarray) -> float:
        nonlocal sent
        due = begin + (sent + 1) * FRAME_SECONDS
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        result.late.append(max(0.0, time.monotonic() - due))
        await send(frame)
        sent += 1
        return time.monotonic()

    for _ in range(round(LEAD_SECONDS / FRAME_SECONDS)):
        await tick(silence)
    for _ in range(turns):
        for frame in speech:
            ended = await tick(frame)
        meter.expect(ended)
        while meter.reply_at is None and time.monotonic() - ended < REPLY_TIMEOUT:
            await tick(silence)
        result.turns += 1
        if meter.reply_at is None:
            result.turns_lost += 1
        else:
            result.turn_latencies.append(meter.reply_at - ended)
        while time.monotonic() - max(meter.last_loud, ended) < REPLY_END:
            await tick(silence)
    meter.stop()
