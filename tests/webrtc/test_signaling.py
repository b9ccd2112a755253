"""Signaling as the SmallWebRTC clients speak it: offers, trickle, renegotiation, restarts, /start,
and every way a client can get it wrong, against the real server and real aiortc peers."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from runner.guards import MAX_BODY_BYTES
from runner.smoke.callers.webrtc import Client
from runner.transports.base import Transport
from runner.transports.webrtc import peer as peer_module
from runner.transports.webrtc.peer import WebRTCTransport, ice_configuration
from webrtc.bots import echo

from conftest import as_bot, make_config, serve, wait_for

JSON = {"Content-Type": "application/json"}

Clients = Callable[..., Client]


def recording(seen: list[Transport]) -> Callable[[Transport], Any]:
    """The echo bot, remembering every transport it was called with."""

    async def bot(transport: Transport) -> None:
        seen.append(transport)
        await echo(transport)

    return bot


def transports(served: Any) -> list[WebRTCTransport]:
    return [session.transport for session in served.sessions.active.values()]


@pytest.mark.parametrize("spelling", ["requestData", "request_data"])
async def test_an_offer_starts_a_session_with_the_request_data(spelling: str,
                                                               clients: Clients) -> None:
    seen: list[Transport] = []
    async with serve(make_config("dev"), as_bot(recording(seen))) as served:
        client = clients(served.http)
        answer = (await client.offer(**{spelling: {"user": "ada"}})).json()
        assert answer["type"] == "answer"
        assert answer["pc_id"].startswith("pc-")
        assert "m=audio" in answer["sdp"] and "a=candidate" in answer["sdp"]
        await client.wait_connected()
        await wait_for(lambda: len(seen) == 1)
        assert seen[0].kind == "webrtc"
        assert seen[0].session.body == {"user": "ada"}
        assert await asyncio.wait_for(seen[0].wait_connected(), 5)


@pytest.mark.parametrize("camel_case", [False, True])
async def test_trickled_candidates_reach_the_peer(camel_case: bool, clients: Clients) -> None:
    async with serve(make_config("dev"), as_bot(echo)) as served:
        client = clients(served.http)
        await client.pc.setLocalDescription(await client.pc.createOffer())
        ports = set(re.findall(r"a=candidate:\S+ 1 udp \d+ \S+ (\d+)", client.pc.localDescription.sdp))
        await client.offer(trickle=True, camel_case=camel_case)
        await client.wait_connected()
        (transport,) = transports(served)
        ice = transport._peer.pc.getTransceivers()[0].receiver.transport.transport
        assert ports and ports <= {str(c.port) for c in ice.getRemoteCandidates()}


async def test_renegotiation_keeps_the_peer_the_session_and_the_bot(clients: Clients) -> None:
    seen: list[Transport] = []
    async with serve(make_config("dev"), as_bot(recording(seen))) as served:
        client = clients(served.http)
        await client.offer()
        await client.wait_connected()
        first = client.pc_id
        response = await client.offer()
        assert response.status_code == 200 and client.pc_id == first
        frequency, _ = await client.echo(700)
        assert abs(frequency - 700) < 5
        assert len(seen) == 1 and len(served.sessions.active) == 1


async def test_restart_pc_replaces_the_peer_and_keeps_the_session(clients: Clients) -> None:
    seen: list[Transport] = []
    async with serve(make_config("dev"), as_bot(recording(seen))) as served:
        client = clients(served.http)
        await client.offer()
        await client.wait_connected()
        old = client.pc_id
        response = await client.restart()
        assert response.status_code == 200 and client.pc_id != old
        await client.wait_connected()
        frequency, _ = await client.echo(900)
        assert abs(frequency - 900) < 5
        client.send({"after": "restart"})
        await wait_for(lambda: {"echo": {"after": "restart"}} in client.messages)
        assert len(seen) == 1 and seen[0].pc_id == client.pc_id
        assert len(served.sessions.active) == 1
        stale = await client.http.patch("/api/offer", json={"pc_id": old, "candidates": []})
        assert stale.status_code == 404


async def test_restart_pc_for_a_peer_this_server_never_had_starts_a_session(
        clients: Clients) -> None:
    async with serve(make_config("dev"), as_bot(echo)) as served:
        client = clients(served.http)
        client.pc_id = "pc-from-a-server-that-restarted"
        response = await client.offer(restart=True)
        assert response.status_code == 200
        await client.wait_connected()
        assert len(served.sessions.active) == 1


async def test_bad_requests_get_one_line_4xx_and_leave_nothing_behind(clients: Clients) -> None:
    async with serve(make_config("dev"), as_bot(echo)) as served:
        client = clients(served.http)
        await client.pc.setLocalDescription(await client.pc.createOffer())
        good = client.pc.localDescription.sdp
        no_audio = re.sub(r"m=audio.*?(?=m=application)", "", good, flags=re.S)
        broken = good.replace("a=fingerprint:sha-256", "a=fingerprint:sha-256 zz", 1)
        cases: list[tuple[str, Any, int, str]] = [
            ("POST", "not json", 400, "not usable JSON"),
            ("POST", [1, 2], 400, "JSON object"),
            ("POST", "", 400, "empty"),
            ("POST", {"type": "offer"}, 400, "'sdp'"),
            ("POST", {"sdp": good, "type": "answer"}, 400, "'type' must be 'offer'"),
            ("POST", {"sdp": "hello", "type": "offer"}, 400, "v=0"),
            ("POST", {"sdp": no_audio, "type": "offer"}, 400, "no audio"),
            ("POST", {"sdp": broken, "type": "offer"}, 400, "cannot be used"),
            ("POST", {"sdp": good, "type": "offer", "restart_pc": "yes"}, 400, "restart_pc"),
            ("POST", {"sdp": good, "type": "offer", "pc_id": "pc-nope"}, 404, "pc-nope"),
            ("POST", {"sdp": "v=0\n" + "x" * MAX_BODY_BYTES, "type": "offer"}, 413, "bytes"),
            ("PATCH", {"pc_id": "pc-nope", "candidates": []}, 404, "not found"),
            ("PATCH", {"candidates": []}, 400, "'pc_id'"),
            ("PATCH", {"pc_id": "pc-x", "candidates": "c"}, 400, "'candidates'"),
        ]
        for method, body, status, words in cases:
            content = body.encode() if isinstance(body, str) else None
            response = await client.http.request(
                method, "/api/offer", content=content,
                json=None if content is not None else body,
                headers={"Content-Type": "application/json"})
            assert response.status_code == status, (body, response.text)
            detail = response.json()["detail"]
            assert words in detail and "\n" not in detail, detail
        assert served.sessions.active == {}
        assert served.app.state.webrtc.registry.live == 0


async def test_malformed_candidates_are_refused(clients: Clients) -> None:
    async with serve(make_config("dev"), as_bot(echo)) as served:
        client = clients(served.http)
        await client.offer()
        for candidate in ({"candidate": "candidate:1 1 udp"}, {"candidate": "candidate:x",
                          "sdp_mid": "0"}, {"candidate": "candidate:1 1 udp 2 1.2.3.4 9 typ host"}):
            response = await client.http.patch(
                "/api/offer", json={"pc_id": client.pc_id, "candidates": [candidate]})
            assert response.status_code == 400, response.text
        end = await client.http.patch(
            "/api/offer", json={"pc_id": client.pc_id, "candidates": [{"candidate": ""}]})
        assert end.status_code == 200
        await client.wait_connected()


async def test_full_server_answers_503(clients: Clients) -> None:
    async with serve(make_config("dev", max_sessions="1"), as_bot(echo)) as served:
        first = clients(served.http)
        assert (await first.offer()).status_code == 200
        second = clients(served.http)
        response = await second.offer()
        assert response.status_code == 503 and "Retry-After" in response.headers
        started = await second.http.post("/start", json={})
        assert started.status_code == 503


async def test_start_then_offer_gives_the_bot_the_start_body(clients: Clients) -> None:
    seen: list[Transport] = []
    async with serve(make_config("dev"), as_bot(recording(seen))) as served:
        http = httpx.AsyncClient(base_url=served.http)
        started = (await http.post("/start", json={"transport": "webrtc",
                                                   "body": {"room": 7}})).json()
        assert set(started) == {"sessionId"}
        session_id = started["sessionId"]
        client = clients(served.http, offer_path=f"/sessions/{session_id}/api/offer")
        assert (await client.offer(trickle=True)).status_code == 200
        await client.wait_connected()
        await wait_for(lambda: len(seen) == 1)
        assert seen[0].session.body == {"room": 7}
        assert seen[0].session.id == session_id
        renegotiated = await client.offer()
        assert renegotiated.status_code == 200 and len(seen) == 1
        again = clients(served.http, offer_path=f"/sessions/{session_id}/api/offer")
        assert (await again.offer()).status_code == 404
        other = await http.patch(f"/sessions/{'0' * 32}/api/offer",
                                 json={"pc_id": client.pc_id, "candidates": []})
        assert other.status_code == 404
        await http.aclose()


async def test_start_chooses_a_transport_and_offers_ice_servers() -> None:
    servers = '[{"urls": "turn:turn.example.com:3478", "username": "u", "credential": "p"}]'
    async with serve(make_config("dev", ice_servers=servers), as_bot(echo)) as served:
        async with httpx.AsyncClient(base_url=served.http) as http:
            started = (await http.post("/start", content=b"")).json()
            assert started["iceConfig"] == {"iceServers": [
                {"urls": "turn:turn.example.com:3478", "username": "u", "credential": "p"}]}
            for body in ({"transport": "carrier-pigeon"}, {"createDailyRoom": True},
                         {"transport": 5}):
                response = await http.post("/start", json=body)
                assert response.status_code == 400
                assert "not served by /start" in response.json()["detail"]
            assert (await http.post("/start", content=b"{", headers=JSON)).status_code == 400
            assert (await http.post("/start", content=b"{}")).status_code == 415
            config = (await http.get("/page/config")).json()
            assert config["iceServers"][0]["urls"] == "turn:turn.example.com:3478"
    async with serve(make_config("dev"), as_bot(echo)) as served:
        async with httpx.AsyncClient(base_url=served.http) as http:
            assert "iceConfig" not in (await http.post("/start", json={})).json()
            asked = (await http.post("/start", json={"enableDefaultIceServers": True})).json()
            assert asked["iceConfig"]["iceServers"][0]["urls"][0].startswith("stun:")


async def test_started_sessions_that_never_offer_expire(clients: Clients) -> None:
    async with serve(make_config("dev", connect_timeout="0.3"), as_bot(echo)) as served:
        registry = served.app.state.webrtc.registry
        async with httpx.AsyncClient(base_url=served.http) as http:
            ids = [(await http.post("/start", json={})).json()["sessionId"] for _ in range(3)]
            assert registry.pending == 3
            await asyncio.sleep(0.4)
            assert registry.pending == 0
        client = clients(served.http, offer_path=f"/sessions/{ids[0]}/api/offer")
        assert (await client.offer()).status_code == 404


def test_ice_configuration_is_host_only_unless_servers_are_given() -> None:
    assert ice_configuration(()).iceServers == []
    (server,) = ice_configuration(({"urls": ["stun:stun.example.com"]},)).iceServers
    assert server.urls == ["stun:stun.example.com"] and server.username is None


async def test_the_session_ends_when_the_client_closes_its_peer(clients: Clients) -> None:
    async with serve(make_config("dev"), as_bot(echo)) as served:
        client = clients(served.http)
        await client.offer()
        await client.wait_connected()
        await wait_for(lambda: transports(served) and transports(served)[0].connected)
        await client.pc.close()
        await wait_for(lambda: not served.sessions.active, timeout=5)
        assert served.sessions.outcomes["webrtc:client_left"] == 1
        assert served.app.state.webrtc.registry.live == 0


async def test_the_session_ends_when_pings_stop(clients: Clients,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peer_module, "PING_TIMEOUT", 1.5)
    async with serve(make_config("dev"), as_bot(echo)) as served:
        client = clients(served.http)
        await client.offer()
        await client.wait_connected()
        await wait_for(lambda: transports(served)[0]._channel.last_ping is not None, timeout=3)
        client.stop_pinging()
        (transport,) = transports(served)
        await wait_for(lambda: transport.ended, timeout=4)
        assert "ping" in transport.end_reason


async def test_a_peer_that_never_connects_is_closed(clients: Clients) -> None:
    async with serve(make_config("dev", connect_timeout="1"), as_bot(echo)) as served:
        client = clients(served.http)
        await client.pc.setLocalDescription(await client.pc.createOffer())
        response = await client.http.post("/api/offer", json={
            "sdp": client.pc.localDescription.sdp, "type": "offer"})
        assert response.status_code == 200  # and the client never applies the answer
        (transport,) = transports(served)
        await wait_for(lambda: not served.sessions.active, timeout=4)
        assert "did not connect" in transport.end_reason
        assert transport._peer.pc.connectionState == "closed"


async def test_peer_left_from_either_side(clients: Clients) -> None:
    async def hangs_up_on_request(transport: Transport) -> None:
        async for message in transport.messages():
            if message == "bye":
                await transport.hangup()

    async with serve(make_config("dev"), as_bot(hangs_up_on_request)) as served:
        leaving = clients(served.http)
        await leaving.offer()
        await leaving.wait_connected()
        leaving.channel.send('{"type": "signalling", "message": {"type": "peerLeft"}}')
        await wait_for(lambda: not served.sessions.active)
        assert served.sessions.outcomes["webrtc:client_left"] == 1

        staying = clients(served.http)
        await staying.offer()
        await staying.wait_connected()
        staying.send("bye")
        await wait_for(lambda: {"type": "peerLeft"} in staying.signals)
        await wait_for(lambda: not served.sessions.active)
        await wait_for(lambda: staying.pc.connectionState == "closed")


async def test_messages_events_and_track_status(clients: Clients) -> None:
    events: list[Any] = []

    async def bot(transport: Transport) -> None:
        await transport.send_message({"hello": 1})  # before the channel opens: kept for it
        async for event in transport.events():
            events.append(event)
            if type(event).__name__ == "AppMessage":
                await transport.send_message({"got": event.data})

    async with serve(make_config("dev"), as_bot(bot)) as served:
        client = clients(served.http)
        await client.offer()
        await client.wait_connected()
        client.channel.send("not json")
        client.send({"type": "hi"})
        client.channel.send('{"type": "signalling", "message": '
                            '{"type": "trackStatus", "receiver_index": 1, "enabled": false}}')
        await wait_for(lambda: {"got": {"type": "hi"}} in client.messages)
        await wait_for(lambda: any(type(e).__name__ == "TrackStatus" for e in events))
        assert client.messages[0] == {"hello": 1}
        status = next(e for e in events if type(e).__name__ == "TrackStatus")
        assert (status.source, status.enabled) == ("camera", False)
        assert type(events[0]).__name__ == "ClientConnected"


async def test_with_an_api_key_signaling_needs_it_and_the_page_does_not(clients: Clients) -> None:
    config = make_config("dev", environ={"RUNNER_API_KEY": "sesame"})
    async with serve(config, as_bot(echo)) as served:
        anonymous = clients(served.http)
        assert (await anonymous.offer()).status_code == 401
        assert (await anonymous.http.get("/page/config")).status_code == 401
        assert (await anonymous.http.get("/")).status_code == 200
        keyed = clients(served.http)
        keyed.http.headers["Authorization"] = "Bearer sesame"
        assert (await keyed.offer(trickle=True)).status_code == 200
        await keyed.wait_connected()


async def test_the_peers_own_log_lines_carry_the_session(clients: Clients,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """aiortc's and aioice's tasks start while the offer is answered: their lines are tagged
    with the session they serve, as the bot's are (task isolation: one process, many sessions)."""
    caplog.set_level(logging.DEBUG, logger="aiortc")
    caplog.set_level(logging.DEBUG, logger="aioice")
    async with serve(make_config("dev"), as_bot(echo)) as served:
        client = clients(served.http)
        await client.offer()
        await client.wait_connected()
        await wait_for(lambda: served.sessions.active, 5)
        (session_id,) = served.sessions.active
        await asyncio.sleep(0.3)
    peer_lines = [record for record in caplog.records
                  if record.name.startswith(("aiortc", "aioice"))
                  and record.thread == threading.get_ident()]
    # The test's own client peer logs the same kinds of lines, untagged: the server's answering
    # side is told apart by what only it does.
    answering = [record for record in peer_lines
                 if "setRemoteDescription(offer)" in record.getMessage()]
    assert answering and all(record.session_id == session_id for record in answering)
    ours = [record for record in peer_lines if record.session_id == session_id]
    assert len(ours) >= len(peer_lines) / 3, (len(ours), len(peer_lines))
