"""The machine description, the headline numbers, the issue's targets, and the tables written into
benchmarks/README.md: runner's default mode (process isolation), runner-task and the reference
side by side, with the ratios of each runner mode to the reference."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parent / "README.md"
START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"
TRANSPORT_TITLES = {"twilio": "Telephony (Twilio protocol on /ws)", "webrtc": "WebRTC (aiortc peers)",
                    "websocket": "Plain WebSocket (runner only)"}


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = None
    with contextlib.suppress(ValueError, OSError):
        memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return {
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "memory_gb": memory,
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


# ----------------------------------------------------------------------------- headline numbers

IMPLS = ("runner", "runner-task", "reference")  # servers.IMPLEMENTATIONS, default mode first
RUNNERS = IMPLS[:2]
#: Telephony levels whose CPU per call is compared (every implementation runs them, see run.py);
#: other transports compare at the largest level every implementation held.
COST_LEVELS = {"twilio": (10, 20, 50)}
SHARE_LEVEL = 20  # calls at which the listening process's share of the tree's CPU is read
#: The issue's targets: label, metric key, implementation, at most (else at least), bound, unit
#: ("x": the ratio to the reference, else the value).
TARGETS: tuple[tuple[str, str, str, bool, float, str], ...] = (
    ("twilio: CPU per call, N=10 (default)", "twilio:cpu@10", "runner", True, 1.0, "x"),
    ("twilio: CPU per call, N=50 (default)", "twilio:cpu@50", "runner", True, 1.0, "x"),
    (f"twilio: listening process's share of the server's CPU, N={SHARE_LEVEL} (default)",
     f"twilio:share@{SHARE_LEVEL}", "runner", True, 5.0, "%"),
    ("twilio: capacity (default)", "twilio:capacity", "runner", False, 3.0, "x"),
    ("twilio: echo latency p50, 1 call (default)", "twilio:p50", "runner", True, 30.0, "ms"),
    ("twilio: echo latency p50, 1 call (task)", "twilio:p50", "runner-task", True, 30.0, "ms"),
    ("twilio: CPU per call, N=10 (task)", "twilio:cpu@10", "runner-task", True, 0.6, "x"),
    ("webrtc: echo latency p50, 1 session (default)", "webrtc:p50", "runner", True, 0.6, "x"),
    ("webrtc: CPU per session (default)", "webrtc:cpu", "runner", True, 0.8, "x"),
    ("webrtc: capacity (default)", "webrtc:capacity", "runner", False, 2.0, "x"),
    ("`--help` wall time", "help_s", "runner", True, 0.3, "s"),
    ("spawn to ready (default)", "ready_s", "runner", True, 1.0, "s"),
)


@dataclass
class Metric:
    """One measure of every implementation: the values, and how they are shown."""

    key: str
    label: str
    unit: str
    values: dict[str, float | None]
    shown: dict[str, str] = field(default_factory=dict)  # text instead of the formatted value
    open_ended: frozenset[str] = frozenset()  # the value is a lower bound (top level held)
    ratios: bool = True  # whether a ratio to the reference means anything

    def text(self, impl: str) -> str:
        return self.shown.get(impl) or _fmt(self.values.get(impl), self.unit)

    def ratio(self, impl: str) -> tuple[float | None, str]:
        """(ours / reference, how exact: "=", "≥" a lower bound, "≤" an upper bound)."""
        ours, theirs = self.values.get(impl), self.values.get("reference")
        if not self.ratios or ours is None or not theirs:
            return None, "="
        kind = {(False, False): "=", (True, False): "≥", (False, True): "≤"}.get(
            (impl in self.open_ended, "reference" in self.open_ended))
        return (round(ours / theirs, 2), kind) if kind else (None, "=")

    def ratio_text(self, impl: str) -> str:
        ratio, kind = self.ratio(impl)
        return "–" if ratio is None else f"{'' if kind == '=' else kind + ' '}{ratio}x"


def _rows(results: dict[str, Any], transport: str, impl: str, clients: int) -> list[dict[str, Any]]:
    return [row for row in results["levels"].get(transport, [])
            if row["impl"] == impl and row["clients"] == clients]


def _mean(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [row[key] for row in rows if row.get(key) is not None]
    return statistics.fmean(values) if values else None


def _common_level(results: dict[str, Any], transport: str) -> int | None:
    """The largest level every implementation measured held."""
    capacity = results["capacity"].get(transport, {})
    held = [value["clients"] for value in capacity.values()]
    return min(held) if held and min(held) > 0 else None


def _at(results: dict[str, Any], transport: str, clients: int, key: str) -> dict[str, float | None]:
    return {impl: _mean(_rows(results, transport, impl, clients), key) for impl in IMPLS}


def comparison(results: dict[str, Any]) -> list[Metric]:
    """Every implementation side by side: latency, cost, capacity, start-up and memory."""
    metrics: list[Metric] = []
    for transport in ("twilio", "webrtc"):
        if transport not in results["levels"]:
            continue
        word = "call" if transport == "twilio" else "session"
        metrics.append(Metric(f"{transport}:p50", f"{transport}: echo latency p50, 1 {word}", "ms",
                              _at(results, transport, 1, "latency_p50_ms")))
        measured = {row["clients"] for row in results["levels"][transport]}
        common = _common_level(results, transport)
        fixed = COST_LEVELS.get(transport)
        levels = [n for n in fixed if n in measured] if fixed else [common] if common else []
        for level in levels:
            metrics.append(Metric(f"{transport}:cpu" + (f"@{level}" if fixed else ""),
                                  f"{transport}: CPU per {word} at N={level} (% of a core)", "%",
                                  _at(results, transport, level, "cpu_per_call_pct")))
        if levels:
            metrics.append(Metric(f"{transport}:memory", f"{transport}: memory (PSS) per {word} "
                                  f"at N={levels[-1]}", "MB",
                                  _at(results, transport, levels[-1], "rss_per_call_mb")))
        if transport == "twilio" and SHARE_LEVEL in measured:
            metrics.append(Metric(f"twilio:share@{SHARE_LEVEL}", "twilio: listening process's "
                                  f"share of the server's CPU at N={SHARE_LEVEL}", "%",
                                  _at(results, transport, SHARE_LEVEL, "listener_share_pct"),
                                  ratios=False))
        capacity = results["capacity"].get(transport, {})
        metrics.append(Metric(
            f"{transport}:capacity", f"{transport}: capacity (N held in every run)", "",
            {impl: _capacity(capacity.get(impl)) for impl in IMPLS},
            shown={impl: _capacity_text(capacity.get(impl)) for impl in IMPLS},
            open_ended=frozenset(impl for impl, value in capacity.items()
                                 if value.get("top_level_held"))))
    startup = results.get("startup", {})
    for key, label, unit in (("help_s", "`--help` wall time", "s"),
                             ("ready_s", "spawn to ready", "s"),
                             ("rss_idle_mb", "memory idle (PSS)", "MB")):
        metrics.append(Metric(key, label, unit, {impl: startup.get(impl, {}).get(key)
                                                 for impl in IMPLS}))
    leak = results.get("leak", {})
    if leak:
        label = "memory (PSS) growth per call over sequential calls ({})".format(", ".join(
            f"{impl} {value['sessions']}" for impl, value in leak.items()))
        metrics.append(Metric("leak", label, "KB", {impl: leak.get(impl, {}).get(
            "growth_kb_per_session") for impl in IMPLS}))
    return metrics


def targets(metrics: list[Metric]) -> list[list[str]]:
    """The targets table's rows: metric, runner, reference, ratio, target, met."""
    by_key = {metric.key: metric for metric in metrics}
    rows = []
    for label, key, impl, at_most, bound, unit in TARGETS:
        metric = by_key.get(key, Metric(key, label, unit, {}))
        value, kind = metric.ratio(impl) if unit == "x" else (metric.values.get(impl), "=")
        wanted = f"{'≤' if at_most else '≥'} {bound:g}{'' if unit == 'x' else ' '}{unit}"
        rows.append([label, metric.text(impl), metric.text("reference"), metric.ratio_text(impl),
                     wanted, _met(value, kind, at_most, bound)])
    return rows


def _met(value: float | None, kind: str, at_most: bool, bound: float) -> str:
    """Whether `value` (exact, or a bound as `kind` says) meets the target: yes, no, – (unknown)."""
    if value is None:
        return "–"
    ok = value <= bound if at_most else value >= bound
    if kind == "=":
        return "yes" if ok else "no"
    towards = (kind == "≤") == at_most  # the true value lies on the target's side of `value`
    return "yes" if towards and ok else "no" if not towards and not ok else "–"


def _capacity(value: dict[str, Any] | None) -> float | None:
    return float(value["clients"]) if value and value["clients"] else None


def _capacity_text(value: dict[str, Any] | None) -> str:
    if not value:
        return "–"
    prefix = "≥ " if value.get("top_level_held") else ""
    return f"{prefix}{value['clients']}" if value["clients"] else "0"


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    number = f"{value:.2f}" if abs(value) < 10 else f"{value:.0f}"
    return f"{number} {unit}".strip()


# ----------------------------------------------------------------------------- Markdown

def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _order(row: dict[str, Any]) -> tuple[int, int, int]:
    impl = row["impl"]
    return row["clients"], IMPLS.index(impl) if impl in IMPLS else len(IMPLS), row["run"]


def level_table(rows: list[dict[str, Any]]) -> str:
    """Every run, level by level, runner's default mode first (the runs alternated)."""
    header = ["N", "server", "run", "p50 ms", "p95 ms", "lost", "gap %", "setup p50 ms",
              "first audio p50 ms", "CPU/call %", "server CPU %", "listener share %",
              "client CPU %", "PSS MB", "verdict"]
    body = [[str(r["clients"]), r["impl"], str(r["run"]), _cell(r["latency_p50_ms"]),
             _cell(r["latency_p95_ms"]), f"{r['lost']}/{r['bursts']}",
             _cell(None if r["gap_ratio"] is None else 100 * r["gap_ratio"], 2),
             _cell(r["setup_p50_ms"]), _cell(r["first_audio_p50_ms"]),
             _cell(r["cpu_per_call_pct"], 2), _cell(r["server_cpu_pct"]),
             _cell(r.get("listener_share_pct")), _cell(r["client_cpu_pct"]),
             _cell(r["rss_peak_mb"]), r["verdict"] or "held"] for r in sorted(rows, key=_order)]
    return _table(header, body)


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    ref = results["reference"]
    metrics = comparison(results)
    measured = results.get("runner", {})
    version = " ".join(str(x) for x in (measured.get("version"), measured.get("commit")) if x)
    if measured.get("note"):
        version += f" ({measured['note']})"
    elif measured.get("changed"):
        version += " with uncommitted changes"
    parts = [
        f"Measured {results['date']} with `{results['command']}` on {m['cpu']}, {m['cores']} "
        f"cores, {m['memory_gb']} GB, {m['system']}, Python {m['python']}; load average "
        f"{' / '.join(map(str, m['load_average']))} at the start (the servers, the load client and "
        "other work share these cores, so single runs are noisy). "
        + (f"Reference: pipecat-ai {ref['version']} (`pipecat-ai[runner,webrtc,websocket]`, "
           "benchmarks/reference/echo_bot.py)." if ref["installed"]
           else f"Reference: not measured ({ref['note']})."),
        f"runner: {version}." if version else "",
        "",
        "runner is `runner serve` as it starts by default (process isolation: each session in a "
        "worker process, forked by a zygote, with `--prewarm auto` workers ready); runner-task is "
        "the same with `RUNNER_ISOLATION=task` (every session in the server process). CPU is the "
        "server's whole process tree; the listening process's share is its own part of that."
        + (f" Telephony levels up to N={up_to} are run by every implementation even past its "
           "capacity, so some figures come from runs that failed (see the verdicts)."
           if (up_to := results["settings"].get("measure_up_to")) else ""),
        "",
        "**Targets** (issue 18; the ratio is runner's against the reference's):",
        "",
        _table(["metric", "runner", "reference", "ratio", "target", "met"], targets(metrics)),
        "",
        _table(["metric", *IMPLS, *(f"{impl} / reference" for impl in RUNNERS)],
               [[m.label, *(m.text(impl) for impl in IMPLS),
                 *(m.ratio_text(impl) for impl in RUNNERS)]
                for m in metrics if any(v is not None for v in m.values.values())]),
    ]
    for transport, rows in results["levels"].items():
        parts += ["", f"**{TRANSPORT_TITLES.get(transport, transport)}**, "
                  f"{results['settings']['duration']} s per client per run:", "", level_table(rows)]
    return "\n".join(parts)


def update_readme(results: dict[str, Any], path: Path = README) -> None:
    """Replace the generated block of the README's Benchmarks section with these results."""
    write_block(markdown(results), START, END, path)


def write_block(body: str, start: str, end: str, path: Path = README) -> None:
    """Replace what stands between the markers `start` and `end` of `path` with `body`."""
    text = path.read_text()
    if start not in text or end not in text:
        raise RuntimeError(f"{path} has no {start} ... {end} block to fill")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{body}\n{end}{tail}")


if __name__ == "__main__":
    import json
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python -m benchmarks.report benchmarks/results/DATE.json"
                 "  (rewrites benchmarks/README.md)")
    update_readme(json.loads(Path(sys.argv[1]).read_text()))
