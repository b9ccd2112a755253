"""The machine description, the headline numbers, and the tables written into benchmarks/README.md."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
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


def headline(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of (metric, runner, reference, ratio, target)."""
    rows: list[dict[str, Any]] = []
    targets = {"twilio": ("≤ 60 ms", "≤ 0.3x", "≥ 3x"), "webrtc": ("≤ 0.6x", "≤ 0.8x", "≥ 2x")}
    for transport in results["levels"]:
        if transport not in targets:
            continue
        latency_target, cpu_target, capacity_target = targets[transport]
        word = "call" if transport == "twilio" else "session"
        rows.append(_pair(f"{transport}: echo latency p50, 1 {word}", "ms",
                          *(_mean(_rows(results, transport, impl, 1), "latency_p50_ms")
                            for impl in ("runner", "reference")), latency_target))
        level = _common_level(results, transport)
        if level:
            rows.append(_pair(f"{transport}: CPU per {word} at N={level} (% of a core)", "%",
                              *(_mean(_rows(results, transport, impl, level), "cpu_per_call_pct")
                                for impl in ("runner", "reference")), cpu_target))
            rows.append(_pair(f"{transport}: memory (PSS) per {word} at N={level}", "MB",
                              *(_mean(_rows(results, transport, impl, level), "rss_per_call_mb")
                                for impl in ("runner", "reference")), ""))
        capacity = results["capacity"].get(transport, {})
        rows.append(_pair(f"{transport}: capacity (N held twice)", "",
                          *(_capacity(capacity.get(impl)) for impl in ("runner", "reference")),
                          capacity_target, shown=tuple(_capacity_text(capacity.get(impl))
                                                       for impl in ("runner", "reference"))))
    startup = results.get("startup", {})
    for key, label, unit, target in (("help_s", "`--help` wall time", "s", "< 0.3 s"),
                                     ("ready_s", "spawn to ready", "s", "< 1 s"),
                                     ("rss_idle_mb", "memory idle (PSS)", "MB", "")):
        rows.append(_pair(label, unit, *(startup.get(impl, {}).get(key)
                                         for impl in ("runner", "reference")), target))
    leak = results.get("leak", {})
    if leak:
        label = "memory (PSS) growth per call over sequential calls ({})".format(", ".join(
            f"{impl} {value['sessions']}" for impl, value in leak.items()))
        rows.append(_pair(label, "KB", *(leak.get(impl, {}).get("growth_kb_per_session")
                                         for impl in ("runner", "reference")), "≈ 0"))
    return rows


def _capacity(value: dict[str, Any] | None) -> float | None:
    return float(value["clients"]) if value and value["clients"] else None


def _capacity_text(value: dict[str, Any] | None) -> str:
    if not value:
        return "–"
    prefix = "≥ " if value.get("top_level_held") else ""
    return f"{prefix}{value['clients']}" if value["clients"] else "0"


def _pair(label: str, unit: str, ours: float | None, theirs: float | None, target: str,
          shown: tuple[str, str] | None = None) -> dict[str, Any]:
    ratio = round(ours / theirs, 2) if ours is not None and theirs else None
    text = shown or (_fmt(ours, unit), _fmt(theirs, unit))
    return {"metric": label, "runner": text[0], "reference": text[1],
            "ratio": f"{ratio}x" if ratio is not None else "–", "target": target}


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


def level_table(rows: list[dict[str, Any]]) -> str:
    header = ["N", "server", "run", "p50 ms", "p95 ms", "lost", "gap %", "setup p50 ms",
              "first audio p50 ms", "CPU/call %", "server CPU %", "client CPU %", "PSS MB",
              "verdict"]
    body = [[str(r["clients"]), r["impl"], str(r["run"]), _cell(r["latency_p50_ms"]),
             _cell(r["latency_p95_ms"]), f"{r['lost']}/{r['bursts']}",
             _cell(None if r["gap_ratio"] is None else 100 * r["gap_ratio"], 2),
             _cell(r["setup_p50_ms"]), _cell(r["first_audio_p50_ms"]),
             _cell(r["cpu_per_call_pct"], 2), _cell(r["server_cpu_pct"]), _cell(r["client_cpu_pct"]),
             _cell(r["rss_peak_mb"]), r["verdict"] or "held"] for r in rows]
    return _table(header, body)


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    ref = results["reference"]
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
        _table(["metric", "runner", "reference", "runner / reference", "target"],
               [[r["metric"], r["runner"], r["reference"], r["ratio"], r["target"]]
                for r in headline(results)]),
    ]
    for transport, rows in results["levels"].items():
        parts += ["", f"**{TRANSPORT_TITLES.get(transport, transport)}**, "
                  f"{results['settings']['duration']} s per client per run:", "", level_table(rows)]
    return "\n".join(parts)


def update_readme(results: dict[str, Any], path: Path = README) -> None:
    """Replace the generated block of the README's Benchmarks section with these results."""
    text = path.read_text()
    if START not in text or END not in text:
        raise RuntimeError(f"{path} has no {START} ... {END} block to fill")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{START}\n{markdown(results)}\n{END}{tail}")


if __name__ == "__main__":
    import json
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python -m benchmarks.report benchmarks/results/DATE.json"
                 "  (rewrites benchmarks/README.md)")
    update_readme(json.loads(Path(sys.argv[1]).read_text()))
