"""Cost and delay of runner's Resampler against soxr's streaming resampler (HQ and QQ presets), and
its cost against the implementation from before its per-call overhead was cut.

Run: .venv/bin/python benchmarks/bench_resampler.py [soxr | before]   (both tables by default)

Cost is µs per 20 ms mono frame (best of several runs, one stream per resampler, as a session
uses it). Delay is what a listener hears: where an impulse comes out plus what the stage still
holds back, measured by streaming 20 ms frames.

"before" times the frozen copy of the old code that tests/test_audio.py checks the output against
byte for byte, in this process, its runs interleaved with the new code's: the machine is shared,
so absolute numbers drift between runs and only the ratios are worth comparing.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import timeit
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import ModuleType

import numpy as np
import soxr

from runner.audio import Resampler, _design, tone

PAIRS = [(48000, 16000), (16000, 48000), (8000, 16000), (16000, 8000)]
SECONDS = 2.0
REPEATS = 7

# The rate pairs phone and WebRTC sessions use, all with 20 ms frames.
FRAME_PAIRS = [
    (8000, 16000),
    (16000, 8000),
    (48000, 16000),
    (16000, 48000),
    (8000, 48000),
    (48000, 8000),
    (24000, 16000),
]
BEFORE_REPEATS = 25  # runs of SECONDS of audio per implementation; the best one counts

Process = Callable[[bytes], bytes]


def ours(in_rate: int, out_rate: int) -> Process:
    return Resampler(in_rate, out_rate).process


def soxr_stream(quality: str) -> Callable[[int, int], Process]:
    def make(in_rate: int, out_rate: int) -> Process:
        stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality=quality)
        return lambda pcm: stream.resample_chunk(np.frombuffer(pcm, "<i2")).tobytes()

    return make


def frames(pcm: bytes, in_rate: int) -> list[bytes]:
    step = in_rate // 50 * 2
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


def cost_us(make: Callable[[int, int], Process], in_rate: int, out_rate: int) -> float:
    pieces = frames(tone(440, SECONDS, in_rate).pcm, in_rate)
    best = float("inf")
    for _ in range(REPEATS):
        process = make(in_rate, out_rate)
        start = timeit.default_timer()
        for piece in pieces:
            process(piece)
        best = min(best, (timeit.default_timer() - start) / len(pieces))
    return best * 1e6


def delay_ms(make: Callable[[int, int], Process], in_rate: int, out_rate: int) -> float:
    x = np.zeros(in_rate, dtype="<i2")
    x[in_rate // 2] = 30000  # an impulse at 0.5 s
    process = make(in_rate, out_rate)
    y = np.frombuffer(b"".join(map(process, frames(x.tobytes(), in_rate))), "<i2")
    peak = int(np.argmax(np.abs(y.astype(np.int32)))) / out_rate
    held = 1.0 - y.size / out_rate
    return (peak - 0.5 + held) * 1000


def soxr_table() -> None:
    makers = {"ours": ours, "soxr HQ": soxr_stream("HQ"), "soxr QQ": soxr_stream("QQ")}
    print(f"{'pair':>14} | " + " | ".join(f"{name:>18}" for name in makers) + " | ours/HQ")
    print(f"{'':>14} | " + " | ".join(f"{'µs/20ms   delay':>18}" for _ in makers) + " |")
    for in_rate, out_rate in PAIRS:
        costs = {name: cost_us(make, in_rate, out_rate) for name, make in makers.items()}
        cells = [
            f"{costs[name]:7.1f} {delay_ms(make, in_rate, out_rate):7.2f} ms"
            for name, make in makers.items()
        ]
        ratio = costs["ours"] / costs["soxr HQ"]
        print(f"{in_rate:>5} -> {out_rate:<5} | " + " | ".join(cells) + f" | {ratio:6.2f}")


# --- before / after ------------------------------------------------------------------------------


def reference() -> ModuleType:
    """tests/test_audio.py, which holds the frozen copy of the old resampler."""
    path = Path(__file__).resolve().parents[1] / "tests" / "test_audio.py"
    spec = importlib.util.spec_from_file_location("_test_audio_reference", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def speech_like(rate: int, channels: int = 1) -> bytes:
    """Two tones and some noise: non-zero everywhere, like a voice with line noise."""
    rng = np.random.default_rng(rate)
    lanes = []
    for c in range(channels):
        x = np.frombuffer(tone(300 + 500 * c, SECONDS, rate).pcm, "<i2").astype(np.float64)
        x += 0.5 * np.frombuffer(tone(1700, SECONDS, rate).pcm, "<i2")
        x += rng.normal(0, 300, x.size)
        lanes.append(np.clip(np.rint(x), -32768, 32767).astype("<i2"))
    return np.stack(lanes, axis=1).tobytes()


def chunks(pcm: bytes, sizes: list[int], channels: int) -> list[bytes]:
    out, at = [], 0
    for size in sizes:
        out.append(pcm[at : at + 2 * channels * size])
        at += 2 * channels * size
    return [piece for piece in out if piece] or [pcm]


def best_us(makers: dict[str, Callable[[], Process]], pieces: list[bytes]) -> dict[str, float]:
    """Best-of-BEFORE_REPEATS µs per call for each maker's stream, runs interleaved (and their
    order alternated) so load from other work on the machine hits all of them alike."""
    streams = {name: make() for name, make in makers.items()}
    for process in streams.values():
        for piece in pieces[:3]:
            process(piece)  # first calls build buffers: not what a long call pays per frame
    best = dict.fromkeys(streams, math.inf)
    names = list(streams)
    for repeat in range(BEFORE_REPEATS):
        for name in names if repeat % 2 else names[::-1]:
            process = streams[name]
            timer = timeit.Timer(lambda process=process: [process(piece) for piece in pieces])
            best[name] = min(best[name], min(timer.repeat(repeat=1, number=1)) / len(pieces))
    return {name: seconds * 1e6 for name, seconds in best.items()}


def sgemm_us(in_rate: int, out_rate: int) -> float:
    """The matrix product alone of a mono 20 ms call (the same sgemm before and after): the part
    neither version can make cheaper without changing the float32 sums, hence the output."""
    common = math.gcd(in_rate, out_rate)
    bank = _design(in_rate, out_rate, out_rate // common, in_rate // common)
    periods = (bank.history + in_rate // 50 - bank.window) // bank.down + 1
    rows = np.ones((-(-periods // bank.block) + bank.rows - 1, bank.block * bank.down), np.float32)
    z = np.empty((rows.shape[0], bank.matrix.shape[1]), np.float32)
    timer = timeit.Timer(lambda: np.dot(rows, bank.matrix, z))
    return min(timer.repeat(repeat=BEFORE_REPEATS, number=200)) / 200 * 1e6


def before_table() -> None:
    old = reference()
    rng = np.random.default_rng(0)
    cases: list[tuple[str, int, int, int, list[bytes]]] = []  # label, format, calls
    for in_rate, out_rate in FRAME_PAIRS:
        pieces = frames(speech_like(in_rate), in_rate)
        cases.append((f"{in_rate:>5} -> {out_rate:<5} mono 20 ms", in_rate, out_rate, 1, pieces))
    step = 48000 // 50
    stereo = speech_like(48000, 2)
    pieces = [stereo[i : i + 4 * step] for i in range(0, len(stereo), 4 * step)]
    cases.append((f"{48000:>5} -> {16000:<5} stereo 20 ms", 48000, 16000, 2, pieces))
    silence = bytes(2 * round(SECONDS * 8000))
    cases.append((f"{8000:>5} -> {16000:<5} silence 20 ms", 8000, 16000, 1, frames(silence, 8000)))
    sizes = [int(n) for n in rng.integers(1, 400, 200)]
    random = chunks(speech_like(8000), sizes, 1)
    cases.append((f"{8000:>5} -> {16000:<5} 1-400 samples", 8000, 16000, 1, random))

    print(f"µs per call, best of {BEFORE_REPEATS} runs of each, interleaved in this process")
    print(f"{'case':>32} | {'before':>7} | {'after':>7} | before/after | sgemm alone")
    for label, *fmt, pieces in cases:
        makers = {
            "before": partial(lambda *rates: old.reference_resampler(*rates).process, *fmt),
            "after": partial(lambda *rates: Resampler(*rates).process, *fmt),
        }
        cost = best_us(makers, pieces)
        ratio = cost["before"] / cost["after"]
        line = f"{label:>32} | {cost['before']:7.2f} | {cost['after']:7.2f} | {ratio:11.2f}x"
        if "mono 20 ms" in label:
            line += f" | {sgemm_us(*fmt[:2]):11.2f}"
        print(line)


def main() -> None:
    which = sys.argv[1:] or ["soxr", "before"]
    if "soxr" in which:
        soxr_table()
    if "before" in which:
        if "soxr" in which:
            print()
        before_table()


if __name__ == "__main__":
    main()
