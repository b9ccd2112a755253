"""`make bench-realbot`: a real voice bot's ears (Silero VAD + Smart Turn v3, benchmarks/realbot_bot.py)
served by runner (serve's default, process isolation) and by the reference, over Twilio and WebRTC.

Callers hold a conversation (turns.py): they speak an utterance, wait for the bot to play the turn
back, and speak again. Per server and transport: turn latency at one session (end of the caller's
speech to the first reply audio at the caller), CPU per session at a fixed N (`--cpu-at`, the
process tree's CPU over the window every caller was talking), and capacity: N climbs while the p95
turn latency stays within `--limit` (1.5x) of that server's own one-session p95 and no turn is
lost. The servers take turns level by level (the order reversed each level), both staying up.
Results go to benchmarks/results/<date>-realbot.json and, with --readme, into benchmarks/README.md.

Run (WebRTC needs the loopback-only namespace): scripts/isolated .venv/bin/python -m benchmarks.realbot
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import report, servers
from benchmarks.run import RESULTS, failed_run, measure, runner_version, started
from benchmarks.sampler import Sampler

IMPLS = ("runner", "reference")
#: The issue's targets: label, metric, at most (else at least), bound on runner/reference.
TARGETS = (("capacity", "capacity", False, 1.8), ("turn latency p50, 1 session", "p50", True, 1.0),
           ("CPU per session", "cpu", True, 1.0))
START, END = "<!-- realbot:start -->", "<!-- realbot:end -->"
TURN_SECONDS = 7.0  # a turn's speech, reply and pauses, for the load generator's time-out


def _levels(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--twilio", type=_levels, default=[4, 8, 12, 16, 24],
                        help="telephony levels above one session (concurrent callers)")
    parser.add_argument("--webrtc", type=_levels, default=[2, 4, 6, 8], help="WebRTC levels")
    parser.add_argument("--turns", type=int, default=4, help="turns per session in the levels")
    parser.add_argument("--one-turns", type=int, default=8, help="turns of the one-session run")
    parser.add_argument("--cpu-at", type=int, default=4,
                        help="N at which CPU per session is compared (run by every server)")
    parser.add_argument("--limit", type=float, default=1.5,
                        help="a level holds while p95 turn latency <= this x the one-session p95")
    parser.add_argument("--ramp", type=float, default=6.0,
                        help="seconds over which a level's callers start (about one turn, so "
                        "turns do not all end at once)")
    parser.add_argument("--impls", default=",".join(IMPLS), help="servers, comma separated")
    parser.add_argument("--out", type=Path, default=None,
                        help="results JSON (default benchmarks/results/<date>-realbot.json)")
    parser.add_argument("--readme", action="store_true", help="write the tables into benchmarks/README.md")
    parser.add_argument("--logs", type=Path, default=None, help="server logs (default: a temp dir)")
    return parser.parse_args(argv)


def judge(summary: dict[str, Any], one_p95: float | None, limit: float) -> str | None:
    """Why a level failed (None: held): a call failed, a turn lost, p95 over `limit` x one
    session's."""
    if summary["errors"]:
        return f"{summary['errors']} calls failed"
    if not summary["turns"]:
        return "no turn was spoken"
    if summary["turns_lost"]:
        return f"{summary['turns_lost']} of {summary['turns']} turns lost"
    p95 = summary["turn_p95_ms"]
    if one_p95 is None or p95 is None or p95 > limit * one_p95:
        return f"p95 turn latency {p95} ms > {limit} x {one_p95} ms"
    return None


def _run(server: servers.Server, transport: str, clients: int, turns: int, ramp: float,
         judged: Any, sampler: Sampler, log_dir: Path) -> dict[str, Any]:
    load_args = ("--turns", str(turns), "--ramp", str(ramp if clients > 1 else 0))
    try:
        measured = measure(server, transport, clients, turns * TURN_SECONDS + ramp, sampler,
                           log_dir, load_args, judged)
    except (RuntimeError, ValueError, subprocess.TimeoutExpired) as error:
        measured = failed_run(str(error))
    row = {"impl": server.name, "clients": clients, "run": 1, "turns_per_session": turns,
           **measured}
    print(f"{transport:>6} N={clients:<3} {server.name:<9}: turn p50 {row.get('turn_p50_ms')} "
          f"p95 {row.get('turn_p95_ms')} ms lost {row.get('turns_lost')}/{row.get('turns')} "
          f"cpu/session {row['cpu_per_call_pct']}% server {row['server_cpu_pct']}% "
          f"client {row['client_cpu_pct']}% -> {row['verdict'] or 'held'}", file=sys.stderr,
          flush=True)
    return row


def climb(transport: str, levels: list[int], impls: list[str], args: argparse.Namespace,
          sampler: Sampler, log_dir: Path) -> dict[str, Any]:
    """One session for each server, then the levels while it holds (and `--cpu-at` always)."""
    rows: list[dict[str, Any]] = []
    one: dict[str, Any] = {}
    capacity = {impl: {"clients": 0, "top_level_held": False} for impl in impls}
    failed: set[str] = set()
    with started(transport, impls, sampler, log_dir, real_bot=True) as running:
        for impl in impls:
            row = _run(running[impl], transport, 1, args.one_turns, 0,
                       lambda s: judge(s, s["turn_p95_ms"], args.limit), sampler, log_dir)
            rows.append(row)
            one[impl] = row["turn_p95_ms"]
            if row["verdict"] is None:
                capacity[impl] = {"clients": 1, "top_level_held": not levels}
            else:
                failed.add(impl)
        for index, clients in enumerate(levels):
            order = impls if index % 2 else impls[::-1]
            for impl in order:
                if not running[impl].alive() or (impl in failed and clients != args.cpu_at):
                    continue
                row = _run(running[impl], transport, clients, args.turns, args.ramp,
                           lambda s, impl=impl: judge(s, one[impl], args.limit), sampler, log_dir)
                rows.append(row)
                if row["verdict"] is not None:
                    failed.add(impl)
                elif impl not in failed:
                    capacity[impl] = {"clients": clients, "top_level_held": clients == levels[-1]}
    return {"rows": rows, "capacity": capacity, "one_session_p95_ms": one}


# ----------------------------------------------------------------------------- the report

def headline(results: dict[str, Any], transport: str) -> dict[str, dict[str, float | None]]:
    """Per server: one session's turn p50/p95, CPU per session at --cpu-at, capacity."""
    data = results["transports"][transport]
    cpu_at = results["settings"]["cpu_at"]
    out: dict[str, dict[str, float | None]] = {}
    for impl in results["impls"]:
        mine = [row for row in data["rows"] if row["impl"] == impl]
        one = next((row for row in mine if row["clients"] == 1), {})
        at = next((row for row in mine if row["clients"] == cpu_at), {})
        out[impl] = {"p50": one.get("turn_p50_ms"), "p95": one.get("turn_p95_ms"),
                     "cpu": at.get("cpu_per_call_pct"),
                     "capacity": data["capacity"][impl]["clients"] or None}
    return out


def ratio(values: dict[str, float | None]) -> float | None:
    """runner / reference, when both were measured."""
    mine, theirs = values.get("runner"), values.get("reference")
    return round(mine / theirs, 2) if mine is not None and theirs else None


def markdown(results: dict[str, Any]) -> str:
    """The summary with ratios and targets, then every level, transport by transport."""
    cpu_at = results["settings"]["cpu_at"]
    parts = [f"{results['date']}, {results['machine']['cores']} cores ({results['machine']['cpu']}), "
             f"load average {results['machine']['load_average']} at the start, "
             f"{results['machine'].get('load_average_end')} at the end; runner "
             f"{results['runner']['commit']}, pipecat-ai {results['reference']['version']}. "
             f"`{results['command']}`."]
    summary, levels = [], []
    for transport, data in results["transports"].items():
        values = headline(results, transport)
        capacity = data["capacity"]
        for impl in results["impls"]:
            top = "≥ " if capacity[impl]["top_level_held"] else ""
            summary.append([transport, impl, report._cell(values[impl]["p50"]),
                            report._cell(values[impl]["p95"]), report._cell(values[impl]["cpu"], 2),
                            f"{top}{capacity[impl]['clients']}"])
        if len(results["impls"]) == 2:
            ratios = {key: ratio({impl: values[impl][key] for impl in results["impls"]})
                      for key in ("p50", "p95", "cpu", "capacity")}
            summary.append([transport, "**runner / reference**",
                            *(report._cell(ratios[k], 2) + "x" if ratios[k] is not None else "–"
                              for k in ("p50", "p95", "cpu", "capacity"))])
            for label, key, at_most, bound in TARGETS:
                value = ratios[key]
                met = "–" if value is None else (
                    "met" if (value <= bound if at_most else value >= bound) else "**missed**")
                levels.append([transport, label, f"{'≤' if at_most else '≥'} {bound}x",
                               "–" if value is None else f"{value:.2f}x", met])
    parts.append(report._table(["transport", "server", "turn p50 ms (1 session)",
                                "turn p95 ms (1 session)", f"CPU/session % (N={cpu_at})",
                                "capacity (sessions)"], summary))
    if levels:
        parts.append(report._table(["transport", "target", "bound", "runner / reference", ""],
                                   levels))
    for transport, data in results["transports"].items():
        rows = sorted(data["rows"], key=lambda r: (r["clients"], IMPLS.index(r["impl"])))
        body = [[str(r["clients"]), r["impl"], f"{r['turns'] - r['turns_lost']}/{r['turns']}",
                 report._cell(r["turn_p50_ms"]), report._cell(r["turn_p95_ms"]),
                 report._cell(r["turn_max_ms"]), report._cell(r["cpu_per_call_pct"], 2),
                 report._cell(r["server_cpu_pct"]), report._cell(r["client_cpu_pct"]),
                 report._cell(r["rss_peak_mb"]), r["verdict"] or "held"] for r in rows]
        parts.append(f"**{report.TRANSPORT_TITLES[transport]}**, levels:\n\n" + report._table(
            ["N", "server", "turns answered", "turn p50 ms", "turn p95 ms", "turn max ms",
             "CPU/session %", "server CPU %", "client CPU %", "PSS MB", "verdict"], body))
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on the way out
    wanted = [impl for impl in IMPLS if impl in args.impls.split(",")]
    impls = [impl for impl in wanted if impl != "reference" or servers.reference_available()]
    date = datetime.date.today().isoformat()
    log_dir = args.logs or Path(tempfile.mkdtemp(prefix="bench-realbot-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "date": date,
        "command": "python -m benchmarks.realbot " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "machine": report.machine(), "runner": runner_version(),
        "reference": {"installed": "reference" in impls,
                      "version": servers.pipecat_version() if "reference" in impls else None},
        "bot": servers.REAL_BOT, "impls": impls,
        "settings": {"turns": args.turns, "one_turns": args.one_turns, "cpu_at": args.cpu_at,
                     "limit": args.limit, "ramp": args.ramp,
                     "levels": {"twilio": args.twilio, "webrtc": args.webrtc}},
        "transports": {},
    }
    with Sampler() as sampler:
        for transport in ("twilio", "webrtc"):
            levels = sorted(set(getattr(args, transport)) - {1})
            if getattr(args, transport):
                results["transports"][transport] = climb(transport, levels, impls, args, sampler,
                                                         log_dir)
    results["machine"]["load_average_end"] = report.machine()["load_average"]
    out = args.out or RESULTS / f"{date}-realbot.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"results: {out}; server logs: {log_dir}", file=sys.stderr)
    text = markdown(results)
    print(text)
    if args.readme:
        report.write_block(text, START, END)
    return results


if __name__ == "__main__":
    main()
