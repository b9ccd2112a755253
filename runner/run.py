"""Start serving: check everything the user controls first, then bind, print the banner, serve."""

from __future__ import annotations

import logging
import socket
import sys
from dataclasses import replace

from runner.config import Config
from runner.errors import UserError
from runner.logs import configure_logging

log = logging.getLogger("runner")


def run(config: Config, bot_reference: str) -> None:
    """`runner dev` / `runner serve`: with the reload supervisor in dev, else serve directly.

    With `--isolation process` the server never runs the bot: each session gets a fresh worker,
    forked from a zygote that imported the file, and `--reload` only replaces the zygote and the
    idle workers on a change (see supervisors/workers.py), so a save never restarts the server
    nor cuts a call.
    """
    configure_logging(config.log_level, config.log_format)
    if config.mode == "dev" and config.reload and config.isolation == "task":
        from runner.supervisors.reload import run_with_reload

        run_with_reload(config, bot_reference)
        return
    serve(config, bot_reference)


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind the listening socket once (a supervisor hands it to each child it starts)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(config: Config, bot_reference: str, sock: socket.socket | None = None) -> None:
    """Load the bot, build the app, and serve until stopped."""
    from runner.banner import banner
    from runner.drain import DrainingServer
    from runner.loader import load_bot
    from runner.selection import select_transports
    from runner.server import create_app

    selection = select_transports(config)
    bot = load_bot(bot_reference)
    sock = sock or bind_socket(config.host, config.port)
    config = replace(config, port=sock.getsockname()[1])
    app = create_app(config, bot, selection)
    config = app.state.context.config  # as the app runs it (isolation, a dev key for workers)
    print(banner(config, selection, bot_reference), file=sys.stderr, flush=True)
    DrainingServer(app, config).run(sockets=[sock])
