"""Mounts the phone routes of the selected providers: answer webhooks and the media sockets.

- `POST /twilio`, `/telnyx`, `/plivo` (and `POST /` when exactly one of them is selected): the
  answer XML, pointing at `wss://<public host>/ws/<provider>/<token>`.
- `GET /vonage/answer/<key>`: the NCCO (Exotel needs nothing: its applet takes our URL).
- `WS /ws` detects the provider; `WS /ws/<provider>[/<token>]` names it (for look-alikes such as
  SignalWire on Twilio's protocol). Admission rules are in admission.py.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import Response
from starlette.websockets import WebSocketState

from runner.config import Config, ConfigError
from runner.context import AppContext, SessionRoute
from runner.handover import ReplayWebSocket, websocket_session
from runner.regroup import ExotelRegrouping
from runner.sessions import SessionRefused
from runner.transports import REGISTRY
from runner.transports.base import CallInfo, check_options
from runner.transports.telephony.admission import Admission, Gate, Refused
from runner.transports.telephony.detect import (
    CLOSE_POLICY,
    DetectionError,
    TelephonyStream,
    parse_telephony_websocket,
)
from runner.transports.telephony.providers import CODECS, HANGUPS, WEBHOOK_PROVIDERS
from runner.transports.telephony.rest import RestClient
from runner.transports.telephony.tokens import StreamTokens, secret_for
from runner.transports.telephony.transport import TelephonyTransport, close_reason
from runner.transports.telephony.webhooks import SECRET_SETTING, Answers

log = logging.getLogger("runner.telephony")

CLOSE_TRY_AGAIN_LATER = 1013


def mount(app: FastAPI, context: AppContext, kinds: list[str]) -> None:
    config = context.config
    for kind in kinds:
        check_options(kind, context.bot.options_for(kind), TelephonyTransport.options)
    _check_config(config, kinds)
    tokens = StreamTokens(secret_for(config))
    answers = Answers(config, tokens)
    rest = RestClient()
    context.shutdown_hooks.append(rest.aclose)
    streams = Streams(context, Gate(config, tokens, kinds), rest, kinds)

    webhook_kinds = [kind for kind in kinds if kind in WEBHOOK_PROVIDERS]
    for kind in webhook_kinds:
        app.add_api_route(f"/{kind}", _answer_route(answers, kind), methods=["POST"])
    if len(webhook_kinds) == 1:
        app.add_api_route("/", _answer_route(answers, webhook_kinds[0]), methods=["POST"])
    if "vonage" in kinds:
        @app.get("/vonage/answer")
        async def vonage_answer(request: Request) -> Response:
            return await answers.vonage(request, None)

        @app.get("/vonage/answer/{key}")
        async def vonage_answer_key(request: Request, key: str) -> Response:
            return await answers.vonage(request, key)

    async def ws(websocket: WebSocket) -> None:
        await streams.serve(websocket, None, None)

    async def ws_provider(websocket: WebSocket, provider: str) -> None:
        await streams.serve(websocket, provider, None)

    async def ws_provider_token(websocket: WebSocket, provider: str, token: str) -> None:
        await streams.serve(websocket, provider, token)

    for path, endpoint in (("/ws", ws), ("/ws/{provider}", ws_provider),
                           ("/ws/{provider}/{token}", ws_provider_token)):
        context.route(app, SessionRoute("WS", path, "telephony", keyed=False,
                                        refusal=streams.refusal), endpoint)


def _answer_route(answers: Answers, provider: str) -> Any:
    async def answer(request: Request) -> Response:
        return await answers.answer(provider, request)

    answer.__name__ = f"{provider}_answer"
    return answer


def _check_config(config: Config, kinds: list[str]) -> None:
    """Fail at start, naming everything missing at once, for what would break every call; warn
    for what breaks some."""
    missing = []
    if config.mode == "serve" and not config.public_url:
        missing.append("--public-url (or RUNNER_PUBLIC_URL): the public URL providers reach this "
                       "server at; pass --public-url https://your.host (or --proxy your.host)")
    if config.mode == "serve" and not config.secret:
        missing.append("RUNNER_SECRET: the key that signs stream tokens; set it to a long random "
                       "string, the same on every instance (python -c 'import secrets; "
                       "print(secrets.token_urlsafe(32))')")
    if config.verify_signatures:
        for kind in kinds:
            needed = [SECRET_SETTING[kind]] if kind in SECRET_SETTING else []
            if kind == "exotel":
                needed = [("exotel_api_key", "EXOTEL_API_KEY"),
                          ("exotel_api_token", "EXOTEL_API_TOKEN")]
            missing.extend(
                f"{env}: what proves a request comes from {kind} (signature checks are on); set "
                f"it from your {kind} account, or pass --no-verify-signatures to accept any"
                for name, env in needed if not getattr(config, name))
    if missing:
        raise ConfigError("\n".join([f"settings missing for {', '.join(kinds)}:",
                                      *(f"  {item}" for item in missing)]))
    if config.mode == "smoke":  # its callers are local and need no hang-up: nothing to warn of
        return
    if not config.public_url:
        log.warning("no --public-url: answers point providers at %s, which they cannot reach "
                    "(fine for local test callers); set --public-url or --proxy for real calls",
                    config.base_url(websocket=True))
    if "telnyx" in kinds and not config.telnyx_api_key:
        log.warning("TELNYX_API_KEY is not set: a bot cannot hang up a Telnyx call (closing the "
                    "media stream does not end it)")


class Streams:
    """The media-socket handler: admit, detect, open a session, run the bot on the call."""

    def __init__(self, context: AppContext, gate: Gate, rest: RestClient,
                 kinds: list[str]) -> None:
        self.context = context
        self.config = context.config
        self.gate = gate
        self.rest = rest
        self.kinds = kinds

    def refusal(self, scope: dict[str, Any], params: dict[str, Any]) -> str | None:
        """Why the gate would refuse this media socket, from its request alone (the same gate,
        so a stream token let in here is spent here)."""
        try:
            self.gate.admit(WebSocket(scope, _no_messages, _no_messages), params.get("provider"),
                            params.get("token"))
        except Refused as refused:
            return str(refused)
        return None

    async def serve(self, websocket: WebSocket, provider: str | None, token: str | None) -> None:
        peer = websocket.client.host if websocket.client else "?"
        try:
            admission = self.gate.admit(websocket, provider, token)
        except Refused as refused:
            log.warning("refused a media socket from %s: %s", peer, refused)
            await websocket.close(CLOSE_POLICY)  # before accept: HTTP 403
            return
        if self.context.bot.pipecat:  # keep what detection reads, for the bot to read again
            websocket = ReplayWebSocket(websocket, record=True)
        try:
            stream = await parse_telephony_websocket(
                websocket, provider=admission.provider, timeout=self.config.detect_timeout)
        except DetectionError as error:
            log.warning("closed a media socket from %s: %s", peer, error.reason)
            if error.code is not None:
                await _close(websocket, error.code, error.reason)
            return
        problem = self._mismatch(stream, admission)
        if problem:
            log.warning("closed a %s stream from %s: %s", stream.provider, peer, problem)
            await _close(websocket, CLOSE_POLICY, problem)
            return
        call, body = _call_and_body(stream, admission)
        try:
            session = self.context.sessions.open(stream.provider, body=body, call=call)
        except SessionRefused as refused:
            await _close(websocket, CLOSE_TRY_AGAIN_LATER, str(refused))
            return
        if isinstance(websocket, ReplayWebSocket):  # a Pipecat runner bot: it reads the call
            bot_socket = (ExotelRegrouping(websocket, websocket.stop_recording(),
                                           stream.start.audio.sample_rate)
                          if stream.provider == "exotel" else websocket.replaying())
            await session.run(websocket_session(session.info, bot_socket, None,
                                                end_call=lambda: self._hang_up(call)))
            return
        codec = CODECS[stream.provider](stream.start)
        transport = TelephonyTransport(session.info, websocket, codec, replay=stream.replay,
                                       end_call=lambda: self._hang_up(call))
        await session.run(transport)

    def _mismatch(self, stream: TelephonyStream, admission: Admission) -> str | None:
        if stream.provider not in self.kinds:
            return f"{stream.provider} streams are not served here (serving {', '.join(self.kinds)})"
        claims = admission.claims
        if claims is not None and claims.call_id != stream.call.call_id:
            return f"the stream is for call {stream.call.call_id}, its token for {claims.call_id}"
        return None

    async def _hang_up(self, call: CallInfo) -> None:
        """The provider's REST hang-up, when it has one and we have its credentials."""
        build = HANGUPS.get(call.provider)
        if build is None:
            return
        try:
            request = build(self.config, call)
            if request is None:
                missing = REGISTRY[call.provider].missing_credentials(self.config)
                why = f"{', '.join(missing)} not set" if missing else "no call id"
                level = logging.WARNING if call.provider == "telnyx" else logging.DEBUG
                log.log(level, "no REST hang-up for this %s call (%s); closed its stream",
                        call.provider, why)
                return
            await self.rest.hang_up(call.provider, request)
        except Exception:
            log.warning("%s hang-up failed", call.provider, exc_info=True)


def _call_and_body(stream: TelephonyStream, admission: Admission) -> tuple[CallInfo, dict[str, str]]:
    """The call as the provider's start describes it, completed by what the webhook vouched for."""
    call, claims = stream.call, admission.claims
    if claims is None:
        return call, dict(stream.parameters)
    call = replace(call, from_number=call.from_number or claims.from_number,
                   to_number=call.to_number or claims.to_number)
    return call, {**claims.parameters, **stream.parameters}


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.application_state == WebSocketState.CONNECTED:
        try:
            await websocket.close(code, close_reason(reason))
        except (RuntimeError, OSError):
            log.debug("closing a media socket failed", exc_info=True)


async def _no_messages() -> Any:
    raise RuntimeError("only the request is looked at here")
