"""The benchmark harness's own logic (no servers): signal, G.711, echo meter, matching, report."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import loadgen, probe, report
from benchmarks.sampler import Sampler, Series
from runner.audio import ulaw_decode, ulaw_encode


def test_ulaw_matches_runner_codec() -> None:
    samples = np.arange(-32768, 32768, 7, dtype=np.int16)
    assert probe.ulaw_encode(samples) == ulaw_encode(samples.tobytes())
    codes = bytes(range(256))
    assert probe.ulaw_decode(codes).tobytes() == ulaw_decode(codes)


def test_signal_has_one_burst_per_period() -> None:
    signal = probe.BurstSignal(8000)
    frames = signal.frames()
    assert len(frames) == signal.frames_per_period == 50
    loud = [i for i, frame in enumerate(frames) if np.abs(frame).max() > probe.THRESHOLD]
    assert loud[0] == signal.onset_frame and len(loud) == 5  # 100 ms of tone
    assert signal.starts_burst(signal.onset_frame + 50) and not signal.starts_burst(1)


def echo(delay: float, rate: int = 8000, seconds: float = 3.0,
         drop: tuple[int, ...] = ()) -> tuple[list[float], probe.EchoMeter]:
    """What a perfect echo `delay` seconds late looks like to the meter, frame by frame."""
    signal = probe.BurstSignal(rate)
    frames = signal.frames()
    meter = probe.EchoMeter(rate)
    spoken = []
    for index in range(round(seconds / probe.FRAME_SECONDS)):
        sent = (index + 1) * probe.FRAME_SECONDS
        if signal.starts_burst(index):
            spoken.append(sent - probe.FRAME_SECONDS)
        if index not in drop:
            meter.feed(sent + delay, frames[index % len(frames)])
    return spoken, meter


def test_meter_measures_a_steady_echo() -> None:
    spoken, meter = echo(0.050)
    latencies, lost, spurious = probe.match(spoken, meter.heard)
    assert (lost, spurious) == (0, 0)
    assert latencies == pytest.approx([0.070] * 3, abs=0.001)  # 20 ms of packetisation + 50 ms
    assert meter.gap_seconds == 0


def test_meter_counts_gaps_and_lost_bursts() -> None:
    spoken, meter = echo(0.030, drop=tuple(range(25, 32)))  # the first burst never comes back
    latencies, lost, _ = probe.match(spoken, meter.heard)
    assert lost == 1 and len(latencies) == 2
    # 140 ms missing, the first 40 ms covered by the jitter buffer
    assert meter.gaps == 1
    assert meter.gap_seconds == pytest.approx(7 * probe.FRAME_SECONDS - probe.JITTER_BUFFER)


def test_meter_counts_silence_where_the_carrier_should_be() -> None:
    signal = probe.BurstSignal(8000)
    meter = probe.EchoMeter(8000)
    frames = signal.frames(burst=False)
    silence = np.zeros_like(frames[0])
    for index in range(50):  # carrier, 100 ms of silence instead, carrier again
        meter.feed(index * probe.FRAME_SECONDS, silence if 10 <= index < 15 else frames[index])
    assert meter.gap_seconds == 0  # nothing arrived late...
    assert meter.dropouts == 1 and meter.dropout_seconds == pytest.approx(0.1)  # ...but it was silent


def test_match_is_in_order_with_a_latency_limit() -> None:
    assert probe.match([1.0, 2.0], [1.1, 2.1]) == (pytest.approx([0.1, 0.1]), 0, 0)
    assert probe.match([1.0, 2.0], [2.05]) == (pytest.approx([0.05]), 1, 0)
    assert probe.match([1.0], [0.5, 1.2]) == (pytest.approx([0.2]), 0, 1)


def test_summary_and_verdict() -> None:
    good = probe.CallResult(setup=0.01, first_audio=0.02, latencies=[0.04, 0.05], bursts=2,
                            span_seconds=10.0, gap_seconds=0.01)
    summary = probe.summarise([good, good])
    assert summary["latency_p50_ms"] == pytest.approx(45.0)
    assert summary["gap_ratio"] == pytest.approx(0.001)
    assert probe.verdict(summary) is None
    slow = probe.CallResult(latencies=[0.3] * 4, bursts=4, span_seconds=10.0)
    assert "p95" in probe.verdict(probe.summarise([slow]))
    lossy = probe.CallResult(latencies=[0.04], bursts=2, lost=1, span_seconds=10.0)
    assert "lost" in probe.verdict(probe.summarise([lossy]))
    assert "failed" in probe.verdict(probe.summarise([probe.CallResult(error="boom")]))


def test_steady_window_needs_every_client() -> None:
    calls = [probe.CallResult(started_at=1.0, stopped_at=11.0),
             probe.CallResult(started_at=2.0, stopped_at=12.0)]
    assert loadgen.steady_window(calls) == (2.0, 11.0)
    assert loadgen.steady_window([*calls, probe.CallResult(error="x")]) is None


def test_sampler_interpolates_cpu() -> None:
    sampler = Sampler()
    sampler.series["x"] = Series(times=[0.0, 1.0, 2.0], cpu=[0.0, 0.5, 0.5], rss=[1, 3, 2])
    assert sampler.cpu_between("x", 0.5, 1.5) == pytest.approx(0.25)
    assert sampler.rss_peak("x", 0.0, 2.0) == 3


def test_report_renders_a_results_file() -> None:
    row = {"impl": "runner", "clients": 1, "run": 1, "latency_p50_ms": 30.0, "latency_p95_ms": 35.0,
           "lost": 0, "bursts": 9, "gap_ratio": 0.001, "setup_p50_ms": 3.0,
           "first_audio_p50_ms": 21.0, "cpu_per_call_pct": 0.5, "server_cpu_pct": 0.5,
           "client_cpu_pct": 2.0, "rss_peak_mb": 70.0, "rss_per_call_mb": 0.1, "verdict": None}
    results = {
        "date": "2026-01-01", "command": "python -m benchmarks.run", "machine": report.machine(),
        "reference": {"installed": False, "version": None, "note": "offline"},
        "settings": {"duration": 10.0}, "levels": {"twilio": [row]},
        "capacity": {"twilio": {"runner": {"clients": 1, "top_level_held": True}}},
        "startup": {"runner": {"help_s": 0.2, "ready_s": 0.8, "rss_idle_mb": 60.0}},
        "leak": {"runner": {"sessions": 1000, "growth_kb_per_session": 0.1}},
    }
    text = report.markdown(results)
    assert "not measured (offline)" in text and "| 1 | runner | 1 | 30.0 |" in text
    assert "≥ 1" in text
