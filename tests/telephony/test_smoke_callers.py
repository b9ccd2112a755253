"""`caller(kind)`, the entry point `runner smoke` uses, completes a call for every provider."""

from __future__ import annotations

import pytest

from runner.audio import rms, tone
from runner.smoke.callers import caller_for
from telephony.support import PROVIDERS, PhoneBot, phone_config, target

from conftest import as_bot, serve, wait_for


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_the_smoke_caller_answers_streams_and_hangs_up(provider: str) -> None:
    # Serve mode with every secret set: the caller signs what it can, Telnyx with nothing to sign.
    config = phone_config(provider, verify_signatures=provider != "telnyx")
    async with serve(config, as_bot(PhoneBot())) as served:
        call = caller_for(provider)
        assert call is not None
        result = await call(target(served), tone(500, 0.5, 16000), 0.5)
        assert result.connected and result.detail == ""
        assert result.received is not None and result.received.duration > 0.3
        assert rms(result.received.pcm) > 0.05
        await wait_for(lambda: served.sessions.outcomes[f"{provider}:client_left"] == 1)
