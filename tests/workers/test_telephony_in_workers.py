"""Phone calls with each call's bot in a worker process: the provider codec runs there, unchanged."""

from __future__ import annotations

import pytest
import websockets
from telephony.support import ALL, PROVIDERS, dial, phone_config, provider_api
from websockets.exceptions import InvalidStatus

from runner.audio import dominant_frequency, tone
from workers.support import worker_bot

from conftest import serve, wait_for

PHONE = {"role": "phone", "bot_id": "support-en"}


async def test_every_provider_echoes_through_a_worker_with_its_call_data() -> None:
    async with serve(phone_config(ALL, isolation="process", prewarm="2"), worker_bot()) as served:
        for provider in PROVIDERS:
            phone = await dial(served, provider, query=PHONE)
            rate = phone.audio.sample_rate
            await phone.send_audio(tone(1000, 0.6, rate).pcm)
            await phone.wait_heard(0.5, timeout=10)
            assert abs(dominant_frequency(bytes(phone.heard), rate) - 1000) < 10
            (session,) = served.sessions.active.values()  # registered by the server
            assert session.info.kind == provider and session.info.call.call_id == phone.call_id
            if provider != "vonage":  # Vonage sends no custom parameters
                assert session.info.body["bot_id"] == "support-en"
            await phone.hang_up()
            await wait_for(lambda: not served.sessions.active, 10)
            assert served.sessions.outcomes[f"{provider}:client_left"] == 1
            assert phone.errors == []


async def test_dtmf_marks_and_the_rest_hang_up_work_from_a_worker() -> None:
    async with provider_api() as api, \
            serve(phone_config("twilio", api_url=api.url, isolation="process"),
                  worker_bot()) as served:
        phone = await dial(served, "twilio", query=PHONE)
        await phone.send_dtmf("1")
        await phone.wait_confirmed("m1", timeout=10)
        await phone.send_dtmf("9")
        await phone.wait_closed(10)
        await wait_for(lambda: not served.sessions.active)
        assert [(r.method, r.path.rsplit("/", 1)[-1]) for r in api.requests] == [
            ("POST", f"{phone.call_id}.json")]
        assert phone.errors == []


async def test_a_stream_token_opens_one_socket_per_server_and_refusals_spend_no_worker() -> None:
    async with serve(phone_config("twilio", isolation="process"), worker_bot()) as served:
        phone = await dial(served, "twilio")
        url = phone._ws.request.path
        await phone.send_audio(tone(600, 0.3, 8000).pcm)
        await phone.wait_heard(0.2, timeout=10)
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(f"{served.ws}{url}")
        assert refused.value.response.status_code == 403
        await phone.hang_up()
        await wait_for(lambda: not served.sessions.active)
        assert served.sessions.started_total == {"twilio": 1}


async def test_a_crashed_worker_hangs_up_its_call() -> None:
    async with serve(phone_config("twilio", isolation="process"), worker_bot()) as served:
        phone = await dial(served, "twilio", query={"role": "segv"})
        await phone.send_audio(tone(600, 0.1, 8000).pcm)
        await phone.wait_closed(10)
        assert phone.close_code == 1006  # its worker owned the stream: the kernel closed it
        await wait_for(lambda: not served.sessions.active)
        assert dict(served.sessions.outcomes) == {"twilio:crashed": 1}
