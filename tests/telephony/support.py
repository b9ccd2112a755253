"""Shared pieces of the telephony tests: provider credentials, a stand-in for the providers' REST
APIs on 127.0.0.1, the bot under test, and dialing a synthetic caller into a served app."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runner.audio import tone
from runner.config import Config
from runner.serve import bind_socket
from runner.smoke.callers import Target
from runner.smoke.callers.phone import PhoneCaller
from runner.smoke.callers.telephony import CALLERS
from runner.transports.base import Dtmf, Event, MarkReached, Transport

from conftest import make_config

PROVIDERS = ("twilio", "telnyx", "plivo", "exotel", "vonage")
ALL = ",".join(PROVIDERS)
PUBLIC_URL = "https://bots.example.com"

TELNYX_KEY = ed25519.Ed25519PrivateKey.generate()
TELNYX_PUBLIC = base64.b64encode(TELNYX_KEY.public_key().public_bytes(
    serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()
VONAGE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
VONAGE_PEM = VONAGE_KEY.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()).decode()

TWILIO_SID = "AC" + "0" * 32
SECRETS = {
    "RUNNER_SECRET": "a-long-random-test-secret",
    "TWILIO_ACCOUNT_SID": TWILIO_SID, "TWILIO_AUTH_TOKEN": "twilio-auth-token",
    "TELNYX_API_KEY": "KEYtelnyx", "TELNYX_PUBLIC_KEY": TELNYX_PUBLIC,
    "PLIVO_AUTH_ID": "MAPLIVOAUTHID", "PLIVO_AUTH_TOKEN": "plivo-auth-token",
    "EXOTEL_API_KEY": "exotel-key", "EXOTEL_API_TOKEN": "exotel-token",
    "VONAGE_APPLICATION_ID": "vonage-app", "VONAGE_PRIVATE_KEY": VONAGE_PEM,
}


def phone_config(transport: str = ALL, mode: str = "serve", api_url: str = "http://127.0.0.1:9",
                 credentials: bool = True, **flags: Any) -> Config:
    """Serve mode with every provider's credentials and REST base URLs pointing at `api_url`."""
    environ = dict(SECRETS) if credentials else {"RUNNER_SECRET": SECRETS["RUNNER_SECRET"]}
    environ.update({"TWILIO_API_URL": api_url, "TELNYX_API_URL": f"{api_url}/v2",
                    "PLIVO_API_URL": f"{api_url}/v1", "VONAGE_API_URL": api_url})
    flags.setdefault("public_url", PUBLIC_URL)
    return make_config(mode, environ, transport=transport, **flags)


def target(served: Any) -> Target:
    return Target(served.http, served.ws, served.context.config)


async def dial(served: Any, provider: str, query: dict[str, str] | None = None,
               **options: Any) -> PhoneCaller:
    """A synthetic call through the provider's answer webhook into the served app."""
    phone = CALLERS[provider](**options)
    url, headers = await phone.dial(target(served), query=query, signing_key=TELNYX_KEY)
    await phone.connect(url, headers)
    return phone


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class ProviderApi:
    """Answers as the providers' REST APIs do; `status` overrides the answer (404: call gone)."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    status: int | None = None

    async def handle(self, request: Request) -> Response:
        self.requests.append(Recorded(request.method, request.url.path, dict(request.headers),
                                      await request.body()))
        if self.status is not None:
            return JSONResponse({"code": 20404, "errors": [{"code": "90018"}]}, self.status)
        if request.method == "DELETE":
            return Response(status_code=204)
        return JSONResponse({"status": "completed"})


@contextlib.asynccontextmanager
async def provider_api() -> AsyncIterator[ProviderApi]:
    api = ProviderApi()
    app = Starlette(routes=[Route("/{path:path}", api.handle,
                                  methods=["GET", "POST", "PUT", "DELETE"])])
    async with serve_asgi(app) as url:
        api.url = url
        yield api


@contextlib.asynccontextmanager
async def serve_asgi(app: Any) -> AsyncIterator[str]:
    """Any ASGI app on an ephemeral 127.0.0.1 port; yields its base URL."""
    sock = bind_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False,
                                           ws="websockets-sansio", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


class PhoneBot:
    """The bot under test: echoes what it hears; DTMF digits make it place a mark (1), barge in
    over its own speech (2) or hang up (9). Everything it sees is recorded."""

    __name__ = "phone_bot"

    def __init__(self) -> None:
        self.transports: list[Transport] = []
        self.events: list[Event] = []

    async def __call__(self, transport: Transport) -> None:
        self.transports.append(transport)
        events = asyncio.create_task(self._follow(transport))
        try:
            async for frame in transport.audio(sample_rate=16000):
                await transport.send_audio(frame)
        finally:
            events.cancel()

    async def _follow(self, transport: Transport) -> None:
        async for event in transport.events():
            self.events.append(event)
            if event == Dtmf("1"):
                await transport.mark("m1")
            elif event == Dtmf("2"):
                await transport.send_audio(tone(440, 0.2, 16000))
                await transport.mark("queued")
                await transport.send_audio(tone(440, 1.0, 16000))
                await transport.mark("tail")
                await asyncio.sleep(0.5)
                await transport.clear_audio()
            elif event == Dtmf("9"):
                await transport.hangup("the caller pressed 9")

    def marks(self) -> list[MarkReached]:
        return [event for event in self.events if isinstance(event, MarkReached)]

    @property
    def transport(self) -> Transport:
        return self.transports[-1]
