"""A client app on its own origin can use `runner dev`: loopback origins pass CORS there.

The browser test serves a page from a second loopback port, as a Vite dev server would, whose
script calls the runner cross-origin the way the Pipecat JS client does (`POST /start`, then the
offer to `/sessions/{id}/api/offer`, JSON bodies, so each call has a preflight).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from runner.config import Config
from runner.loader import load_bot
from runner.serve import bind_socket
from webrtc.bots import echo

from conftest import as_bot, make_config, serve, uvicorn_on

BOTS = Path(__file__).resolve().parent / "bots.py"

#: The client app: a session from /start, the fake microphone to the bot, what comes back.
CLIENT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>client app</title></head><body>
<button id="connect">Connect</button>
<audio id="bot" autoplay></audio>
<script type="module">
const RUNNER = "%(runner)s";
const result = window.result = { bytes: 0, level: 0, error: null };

async function post(path, body) {
  const response = await fetch(RUNNER + path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`${path} answered ${response.status}`);
  return response.json();
}

function listen(context, track) {
  const stream = new MediaStream([track]);
  document.getElementById("bot").srcObject = stream;
  const analyser = context.createAnalyser();
  context.createMediaStreamSource(stream).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  setInterval(() => {
    analyser.getFloatTimeDomainData(samples);
    result.level = Math.max(result.level, ...samples.map(Math.abs));
  }, 20);
}

async function connect(context) {
  const { sessionId } = await post("/start", { body: { app: "vite" } });
  const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
  const pc = new RTCPeerConnection();
  pc.addTransceiver(mic.getAudioTracks()[0], { direction: "sendrecv" });
  pc.ontrack = ({ track }) => listen(context, track);
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") resolve();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && resolve();
  });
  const answer = await post(`/sessions/${sessionId}/api/offer`,
                            { sdp: pc.localDescription.sdp, type: "offer" });
  await pc.setRemoteDescription(answer);
  setInterval(async () => {
    (await pc.getStats()).forEach((stat) => {
      if (stat.type === "inbound-rtp" && stat.kind === "audio") result.bytes = stat.bytesReceived;
    });
  }, 200);
}

document.getElementById("connect").onclick = () => {
  connect(new AudioContext()).catch((error) => { result.error = String(error); });
};
</script>
</body></html>
"""


@contextlib.asynccontextmanager
async def client_app(runner_url: str) -> AsyncIterator[str]:
    """The client page on its own 127.0.0.1 port; yields its URL (http://localhost:PORT/)."""
    page = CLIENT % {"runner": runner_url}
    app = Starlette(routes=[Route("/", lambda request: HTMLResponse(page))])
    sock = bind_socket("127.0.0.1", 0)
    async with uvicorn_on(sock, uvicorn.Config(app, log_level="warning", lifespan="off")):
        yield f"http://localhost:{sock.getsockname()[1]}/"


async def preflight(config: Config, *origins: str) -> dict[str, str | None]:
    """Each origin -> the Access-Control-Allow-Origin a preflight for POST /api/offer gets."""
    allowed: dict[str, str | None] = {}
    async with serve(config, as_bot(echo)) as served, httpx.AsyncClient() as http:
        for origin in origins:
            response = await http.options(served.http + "/api/offer", headers={
                "Origin": origin, "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type"})
            allowed[origin] = response.headers.get("access-control-allow-origin")
            if allowed[origin] is not None:
                assert response.status_code == 200
                assert "POST" in response.headers["access-control-allow-methods"]
                assert "content-type" in response.headers["access-control-allow-headers"]
    return allowed


LOOPBACK = ("http://localhost:5173", "http://127.0.0.1:3000", "http://[::1]:8080",
            "http://localhost", "https://localhost:5173")
FOREIGN = ("https://app.example.com", "http://localhost.example.com:5173",
           "http://127.0.0.1.example.com", "http://localhost:5173.example.com")


async def test_dev_allows_loopback_origins_and_what_is_listed() -> None:
    allowed = await preflight(make_config("dev"), *LOOPBACK, *FOREIGN)
    assert allowed == {**{origin: origin for origin in LOOPBACK}, **dict.fromkeys(FOREIGN)}

    listed = await preflight(make_config("dev", allowed_origins="https://app.example.com"),
                             "https://app.example.com", "http://localhost:5173", "https://x.example")
    assert listed == {"https://app.example.com": "https://app.example.com",
                      "http://localhost:5173": "http://localhost:5173", "https://x.example": None}


async def test_serve_allows_only_the_origins_listed() -> None:
    assert await preflight(make_config("serve", transport="webrtc"),
                           "http://localhost:5173") == {"http://localhost:5173": None}
    listed = await preflight(make_config("serve", transport="webrtc",
                                         allowed_origins="https://app.example.com"),
                             "https://app.example.com", "http://localhost:5173")
    assert listed == {"https://app.example.com": "https://app.example.com",
                      "http://localhost:5173": None}


@pytest.mark.parametrize("isolation", ["task", "process"])
async def test_a_page_on_another_port_talks_to_the_dev_server(browser_page: Any,
                                                              isolation: str) -> None:
    config = make_config("dev", isolation=isolation, prewarm="1")
    # process: the offer is relayed to a worker, whose own app answers with the CORS headers
    bot = load_bot(f"{BOTS}:echo") if isolation == "process" else as_bot(echo)
    async with serve(config, bot) as served, client_app(served.http) as url:
        await browser_page.goto(url)
        await browser_page.click("#connect")  # as a person would: the page may play audio
        await browser_page.wait_for_function(
            "result.error || (result.bytes > 2000 && result.level > 0.1)", timeout=15000)
        assert await browser_page.evaluate("result.error") is None
        (session,) = served.sessions.active.values()
        assert session.info.kind == "webrtc" and session.info.body == {"app": "vite"}


async def test_a_page_on_another_port_is_refused_by_serve(browser_page: Any) -> None:
    async with serve(make_config("serve", transport="webrtc"), as_bot(echo)) as served, \
            client_app(served.http) as url:
        await browser_page.goto(url)
        await browser_page.click("#connect")
        await browser_page.wait_for_function("result.error", timeout=10000)
        assert "Failed to fetch" in await browser_page.evaluate("result.error")
        assert not served.sessions.active
