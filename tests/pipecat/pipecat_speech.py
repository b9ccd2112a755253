"""A spoken-like test signal that Silero VAD takes for speech, made offline in a few ms.

A pure tone is not speech to Silero (its confidence stays near 0), so the caller says "ee-ee-ee":
syllables of the vowel /i/ (formants 270, 2290, 3010 Hz) on a glottal pulse train at a steady
pitch. Its strongest component is the pitch itself, so the echo's pitch can be checked with
`dominant_frequency`. tests/data/speech_like.wav (`make smoke`'s input for the Pipecat bots) is
`silence(0.3) + utterance(1.2) + silence(0.8)` at 16 kHz, written with `runner.audio.write_wav`.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

PITCH = 160.0
FORMANTS = ((270.0, 90.0), (2290.0, 110.0), (3010.0, 150.0))  # /i/: (frequency, bandwidth)
SYLLABLE_SECONDS = 0.22
GAP_SECONDS = 0.04


def _resonate(source: np.ndarray, frequency: float, bandwidth: float, rate: int) -> np.ndarray:
    """One formant: a two-pole resonator (a per-sample loop, fine for a test signal)."""
    radius = math.exp(-math.pi * bandwidth / rate)
    a1, a2 = -2 * radius * math.cos(2 * math.pi * frequency / rate), radius * radius
    out = np.zeros_like(source)
    y1 = y2 = 0.0
    for index, value in enumerate(source):
        y = value - a1 * y1 - a2 * y2
        out[index], y2, y1 = y, y1, y
    return out


@lru_cache(maxsize=8)
def utterance(seconds: float, rate: int = 16000, amplitude: float = 0.5) -> bytes:
    """PCM16 mono: `seconds` of "ee-ee-ee" at PITCH."""
    total = int(rate * seconds)
    syllable, gap = int(rate * SYLLABLE_SECONDS), int(rate * GAP_SECONDS)
    t = np.arange(syllable) / rate
    phase = np.mod(PITCH * t, 1.0)  # Rosenberg glottal pulses, differentiated
    pulse = np.where(phase < 0.4, 0.5 - 0.5 * np.cos(np.pi * phase / 0.4),
                     np.where(phase < 0.6, np.cos(np.pi * (phase - 0.4) / 0.4), 0.0))
    source = np.diff(pulse, prepend=0.0) + 0.01 * np.random.default_rng(1).standard_normal(syllable)
    voiced = sum(_resonate(source, f, bw, rate) for f, bw in FORMANTS)
    ramp = int(0.03 * rate)
    envelope = np.ones(syllable)
    envelope[:ramp], envelope[-ramp:] = np.linspace(0, 1, ramp), np.linspace(1, 0, ramp)
    voiced = voiced * envelope
    out = np.zeros(total)
    for start in range(0, total, syllable + gap):
        piece = voiced[:min(syllable, total - start)]
        out[start:start + len(piece)] = piece
    out *= amplitude / np.max(np.abs(out))
    return (out * 32767).astype(np.int16).tobytes()


def silence(seconds: float, rate: int = 16000) -> bytes:
    return bytes(int(rate * seconds) * 2)


def voiced_seconds(pcm: bytes, rate: int, threshold: float = 0.02) -> float:
    """How long `pcm` is not silent, counted in 20 ms windows (RMS above `threshold` of full scale)."""
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype=np.int16).astype(np.float64) / 32768
    window = int(rate * 0.02)
    count = len(samples) // window
    if not count:
        return 0.0
    rms = np.sqrt(np.mean(samples[: count * window].reshape(count, window) ** 2, axis=1))
    return float(np.sum(rms > threshold)) * 0.02
