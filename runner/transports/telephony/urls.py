"""The URLs a provider sees: what it signed, and where our answers send its media stream.

Behind a proxy the Host we are given is not what the provider used, so both come from the
configured public URL (`--public-url` / `--proxy`), never from the request.
"""

from __future__ import annotations

from starlette.types import Scope

from runner.config import Config


def public_url(config: Config, scope: Scope, websocket: bool = False) -> str:
    """The URL the provider requested: public base, the raw path and query as they arrived."""
    raw_path = scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else scope["path"]
    query = scope.get("query_string", b"").decode("latin-1")
    return config.base_url(websocket=websocket) + path + (f"?{query}" if query else "")


def stream_url(config: Config, provider: str, token: str | None = None) -> str:
    """`wss://<public host>/ws/<provider>[/<token>]`, for an answer to point a provider at."""
    return f"{config.base_url(websocket=True)}/ws/{provider}" + (f"/{token}" if token else "")
