"""Audio shared by every transport: frames, G.711, channel mixing, low-delay resampling, WAV.

Everything here is vectorised (numpy) or in C (audioop, soxr): frames arrive every 10–20 ms per
session, so a per-sample Python loop would cost more than the network.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
import wave
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import soxr

with warnings.catch_warnings():
    # stdlib audioop warns about its removal in 3.13; there the audioop-lts package takes its name.
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

_PCM16 = np.dtype("<i2")
_MIN, _MAX = np.array(-32768.0, np.float32), np.array(32767.0, np.float32)  # 0-d: clip() is fast


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """A piece of PCM16 audio; small and immutable, so frames can be queued and shared freely."""

    pcm: bytes
    sample_rate: int
    channels: int = 1

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.channels <= 0:
            raise ValueError(f"bad audio format: {self.sample_rate} Hz, {self.channels} channels")
        if len(self.pcm) % (2 * self.channels):
            raise ValueError(
                f"PCM16 with {self.channels} channel(s) needs a multiple of {2 * self.channels} "
                f"bytes, got {len(self.pcm)}"
            )

    @property
    def samples(self) -> int:
        """Samples per channel."""
        return len(self.pcm) // (2 * self.channels)

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.samples / self.sample_rate

    @classmethod
    def silence(cls, duration: float, sample_rate: int, channels: int = 1) -> AudioFrame:
        """Digital silence, e.g. to keep a paced stream alive when the bot has nothing to say."""
        return cls(bytes(2 * channels * round(duration * sample_rate)), sample_rate, channels)


# A frame whose format we made ourselves (a resampler's output) skips the checks a caller's frame
# gets: two frames a frame of audio, each way, and the checks cost more than filling the slots.
_new_frame = object.__new__
_set_pcm, _set_rate, _set_channels = (getattr(AudioFrame, name).__set__
                                      for name in ("pcm", "sample_rate", "channels"))


def _made_frame(pcm: bytes, sample_rate: int, channels: int) -> AudioFrame:
    frame = _new_frame(AudioFrame)
    _set_pcm(frame, pcm)
    _set_rate(frame, sample_rate)
    _set_channels(frame, channels)
    return frame


# --- G.711 (in C) -------------------------------------------------------------------------------


def ulaw_encode(pcm: bytes) -> bytes:
    """PCM16 -> G.711 mu-law (Twilio, Telnyx, Plivo in North America)."""
    return audioop.lin2ulaw(pcm, 2)


def ulaw_decode(data: bytes) -> bytes:
    """G.711 mu-law -> PCM16."""
    return audioop.ulaw2lin(data, 2)


def alaw_encode(pcm: bytes) -> bytes:
    """PCM16 -> G.711 A-law (most of the world outside North America and Japan)."""
    return audioop.lin2alaw(pcm, 2)


def alaw_decode(data: bytes) -> bytes:
    """G.711 A-law -> PCM16."""
    return audioop.alaw2lin(data, 2)


# --- channels, levels, test signals --------------------------------------------------------------


def to_channels(pcm: bytes, channels_in: int, channels_out: int) -> bytes:
    """Mix interleaved PCM16 to another channel count: average to mono, duplicate mono to many."""
    if channels_in == channels_out:
        return pcm
    x = np.frombuffer(pcm, _PCM16)
    if channels_out == 1:
        total = x.reshape(-1, channels_in).sum(axis=1, dtype=np.int32)
        return ((total + channels_in // 2) // channels_in).astype(_PCM16).tobytes()
    if channels_in == 1:
        return np.repeat(x, channels_out).tobytes()
    raise ValueError(f"can only mix to or from mono, not {channels_in} -> {channels_out} channels")


def tone(frequency: float, duration: float, sample_rate: int, amplitude: float = 0.3) -> AudioFrame:
    """A mono sine wave: a known signal for example bots, tests and smoke checks."""
    t = np.arange(round(duration * sample_rate)) / sample_rate
    wave_ = np.rint(amplitude * 32767.0 * np.sin(2.0 * np.pi * frequency * t))
    return AudioFrame(wave_.astype(_PCM16).tobytes(), sample_rate)


def dominant_frequency(pcm: bytes, sample_rate: int) -> float:
    """Frequency of the strongest spectral peak (mono PCM16), to a fraction of a bin.

    Hann window, then a parabola through the log magnitudes around the peak bin, so a one-second
    tone is located to well under 1 Hz and a 20 ms one to a few Hz.
    """
    x = np.frombuffer(pcm, _PCM16).astype(np.float64)
    if x.size < 4:
        return 0.0
    spectrum = np.abs(np.fft.rfft((x - x.mean()) * np.hanning(x.size)))
    k = int(np.argmax(spectrum[1:])) + 1
    if spectrum[k] == 0.0:
        return 0.0
    shift = 0.0
    if k < spectrum.size - 1:
        a, b, c = np.log(np.maximum(spectrum[k - 1 : k + 2], 1e-12))
        denominator = a - 2.0 * b + c
        if denominator < 0.0:
            shift = 0.5 * (a - c) / denominator
    return (k + shift) * sample_rate / x.size


def rms(pcm: bytes) -> float:
    """Root-mean-square level of PCM16 on a 0..1 scale (full-scale square wave = 1)."""
    x = np.frombuffer(pcm, _PCM16).astype(np.float64)
    return float(np.sqrt(np.mean(x * x)) / 32768.0) if x.size else 0.0


# --- WAV ---------------------------------------------------------------------------------------


def read_wav(path: str | os.PathLike[str]) -> AudioFrame:
    """Read a whole PCM16 WAV file into one frame."""
    hint = "convert it with: ffmpeg -i IN -c:a pcm_s16le OUT.wav"
    try:
        with wave.open(os.fspath(path), "rb") as wav:
            width = wav.getsampwidth()
            if width != 2:
                raise ValueError(f"{path}: {8 * width}-bit WAV, only 16-bit is supported; {hint}")
            rate, channels = wav.getframerate(), wav.getnchannels()
            return AudioFrame(wav.readframes(wav.getnframes()), rate, channels)
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"{path}: not a 16-bit PCM WAV file ({exc}); {hint}") from exc


def write_wav(path: str | os.PathLike[str], frame: AudioFrame) -> None:
    """Write one frame as a PCM16 WAV file."""
    with wave.open(os.fspath(path), "wb") as wav:
        wav.setnchannels(frame.channels)
        wav.setsampwidth(2)
        wav.setframerate(frame.sample_rate)
        wav.writeframes(frame.pcm)


# --- resampling ----------------------------------------------------------------------------------

# The polyphase filter: Kaiser-windowed sinc, 60 dB stopband starting at the lower Nyquist, with a
# transition band 15% of it wide (so passband to 0.85 x Nyquist: 3.4 kHz at 8 kHz, 6.8 kHz at
# 16 kHz). The length follows from Kaiser's formula; the delay is half of it: 3.0 ms when 8 kHz is
# involved, 1.5 ms for 16 kHz, 1.0 ms for 24 kHz.
_STOPBAND_DB = 60.0
_TRANSITION = 0.15
_MAX_FACTOR = 12  # larger L or M would make a huge bank: soxr handles those ratios (44.1k <-> 16k)


@dataclass(frozen=True, slots=True, eq=False)
class _Bank:
    """A precomputed polyphase bank laid out so one BLAS matmul filters a whole call's input.

    The input is cut into rows of `block` periods (a period is `down` input samples and yields
    `up` outputs). Output block a needs rows a .. a+rows-1, so `matrix` holds, side by side, what
    each of those rows contributes: row @ matrix, then `rows` shifted adds, gives every output.
    """

    up: int
    down: int
    window: int  # input samples one period's outputs depend on
    history: int  # zeros the stream starts with, so output 0 lines up with input 0
    block: int  # periods per row
    rows: int  # rows one output block depends on
    matrix: np.ndarray  # (block * down, rows * block * up) float32
    delay: float  # seconds


@lru_cache(maxsize=64)
def _design(in_rate: int, out_rate: int, up: int, down: int) -> _Bank:
    """Design the filter for one rate pair (cached: every session at 48k->16k shares it)."""
    high = in_rate * up
    nyquist = min(in_rate, out_rate) / 2.0
    width = _TRANSITION * nyquist
    cutoff = nyquist - width / 2.0
    taps = math.ceil((_STOPBAND_DB - 7.95) / (2.285 * 2.0 * math.pi * width / high)) + 1
    taps += 1 - taps % 2  # odd: the delay is a whole number of samples at the high rate
    beta = 0.1102 * (_STOPBAND_DB - 8.7)
    n = np.arange(taps) - (taps - 1) / 2.0
    h = np.sinc(2.0 * cutoff / high * n) * np.kaiser(taps, beta)
    h *= up / h.sum()  # unity gain; zero-stuffing by `up` lowered it by that much
    per_phase = math.ceil(taps / up)
    h = np.concatenate([h, np.zeros(per_phase * up - taps)])

    # One period: output r uses phase (r*down) % up of h, its newest input at (r*down) // up.
    spill = (up - 1) * down // up
    window = per_phase + spill
    r = np.arange(up)[:, None]
    k = np.arange(per_phase)[None, :]
    period = np.zeros((up, window))
    period[r, r * down // up + k] = h[(r * down) % up + (per_phase - 1 - k) * up]

    # `block` periods side by side, each shifted by `down` inputs, cut into `rows` row-sized parts.
    block = max(1, math.ceil(window / down))
    rows = math.ceil(((block - 1) * down + window) / (block * down))
    span = np.zeros((rows * block * down, block * up))
    b = np.arange(block)[:, None, None]
    span[b * down + np.arange(window)[:, None], b * up + np.arange(up)] = period.T
    matrix = np.hstack(np.split(span, rows, axis=0)).astype(np.float32)
    matrix.setflags(write=False)
    delay = (taps - 1) / 2.0 / high
    return _Bank(up, down, window, per_phase - 1, block, rows, matrix, delay)


def _clip(values: np.ndarray, low: float, high: float, out: np.ndarray) -> None:
    """Clip in place with two ufuncs: np.clip checks its arguments in Python first, which
    costs more than clipping a 20 ms frame."""
    np.minimum(values, high, out=out)
    np.maximum(out, low, out=out)


_Steps = Callable[[bytes], bytes]


class _Polyphase:
    """Streaming rational resampler: carries the unconsumed input (history and partial period).

    At 20 ms frames numpy's fixed cost per operation, not the arithmetic, is most of a call, so
    for an amount of input on hand that comes back (frames keep their size on every transport)
    the buffers, views and steps are built once and reused, and shared by every stream of the
    thread with the same filter and amount: a process's calls are resampled one after another,
    and one set of buffers stays in the cache for all of them where one per stream would not
    (on a shared machine, the cache misses cost more than the arithmetic). The arithmetic is
    the same either way (the same sgemm per channel, then the same float32 adds), so the output
    is bit-identical however the stream is cut.
    """

    _PLANS = 8  # amounts of input on hand with steps of their own (1 to `down` per chunk size)
    _SEEN = 16  # amounts remembered, to tell one that comes back

    def __init__(self, bank: _Bank, channels: int) -> None:
        self.delay = bank.delay
        self._bank = bank
        self._channels = channels
        self._held = bytes(2 * channels * bank.history)  # PCM16 not consumed yet
        self._plans: dict[int, tuple[int, _Steps]] = {}  # bytes on hand -> (consumed, steps)
        self._seen: set[int] = set()

    def process(self, pcm: bytes) -> bytes:
        data = self._held + pcm
        plan = self._plans.get(len(data))
        if plan is None:
            return self._unplanned(data)
        consumed, steps = plan
        self._held = data[consumed:]
        return steps(data)

    def _unplanned(self, data: bytes) -> bytes:
        bank, channels, nbytes = self._bank, self._channels, len(data)
        if nbytes % (2 * channels):
            raise ValueError(f"PCM16 x {channels} channels needs whole samples")
        total = nbytes // (2 * channels)
        if total < bank.window:
            self._held = data
            return b""
        periods = (total - bank.window) // bank.down + 1
        consumed = periods * bank.down * 2 * channels
        self._held = data[consumed:]
        if nbytes not in self._seen or bank.rows != 2:  # rows is 2 unless window <= down
            if len(self._seen) >= self._SEEN:
                self._seen.clear()
            self._seen.add(nbytes)
            return self._once(data, total, periods)
        steps, kept = _shared_steps(bank, channels, nbytes, periods)
        if kept <= _PLAN_BYTES:
            if len(self._plans) >= self._PLANS:
                self._plans.clear()
            self._plans[nbytes] = (consumed, steps)
        return steps(data)

    def _once(self, data: bytes, total: int, periods: int) -> bytes:
        """The call with temporary buffers, for an amount of input seen once so far."""
        bank, channels = self._bank, self._channels
        row, width = bank.block * bank.down, bank.block * bank.up
        blocks = -(-periods // bank.block)
        size = (blocks + bank.rows - 1) * row
        work = np.zeros((channels, max(total, size)), np.float32)
        x = np.frombuffer(data, _PCM16)
        work[:, :total] = x if channels == 1 else x.reshape(-1, channels).T
        z = work[:, :size].reshape(channels, -1, row) @ bank.matrix
        y = z[:, :blocks, :width]
        for q in range(1, bank.rows):
            y = y + z[:, q : q + blocks, q * width : (q + 1) * width]
        out = y.reshape(channels, -1)[:, : periods * bank.up]
        np.rint(out, out=out)
        _clip(out, _MIN, _MAX, out)
        return (out[0] if channels == 1 else out.T).astype(_PCM16).tobytes()

def _build_steps(bank: _Bank, channels: int, nbytes: int, periods: int) -> tuple[_Steps, int]:
    """(the call for `nbytes` on hand, bytes it keeps): numpy steps, each writing into a
    buffer of its own through views made here, once."""
    matrix = bank.matrix
    total = nbytes // (2 * channels)
    blocks = -(-periods // bank.block)
    width, m, k, p = bank.block * bank.up, blocks + 1, bank.block * bank.down, matrix.shape[1]
    lanes = np.zeros((channels, max(total, m * k)), np.float32)  # zeros past `total` stay
    z = np.empty((channels, m, p), np.float32)
    # np.dot makes the same sgemm call as `@` does (m, k, p > 1), with less overhead.
    dots = tuple((lanes[c, : m * k].reshape(m, k), z[c]) for c in range(channels))
    # Output block a is z[a, :width] + z[a + 1, width:]. Flattened, the second part is the
    # first shifted by p + width: one contiguous add (a strided one costs 3x) that also sums
    # the unused columns between; the cast to int16 picks the wanted ones.
    flat, used = z.reshape(channels, -1), (blocks - 1) * p + width
    first, second = flat[:, :used], flat[:, p + width :]
    whole = np.empty((channels, blocks * p), np.float32)
    acc, picked = whole[:, :used], whole.reshape(channels, blocks, p)[:, :, :width]
    out16 = np.empty((blocks, width, channels), _PCM16)
    out, result = picked.transpose(1, 2, 0), out16.reshape(-1)[: periods * bank.up * channels]
    # The input is copied as bytes into int16 (memoryview: no numpy call), then cast once.
    staging = np.empty((total, channels), _PCM16)
    fill, work, pcm16 = memoryview(staging).cast("B"), lanes[:, :total], staging.T
    silence, quiet = bytes(nbytes), bytes(result.nbytes)  # a bot's pauses: zeros give zeros
    kept = lanes.nbytes + z.nbytes + whole.nbytes + out16.nbytes + 2 * nbytes
    dot, add, rint, clip = np.dot, np.add, np.rint, _clip

    if channels == 1:  # the usual case: 1-d views are cheaper to go through
        work, pcm16, first, second, acc = work[0], pcm16[0], first[0], second[0], acc[0]
        out16, out = out16[..., 0], picked[0]

    def steps(data: bytes) -> bytes:
        if data == silence:
            return quiet
        fill[:] = data
        work[...] = pcm16
        for rows, zc in dots:
            dot(rows, matrix, zc)
        add(first, second, acc)
        rint(acc, acc)
        clip(acc, _MIN, _MAX, acc)
        out16[...] = out
        return result.tobytes()

    return steps, kept


_SHARED_PLANS = 64  # sets of buffers a thread keeps for all its streams
_PLAN_BYTES = 1 << 18  # ... unless a set is bigger: a one-off huge chunk keeps nothing


class _PlanCache(threading.local):
    def __init__(self) -> None:
        self.plans: dict[tuple[_Bank, int, int], tuple[_Steps, int]] = {}


_plan_cache = _PlanCache()


def _shared_steps(bank: _Bank, channels: int, nbytes: int, periods: int) -> tuple[_Steps, int]:
    """The steps for this filter, channel count and amount on hand, shared by the streams of
    the calling thread (its streams are resampled one at a time, never two at once)."""
    plans = _plan_cache.plans
    key = (bank, channels, nbytes)
    plan = plans.get(key)
    if plan is None:
        plan = _build_steps(bank, channels, nbytes, periods)
        if plan[1] <= _PLAN_BYTES:
            if len(plans) >= _SHARED_PLANS:
                plans.clear()
            plans[key] = plan
    return plan


class _SoxrStream:
    """soxr for ratios a small polyphase bank cannot express; it holds back more (~20-40 ms)."""

    def __init__(self, in_rate: int, out_rate: int, channels: int) -> None:
        self._out_rate = out_rate
        self._channels = channels
        self._stream = soxr.ResampleStream(in_rate, out_rate, channels, dtype="int16", quality="HQ")

    def process(self, pcm: bytes) -> bytes:
        if len(pcm) % (2 * self._channels):
            raise ValueError(f"PCM16 x {self._channels} channels needs whole samples")
        x = np.frombuffer(pcm, _PCM16)
        if self._channels > 1:
            x = x.reshape(-1, self._channels)
        return self._stream.resample_chunk(x).tobytes()

    @property
    def delay(self) -> float:
        return self._stream.delay() / self._out_rate


class Resampler:
    """Streaming PCM16 resampler for one stream: keeps its state between calls so frame edges
    never click.

    Ratios L/M with small L and M (8/16/24/48 kHz among themselves: 2, 3, 6, 3/2 ...) use the
    polyphase FIR above, 1-3 ms of delay where general-purpose streaming resamplers hold back
    20-60 ms; others (44.1 kHz <-> 16 kHz ...) use soxr. Equal rates pass the bytes through.
    """

    def __init__(self, in_rate: int, out_rate: int, channels: int = 1) -> None:
        if in_rate <= 0 or out_rate <= 0 or channels <= 0:
            raise ValueError(f"bad resampler format: {in_rate} -> {out_rate} Hz, {channels} ch")
        self.in_rate, self.out_rate, self.channels = in_rate, out_rate, channels
        common = math.gcd(in_rate, out_rate)
        up, down = out_rate // common, in_rate // common
        self._impl: _Polyphase | _SoxrStream | None = None
        if in_rate == out_rate:
            pass
        elif max(up, down) <= _MAX_FACTOR:
            self._impl = _Polyphase(_design(in_rate, out_rate, up, down), channels)
        else:
            self._impl = _SoxrStream(in_rate, out_rate, channels)
        if self._impl is not None:
            self.process = self._impl.process  # type: ignore[method-assign]  # one call a frame, not two

    def process(self, pcm: bytes) -> bytes:
        """Resample the next piece of the stream; returns what is ready (may be empty)."""
        # Each implementation checks for whole samples (_Polyphase off its per-frame path); equal
        # rates pass through here, the others go straight to their implementation (__init__).
        return pcm

    @property
    def delay(self) -> float:
        """Seconds of delay this stage adds (for soxr: what it holds back right now)."""
        return self._impl.delay if self._impl is not None else 0.0


class AudioConverter:
    """Converts a stream of AudioFrames of any rate/channels to one target rate/channels; keeps
    one Resampler, rebuilt only if the input rate changes.

    Downmixes before resampling and upmixes after, so the resampler works on the fewest channels.
    """

    def __init__(self, sample_rate: int, channels: int = 1) -> None:
        self.sample_rate = sample_rate
        self.channels = channels
        self._resampler: Resampler | None = None

    def convert(self, frame: AudioFrame) -> AudioFrame:
        """Convert one frame; may hold back a few samples (the result can have 0 samples)."""
        rate, channels = frame.sample_rate, frame.channels
        if rate == self.sample_rate and channels == self.channels:
            self._resampler = None  # a later change of format starts clean
            return frame
        middle = min(channels, self.channels)
        resampler = self._resampler
        if resampler is None or resampler.in_rate != rate or resampler.channels != middle:
            resampler = self._resampler = Resampler(rate, self.sample_rate, middle)
        if channels == self.channels:  # the usual case: only the rate differs
            return _made_frame(resampler.process(frame.pcm), self.sample_rate, channels)
        pcm = resampler.process(to_channels(frame.pcm, channels, middle))
        return _made_frame(to_channels(pcm, middle, self.channels), self.sample_rate, self.channels)

    @property
    def delay(self) -> float:
        """Seconds of delay the conversion adds."""
        return self._resampler.delay if self._resampler is not None else 0.0
