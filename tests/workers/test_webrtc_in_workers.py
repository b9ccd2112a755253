"""WebRTC with each session's aiortc peer in a worker: offers, trickled candidates, restarts and
`/start` bodies reach the worker that owns the peer connection."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from workers.support import worker_bot, worker_config, worker_pids

from conftest import serve, wait_for

pytestmark = pytest.mark.skipif(
    not os.environ.get("RUNNER_ISOLATED"),
    reason="WebRTC tests run only in the loopback-only namespace (make test: scripts/isolated)")

pytest.importorskip("aiortc")
from runner.smoke.callers.webrtc import Client  # noqa: E402


@pytest.fixture
async def clients() -> AsyncIterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(base_url: str, **options: object) -> Client:
        made.append(Client(base_url, **options))
        return made[-1]

    yield make
    await asyncio.gather(*(client.close() for client in made), return_exceptions=True)


async def test_echo_through_a_peer_in_a_worker(clients: Callable[..., Client]) -> None:
    async with serve(worker_config("webrtc"), worker_bot()) as served:
        client = clients(served.http)
        response = await client.offer(requestData={"role": "whoami"})
        assert response.status_code == 200
        await client.wait_connected()
        await wait_for(lambda: bool(client.messages), 5)
        assert client.messages[0]["pid"] in worker_pids(served)
        (session,) = served.sessions.active.values()
        assert session.info.kind == "webrtc" and session.info.body == {"role": "whoami"}
        await asyncio.sleep(0.3)
        for frequency in (440.0, 1000.0):
            heard, latency = await client.echo(frequency)
            assert abs(heard - frequency) < 5 and latency < 1.5  # latency: benchmarks/
        await client.close()
        await wait_for(lambda: not served.sessions.active, 10)
        assert served.sessions.outcomes["webrtc:client_left"] == 1


async def test_trickle_and_restart_reach_the_worker_that_owns_the_peer(
        clients: Callable[..., Client]) -> None:
    async with serve(worker_config("webrtc"), worker_bot()) as served:
        client = clients(served.http)
        await client.offer(trickle=True)  # candidates by PATCH, to the owner of pc_id
        await client.wait_connected()
        first_pc = client.pc_id
        heard, _ = await client.echo(700.0)
        assert abs(heard - 700) < 5
        await client.restart()  # a new peer connection in the same session, same worker
        await client.wait_connected()
        assert client.pc_id != first_pc
        heard, _ = await client.echo(900.0)
        assert abs(heard - 900) < 5
        assert served.sessions.started_total == {"webrtc": 1}
        async with httpx.AsyncClient() as http:
            gone = await http.patch(f"{served.http}/api/offer",
                                    json={"pc_id": "nobody", "candidates": []})
        assert gone.status_code == 404  # answered by the server: no worker owns it


async def test_a_start_body_goes_with_the_offer_to_the_worker(
        clients: Callable[..., Client]) -> None:
    async with serve(worker_config("webrtc"), worker_bot()) as served, \
            httpx.AsyncClient() as http:
        started = (await http.post(f"{served.http}/start",
                                   json={"body": {"role": "whoami"}})).json()
        path = f"/sessions/{started['sessionId']}/api/offer"
        client = clients(served.http, offer_path=path)
        await client.offer(trickle=True)
        await client.wait_connected()
        await wait_for(lambda: bool(client.messages), 5)
        assert client.messages[0]["pid"] in worker_pids(served)
        (session,) = served.sessions.active.values()
        assert session.id == started["sessionId"] and session.info.body == {"role": "whoami"}
        again = await http.post(f"{served.http}{path}", json={"sdp": "v=0\r\nm=audio 9 x\r\n",
                                                              "type": "offer"})
        assert again.status_code == 404  # the held body was used once


async def test_patches_that_come_as_its_session_ends_get_404_and_its_record_arrives(
        clients: Callable[..., Client]) -> None:
    async with serve(worker_config("webrtc"), worker_bot()) as served:
        client = clients(served.http)
        assert (await client.offer(requestData={"role": "brief"})).status_code == 200
        body = {"pc_id": client.pc_id, "candidates": []}
        async with httpx.AsyncClient(timeout=10) as http:
            statuses = []
            while not statuses or statuses[-1] != 404:  # the bot returns after 0.3 s: some of
                # these land while its worker shuts down
                patches = [http.patch(f"{served.http}/api/offer", json=body) for _ in range(20)]
                statuses += [response.status_code for response in await asyncio.gather(*patches)]
                assert len(statuses) < 2000
        await wait_for(lambda: not served.sessions.active, 10)
    assert set(statuses) <= {200, 204, 404}, statuses
    assert dict(served.sessions.outcomes) == {"webrtc:ok": 1}
