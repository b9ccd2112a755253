"""Every setting in one place, resolved flag > environment > .env file > default.

The table `SETTINGS` is the single source of truth: the CLI builds its help from it, `.env.example`
mirrors it and `Config` has one field per entry. Nothing below this module reads the environment.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from runner.errors import UserError

Mode = Literal["dev", "serve", "smoke", "console"]


class ConfigError(UserError):
    """A setting a user gave is wrong; the message names the setting and the fix."""


def _int_range(low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(str(raw).strip())
        except ValueError:
            raise ValueError("expected a whole number") from None
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ValueError(f"must be {bound}")
        return value

    return parse


def _seconds(raw: str) -> float:
    try:
        value = float(str(raw).strip())
    except ValueError:
        raise ValueError("expected a number of seconds") from None
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _bool(raw: str) -> bool:
    text = str(raw).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def _choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = str(raw).strip().lower()
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return value

    return parse


def _prewarm(raw: str) -> int | str:
    """'auto' (resolved when the pool starts: one per core, at most 4) or a whole number."""
    value = str(raw).strip().lower()
    return value if value == "auto" else _int_range(0)(value)


def _text(raw: str) -> str | None:
    value = str(raw).strip()
    return value or None


def _folder(raw: str) -> str | None:
    """A folder path; `~` is the user's home. Created when the first session is recorded."""
    value = str(raw).strip()
    return str(Path(value).expanduser()) if value else None


def _public_url(raw: str) -> str | None:
    """Accept `https://bots.example.com` or a bare host (as `--proxy` takes it); keep no trailing /."""
    value = str(raw).strip().rstrip("/")
    if not value:
        return None
    if "://" not in value:
        value = f"https://{value}"
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError("expected a URL like https://bots.example.com")
    return value


def _origins(raw: str) -> tuple[str, ...]:
    origins = tuple(part.strip().rstrip("/") for part in str(raw).split(",") if part.strip())
    for origin in origins:
        if origin != "*" and urlsplit(origin).scheme not in {"http", "https"}:
            raise ValueError(f"{origin!r} is not an origin like https://app.example.com")
    return origins


def _ice_servers(raw: str) -> tuple[dict[str, Any], ...]:
    """Bare STUN/TURN URLs (comma separated), a JSON object, or a JSON list of either."""
    text = str(raw).strip()
    if not text:
        return ()
    if text[0] in "[{":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"invalid JSON ({error.msg})") from None
    else:
        data = [part.strip() for part in text.split(",") if part.strip()]
    items = data if isinstance(data, list) else [data]
    servers = []
    for item in items:
        server = {"urls": item} if isinstance(item, str) else item
        if not isinstance(server, dict) or not server.get("urls"):
            raise ValueError("each ICE server needs 'urls'")
        urls = server["urls"] if isinstance(server["urls"], list) else [server["urls"]]
        for url in urls:
            if not isinstance(url, str) or url.split(":", 1)[0] not in {"stun", "turn", "turns"}:
                raise ValueError(f"{url!r} is not a stun:, turn: or turns: URL")
        servers.append({k: server[k] for k in ("urls", "username", "credential") if k in server})
    return tuple(servers)


@dataclass(frozen=True)
class Setting:
    """One configurable value: its flag (if any), environment variable, parser and default."""

    name: str
    env: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    flag: str | None = None
    secret: bool = False
    dev_default: Any = ...
    smoke_default: Any = ...
    #: Where the default is a rule rather than a value, the rule as each mode's help states it.
    default_rule: tuple[tuple[Mode, str], ...] = ()

    def default_for(self, mode: Mode) -> Any:
        """`dev_default` applies to dev and to smoke (which plays the client's side locally);
        `smoke_default`, where set, to smoke and the console (both run the client's side in process)."""
        if mode in ("smoke", "console") and self.smoke_default is not ...:
            return self.smoke_default
        local = mode in ("dev", "smoke", "console")
        return self.dev_default if local and self.dev_default is not ... else self.default

    @property
    def switch(self) -> bool:
        """An on/off flag (`--reload/--no-reload`)."""
        return self.parse is _bool

    @property
    def metavar(self) -> str:
        return {_seconds: "SECONDS", _public_url: "URL", _ice_servers: "SERVERS",
                _origins: "ORIGINS", _folder: "DIR"}.get(
            self.parse, self.name.split("_")[-1].upper())

    def describe_default(self, mode: Mode = "serve") -> str:
        """The default as `mode`'s help states it."""
        rule = dict(self.default_rule).get(mode)
        if rule is not None:
            return rule
        if mode == "console":  # the one value the console runs with
            return "none" if self.default_for(mode) in (None, ()) else str(self.default_for(mode))
        if self.dev_default is not ...:
            return f"{self.dev_default} in dev and smoke, {self.default} in serve"
        if self.smoke_default is not ...:
            return f"{self.default} ({self.smoke_default} in smoke)"
        return "none" if self.default in (None, ()) else str(self.default)


SETTINGS: tuple[Setting, ...] = (
    # Server and transports
    Setting("transport", "RUNNER_TRANSPORT", _text, None,
            "Transports to serve: a name, a comma list, 'telephony' or 'all'.", "--transport",
            default_rule=(
                ("dev", "webrtc"),
                ("smoke", "all (each transport with an offline test client; Daily is skipped)"),
                ("serve", "every transport whose credentials are set (see `runner transports`)"),
            )),
    Setting("host", "RUNNER_HOST", _text, "0.0.0.0", "Address to bind.", "--host",
            dev_default="127.0.0.1"),
    Setting("port", "RUNNER_PORT", _int_range(0, 65535), 7860, "Port to bind (0 picks a free one).",
            "--port"),
    Setting("public_url", "RUNNER_PUBLIC_URL", _public_url, None,
            "Public base URL clients and providers reach this server at.", "--public-url"),
    Setting("log_level", "RUNNER_LOG_LEVEL", _choice("debug", "info", "warning", "error"), "info",
            "Log level.", "--log-level"),
    Setting("log_format", "RUNNER_LOG_FORMAT", _choice("text", "json"), "text",
            "Log format: coloured text or one JSON object per line.", "--log-format"),
    Setting("reload", "RUNNER_RELOAD", _bool, False,
            "Restart when a .py file next to the bot changes.", "--reload", dev_default=True),
    # Sessions
    Setting("max_sessions", "RUNNER_MAX_SESSIONS", _int_range(1), 100,
            "Most sessions at once; more are refused (HTTP 503 / WebSocket 1013).",
            "--max-sessions"),
    Setting("max_duration", "RUNNER_MAX_DURATION", _seconds, 3600.0,
            "Longest a session may last, in seconds (0: no limit).", "--max-duration"),
    Setting("grace_period", "RUNNER_GRACE_PERIOD", _seconds, 5.0,
            "Seconds a bot has to return after its client left before it is cancelled.",
            "--grace-period"),
    Setting("isolation", "RUNNER_ISOLATION", _choice("process", "task"), "process",
            "Where each session's bot runs: 'process' (a worker process of its own: a crash or a "
            "blocked loop ends only that session; every core is used) or 'task' (in the server "
            "process).", "--isolation", smoke_default="task"),
    Setting("prewarm", "RUNNER_PREWARM", _prewarm, "auto",
            "Idle worker processes kept ready with the bot imported ('auto': one per core, at "
            "most 4).", "--prewarm"),
    Setting("worker_timeout", "RUNNER_WORKER_TIMEOUT", _seconds, 60.0,
            "Kill a worker whose event loop has not sent a heartbeat for this many seconds "
            "(0: never).", "--worker-timeout"),
    Setting("worker_memory_limit", "RUNNER_WORKER_MEMORY_LIMIT", _int_range(0), 0,
            "Kill a worker whose memory (RSS) exceeds this many MB (0: no limit).",
            "--worker-memory-limit"),
    # WebRTC
    Setting("ice_servers", "RUNNER_ICE_SERVERS", _ice_servers, (),
            "STUN/TURN servers: URLs, a JSON object or a JSON list (default: host candidates "
            "only).", "--ice-servers"),
    Setting("connect_timeout", "RUNNER_CONNECT_TIMEOUT", _seconds, 30.0,
            "Seconds a WebRTC peer may take to connect before it is closed.", "--connect-timeout"),
    # Telephony
    Setting("secret", "RUNNER_SECRET", _text, None,
            "Key that signs telephony stream tokens (required in serve for telephony).",
            secret=True),
    Setting("verify_signatures", "RUNNER_VERIFY_SIGNATURES", _bool, True,
            "Check provider webhook signatures and stream tokens.", "--verify-signatures",
            dev_default=False),
    Setting("detect_timeout", "RUNNER_DETECT_TIMEOUT", _seconds, 10.0,
            "Seconds a telephony WebSocket has to identify its provider.", "--detect-timeout"),
    # Security
    Setting("api_key", "RUNNER_API_KEY", _text, None,
            "Bearer key required on routes that start sessions.", secret=True),
    Setting("allow_unauthenticated", "RUNNER_ALLOW_UNAUTHENTICATED", _bool, False,
            "Serve session-starting routes on a public address without RUNNER_API_KEY.",
            "--allow-unauthenticated"),
    Setting("allowed_origins", "RUNNER_ALLOWED_ORIGINS", _origins, (),
            "Browser origins allowed to call the API (comma list, or * for any); dev also "
            "allows loopback origins (localhost, 127.0.0.1, [::1]; any port).", "--allowed-origins"),
    # Operation
    Setting("drain_timeout", "RUNNER_DRAIN_TIMEOUT", _seconds, 300.0,
            "On SIGTERM, seconds running sessions may continue before they are ended.",
            "--drain-timeout"),
    Setting("idle_timeout", "RUNNER_IDLE_TIMEOUT", _seconds, 0.0,
            "End a session after this many seconds without audio either way (0: never).",
            "--idle-timeout"),
    Setting("block_warning", "RUNNER_BLOCK_WARNING", _seconds, 0.1,
            "Warn, with the blocking stack, when the event loop stalls this long (0: off).",
            "--block-warning"),
    Setting("record", "RUNNER_RECORD", _folder, None,
            "Record each session into a folder of its own here: caller.wav, bot.wav, mix.wav, "
            "events.jsonl, session.json.", "--record"),
    # Provider credentials, under their providers' usual names
    Setting("daily_api_key", "DAILY_API_KEY", _text, None, "Daily REST API key.", secret=True),
    Setting("daily_api_url", "DAILY_API_URL", _text, "https://api.daily.co/v1",
            "Daily REST API base URL."),
    Setting("daily_room_url", "RUNNER_DAILY_ROOM_URL", _text, None,
            "Join this existing Daily room (with tavus: a conversation's URL) at start instead of "
            "serving /start (rejoins after each session).", "--room-url"),
    Setting("daily_start_room_url", "DAILY_ROOM_URL", _text, None,
            "An existing Daily room /start puts each bot in instead of creating one per session."),
    Setting("daily_dialin_secret", "RUNNER_DAILY_DIALIN_SECRET", _text, None,
            "Secret Daily's dial-in webhook must carry (?secret= in its URL, or an X-Dialin-Secret "
            "header).", secret=True),
    Setting("daily_keep_rooms", "RUNNER_DAILY_KEEP_ROOMS", _bool, False,
            "Keep the Daily rooms runner created when their session ends (default: delete them)."),
    Setting("daily_wait_timeout", "RUNNER_DAILY_WAIT_TIMEOUT", _seconds, 120.0,
            "Seconds a bot waits in a new Daily room for someone to join (0: until --max-duration)."),
    Setting("tavus_api_key", "TAVUS_API_KEY", _text, None, "Tavus API key (conversations).",
            secret=True),
    Setting("tavus_replica_id", "TAVUS_REPLICA_ID", _text, None,
            "Tavus replica whose video speaks the bot's audio."),
    Setting("tavus_persona_id", "TAVUS_PERSONA_ID", _text, "pipecat0",
            "Tavus persona in echo mode (the replica speaks exactly the audio it is sent)."),
    Setting("tavus_api_url", "TAVUS_API_URL", _text, "https://tavusapi.com/v2",
            "Tavus REST API base URL."),
    Setting("livekit_url", "LIVEKIT_URL", _text, None,
            "LiveKit server URL (wss://..., or ws://localhost:7880 for livekit-server --dev)."),
    Setting("livekit_api_key", "LIVEKIT_API_KEY", _text, None, "LiveKit API key (tokens, rooms)."),
    Setting("livekit_api_secret", "LIVEKIT_API_SECRET", _text, None,
            "LiveKit API secret (signs the tokens).", secret=True),
    Setting("livekit_room", "RUNNER_LIVEKIT_ROOM", _text, None,
            "Join this LiveKit room at start instead of serving /start (rejoins after each "
            "session).", "--room"),
    Setting("livekit_start_room", "LIVEKIT_ROOM_NAME", _text, None,
            "A LiveKit room /start puts each bot in instead of creating one per session."),
    Setting("livekit_keep_rooms", "RUNNER_LIVEKIT_KEEP_ROOMS", _bool, False,
            "Keep the LiveKit rooms runner created when their session ends (default: delete them)."),
    Setting("livekit_wait_timeout", "RUNNER_LIVEKIT_WAIT_TIMEOUT", _seconds, 120.0,
            "Seconds a bot waits in a LiveKit room for someone to join (0: until --max-duration)."),
    Setting("twilio_account_sid", "TWILIO_ACCOUNT_SID", _text, None, "Twilio account SID."),
    Setting("twilio_auth_token", "TWILIO_AUTH_TOKEN", _text, None,
            "Twilio auth token (signatures and REST hang-up).", secret=True),
    Setting("twilio_api_url", "TWILIO_API_URL", _text, "https://api.twilio.com",
            "Twilio REST API base URL."),
    Setting("telnyx_api_key", "TELNYX_API_KEY", _text, None, "Telnyx API key (REST hang-up).",
            secret=True),
    Setting("telnyx_public_key", "TELNYX_PUBLIC_KEY", _text, None,
            "Telnyx Ed25519 public key, base64 (webhook signatures)."),
    Setting("telnyx_api_url", "TELNYX_API_URL", _text, "https://api.telnyx.com/v2",
            "Telnyx REST API base URL."),
    Setting("plivo_auth_id", "PLIVO_AUTH_ID", _text, None, "Plivo auth ID."),
    Setting("plivo_auth_token", "PLIVO_AUTH_TOKEN", _text, None,
            "Plivo auth token (signatures and REST hang-up).", secret=True),
    Setting("plivo_api_url", "PLIVO_API_URL", _text, "https://api.plivo.com/v1",
            "Plivo REST API base URL."),
    Setting("exotel_api_key", "EXOTEL_API_KEY", _text, None, "Exotel API key."),
    Setting("exotel_api_token", "EXOTEL_API_TOKEN", _text, None,
            "Exotel API token (Basic auth on the stream socket).", secret=True),
    Setting("vonage_application_id", "VONAGE_APPLICATION_ID", _text, None,
            "Vonage application ID."),
    Setting("vonage_private_key", "VONAGE_PRIVATE_KEY", _text, None,
            "Vonage application private key (PEM text or a file path).", secret=True),
    Setting("vonage_api_url", "VONAGE_API_URL", _text, "https://api.nexmo.com",
            "Vonage REST API base URL."),
)

SETTINGS_BY_NAME: dict[str, Setting] = {setting.name: setting for setting in SETTINGS}


@dataclass(frozen=True)
class Config:
    """The resolved settings of one run (build it with `load_config`); `sources` says where each
    value came from. Field defaults live in `SETTINGS`, once."""

    mode: Mode
    transport: str | None
    host: str
    port: int
    public_url: str | None
    log_level: str
    log_format: str
    reload: bool
    max_sessions: int
    max_duration: float
    grace_period: float
    isolation: str
    prewarm: int | str
    worker_timeout: float
    worker_memory_limit: int
    ice_servers: tuple[dict[str, Any], ...]
    connect_timeout: float
    secret: str | None
    verify_signatures: bool
    detect_timeout: float
    api_key: str | None
    allow_unauthenticated: bool
    allowed_origins: tuple[str, ...]
    drain_timeout: float
    idle_timeout: float
    block_warning: float
    record: str | None
    daily_api_key: str | None
    daily_api_url: str
    daily_room_url: str | None
    daily_start_room_url: str | None
    daily_dialin_secret: str | None
    daily_keep_rooms: bool
    daily_wait_timeout: float
    tavus_api_key: str | None
    tavus_replica_id: str | None
    tavus_persona_id: str
    tavus_api_url: str
    livekit_url: str | None
    livekit_api_key: str | None
    livekit_api_secret: str | None
    livekit_room: str | None
    livekit_start_room: str | None
    livekit_keep_rooms: bool
    livekit_wait_timeout: float
    twilio_account_sid: str | None
    twilio_auth_token: str | None
    twilio_api_url: str
    telnyx_api_key: str | None
    telnyx_public_key: str | None
    telnyx_api_url: str
    plivo_auth_id: str | None
    plivo_auth_token: str | None
    plivo_api_url: str
    exotel_api_key: str | None
    exotel_api_token: str | None
    vonage_application_id: str | None
    vonage_private_key: str | None
    vonage_api_url: str
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)
    #: What the user should hear about how the settings were given (a misspelt name in .env).
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def source(self, name: str) -> str:
        """Where a value came from: 'flag --port', 'environment RUNNER_PORT', '.env ...', 'default'."""
        return self.sources.get(name, "default")

    def local_url(self, scheme: str = "http") -> str:
        """The address this machine reaches the server at (0.0.0.0 binds are shown as 127.0.0.1)."""
        host = "127.0.0.1" if self.host in {"0.0.0.0", "::", ""} else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{self.port}"

    def base_url(self, websocket: bool = False) -> str:
        """Public base URL when set (ws/wss for sockets), else the local address."""
        if self.public_url:
            url = self.public_url
            if websocket:
                url = "wss" + url[5:] if url.startswith("https") else "ws" + url[4:]
            return url
        return self.local_url("ws" if websocket else "http")

    def redacted(self) -> dict[str, Any]:
        """Settings for display: secrets shown only as set/unset."""
        shown: dict[str, Any] = {}
        for item in fields(self):
            if item.name in ("sources", "warnings"):
                continue
            value = getattr(self, item.name)
            setting = SETTINGS_BY_NAME.get(item.name)
            if setting is not None and setting.secret and value:
                value = "(set)"
            shown[item.name] = value
        return shown


def load_config(
    mode: Mode,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    env_file: str | Path | Literal[False] | None = None,
) -> Config:
    """Resolve every setting: flag > environment > .env file > default.

    `env_file=None` reads `.env` in the current directory when it exists; an explicit path must
    exist; `False` reads none (a worker process: its parent resolved the file already). The .env
    file never overrides the real environment.
    """
    from dotenv import dotenv_values

    flags = {name: value for name, value in (flags or {}).items() if value is not None}
    environ = os.environ if environ is None else environ
    path = Path(".env")
    if env_file is False:
        dotenv: Mapping[str, str | None] = {}
    elif env_file is None:
        dotenv = dotenv_values(path) if path.is_file() else {}
    else:
        path = Path(env_file)
        if not path.is_file():
            raise ConfigError(f"--env-file {env_file}: no such file")
        dotenv = dotenv_values(path)

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for setting in SETTINGS:
        if setting.name in flags:
            raw, source, where = flags[setting.name], f"flag {setting.flag}", setting.flag
        elif environ.get(setting.env, "").strip():
            raw, source, where = environ[setting.env], f"environment {setting.env}", setting.env
        elif (dotenv.get(setting.env) or "").strip():
            raw, source = dotenv[setting.env], f"{path} {setting.env}"
            where = f"{path}: {setting.env}"  # else the user looks for it in the environment
        else:
            values[setting.name] = setting.default_for(mode)
            continue
        if isinstance(raw, bool):
            raw = "true" if raw else "false"
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as error:
            shown = "***" if setting.secret else repr(str(raw))
            raise ConfigError(f"{where}={shown}: {error}") from None
        sources[setting.name] = source
    unknown = set(flags) - set(SETTINGS_BY_NAME)
    if unknown:
        raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
    return Config(mode=mode, sources=sources, warnings=_misspelt(dotenv, path), **values)


def _misspelt(dotenv: Mapping[str, Any], path: Path) -> tuple[str, ...]:
    """RUNNER_* names in the .env file that are no setting (a typo is otherwise silently ignored),
    each with the closest real name."""
    known = {setting.env.removeprefix("RUNNER_"): setting.env for setting in SETTINGS}
    warnings = []
    for name in dotenv:
        if name.upper().startswith("RUNNER_") and name not in known.values():
            close = difflib.get_close_matches(name.upper().removeprefix("RUNNER_"), known, n=1)
            hint = f"did you mean {known[close[0]]}?" if close else "it is ignored"
            warnings.append(f"{path}: {name} is not a runner setting; {hint}")
    return tuple(warnings)


def to_environment(config: Config) -> dict[str, str]:
    """The inverse of `load_config`: each setting that has a value, as the variable that sets it.

    Worker processes get their settings (secrets included) this way, never through argv.
    """
    environ = {}
    for setting in SETTINGS:
        value = getattr(config, setting.name)
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif setting.parse is _ice_servers:
            text = json.dumps(list(value))
        elif setting.parse is _origins:
            text = ",".join(value)
        else:
            text = str(value)
        environ[setting.env] = text
    return environ
