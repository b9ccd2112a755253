"""The test signal and the echo meter every load generator shares.

A caller speaks a quiet carrier tone with a loud tone burst every second; each burst's onset in what comes
back is matched, in order, to the burst spoken. Echo latency is mouth-to-ear for a listener that
plays a message the moment it arrives: from the burst's first sample being spoken (captured into
a 20 ms frame) to that sample being played, so it includes the caller's own 20 ms of
packetisation and every queue on the way, and no history of earlier stalls.
Gaps: what comes back is played out in real time behind a small jitter buffer (JITTER_BUFFER,
as a provider's media server or a browser keeps); each underrun is a gap, after which playout
resumes later (as an adaptive buffer does); and every 10 ms where the carrier comes back as
silence (a server that fills its own hiccups with silence) is a gap too. Only what comes back
while the caller talks counts.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

FRAME_SECONDS = 0.020
PERIOD_SECONDS = 1.0       # one burst per period
ONSET_SECONDS = 0.5        # where in its period a burst starts
BURST_SECONDS = 0.1
TONE_HZ = 1000.0
AMPLITUDE = 0.3
THRESHOLD = 3000           # |sample| above this is "loud" (the burst peaks near 9800)
QUIET_SECONDS = 0.2        # silence needed before a loud sample counts as a new onset
MAX_LATENCY = 0.9          # a burst not heard within this is lost
GAP_TOLERANCE = 0.002      # playout underruns shorter than this are not counted as gaps
JITTER_BUFFER = 0.040      # the listener starts playing this long after the first arrival
CARRIER_HZ = 440.0         # a quiet tone under everything, so silence coming back is a dropout
CARRIER_AMPLITUDE = 0.03   # about -30 dBFS
DROPOUT_LEVEL = 250        # a 10 ms block peaking below this has lost the carrier
DROPOUT_BLOCK = 0.010


# ----------------------------------------------------------------------------- G.711 mu-law

def _ulaw_decode_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (codes >> 4) & 0x07
    magnitude = ((((codes & 0x0F) << 3) + 0x84) << exponent) - 0x84
    return np.where(codes & 0x80, -magnitude, magnitude).astype(np.int16)


ULAW_DECODE = _ulaw_decode_table()


def ulaw_encode(samples: np.ndarray) -> bytes:
    """PCM16 samples to G.711 mu-law bytes (the classic segment encoder, vectorised)."""
    v = samples.astype(np.int32) >> 2
    negative = v < 0
    magnitude = np.minimum(np.where(negative, -v, v), 8159) + 0x21
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 5
    code = np.where(exponent > 7, 0x7F, (exponent << 4) | ((magnitude >> (exponent + 1)) & 0x0F))
    return (code ^ np.where(negative, 0x7F, 0xFF)).astype(np.uint8).tobytes()


def ulaw_decode(data: bytes) -> np.ndarray:
    return ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


# ----------------------------------------------------------------------------- the signal

@dataclass(frozen=True)
class BurstSignal:
    """A quiet carrier tone, with a loud `BURST_SECONDS` tone `ONSET_SECONDS` into every period."""

    rate: int

    @property
    def frame_samples(self) -> int:
        return round(self.rate * FRAME_SECONDS)

    @property
    def frames_per_period(self) -> int:
        return round(PERIOD_SECONDS / FRAME_SECONDS)

    @property
    def onset_frame(self) -> int:
        """Index, within a period, of the frame that begins with a burst's first sample."""
        return round(ONSET_SECONDS / FRAME_SECONDS)

    def period(self, burst: bool = True) -> np.ndarray:
        t = np.arange(round(self.rate * PERIOD_SECONDS)) / self.rate  # whole carrier cycles
        samples = CARRIER_AMPLITUDE * np.sin(2 * math.pi * CARRIER_HZ * t)
        if burst:
            start, length = round(self.rate * ONSET_SECONDS), round(self.rate * BURST_SECONDS)
            samples[start:start + length] += AMPLITUDE * np.sin(
                2 * math.pi * TONE_HZ * t[:length])
        return np.round(samples * 32767).astype(np.int16)

    def frames(self, burst: bool = True) -> list[np.ndarray]:
        """One period as 20 ms frames; frame i of a call is `frames()[i % frames_per_period]`.
        Without `burst`: the carrier alone (what a muted frame carries)."""
        period, size = self.period(burst), self.frame_samples
        return [period[i:i + size] for i in range(0, period.size, size)]

    def starts_burst(self, index: int) -> bool:
        return index % self.frames_per_period == self.onset_frame


# ----------------------------------------------------------------------------- the meter

class EchoMeter:
    """Finds the onsets in what comes back, and plays it out (behind a jitter buffer) for gaps."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.first_arrival: float | None = None
        self.last_arrival: float | None = None
        self.play_until = 0.0
        self.gap_seconds = 0.0
        self.gaps = 0
        self.heard: list[float] = []
        self.stopped = False
        self.dropout_seconds = 0.0
        self.dropouts = 0
        self._carrier = False              # the carrier has come back at least once
        self._silent = False               # the last block was a dropout
        self._block = round(DROPOUT_BLOCK * rate)
        self._unblocked = np.zeros(0, dtype=np.int16)
        self._received = 0                 # samples received so far
        self._last_loud = -10 ** 12        # absolute index of the last loud sample
        self._quiet = round(QUIET_SECONDS * rate)

    def feed(self, arrival: float, samples: np.ndarray) -> None:
        """`samples` (mono int16) arrived at monotonic time `arrival`."""
        if samples.size == 0 or self.stopped:
            return
        if self.first_arrival is None:
            self.first_arrival = arrival
            self.play_until = arrival + JITTER_BUFFER
        underrun = arrival - self.play_until
        if underrun > GAP_TOLERANCE:
            self.gap_seconds += underrun
            self.gaps += 1
        self.play_until = max(arrival, self.play_until) + samples.size / self.rate
        self.last_arrival = arrival
        loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > THRESHOLD)
        if loud.size:
            absolute = loud + self._received
            steps = np.diff(absolute, prepend=self._last_loud)
            for index in loud[steps > self._quiet]:
                self.heard.append(arrival + index / self.rate)
            self._last_loud = int(absolute[-1])
        self._received += samples.size
        self._find_dropouts(samples)

    def _find_dropouts(self, samples: np.ndarray) -> None:
        """10 ms blocks that lost the carrier, once it has first come back."""
        pending = np.concatenate([self._unblocked, samples])
        count = pending.size // self._block
        self._unblocked = pending[count * self._block:]
        if not count:
            return
        peaks = np.abs(pending[:count * self._block].astype(np.int32)).reshape(count, -1).max(axis=1)
        silent = peaks < DROPOUT_LEVEL
        if not self._carrier:
            if silent.all():
                return
            silent = silent[int(np.argmin(silent)):]
            self._carrier = True
        self.dropout_seconds += int(silent.sum()) * DROPOUT_BLOCK
        starts = np.diff(silent.astype(np.int8), prepend=np.int8(self._silent)) > 0
        self.dropouts += int(starts.sum())
        self._silent = bool(silent[-1])

    def stop(self) -> None:
        """The caller stopped talking: what still comes back is the tail, not measured."""
        self.stopped = True

    @property
    def span_seconds(self) -> float:
        if self.first_arrival is None or self.last_arrival is None:
            return 0.0
        return self.last_arrival - self.first_arrival


def match(spoken: list[float], heard: list[float]) -> tuple[list[float], int, int]:
    """Pair heard onsets with spoken ones, in order: (latencies, lost, spurious)."""
    latencies: list[float] = []
    lost = spurious = 0
    pending = list(spoken)
    position = 0
    for onset in heard:
        while position < len(pending) and onset - pending[position] > MAX_LATENCY:
            lost += 1
            position += 1
        if position < len(pending) and pending[position] <= onset:
            latencies.append(onset - pending[position])
            position += 1
        else:
            spurious += 1
    lost += len(pending) - position
    return latencies, lost, spurious


# ----------------------------------------------------------------------------- results

@dataclass
class CallResult:
    """One synthetic call or peer, as measured by its client."""

    setup: float | None = None          # connect (+ offer/answer, ICE, DTLS) seconds
    first_audio: float | None = None    # from the stream starting to the first audio back
    latencies: list[float] = field(default_factory=list)
    bursts: int = 0
    lost: int = 0
    spurious: int = 0
    gap_seconds: float = 0.0            # playout underruns plus dropouts
    gaps: int = 0
    dropout_seconds: float = 0.0        # of which: the carrier came back as silence
    span_seconds: float = 0.0
    error: str | None = None
    started_at: float | None = None     # monotonic: the stream began (after setup)
    stopped_at: float | None = None     # monotonic: the caller stopped speaking
    late: list[float] = field(default_factory=list, repr=False)  # how late each frame left
    turns: int = 0                      # conversation mode (turns.py): utterances spoken
    turns_lost: int = 0                 # of which no reply began in time
    turn_latencies: list[float] = field(default_factory=list)  # end of speech to reply heard


    def finish(self, spoken: list[float], meter: EchoMeter) -> None:
        self.latencies, self.lost, self.spurious = match(spoken, meter.heard)
        self.bursts = len(spoken)
        self.gap_seconds = meter.gap_seconds + meter.dropout_seconds
        self.gaps = meter.gaps + meter.dropouts
        self.dropout_seconds = meter.dropout_seconds
        self.span_seconds = meter.span_seconds

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("late")
        return data


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def summarise(calls: list[CallResult]) -> dict[str, Any]:
    """Level statistics over every call: latency percentiles in ms, losses, gap ratio."""
    latencies = [x for call in calls for x in call.latencies]
    setups = [call.setup for call in calls if call.setup is not None]
    firsts = [call.first_audio for call in calls if call.first_audio is not None]
    span = sum(call.span_seconds for call in calls)
    errors = [call.error for call in calls if call.error]
    return {
        "calls": len(calls),
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:3],
        "bursts": sum(call.bursts for call in calls),
        "lost": sum(call.lost for call in calls),
        "spurious": sum(call.spurious for call in calls),
        "latency_p50_ms": _ms(_percentile(latencies, 50)),
        "latency_p95_ms": _ms(_percentile(latencies, 95)),
        "latency_max_ms": _ms(max(latencies) if latencies else None),
        "setup_p50_ms": _ms(_percentile(setups, 50)),
        "setup_p95_ms": _ms(_percentile(setups, 95)),
        "first_audio_p50_ms": _ms(_percentile(firsts, 50)),
        "first_audio_p95_ms": _ms(_percentile(firsts, 95)),
        "gap_ratio": round(sum(call.gap_seconds for call in calls) / span, 5) if span else None,
        "gaps": sum(call.gaps for call in calls),
        "dropout_ratio": round(sum(call.dropout_seconds for call in calls) / span, 5) if span else None,
        "client_late_p99_ms": _ms(_percentile([x for call in calls for x in call.late], 99)),
        **summarise_turns(calls),
    }


def summarise_turns(calls: list[CallResult]) -> dict[str, Any]:
    """Conversation mode's statistics: turns spoken and lost, turn latency percentiles in ms."""
    latencies = [x for call in calls for x in call.turn_latencies]
    depth = max((len(call.turn_latencies) for call in calls), default=0)
    by_index = [[call.turn_latencies[k] for call in calls if len(call.turn_latencies) > k]
                for k in range(depth)]
    return {
        "turns": sum(call.turns for call in calls),
        "turns_lost": sum(call.turns_lost for call in calls),
        "turn_p50_ms": _ms(_percentile(latencies, 50)),
        "turn_p95_ms": _ms(_percentile(latencies, 95)),
        "turn_max_ms": _ms(max(latencies) if latencies else None),
        # the k-th turn of every call: a session's first turn may pay for warming its models up
        "turn_by_index_p50_ms": [_ms(_percentile(column, 50)) for column in by_index],
        "turn_by_index_max_ms": [_ms(max(column)) for column in by_index],
    }


P95_LIMIT_MS = 250.0
GAP_RATIO_LIMIT = 0.01


def verdict(summary: dict[str, Any]) -> str | None:
    """Why a level failed (None when it held): p95 < 250 ms, no loss, gaps < 1%, no errors."""
    if summary["errors"]:
        return f"{summary['errors']} calls failed"
    if not summary["bursts"]:
        return "no bursts were sent"
    if summary["lost"]:
        return f"{summary['lost']} of {summary['bursts']} bursts lost"
    p95 = summary["latency_p95_ms"]
    if p95 is None or p95 >= P95_LIMIT_MS:
        return f"p95 echo latency {p95} ms"
    gap_ratio = summary["gap_ratio"]
    if gap_ratio is None or gap_ratio >= GAP_RATIO_LIMIT:
        return f"gap ratio {gap_ratio}"
    return None
