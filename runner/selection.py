"""Which transports to mount, and why: the reason for each is printed at start."""

from __future__ import annotations

from dataclasses import dataclass

from runner.config import Config, ConfigError
from runner.transports import REGISTRY, TELEPHONY


@dataclass(frozen=True)
class Choice:
    name: str
    reason: str


def expand(value: str) -> list[str]:
    """'twilio,telnyx' / 'telephony' / 'all' -> transport names, in registry order, no repeats."""
    wanted: list[str] = []
    for part in (item.strip().lower() for item in value.split(",")):
        if not part:
            continue
        if part == "all":
            names: tuple[str, ...] = tuple(REGISTRY)
        elif part == "telephony":
            names = TELEPHONY
        elif part in REGISTRY:
            names = (part,)
        else:
            known = ", ".join([*REGISTRY, "telephony", "all"])
            raise ConfigError(f"unknown transport {part!r} (known: {known})")
        wanted.extend(name for name in names if name not in wanted)
    if not wanted:
        raise ConfigError("--transport is empty: name at least one transport")
    return [name for name in REGISTRY if name in wanted]


def select_transports(config: Config) -> list[Choice]:
    """Apply the rules: --transport / RUNNER_TRANSPORT, else dev -> webrtc, else what is configured."""
    if config.transport:
        source = config.source("transport")
        return [Choice(name, f"{source} = {config.transport}") for name in expand(config.transport)]
    if config.mode == "dev":
        return [Choice("webrtc", "dev default: peer-to-peer WebRTC with the browser page")]
    chosen = []
    for spec in REGISTRY.values():
        if spec.configured(config):
            envs = spec.credential_envs()
            verb = "is" if len(envs) == 1 else "are"
            chosen.append(Choice(spec.name, f"{' and '.join(envs)} {verb} set"))
    if chosen:
        return chosen
    raise ConfigError(
        "nothing to serve: pass --transport NAME (webrtc, websocket, daily, livekit, tavus, "
        "twilio, telnyx, plivo, exotel, vonage, telephony or all), or set RUNNER_TRANSPORT, or set "
        "a provider's credentials (" + "; ".join(
            f"{spec.name}: {' + '.join(spec.credential_envs())}"
            for spec in REGISTRY.values() if spec.credentials
        ) + ")"
    )

