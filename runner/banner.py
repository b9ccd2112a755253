"""The startup banner: what is served, why, and the URLs to open or to give a provider."""

from __future__ import annotations

from collections.abc import Sequence

from runner import __version__
from runner.config import Config
from runner.selection import Choice
from runner.transports import REGISTRY


def banner(config: Config, selection: Sequence[Choice], bot_reference: str) -> str:
    lines = [f"runner {__version__} · {config.mode} · bot {bot_reference}", "transports:"]
    width = max(len(choice.name) for choice in selection)
    for choice in selection:
        lines.append(f"  {choice.name:<{width}}  {choice.reason}")
    links = []
    for choice in selection:
        for link in REGISTRY[choice.name].links:
            path = link.path
            if "{key}" in path:  # a provider URL that carries a key (Vonage): telephony only
                from runner.transports.telephony.tokens import path_key

                path = path.format(key=path_key(config, choice.name))
            url = config.base_url(websocket=link.websocket) + path
            if url not in [existing for _, existing in links]:
                links.append((f"{choice.name}: {link.label}", url))
    if links:
        lines.append("urls:")
        label_width = max(len(label) for label, _ in links)
        lines.extend(f"  {label:<{label_width}}  {url}" for label, url in links)
    if not config.public_url and config.host not in {"127.0.0.1", "localhost", "::1"}:
        lines.append(
            "  (local addresses; set --public-url to the address clients and providers use)"
        )
    lines.append(f"health: {config.local_url()}/health · status: {config.local_url()}/status")
    return "\n".join(lines)
