"""Signature checks against vectors from the documented algorithms (PROTOCOLS.md 1.6, 2.6, 3.5):
Twilio's published test vectors, Ed25519 signatures made here, Plivo V3 computed here by hand."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from runner.transports.telephony import exotel, plivo, telnyx, twilio

# twilio-python's own test vectors (tests/unit/test_request_validator.py).
TWILIO_TOKEN = "12345"
TWILIO_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
TWILIO_PARAMS = {"CallSid": ["CA1234567890ABCDE"], "Digits": ["1234"], "From": ["+14158675309"],
                 "To": ["+18005551212"], "Caller": ["+14158675309"]}


def test_twilio_signature_matches_the_published_vectors() -> None:
    assert twilio.signature(TWILIO_TOKEN, TWILIO_URL, TWILIO_PARAMS) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    duplicates = {"Sid": ["CA123"], "SidAccount": ["AC123"], "Digits": ["5678", "1234"]}
    assert twilio.signature(TWILIO_TOKEN, TWILIO_URL, duplicates) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="


@pytest.mark.parametrize(("url", "header"), [
    (TWILIO_URL, "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
    (TWILIO_URL.replace(".com", ".com:1234"), "RSOYDt4T1cUTdK1PDd93/VVr8B8="),  # port removed
    (TWILIO_URL, "kvajT1Ptam85bY51eRf/AJRuM3w="),  # signed with :443 added
    (TWILIO_URL.replace("https", "http"), "0ZXoZLH/DfblKGATFgpif+LLRf4="),  # signed with :80
])
def test_twilio_accepts_the_url_with_or_without_its_port(url: str, header: str) -> None:
    assert twilio.check_signature(TWILIO_TOKEN, url, TWILIO_PARAMS, header) is None


@pytest.mark.parametrize(("url", "params", "header", "problem"), [
    (TWILIO_URL, {**TWILIO_PARAMS, "Digits": ["9999"]}, "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
     "does not match"),  # tampered body
    ("https://mycompany.com/other.php?foo=1&bar=2", TWILIO_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
     "does not match"),  # wrong URL
    (TWILIO_URL, TWILIO_PARAMS, None, "no X-Twilio-Signature"),
])
def test_twilio_refuses_what_was_not_signed(url: str, params: dict, header: str | None,
                                            problem: str) -> None:
    assert problem in (twilio.check_signature(TWILIO_TOKEN, url, params, header) or "")


def test_twilio_websocket_upgrade_is_signed_over_the_wss_url_with_no_params() -> None:
    url = "wss://bots.example.com/ws/twilio/abc.def"
    expected = base64.b64encode(hmac.new(b"tok", url.encode(), hashlib.sha1).digest()).decode()
    assert twilio.check_signature("tok", url, {}, expected) is None
    assert twilio.check_signature("tok", url.replace("wss", "https"), {}, expected) is not None


KEY = ed25519.Ed25519PrivateKey.generate()
PUBLIC = base64.b64encode(KEY.public_key().public_bytes_raw()).decode()
BODY = b"CallSid=v3%3Aabc&From=%2B15550100&To=%2B15550199"


def telnyx_signature(timestamp: str, body: bytes) -> str:
    return base64.b64encode(KEY.sign(timestamp.encode() + b"|" + body)).decode()


def test_telnyx_accepts_an_ed25519_signature_over_timestamp_and_body() -> None:
    now = str(int(time.time()))
    assert telnyx.check_signature(PUBLIC, BODY, telnyx_signature(now, BODY), now) is None


@pytest.mark.parametrize(("case", "problem"), [
    ("tampered body", "does not match"),
    ("expired", "more than 300 s away"),
    ("from the future", "more than 300 s away"),
    ("other key", "does not match"),
    ("short signature", "not 64 bytes"),
    ("no headers", "no telnyx-signature-ed25519"),
])
def test_telnyx_refuses_tampered_expired_and_foreign_requests(case: str, problem: str) -> None:
    now = int(time.time())
    timestamp = str({"expired": now - 301, "from the future": now + 301}.get(case, now))
    signature: str | None = telnyx_signature(timestamp, BODY)
    body, public = BODY, PUBLIC
    if case == "tampered body":
        body = BODY.replace(b"15550100", b"15550666")
    elif case == "other key":
        other = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes_raw()
        public = base64.b64encode(other).decode()
    elif case == "short signature":
        signature = base64.b64encode(b"x" * 32).decode()
    elif case == "no headers":
        signature = None
    assert problem in (telnyx.check_signature(public, body, signature, timestamp) or "")


def plivo_v3(token: str, base: str, nonce: str) -> str:
    return base64.b64encode(hmac.new(token.encode(), f"{base}.{nonce}".encode(),
                                     hashlib.sha256).digest()).decode()


def test_plivo_signature_base_is_built_as_documented() -> None:
    params = {"From": ["1"], "CallUUID": ["ab"]}
    assert plivo.signature_base("POST", "https://x.example/answer", params) == \
        "https://x.example/answer?CallUUIDabFrom1"
    assert plivo.signature_base("POST", "https://x.example/answer?b=2&a=1", params) == \
        "https://x.example/answer?a=1&b=2.CallUUIDabFrom1"
    assert plivo.signature_base("POST", "https://x.example/answer?b=2", {}) == \
        "https://x.example/answer?b=2"
    assert plivo.signature_base("GET", "https://x.example/answer?To=2&From=1", {}) == \
        "https://x.example/answer?From=1&To=2"


@pytest.mark.parametrize(("url", "params", "nonce", "header", "ok"), [
    ("https://x.example/answer", {"CallUUID": ["ab"], "From": ["1"]}, "n1", None, True),
    ("https://x.example/answer", {"CallUUID": ["ab"], "From": ["1"]}, "n1", "other,{sig}", True),
    ("https://x.example/answer", {"CallUUID": ["ab"], "From": ["2"]}, "n1", None, False),
    ("https://x.example/other", {"CallUUID": ["ab"], "From": ["1"]}, "n1", None, False),
    ("https://x.example/answer", {"CallUUID": ["ab"], "From": ["1"]}, "n2", None, False),
])
def test_plivo_v3_accepts_only_the_signed_url_params_and_nonce(
        url: str, params: dict, nonce: str, header: str | None, ok: bool) -> None:
    signature = plivo_v3("plivo-token", "https://x.example/answer?CallUUIDabFrom1", "n1")
    header = (header or "{sig}").format(sig=signature)
    problem = plivo.check_signature("plivo-token", "POST", url, params, header, nonce)
    assert (problem is None) is ok


def test_exotel_basic_auth() -> None:
    good = "Basic " + base64.b64encode(b"key:token").decode()
    assert exotel.check_basic_auth(good, "key", "token") is None
    assert "do not match" in (exotel.check_basic_auth(good, "key", "other") or "")
    assert "no Basic" in (exotel.check_basic_auth(None, "key", "token") or "")
    assert "not base64" in (exotel.check_basic_auth("Basic %%%", "key", "token") or "")
