"""`make bench-quick`: the whole harness in a few seconds at small N, runner only, in both isolation
modes (serve's default, process, and task) (runs in CI).

Not a performance test (CI machines are noisy): it fails only when the harness itself breaks, that
is a load generator or the sampler errs, a call fails, or no burst comes back at all.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import run


def problems(results: dict[str, Any]) -> list[str]:
    found = []
    for transport, rows in results["levels"].items():
        if not rows:
            found.append(f"{transport}: nothing measured")
        for row in rows:
            where = f"{transport} N={row['clients']} {row['impl']}"
            if row["errors"]:
                found.append(f"{where}: {row['errors']} calls failed: {row['error_samples']}")
            if not row["bursts"] or row["latency_p50_ms"] is None:
                found.append(f"{where}: no burst came back ({row['lost']}/{row['bursts']} lost)")
            if not row["server_cpu_pct"] or row["listener_share_pct"] is None:
                found.append(f"{where}: the sampler saw no server CPU")
    measured = {row["impl"] for rows in results["levels"].values() for row in rows}
    found += [f"{impl}: not measured" for impl in run.servers.RUNNERS if impl not in measured]
    for impl, leak in results["leak"].items():
        if leak["answered"] < leak["sessions"]:
            found.append(f"leak check {impl}: {leak['sessions'] - leak['answered']} calls "
                         f"unanswered {leak.get('errors', [])}")
    return found


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-quick-") as tmp:
        try:
            results = run.main(["--twilio", "2", "--webrtc", "", "--websocket", "1", "--runs", "1",
                                "--duration", "3", "--no-reference", "--no-startup",
                                "--leak-sessions", "20", "--out", str(Path(tmp) / "quick.json"),
                                "--logs", tmp])
            found = problems(results)
        except Exception as error:  # the logs below say why
            found = [f"the harness failed: {type(error).__name__}: {error}"]
        for problem in found:
            print(f"bench-quick: {problem}", file=sys.stderr)
        if found:
            for log in sorted(Path(tmp).glob("*.log")):
                print(f"--- {log.name}\n{log.read_text()[-2000:]}", file=sys.stderr)
    print("bench-quick: " + ("FAILED" if found else "harness OK"), file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
