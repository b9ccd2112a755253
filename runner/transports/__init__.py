"""The transport registry: name -> where its code lives, what it needs, what it serves.

Transport modules are imported only when selected, so `runner --help` never loads aiortc or
daily. A module named here exposes `mount(app, context, kinds)`; transports that share a module
(the telephony providers all answer on `/ws`) are mounted by one call.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass

from runner.config import SETTINGS_BY_NAME, Config
from runner.errors import UserError


class TransportUnavailable(UserError):
    """A selected transport's optional package is not installed; the message says how to fix it."""


@dataclass(frozen=True)
class Link:
    """A URL worth printing in the banner: to open in a browser or to paste at a provider."""

    label: str
    path: str
    websocket: bool = False


@dataclass(frozen=True)
class TransportSpec:
    name: str
    summary: str
    module: str
    routes: tuple[str, ...]
    links: tuple[Link, ...] = ()
    packages: tuple[str, ...] = ()
    extra: str | None = None
    credentials: tuple[str, ...] = ()

    def missing_packages(self) -> list[str]:
        """Packages that cannot be imported (checked without importing them)."""
        return [name for name in self.packages if not _findable(name)]

    def available(self) -> bool:
        return not self.missing_packages()

    def install_hint(self) -> str:
        return f"pip install 'runner[{self.extra}]'" if self.extra else "pip install runner"

    def credential_envs(self) -> list[str]:
        """Environment variables whose presence makes `serve` pick this transport."""
        return [SETTINGS_BY_NAME[name].env for name in self.credentials]

    def missing_credentials(self, config: Config) -> list[str]:
        return [SETTINGS_BY_NAME[name].env for name in self.credentials if not getattr(config, name)]

    def configured(self, config: Config) -> bool:
        return bool(self.credentials) and not self.missing_credentials(config)


def _findable(name: str) -> bool:
    """Whether a module can be imported; a dotted name's parent is imported to tell (LiveKit's
    `livekit` is a namespace package: cheap), and a missing parent means missing."""
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


_TELEPHONY_MODULE = "runner.transports.telephony.routes"
_TELEPHONY_ROUTES = ("WS /ws", "WS /ws/{provider}", "WS /ws/{provider}/{token}")

REGISTRY: dict[str, TransportSpec] = {
    spec.name: spec
    for spec in (
        TransportSpec(
            "webrtc", "peer-to-peer WebRTC (aiortc) and the browser page",
            "runner.transports.webrtc.routes",
            ("GET /", "GET /page/*", "POST /api/offer", "PATCH /api/offer", "POST /start",
             "/sessions/{id}/api/offer"),
            (Link("open in a browser", "/"),),
            packages=("aiortc", "av"), extra="webrtc",
        ),
        TransportSpec(
            "daily", "Daily rooms (daily-python), created through Daily's REST API",
            "runner.transports.daily.routes",
            ("POST /start", "GET /daily", "POST /daily/dialin"),
            (Link("start a session", "/start"),
             Link("dial-in webhook (POST, add ?secret=)", "/daily/dialin")),
            packages=("daily",), extra="daily", credentials=("daily_api_key",),
        ),
        TransportSpec(
            "livekit", "LiveKit rooms: the bot joins with livekit.rtc, tokens by livekit-api",
            "runner.transports.livekit.routes", ("GET /", "GET /livekit/page", "POST /start"),
            (Link("open in a browser", "/"), Link("start a session", "/start")),
            packages=("livekit.rtc", "livekit.api"), extra="livekit",
            credentials=("livekit_url", "livekit_api_key", "livekit_api_secret"),
        ),
        TransportSpec(
            "tavus", "Tavus video avatars: a replica speaks the bot's audio in a Daily room",
            "runner.transports.tavus.routes", ("POST /start", "GET /tavus"),
            (Link("start a session", "/start"),),
            packages=("daily",), extra="tavus", credentials=("tavus_api_key", "tavus_replica_id"),
        ),
        TransportSpec(
            "websocket", "plain WebSocket: binary PCM16 and JSON text",
            "runner.transports.websocket", ("WS /ws-client",),
            (Link("connect a client", "/ws-client", websocket=True),),
        ),
        TransportSpec(
            "twilio", "Twilio Media Streams", _TELEPHONY_MODULE,
            ("POST /twilio", *_TELEPHONY_ROUTES), (Link("voice webhook (POST)", "/twilio"),),
            credentials=("twilio_account_sid", "twilio_auth_token"),
        ),
        TransportSpec(
            "telnyx", "Telnyx media streaming (TeXML)", _TELEPHONY_MODULE,
            ("POST /telnyx", *_TELEPHONY_ROUTES), (Link("TeXML webhook (POST)", "/telnyx"),),
            packages=("cryptography",), extra="telephony", credentials=("telnyx_api_key",),
        ),
        TransportSpec(
            "plivo", "Plivo Audio Streams", _TELEPHONY_MODULE,
            ("POST /plivo", *_TELEPHONY_ROUTES), (Link("answer URL (POST)", "/plivo"),),
            credentials=("plivo_auth_id", "plivo_auth_token"),
        ),
        TransportSpec(
            "exotel", "Exotel Voicebot applet", _TELEPHONY_MODULE, _TELEPHONY_ROUTES,
            (Link("Voicebot applet URL", "/ws/exotel", websocket=True),),
            credentials=("exotel_api_key", "exotel_api_token"),
        ),
        TransportSpec(
            "vonage", "Vonage Voice API WebSocket", _TELEPHONY_MODULE,
            ("GET /vonage/answer/{key}", *_TELEPHONY_ROUTES),
            # {key}: a key derived from RUNNER_SECRET that authenticates Vonage (banner.py fills it).
            (Link("answer URL (NCCO)", "/vonage/answer/{key}"),
             Link("stream URL for your own NCCO", "/ws/vonage/{key}", websocket=True)),
            packages=("cryptography",), extra="telephony",
            credentials=("vonage_application_id", "vonage_private_key"),
        ),
    )
}

TELEPHONY = ("twilio", "telnyx", "plivo", "exotel")


def spec_for(name: str) -> TransportSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join([*REGISTRY, "telephony", "all"])
        raise KeyError(f"unknown transport {name!r} (known: {known})") from None


def require_available(names: Sequence[str]) -> None:
    """Fail with one line per missing optional package, naming the install command."""
    problems = []
    for name in names:
        spec = REGISTRY[name]
        missing = spec.missing_packages()
        if missing:
            problems.append(
                f"transport {name} needs {', '.join(missing)}, which is not installed: "
                f"{spec.install_hint()}"
            )
    if problems:
        raise TransportUnavailable("\n".join(problems))
