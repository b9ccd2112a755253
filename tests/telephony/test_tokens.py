"""Stream tokens: signed, short-lived, single use per instance, and free of shared state."""

from __future__ import annotations

import base64
import json

import pytest

from runner.transports.telephony.tokens import StreamTokens, TokenError, path_key

from conftest import make_config


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_carries_the_call_and_opens_one_socket() -> None:
    clock = Clock()
    tokens = StreamTokens(b"secret", clock=clock)
    token = tokens.issue("twilio", "CA1", "+1555", "+1666", {"bot": "en"})
    assert "?" not in token and "/" not in token and "secret" not in token
    claims = tokens.redeem(token, "twilio")
    assert (claims.call_id, claims.from_number, claims.to_number, dict(claims.parameters)) == (
        "CA1", "+1555", "+1666", {"bot": "en"})
    with pytest.raises(TokenError, match="already used"):
        tokens.redeem(token, "twilio")
    assert tokens.verify(token, "twilio").call_id == "CA1"  # verify never uses it up


def test_another_instance_with_the_same_secret_accepts_it() -> None:
    token = StreamTokens(b"shared").issue("plivo", "uuid-1")
    assert StreamTokens(b"shared").redeem(token, "plivo").call_id == "uuid-1"
    with pytest.raises(TokenError, match="bad signature"):
        StreamTokens(b"other").redeem(token, "plivo")


def test_tokens_expire_and_the_used_set_is_pruned() -> None:
    clock = Clock()
    tokens = StreamTokens(b"secret", ttl=120, clock=clock)
    first, second = tokens.issue("telnyx", "v3:a"), tokens.issue("telnyx", "v3:b")
    tokens.redeem(first, "telnyx")
    clock.now += 121
    with pytest.raises(TokenError, match="expired"):
        tokens.redeem(second, "telnyx")
    tokens.redeem(tokens.issue("telnyx", "v3:c"), "telnyx")
    assert len(tokens._used) == 1  # the expired entry went


@pytest.mark.parametrize("case", ["tampered", "other provider", "garbage", "empty"])
def test_forged_tokens_are_refused(case: str) -> None:
    tokens = StreamTokens(b"secret")
    token = tokens.issue("twilio", "CA1")
    provider = "twilio"
    if case == "tampered":
        payload, mac = token.split(".")
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        data["c"] = "CA2"
        forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
        token = f"{forged}.{mac}"
    elif case == "other provider":
        provider = "plivo"
    elif case == "garbage":
        token = "%%%.###"
    else:
        token = ""
    with pytest.raises(TokenError):
        tokens.redeem(token, provider)


def test_path_keys_follow_the_secret() -> None:
    one = make_config("serve", {"RUNNER_SECRET": "one"})
    again = make_config("serve", {"RUNNER_SECRET": "one"})
    two = make_config("serve", {"RUNNER_SECRET": "two"})
    assert path_key(one, "vonage") == path_key(again, "vonage") != path_key(two, "vonage")
    assert len(path_key(one, "vonage")) == 22 and "one" not in path_key(one, "vonage")
