"""Cost and delay of runner's Resampler against soxr's streaming resampler (HQ and QQ presets).

Run: .venv/bin/python benchmarks/bench_resampler.py

Cost is µs per 20 ms mono frame (best of several runs, one stream per resampler, as a session
uses it). Delay is what a listener hears: where an impulse comes out plus what the stage still
holds back, measured by streaming 20 ms frames.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import soxr

from runner.audio import Resampler, tone

PAIRS = [(48000, 16000), (16000, 48000), (8000, 16000), (16000, 8000)]
SECONDS = 2.0
REPEATS = 7

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
        start = time.perf_counter()
        for piece in pieces:
            process(piece)
        best = min(best, (time.perf_counter() - start) / len(pieces))
    return best * 1e6


def delay_ms(make: Callable[[int, int], Process], in_rate: int, out_rate: int) -> float:
    x = np.zeros(in_rate, dtype="<i2")
    x[in_rate // 2] = 30000  # an impulse at 0.5 s
    process = make(in_rate, out_rate)
    y = np.frombuffer(b"".join(map(process, frames(x.tobytes(), in_rate))), "<i2")
    peak = int(np.argmax(np.abs(y.astype(np.int32)))) / out_rate
    held = 1.0 - y.size / out_rate
    return (peak - 0.5 + held) * 1000


def main() -> None:
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


if __name__ == "__main__":
    main()
