"""The public phone endpoint in `serve`: signed webhooks only, and media sockets only for calls
that came through them (or carry Exotel's Basic auth / Vonage's key)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import time
from urllib.parse import urlencode

import httpx
import pytest
import websockets

from runner.app import create_app
from runner.config import ConfigError
from runner.smoke.callers.telephony import ExotelCaller, PlivoCaller, TwilioCaller
from runner.transports.telephony.tokens import path_key
from telephony.support import (
    PUBLIC_URL,
    SECRETS,
    TELNYX_KEY,
    PhoneBot,
    dial,
    phone_config,
    target,
)

from conftest import as_bot, make_config, serve, wait_for

FORM = {"CallSid": "CA" + "1" * 32, "AccountSid": "AC" + "2" * 32, "From": "+15550100",
        "To": "+15550199"}


def twilio_headers(url: str, form: dict[str, str], token: str = SECRETS["TWILIO_AUTH_TOKEN"]):
    message = url + "".join(name + form[name] for name in sorted(form))
    signature = base64.b64encode(hmac.new(token.encode(), message.encode(), hashlib.sha1).digest())
    return {"X-Twilio-Signature": signature.decode(),
            "Content-Type": "application/x-www-form-urlencoded"}


async def post(served, path: str, form: dict[str, str], headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(served.http + path, content=urlencode(form), headers=headers)


async def refused(url: str, headers: dict[str, str] | None = None) -> int:
    with pytest.raises(websockets.InvalidStatus) as error:
        async with websockets.connect(url, additional_headers=headers or {}):
            pass
    return error.value.response.status_code


async def test_twilio_webhook_answers_signed_requests_with_a_tokened_stream_url() -> None:
    async with serve(phone_config("twilio"), as_bot(PhoneBot())) as served:
        answer = await post(served, "/twilio?bot=en", FORM,
                            twilio_headers(f"{PUBLIC_URL}/twilio?bot=en", FORM))
        assert answer.status_code == 200 and "xml" in answer.headers["content-type"]
        url = re.search(r'<Connect><Stream url="([^"]+)"\s*/></Connect>', answer.text)[1]
        assert re.fullmatch(r"wss://bots\.example\.com/ws/twilio/[\w-]+\.[\w-]+", url)

        tampered = {**FORM, "From": "+15550666"}
        wrong_url = twilio_headers(f"{PUBLIC_URL}/elsewhere", FORM)
        for form, headers in [(tampered, twilio_headers(f"{PUBLIC_URL}/twilio", FORM)),
                              (FORM, wrong_url),
                              (FORM, {"Content-Type": "application/x-www-form-urlencoded"})]:
            answer = await post(served, "/twilio", form, headers)
            assert (answer.status_code, answer.text) == (403, "invalid signature")


def test_a_provider_without_the_secret_that_checks_it_is_a_start_up_error() -> None:
    """A webhook its server could never verify is refused at start, naming every variable."""
    config = make_config("serve", {"RUNNER_SECRET": "s"}, transport="twilio,telnyx,plivo",
                         public_url=PUBLIC_URL)
    with pytest.raises(ConfigError) as error:
        create_app(config, as_bot(PhoneBot()))
    for variable in ("TWILIO_AUTH_TOKEN", "TELNYX_PUBLIC_KEY", "PLIVO_AUTH_TOKEN"):
        assert variable in str(error.value)


async def test_telnyx_webhook_needs_a_fresh_ed25519_signature() -> None:
    async with serve(phone_config("telnyx"), as_bot(PhoneBot())) as served:
        body = urlencode(FORM).encode()
        for age, status in [(0, 200), (301, 403)]:
            stamp = str(int(time.time()) - age)
            signature = base64.b64encode(TELNYX_KEY.sign(stamp.encode() + b"|" + body)).decode()
            answer = await post(served, "/telnyx", FORM, {
                "telnyx-signature-ed25519": signature, "telnyx-timestamp": stamp,
                "Content-Type": "application/x-www-form-urlencoded"})
            assert answer.status_code == status
            if status == 200:
                assert 'bidirectionalMode="rtp"' in answer.text


async def test_plivo_and_single_provider_root_answer_with_plivo_xml() -> None:
    async with serve(phone_config("plivo"), as_bot(PhoneBot())) as served:
        for path in ("/plivo", "/"):
            form = {"CallUUID": "0f9c", "From": "15550100", "To": "15550199"}
            base = f"{PUBLIC_URL}{path}?CallUUID0f9cFrom15550100To15550199"
            signature = base64.b64encode(hmac.new(
                SECRETS["PLIVO_AUTH_TOKEN"].encode(), f"{base}.nonce".encode(),
                hashlib.sha256).digest()).decode()
            headers = {"X-Plivo-Signature-V3": signature, "X-Plivo-Signature-V3-Nonce": "nonce",
                       "Content-Type": "application/x-www-form-urlencoded"}
            answer = await post(served, path, form, headers)
            assert answer.status_code == 200
            assert re.search(r'<Stream bidirectional="true" keepCallAlive="true" '
                             r'contentType="audio/x-mulaw;rate=8000">'
                             r"wss://bots\.example\.com/ws/plivo/[\w.-]+</Stream>", answer.text)
            tampered = await post(served, path, {**form, "To": "1"}, headers)
            assert tampered.status_code == 403


async def test_stream_sockets_need_a_fresh_token_for_their_provider_and_call() -> None:
    async with serve(phone_config("twilio,plivo"), as_bot(PhoneBot())) as served:
        phone = TwilioCaller()
        url, _ = await phone.dial(target(served))
        token = url.rsplit("/", 1)[1]
        assert await refused(f"{served.ws}/ws/twilio") == 403  # no token
        assert await refused(f"{served.ws}/ws") == 403  # no credentials at all
        assert await refused(f"{served.ws}/ws/plivo/{token}") == 403  # another provider's
        assert await refused(f"{served.ws}/ws/twilio/{token[:-2]}xx") == 403  # forged
        assert await refused(f"{served.ws}/ws/exotel") == 403  # not served here

        await phone.connect(url)
        await wait_for(lambda: bool(served.sessions.active))
        assert await refused(url) == 403  # replayed
        await phone.hang_up()

        # A token names its call: a stream for another call cannot use it.
        other = TwilioCaller()
        url, _ = await other.dial(target(served))
        other.call_id = "CA" + "9" * 32
        await other.connect(url)
        await other.wait_closed()
        assert other.close_code == 1008 and "its token for" in other.close_reason


async def test_twilio_upgrade_signature_is_checked_when_sent() -> None:
    async with serve(phone_config("twilio"), as_bot(PhoneBot())) as served:
        for valid in (False, True):
            phone = TwilioCaller()
            url, _ = await phone.dial(target(served))
            public = url.replace(served.ws, "wss://bots.example.com")
            key = SECRETS["TWILIO_AUTH_TOKEN"].encode() if valid else b"wrong"
            header = base64.b64encode(hmac.new(key, public.encode(), hashlib.sha1).digest())
            headers = {"X-Twilio-Signature": header.decode()}
            if valid:
                await phone.connect(url, headers)
                await phone.send_dtmf("1")
                await wait_for(lambda: served.sessions.started_total["twilio"] == 1)
                await phone.hang_up()
            else:
                assert await refused(url, headers) == 403


async def test_exotel_sockets_need_basic_auth(caplog: pytest.LogCaptureFixture) -> None:
    bot = PhoneBot()
    async with serve(phone_config("exotel"), as_bot(bot)) as served:
        wrong = "Basic " + base64.b64encode(b"exotel-key:nope").decode()
        with caplog.at_level(logging.WARNING, "runner.telephony"):
            assert await refused(f"{served.ws}/ws/exotel") == 403
            assert await refused(f"{served.ws}/ws/exotel", {"Authorization": wrong}) == 403
        assert "do not match" in caplog.text and "exotel-token" not in caplog.text
        for path in ("/ws/exotel", "/ws"):  # on /ws, Basic auth says it is Exotel
            phone = ExotelCaller()
            url, headers = await phone.dial(target(served))
            await phone.connect(url.replace("/ws/exotel", path), headers)
            await phone.send_dtmf("1")
            await phone.wait_confirmed("m1")
            await phone.hang_up()


async def test_vonage_needs_the_key_the_banner_prints() -> None:
    async with serve(phone_config("vonage"), as_bot(PhoneBot())) as served:
        key = path_key(served.context.config, "vonage")
        assert await refused(f"{served.ws}/ws/vonage") == 403
        assert await refused(f"{served.ws}/ws/vonage/{'x' * 22}") == 403
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{served.http}/vonage/answer")).status_code == 403
            answer = await client.get(f"{served.http}/vonage/answer/{key}",
                                      params={"uuid": "u-1", "from": "1555", "to": "1666",
                                              "conversation_uuid": "c", "lang": "en"})
        assert answer.json() == [{"action": "connect", "endpoint": [{
            "type": "websocket", "uri": f"wss://bots.example.com/ws/vonage/{key}",
            "content-type": "audio/l16;rate=16000",
            "headers": {"lang": "en", "uuid": "u-1", "from": "1555", "to": "1666"}}]}]
        phone = await dial(served, "vonage")
        await phone.send_dtmf("1")
        await phone.wait_confirmed("m1")
        await phone.hang_up()


async def test_dev_mode_checks_nothing_but_still_reads_call_data_from_tokens() -> None:
    bot = PhoneBot()
    async with serve(make_config("dev", transport="plivo"), as_bot(bot)) as served:
        phone = PlivoCaller()
        await phone.connect(f"{served.ws}/ws/plivo")  # no token, no signature
        await wait_for(lambda: bool(bot.transports))
        await phone.hang_up()
        phone = await dial(served, "plivo", query={"lang": "fr"})  # unsigned webhook
        await wait_for(lambda: len(bot.transports) == 2)
        call = bot.transport.session.call
        assert (call.from_number, bot.transport.session.body) == (phone.from_number, {"lang": "fr"})
        await phone.hang_up()
