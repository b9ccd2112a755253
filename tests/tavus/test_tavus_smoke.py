"""`runner smoke --transport tavus`: there is no offline Tavus client, so it is always skipped,
and the reason says what stands in the way (settings, a refusal, no answer)."""

from __future__ import annotations

import socket

from tavus_fakes import REPLICA_ID, TAVUS_KEY, FakeTavusApi

from runner.loader import load_bot
from runner.smoke import harness
from runner.smoke.harness import SmokeOptions, run_smoke
from runner.smoke.report import Status

from conftest import ROOT, make_config


async def reasons(environ: dict[str, str]) -> set[str]:
    config = make_config("smoke", environ=environ, transport="tavus")
    (result,) = await run_smoke(config, load_bot(str(ROOT / "bots" / "echo.py")), ["tavus"],
                                harness.test_signal(0.2), SmokeOptions(duration=1), parallel=False)
    assert result.transport == "tavus" and result.skipped
    assert {check.status for check in result.checks} == {Status.SKIPPED}
    return {check.reason for check in result.checks}


async def test_without_credentials_the_reason_names_them() -> None:
    assert await reasons({"TAVUS_API_KEY": TAVUS_KEY}) == {
        "Tavus needs its cloud service: TAVUS_REPLICA_ID is not set"}


async def test_an_unreachable_or_refusing_tavus_is_the_reason() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environ = {"TAVUS_API_KEY": TAVUS_KEY, "TAVUS_REPLICA_ID": REPLICA_ID,
               "TAVUS_API_URL": f"http://127.0.0.1:{port}/v2"}
    (reason,) = await reasons(environ)
    assert reason == ("Tavus cannot be reached: Tavus API GET /personas/pipecat0 failed: "
                      "unreachable (ConnectError)")
    with FakeTavusApi() as api:
        refused = await reasons({**environ, "TAVUS_API_URL": api.url, "TAVUS_API_KEY": "wrong"})
        assert "401 the API key was refused" in refused.pop()
        (reachable,) = await reasons({**environ, "TAVUS_API_URL": api.url})
        assert reachable.startswith("no offline Tavus client")
        assert api.calls("POST") == []  # asking costs nothing
