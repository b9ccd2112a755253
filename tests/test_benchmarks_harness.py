"""The benchmark harness's own logic (no servers): signal, G.711, echo meter, matching, sampler,
the climb through levels, report."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import loadgen, probe, report, run
from benchmarks.sampler import Sampler, Series, tree_usage
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
    sampler.series["x"] = Series(times=[0.0, 1.0, 2.0], cpu=[0.0, 0.5, 0.5], rss=[1, 3, 2],
                                 own=[0.0, 0.1, 0.2])
    assert sampler.cpu_between("x", 0.5, 1.5) == pytest.approx(0.25)
    assert sampler.cpu_between("x", 0.5, 1.5, own=True) == pytest.approx(0.1)
    assert sampler.rss_peak("x", 0.0, 2.0) == 3


BURN = """
import time
end = time.process_time() + 0.3
while time.process_time() < end:
    pass
time.sleep(30)
"""


def test_tree_usage_counts_grandchildren_apart_from_the_root() -> None:
    """Like runner's workers (forked by a zygote child): a grandchild's CPU is the tree's, not the
    root's own."""
    child = subprocess.Popen([sys.executable, "-c", "import subprocess, sys; "
                              "subprocess.run([sys.executable, '-c', sys.argv[1]])", BURN])
    try:
        root = psutil.Process(os.getpid())
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            usage = tree_usage(root)
            grandchildren = psutil.Process(child.pid).children()
            if grandchildren and sum(grandchildren[0].cpu_times()[:2]) >= 0.3:
                break
            time.sleep(0.05)
        usage = tree_usage(root)
        assert usage.cpu - usage.own_cpu >= 0.3
        assert usage.own_cpu == pytest.approx(sum(root.cpu_times()[:2]), abs=0.05)
    finally:
        for process in psutil.Process(child.pid).children():
            process.kill()
        child.kill()
        child.wait()


class FakeServer:
    def __init__(self, name: str) -> None:
        self.name, self.pid = name, 0

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def alive(self) -> bool:
        return True


class FakeSampler:
    def watch(self, name: str, pid: int) -> None: ...

    def forget(self, name: str) -> None: ...


def test_climb_alternates_and_measures_cost_levels_past_a_failure(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    holds = {"runner": 100, "runner-task": 1000, "reference": 10}  # the largest N each holds
    order: list[tuple[int, str]] = []

    def measure(server: FakeServer, transport: str, clients: int, *_: Any) -> dict[str, Any]:
        order.append((clients, server.name))
        return {"verdict": None if clients <= holds[server.name] else "p95 echo latency"}

    monkeypatch.setattr(run.servers, "make_server", lambda impl, *_, **__: FakeServer(impl))
    monkeypatch.setattr(run, "measure", measure)
    monkeypatch.setattr(run, "_progress", lambda *_: None)
    impls = ["runner", "runner-task", "reference"]
    rows, capacity = run.climb("twilio", [1, 10, 25, 50, 100, 200], impls,
                               argparse.Namespace(runs=2, duration=1.0), FakeSampler(),
                               tmp_path, keep_up_to=50)
    assert order[:6] == [(1, "runner"), (1, "runner-task"), (1, "reference"),
                         (1, "reference"), (1, "runner-task"), (1, "runner")]
    # past its capacity the reference still runs the cost levels (once each: it fails the first)
    assert [(n, impl) for n, impl in order if impl == "reference"][-3:] == [(10, "reference"),
                                                                          (25, "reference"),
                                                                          (50, "reference")]
    assert (100, "reference") not in order and (200, "runner") in order
    assert {impl: value["clients"] for impl, value in capacity.items()} == holds | {
        "runner-task": 200}
    assert capacity["runner-task"]["top_level_held"] and not capacity["runner"]["top_level_held"]
    assert len(rows) == len(order)


def test_impls_option() -> None:
    assert run.parse_args([]).impls == ["runner", "runner-task", "reference"]
    assert run.parse_args(["--impls", "reference,runner-task"]).impls == ["runner-task", "reference"]
    with pytest.raises(SystemExit):
        run.parse_args(["--impls", "runner,pipecat"])


def level_row(impl: str, clients: int, p50: float, cpu: float, share: float = 100.0,
              run_number: int = 1) -> dict[str, Any]:
    return {"impl": impl, "clients": clients, "run": run_number, "latency_p50_ms": p50,
            "latency_p95_ms": p50 + 5, "lost": 0, "bursts": 9, "gap_ratio": 0.001,
            "setup_p50_ms": 3.0, "first_audio_p50_ms": 21.0, "cpu_per_call_pct": cpu,
            "server_cpu_pct": cpu * clients, "listener_cpu_pct": cpu * clients * share / 100,
            "listener_share_pct": share, "client_cpu_pct": 2.0, "rss_peak_mb": 70.0,
            "rss_per_call_mb": 0.1, "verdict": None}


def results_of(levels: dict[str, list[dict[str, Any]]], capacity: dict[str, Any],
               reference: bool = True) -> dict[str, Any]:
    return {
        "date": "2026-01-01", "command": "python -m benchmarks.run", "machine": report.machine(),
        "reference": {"installed": True, "version": "1.14.0", "note": None} if reference else
                     {"installed": False, "version": None, "note": "offline"},
        "settings": {"duration": 10.0, "measure_up_to": 50}, "levels": levels,
        "capacity": capacity,
        "startup": {"runner": {"help_s": 0.2, "ready_s": 0.8, "rss_idle_mb": 60.0}},
        "leak": {"runner": {"sessions": 1000, "growth_kb_per_session": 0.1}},
    }


def test_report_renders_a_runner_only_results_file() -> None:
    results = results_of({"twilio": [level_row("runner", 1, 30.0, 0.5)]},
                         {"twilio": {"runner": {"clients": 1, "top_level_held": True}}},
                         reference=False)
    text = report.markdown(results)
    assert "not measured (offline)" in text and "| 1 | runner | 1 | 30.0 |" in text
    assert "≥ 1" in text
    assert "| twilio: echo latency p50, 1 call (default) | 30 ms | – | – | ≤ 30 ms | yes |" in text


def test_report_compares_both_modes_with_the_reference() -> None:
    twilio = []
    for clients, (ours, task, theirs) in {1: (25.0, 35.0, 200.0), 10: (0.9, 0.5, 1.0),
                                          20: (0.8, 0.4, 0.9), 50: (1.2, 0.4, 1.0)}.items():
        # in the order they ran: the reference first in this run
        twilio += [level_row("reference", clients, 200.0, theirs),
                   level_row("runner-task", clients, task if clients == 1 else 30.0, task),
                   level_row("runner", clients, ours if clients == 1 else 25.0, ours, share=4.0)]
    capacity = {"twilio": {"runner": {"clients": 50, "top_level_held": True},
                           "runner-task": {"clients": 50, "top_level_held": True},
                           "reference": {"clients": 10, "top_level_held": False}}}
    metrics = {m.key: m for m in report.comparison(results_of({"twilio": twilio}, capacity))}
    assert metrics["twilio:cpu@10"].ratio_text("runner") == "0.9x"
    assert metrics["twilio:cpu@10"].ratio_text("runner-task") == "0.5x"
    assert metrics["twilio:capacity"].ratio_text("runner") == "≥ 5.0x"
    assert metrics["twilio:share@20"].ratio_text("runner") == "–"  # no ratio for a share
    met = {row[0]: row[1:] for row in report.targets(list(metrics.values()))}
    assert met["twilio: CPU per call, N=10 (default)"] == ["0.90 %", "1.00 %", "0.9x", "≤ 1x", "yes"]
    assert met["twilio: CPU per call, N=50 (default)"][-2:] == ["≤ 1x", "no"]
    assert met["twilio: listening process's share of the server's CPU, N=20 (default)"][0] == "4.00 %"
    assert met["twilio: listening process's share of the server's CPU, N=20 (default)"][-1] == "yes"
    assert met["twilio: capacity (default)"][:3] == ["≥ 50", "10", "≥ 5.0x"]
    assert met["twilio: capacity (default)"][-1] == "yes"
    assert met["twilio: echo latency p50, 1 call (task)"][-1] == "no"
    assert met["twilio: CPU per call, N=10 (task)"][-1] == "yes"
    assert met["webrtc: capacity (default)"][-1] == "–"  # not measured
    text = report.markdown(results_of({"twilio": twilio}, capacity))
    assert ("| metric | runner | runner-task | reference | runner / reference "
            "| runner-task / reference |") in text
    levels = [line.split(" | ")[1] for line in text.splitlines() if line.startswith("| 1 | ")]
    assert levels == ["runner", "runner-task", "reference"]  # default mode first


def test_met_with_bounds() -> None:
    assert report._met(2.5, "≥", False, 3.0) == "–"   # at least 2.5x: maybe 3x
    assert report._met(3.5, "≥", False, 3.0) == "yes"
    assert report._met(2.5, "≤", False, 3.0) == "no"  # at most 2.5x
    assert report._met(0.9, "=", True, 1.0) == "yes"
    assert report._met(None, "=", True, 1.0) == "–"


# ----------------------------------------------------------------------------- the real-bot benchmark

def test_reply_start_is_the_first_loud_sample_after_the_speech_ended() -> None:
    from benchmarks import turns

    loud = np.array([0, 80, 160])
    assert turns.reply_start(10.0, loud, 8000, after=9.0) == 10.0
    assert turns.reply_start(10.0, loud, 8000, after=10.005) == pytest.approx(10.01)  # a tail before
    assert turns.reply_start(10.0, loud, 8000, after=11.0) is None


def test_reply_meter_times_the_reply_of_the_current_turn_only() -> None:
    from benchmarks import turns

    meter = turns.ReplyMeter(8000)
    voice = np.full(160, 5000, dtype=np.int16)
    meter.feed(1.0, voice)                   # before any turn: only "last loud" moves
    assert meter.reply_at is None and meter.last_loud == pytest.approx(1.0 + 159 / 8000)
    meter.expect(2.0)
    meter.feed(2.5, np.zeros(160, dtype=np.int16))
    assert meter.reply_at is None
    meter.feed(2.6, np.concatenate([np.zeros(80, dtype=np.int16), voice[:80]]))
    assert meter.reply_at == pytest.approx(2.61)
    meter.feed(2.7, voice)                   # later audio of the same reply changes nothing
    assert meter.reply_at == pytest.approx(2.61)


def test_the_utterance_is_cut_to_its_speech_in_whole_frames() -> None:
    from benchmarks import turns

    for rate in (8000, 16000, 48000):
        frames = turns.utterance(rate)
        assert all(frame.size == rate // 50 for frame in frames)
        assert frames[0][0] != 0 and np.abs(frames[-1]).max() > 0
        assert 1.5 < len(frames) * 0.02 < 3.0


def test_realbot_judge_and_ratio() -> None:
    from benchmarks import realbot

    level = {**probe.summarise([]), "turns": 8, "turns_lost": 0, "turn_p95_ms": 600.0}
    assert realbot.judge(level, 400.0, 1.5) is None
    assert "p95" in (realbot.judge(level, 390.0, 1.5) or "")
    assert "lost" in (realbot.judge({**level, "turns_lost": 1}, 400.0, 1.5) or "")
    assert "calls failed" in (realbot.judge({**level, "errors": 1}, 400.0, 1.5) or "")
    assert realbot.ratio({"runner": 3.0, "reference": 2.0}) == 1.5
    assert realbot.ratio({"runner": 3.0, "reference": None}) is None
