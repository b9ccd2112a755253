"""Turns of a recorded session, by a simple energy detector: who spoke when, and how long the bot
took to answer.

Measured on the audio as the transport heard and sent it (not as the bot saw it), so the latency
is what a caller lives with: from the end of the caller's speech to the bot's first audio. A
speech-recognition grade detector is not needed for that; a level threshold with a hangover that
bridges the pauses inside a sentence is, and it is cheap enough to run on every frame.
"""

from __future__ import annotations

from array import array
from typing import Any

import numpy as np

BLOCK_SECONDS = 0.02
#: A 20 ms block louder than this (RMS, full scale 1.0; about -40 dBFS) is speech.
THRESHOLD = 0.01
#: Pauses shorter than this are inside one utterance.
HANGOVER_SECONDS = 0.3
#: Utterances shorter than this are clicks, not speech.
MIN_SPEECH_SECONDS = 0.06


class Levels:
    """The RMS level of each 20 ms block of one side's audio, fed in pieces of any length."""

    def __init__(self, sample_rate: int) -> None:
        self.block = int(sample_rate * BLOCK_SECONDS)
        self.levels = array("f")
        self._rest = b""

    def add(self, pcm: bytes) -> None:
        data = self._rest + pcm
        usable = len(data) // (2 * self.block) * 2 * self.block
        self._rest = data[usable:]
        if not usable:
            return
        blocks = np.frombuffer(data[:usable], "<i2").astype(np.float32).reshape(-1, self.block)
        self.levels.extend(np.sqrt(np.mean((blocks / 32768.0) ** 2, axis=1)).tolist())


def segments(levels: Levels) -> list[tuple[float, float]]:
    """(start, end) seconds of each utterance."""
    found: list[tuple[float, float]] = []
    gap = round(HANGOVER_SECONDS / BLOCK_SECONDS)
    start = end = None
    for index, level in enumerate(levels.levels):
        if level < THRESHOLD:
            continue
        if end is not None and index - end > gap:
            found.append((start, end))  # type: ignore[arg-type]
            start = None
        if start is None:
            start = index
        end = index + 1
    if start is not None and end is not None:
        found.append((start, end))
    shortest = MIN_SPEECH_SECONDS / BLOCK_SECONDS
    return [(round(a * BLOCK_SECONDS, 3), round(b * BLOCK_SECONDS, 3))
            for a, b in found if b - a >= shortest]


def turns(caller: Levels, bot: Levels) -> list[dict[str, Any]]:
    """One entry per caller utterance: when it started and ended, when the bot's reply (its first
    utterance to start after the caller began, before the caller's next one) started, and
    `latency` = reply start - caller end. A bot that talks over the caller (an echo, a bot that
    does not wait) has a negative latency; `onset` = reply start - caller start then says how
    soon it reacted. No reply: `reply_start` and `latency` are None."""
    spoken, replies = segments(caller), segments(bot)
    result = []
    for index, (start, end) in enumerate(spoken):
        following = spoken[index + 1][0] if index + 1 < len(spoken) else float("inf")
        reply = next((r for r in replies if start <= r[0] < following), None)
        entry: dict[str, Any] = {"caller_start": start, "caller_end": end,
                                 "reply_start": None, "reply_end": None,
                                 "latency": None, "onset": None}
        if reply is not None:
            entry.update(reply_start=reply[0], reply_end=reply[1],
                         latency=round(reply[0] - end, 3), onset=round(reply[0] - start, 3))
        result.append(entry)
    return result
