"""The answer webhooks: a provider asks what to do with a call; we say "stream it to us".

Each answer points the provider at `wss://<public host>/ws/<provider>/<token>`, where the token
carries the call id, From, To and the webhook URL's query parameters (the custom parameters a
user sets per number), signed. Signatures are checked first when verification is on; a request
that fails gets 403 and a log line.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Mapping
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from runner.config import Config
from runner.transports.base import CallInfo
from runner.transports.telephony import plivo, telnyx, twilio, vonage
from runner.transports.telephony.tokens import MAX_PARAMETER_CHARS, StreamTokens, path_key
from runner.transports.telephony.urls import public_url, stream_url

log = logging.getLogger("runner.telephony")

Form = dict[str, list[str]]

#: Where each webhook provider puts the call id, and the secret its signature check needs.
CALL_ID_FIELD = {"twilio": "CallSid", "telnyx": "CallSid", "plivo": "CallUUID"}
SECRET_SETTING = {"twilio": ("twilio_auth_token", "TWILIO_AUTH_TOKEN"),
                  "telnyx": ("telnyx_public_key", "TELNYX_PUBLIC_KEY"),
                  "plivo": ("plivo_auth_token", "PLIVO_AUTH_TOKEN")}
ANSWERS = {"twilio": twilio.answer, "telnyx": telnyx.answer, "plivo": plivo.answer}


def _first(form: Mapping[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None


def _custom_parameters(request: Request, exclude: frozenset[str] = frozenset()) -> dict[str, str]:
    """The webhook URL's query parameters: per-number data for the bot (`transport.session.body`)."""
    parameters = {key: value for key, value in request.query_params.items() if key not in exclude}
    if len(json.dumps(parameters)) > MAX_PARAMETER_CHARS:
        log.warning("custom parameters of %d characters do not fit in a stream URL (limit %d); "
                    "the call goes on without them", len(json.dumps(parameters)),
                    MAX_PARAMETER_CHARS)
        return {}
    return parameters


class Answers:
    """The webhook handlers of one app."""

    def __init__(self, config: Config, tokens: StreamTokens) -> None:
        self.config = config
        self.tokens = tokens

    async def answer(self, provider: str, request: Request) -> Response:
        """Twilio, Telnyx and Plivo: check the signature, then answer with the provider's XML."""
        body = await request.body()
        form: Form = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
        if self.config.verify_signatures:
            refusal = self._check(provider, request, body, form)
            if refusal is not None:
                return refusal
        call_id = _first(form, CALL_ID_FIELD[provider])
        if not call_id:
            log.warning("a %s webhook without %s: not a call", provider, CALL_ID_FIELD[provider])
            return PlainTextResponse(f"missing {CALL_ID_FIELD[provider]}", 400)
        token = self.tokens.issue(provider, call_id, _first(form, "From"), _first(form, "To"),
                                  _custom_parameters(request))
        xml = ANSWERS[provider](stream_url(self.config, provider, token))
        return Response(xml, media_type="application/xml")

    def _check(self, provider: str, request: Request, body: bytes, form: Form) -> Response | None:
        name, env = SECRET_SETTING[provider]
        secret = getattr(self.config, name)
        if not secret:
            log.error("refused a %s webhook: %s is not set, so its signature cannot be checked",
                      provider, env)
            return PlainTextResponse(f"{env} is not set on this server: cannot verify {provider} "
                                     "signatures", 403)
        headers = request.headers
        url = public_url(self.config, request.scope)
        if provider == "twilio":
            problem = twilio.check_signature(secret, url, form, headers.get("x-twilio-signature"))
        elif provider == "telnyx":
            problem = telnyx.check_signature(secret, body, headers.get("telnyx-signature-ed25519"),
                                             headers.get("telnyx-timestamp"))
        else:
            problem = plivo.check_signature(secret, request.method, url, form,
                                            headers.get("x-plivo-signature-v3"),
                                            headers.get("x-plivo-signature-v3-nonce"))
        if problem is None:
            return None
        log.warning("refused a %s webhook from %s: %s", provider,
                    request.client.host if request.client else "?", problem)
        return PlainTextResponse("invalid signature", 403)

    async def vonage(self, request: Request, key: str | None) -> Response:
        """The NCCO for a Vonage answer URL (`/vonage/answer/<key>`, key checked when verifying)."""
        expected = path_key(self.config, "vonage")
        if self.config.verify_signatures and not hmac.compare_digest(key or "", expected):
            log.warning("refused a vonage answer request: %s", "wrong key" if key else "no key")
            return PlainTextResponse("forbidden", 403)
        query = request.query_params
        call = CallInfo("vonage", call_id=query.get("uuid"), from_number=query.get("from"),
                        to_number=query.get("to"))
        parameters = _custom_parameters(request, vonage.ANSWER_FIELDS)
        ncco = vonage.answer(stream_url(self.config, "vonage", expected), call, parameters)
        return JSONResponse(ncco)
