"""One synthetic call per provider through the real server: echo, call data, DTMF, marks,
barge-in and hang-up (the REST half checked against a stand-in API on 127.0.0.1)."""

from __future__ import annotations

import base64
import json
import logging

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from runner.audio import dominant_frequency, tone
from runner.transports.base import Dtmf, MarkReached
from telephony.support import (
    PROVIDERS,
    SECRETS,
    TWILIO_SID,
    VONAGE_KEY,
    PhoneBot,
    dial,
    phone_config,
    provider_api,
)

from conftest import as_bot, serve, wait_for

QUERY = {"bot_id": "support-en"}


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_echo_comes_back_in_the_providers_format_with_the_call_data(provider: str) -> None:
    bot = PhoneBot()
    async with provider_api() as api, \
            serve(phone_config(provider, api_url=api.url), as_bot(bot)) as served:
        phone = await dial(served, provider, query=QUERY)
        rate = phone.audio.sample_rate
        await phone.send_audio(tone(1000, 0.6, rate).pcm)
        await phone.wait_heard(0.5)
        assert abs(dominant_frequency(bytes(phone.heard), rate) - 1000) < 10
        session = bot.transport.session
        assert session.call.provider == provider == bot.transport.kind
        assert session.call.call_id == phone.call_id
        assert (session.call.from_number, session.call.to_number) == (phone.from_number,
                                                                      phone.to_number)
        assert session.body["bot_id"] == "support-en"
        await phone.hang_up()
        await wait_for(lambda: not served.sessions.active)
        assert served.sessions.outcomes[f"{provider}:client_left"] == 1
        assert phone.errors == []
        assert api.requests == []  # the caller hung up: nothing for us to end


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_dtmf_reaches_the_bot_and_marks_report_when_played(provider: str) -> None:
    bot = PhoneBot()
    async with serve(phone_config(provider), as_bot(bot)) as served:
        phone = await dial(served, provider)
        await phone.send_dtmf("1")
        await wait_for(lambda: MarkReached("m1") in bot.events)
        assert Dtmf("1") in bot.events
        assert phone.marks == ["m1"] and phone.confirmed == ["m1"]
        await phone.hang_up()
        assert phone.errors == []


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_clear_audio_sends_the_providers_clear_and_settles_pending_marks(
        provider: str) -> None:
    bot = PhoneBot()
    async with serve(phone_config(provider), as_bot(bot)) as served:
        # The provider plays a second behind: "queued" is still in its buffer at the clear.
        phone = await dial(served, provider, playback_delay=1.0)
        await phone.send_dtmf("2")
        await wait_for(lambda: len(bot.marks()) == 2 and phone.clears == 1)
        assert set(bot.marks()) == {MarkReached("queued", cleared=True),
                                    MarkReached("tail", cleared=True)}
        assert phone.marks == ["queued"]  # "tail" never left our own queue
        await phone.hang_up()
        assert phone.errors == []


def _check_hangup(provider: str, request, phone) -> None:
    if provider == "twilio":
        assert (request.method, request.path) == (
            "POST", f"/2010-04-01/Accounts/{phone.account_id}/Calls/{phone.call_id}.json")
        assert request.headers["authorization"] == basic(TWILIO_SID, SECRETS["TWILIO_AUTH_TOKEN"])
        assert request.body == b"Status=completed"
    elif provider == "telnyx":
        assert (request.method, request.path) == ("POST",
                                                  f"/v2/calls/{phone.call_id}/actions/hangup")
        assert request.headers["authorization"] == f"Bearer {SECRETS['TELNYX_API_KEY']}"
    elif provider == "plivo":
        assert (request.method, request.path) == (
            "DELETE", f"/v1/Account/{SECRETS['PLIVO_AUTH_ID']}/Call/{phone.call_id}/")
        assert request.headers["authorization"] == basic(SECRETS["PLIVO_AUTH_ID"],
                                                         SECRETS["PLIVO_AUTH_TOKEN"])
    else:
        assert (request.method, request.path) == ("PUT", f"/v1/calls/{phone.call_id}")
        assert json.loads(request.body) == {"action": "hangup"}
        scheme, _, jwt = request.headers["authorization"].partition(" ")
        header, claims, signature = jwt.split(".")
        padded = signature + "=" * (-len(signature) % 4)
        VONAGE_KEY.public_key().verify(base64.urlsafe_b64decode(padded),
                                       f"{header}.{claims}".encode(), padding.PKCS1v15(),
                                       hashes.SHA256())
        payload = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
        assert scheme == "Bearer" and payload["application_id"] == "vonage-app"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_hangup_closes_the_socket_and_ends_the_call_through_the_rest_api(
        provider: str) -> None:
    bot = PhoneBot()
    async with provider_api() as api, \
            serve(phone_config(provider, api_url=api.url), as_bot(bot)) as served:
        phone = await dial(served, provider)
        await phone.send_dtmf("9")
        await phone.wait_closed()
        await wait_for(lambda: not served.sessions.active)
        assert phone.close_code == 1000 and "pressed 9" in phone.close_reason
        if provider == "exotel":
            assert api.requests == []  # no REST hang-up: the flow's next applet ends the call
        else:
            assert len(api.requests) == 1
            _check_hangup(provider, api.requests[0], phone)


@pytest.mark.parametrize("provider", ["twilio", "plivo", "vonage"])
async def test_a_bot_that_raises_hangs_up_its_call(provider: str) -> None:
    async def broken(transport):
        async for _ in transport.audio():
            raise RuntimeError("the bot broke")

    async with provider_api() as api, \
            serve(phone_config(provider, api_url=api.url), as_bot(broken)) as served:
        phone = await dial(served, provider)
        await phone.send_audio(tone(440, 0.1, phone.audio.sample_rate).pcm)
        await phone.wait_closed()
        await wait_for(lambda: len(api.requests) == 1)
        _check_hangup(provider, api.requests[0], phone)
        # The session ends once the hang-up's answer is back, a moment after the API saw it.
        await wait_for(lambda: not served.sessions.active)
        assert served.sessions.outcomes[f"{provider}:bot_error"] == 1


@pytest.mark.parametrize(("provider", "status"), [("twilio", 404), ("telnyx", 422)])
async def test_a_call_that_already_ended_is_a_successful_hangup(
        provider: str, status: int, caplog: pytest.LogCaptureFixture) -> None:
    bot = PhoneBot()
    async with provider_api() as api, \
            serve(phone_config(provider, api_url=api.url), as_bot(bot)) as served:
        api.status = status
        phone = await dial(served, provider)
        with caplog.at_level(logging.INFO, "runner.telephony"):
            await phone.send_dtmf("9")
            await phone.wait_closed()
            await wait_for(lambda: len(api.requests) == 1)
            await wait_for(lambda: not served.sessions.active)
        assert f"already ended (HTTP {status})" in caplog.text
        assert served.sessions.outcomes[f"{provider}:ok"] == 1


@pytest.mark.parametrize("provider", ["twilio", "telnyx"])
async def test_missing_rest_credentials_never_break_a_call(
        provider: str, caplog: pytest.LogCaptureFixture) -> None:
    bot = PhoneBot()
    config = phone_config(provider, credentials=False, verify_signatures=False)
    async with serve(config, as_bot(bot)) as served:
        phone = await dial(served, provider)
        with caplog.at_level(logging.DEBUG, "runner.telephony"):
            await phone.send_dtmf("9")
            await phone.wait_closed()
            await wait_for(lambda: not served.sessions.active)
        assert phone.close_code == 1000
        assert served.sessions.outcomes[f"{provider}:ok"] == 1
        missing = "TELNYX_API_KEY" if provider == "telnyx" else "TWILIO_ACCOUNT_SID"
        assert f"no REST hang-up for this {provider} call ({missing}" in caplog.text
