"""`make bench`: runner in both isolation modes against the reference, level by level, alternating,
then start-up and memory.

The implementations (servers.IMPLEMENTATIONS: "runner", serve's default process isolation;
"runner-task"; "reference" when installed; `--impls` picks some) stay up side by side for each
transport; each level is run `--runs` times, the implementations taking turns (the order reversed
each run). An implementation keeps climbing while it holds every run of a level (p95 echo latency
< 250 ms, no lost burst, gap ratio < 1%, no failed call); its capacity is the largest level it
held before the first it failed. Telephony levels up to `--measure-up-to` are run by every
implementation even after it failed one, so the CPU-per-call ratios at N=10 and N=50 exist.
Results go to benchmarks/results/<date>.json and, with --readme, into benchmarks/README.md.

Run (as root, WebRTC needs the loopback-only namespace): scripts/isolated .venv/bin/python -m benchmarks.run
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks import report, servers, startup
from benchmarks.probe import summarise, verdict
from benchmarks.sampler import Sampler

RESULTS = Path(__file__).resolve().parent / "results"
MB = 1024 * 1024
LOADERS = {"twilio": "benchmarks.twilio_load", "webrtc": "benchmarks.webrtc_load",
           "websocket": "benchmarks.ws_load"}
IDLE_CPU = 0.05          # a server under this share of a core is idle
IDLE_WAIT = 30.0
SETTLE = 1.0


def _levels(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _impls(text: str) -> list[str]:
    chosen = [x.strip() for x in text.split(",") if x.strip()]
    unknown = set(chosen) - set(servers.IMPLEMENTATIONS)
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(servers.IMPLEMENTATIONS)}")
    return [impl for impl in servers.IMPLEMENTATIONS if impl in chosen]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--twilio", type=_levels, default=[1, 10, 20, 25, 50, 100, 200, 400],
                        help="telephony levels (concurrent callers), comma separated")
    parser.add_argument("--webrtc", type=_levels, default=[1, 5, 10, 15, 20],
                        help="WebRTC levels")
    parser.add_argument("--websocket", type=_levels, default=[],
                        help="plain WebSocket levels (runner only)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per client per run")
    parser.add_argument("--runs", type=int, default=2, help="runs per level (all must hold)")
    parser.add_argument("--impls", type=_impls, default=list(servers.IMPLEMENTATIONS),
                        help="implementations to measure, comma separated (default: "
                        f"{','.join(servers.IMPLEMENTATIONS)}; the reference only when installed)")
    parser.add_argument("--no-reference", action="store_true", help="measure runner only")
    parser.add_argument("--measure-up-to", type=int, default=50,
                        help="telephony levels every implementation runs even after it failed a "
                        "lower one (capacity still ends at the first level failed)")
    parser.add_argument("--no-startup", action="store_true", help="skip --help/ready/RSS idle")
    parser.add_argument("--leak-sessions", type=int, default=1000,
                        help="sequential calls for the leak check of each runner mode (0: skip)")
    parser.add_argument("--leak-reference-sessions", type=int, default=200,
                        help="sequential calls for the reference's leak check (0: skip)")
    parser.add_argument("--out", type=Path, default=None,
                        help="results JSON (default benchmarks/results/<date>.json)")
    parser.add_argument("--readme", action="store_true", help="write the tables into benchmarks/README.md")
    parser.add_argument("--logs", type=Path, default=None, help="server logs (default: a temp dir)")
    return parser.parse_args(argv)


def wait_idle(server: servers.Server, sampler: Sampler) -> None:
    """Until the server's CPU falls under IDLE_CPU (the previous run's sessions have ended)."""
    deadline = time.monotonic() + IDLE_WAIT
    while time.monotonic() < deadline and sampler.cpu_rate(server.name, 0.5) > IDLE_CPU:
        pass
    time.sleep(SETTLE)


def measure(server: servers.Server, transport: str, clients: int, duration: float,
            sampler: Sampler, log_dir: Path, load_args: tuple[str, ...] = (),
            judge: Callable[[dict[str, Any]], str | None] = verdict) -> dict[str, Any]:
    """One run of one level against one server: the load report plus server and client cost.

    `load_args` go to the load generator (the real-bot benchmark's `--turns`), `judge` says why
    the level failed (None: held)."""
    wait_idle(server, sampler)
    rss_before = sampler.rss_now(server.name)
    argv = [sys.executable, "-m", LOADERS[transport], "--url", server.url(transport),
            "--clients", str(clients), "--duration", str(duration), *load_args]
    with open(log_dir / f"client-{transport}.log", "ab") as errors:
        began = time.monotonic()
        process = subprocess.Popen(argv, cwd=servers.ROOT, stdout=subprocess.PIPE, stderr=errors)
        sampler.watch("client", process.pid)
        out, _ = process.communicate(timeout=duration + 180)
        ended = time.monotonic()
    sampler.forget("client")
    if process.returncode != 0 or not out.strip():
        raise RuntimeError(f"the {transport} load generator failed ({process.returncode}); "
                           f"see {log_dir / f'client-{transport}.log'}")
    data = json.loads(out)
    summary = data["summary"]
    window = data["window"] or [began, ended]
    span = window[1] - window[0]
    cpu = sampler.cpu_between(server.name, window[0], window[1])
    listener = sampler.cpu_between(server.name, window[0], window[1], own=True)
    rss_peak = sampler.rss_peak(server.name, began, ended)
    return {
        **summary,
        "verdict": judge(summary) if server.alive() else "server died",
        "window_s": round(span, 2),
        "server_cpu_pct": round(100 * cpu / span, 1),
        "cpu_per_call_pct": round(100 * cpu / span / clients, 3),
        "listener_cpu_pct": round(100 * listener / span, 2),
        "listener_share_pct": round(100 * listener / cpu, 1) if cpu > 0 else None,
        "client_cpu_pct": round(100 * data["client_cpu_seconds"] / data["client_wall_seconds"], 1),
        "rss_before_mb": round(rss_before / MB, 1),
        "rss_peak_mb": round(rss_peak / MB, 1),
        "rss_per_call_mb": round(max(rss_peak - rss_before, 0) / MB / clients, 3),
    }


def failed_run(reason: str) -> dict[str, Any]:
    """The row of a run the load generator could not finish."""
    return {**summarise([]), "errors": 1, "error_samples": [reason], "verdict": reason,
            "window_s": None, "server_cpu_pct": None, "cpu_per_call_pct": None,
            "listener_cpu_pct": None, "listener_share_pct": None, "client_cpu_pct": None,
            "rss_before_mb": None, "rss_peak_mb": None, "rss_per_call_mb": None}


@contextlib.contextmanager
def started(transport: str, impls: list[str], sampler: Sampler, log_dir: Path,
            real_bot: bool = False) -> Iterator[dict[str, servers.Server]]:
    """The servers of `impls` for `transport`, started and watched; stopped on the way out."""
    prefix = "realbot-" if real_bot else ""
    running = {impl: servers.make_server(impl, transport, log_dir / f"{prefix}{impl}-{transport}.log",
                                         real_bot=real_bot) for impl in impls}
    try:
        for server in running.values():
            server.start()
            sampler.watch(server.name, server.pid)
        yield running
    finally:
        for server in running.values():
            sampler.forget(server.name)
            server.stop()


def climb(transport: str, levels: list[int], impls: list[str], args: argparse.Namespace,
          sampler: Sampler, log_dir: Path, keep_up_to: int = 0,
          ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every level in turn while an implementation holds (and, failed or not, every level up to
    `keep_up_to`); returns the rows and the capacities."""
    rows: list[dict[str, Any]] = []
    capacity = {impl: {"clients": 0, "top_level_held": False} for impl in impls}
    failed: set[str] = set()
    with started(transport, impls, sampler, log_dir) as running:
        for clients in levels:
            active = [impl for impl in impls if running[impl].alive()
                      and (impl not in failed or clients <= keep_up_to)]
            if not active:
                break
            held = dict.fromkeys(active, True)
            for run in range(args.runs):
                for impl in active if run % 2 == 0 else active[::-1]:
                    if not held[impl] or not running[impl].alive():
                        held[impl] = False
                        continue  # it already failed this level: no need for another run
                    try:
                        measured = measure(running[impl], transport, clients, args.duration,
                                           sampler, log_dir)
                    except (RuntimeError, ValueError, subprocess.TimeoutExpired) as error:
                        measured = failed_run(str(error))
                    row = {"impl": impl, "clients": clients, "run": run + 1, **measured}
                    rows.append(row)
                    _progress(transport, row)
                    held[impl] = held[impl] and row["verdict"] is None
            for impl in active:
                if not held[impl]:
                    failed.add(impl)
                elif impl not in failed:
                    capacity[impl] = {"clients": clients, "top_level_held": clients == levels[-1]}
    return rows, capacity


def _progress(transport: str, row: dict[str, Any]) -> None:
    print(f"{transport:>9} N={row['clients']:<4} {row['impl']:<11} run {row['run']}: "
          f"p50 {row['latency_p50_ms']} ms p95 {row['latency_p95_ms']} ms "
          f"lost {row['lost']}/{row['bursts']} gaps {row['gap_ratio']} "
          f"cpu/call {row['cpu_per_call_pct']}% server {row['server_cpu_pct']}% "
          f"listener {row['listener_cpu_pct']}% "
          f"client {row['client_cpu_pct']}% -> {row['verdict'] or 'held'}", file=sys.stderr,
          flush=True)


def measure_startup(impls: list[str], args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for impl in impls:
        try:
            results[impl] = {"help_s": round(startup.help_seconds(startup.help_argv(impl)), 3),
                             **startup.ready_and_idle(impl, log_dir=log_dir)}
        except (RuntimeError, OSError, subprocess.SubprocessError) as error:
            results[impl] = {"error": str(error)}  # the levels measured are kept all the same
        print(f"startup {impl}: {results[impl]}", file=sys.stderr, flush=True)
    return results


def measure_leaks(impls: list[str], args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for impl in impls:
        count = args.leak_reference_sessions if impl == "reference" else args.leak_sessions
        if count:
            try:
                results[impl] = startup.leak_check(impl, count, log_dir)
            except (RuntimeError, OSError) as error:
                results[impl] = {"sessions": count, "answered": 0, "errors": [str(error)]}
            print(f"leak {impl}: {results[impl]}", file=sys.stderr, flush=True)
    return results


def runner_version() -> dict[str, Any]:
    """Which runner was measured: its version and, in a git checkout, the commit (and whether the
    work tree had changes)."""
    import runner

    def git(*command: str) -> str | None:
        done = subprocess.run(["git", *command], cwd=servers.ROOT, capture_output=True, text=True,
                              check=False)
        return done.stdout.strip() if done.returncode == 0 else None

    return {"version": runner.__version__, "commit": git("rev-parse", "--short", "HEAD"),
            "changed": bool(git("status", "--porcelain", "runner"))}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on the way out
    date = datetime.date.today().isoformat()
    wanted = "reference" in args.impls and not args.no_reference
    installed = wanted and servers.reference_available()
    impls = [impl for impl in args.impls if impl != "reference" or installed]
    note = ("not requested" if not wanted else
            "benchmarks/.ref-venv missing: benchmarks/reference/install.sh failed (offline?)")
    log_dir = args.logs or Path(tempfile.mkdtemp(prefix="bench-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "date": date,
        "command": "python -m benchmarks.run " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "machine": report.machine(),
        "runner": runner_version(),
        "reference": {"installed": installed, "version": servers.pipecat_version() if installed
                      else None, "note": None if installed else note},
        "impls": impls,
        "settings": {"duration": args.duration, "runs": args.runs,
                     "measure_up_to": args.measure_up_to,
                     "levels": {"twilio": args.twilio, "webrtc": args.webrtc,
                                "websocket": args.websocket}},
        "levels": {}, "capacity": {}, "startup": {}, "leak": {},
    }
    with Sampler() as sampler:
        for transport in ("twilio", "webrtc", "websocket"):
            levels = getattr(args, transport)
            if not levels:
                continue
            chosen = [impl for impl in impls
                      if impl in servers.RUNNERS or transport in servers.REF_TRANSPORTS]
            keep_up_to = args.measure_up_to if transport == "twilio" else 0
            rows, capacity = climb(transport, levels, chosen, args, sampler, log_dir, keep_up_to)
            results["levels"][transport] = rows
            results["capacity"][transport] = capacity
    if not args.no_startup:
        results["startup"] = measure_startup(impls, args, log_dir)
    results["leak"] = measure_leaks(impls, args, log_dir)
    results["machine"]["load_average_end"] = report.machine()["load_average"]
    out = args.out or RESULTS / f"{date}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"results: {out}; server logs: {log_dir}", file=sys.stderr)
    print(report.markdown(results))
    if args.readme:
        report.update_readme(results)
    return results


if __name__ == "__main__":
    main()
