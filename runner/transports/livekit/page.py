"""The dev page's LiveKit mode: what the page asks the server, and the page itself when webrtc
(which serves it otherwise) is not selected.

The page joins a session's room with livekit-client, the npm package: `make livekit-client`
installs it from web/package-lock.json and copies its browser build into the page's static
files (`vendor/`, never committed; nothing is loaded from a CDN). Without that build the page
says in one line how to make it, and so does the log, once, when the server starts (a warning
in `runner dev`; `serve` may well have no use for the page).
"""

from __future__ import annotations

import logging

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse

from runner.context import AppContext
from runner.transports.livekit.transport import DATA_TOPIC
from runner.transports.page import STATIC, mount_page_files

log = logging.getLogger("runner.livekit")

#: livekit-client's ES module build, where `make livekit-client` puts it.
CLIENT = STATIC / "vendor" / "livekit-client.esm.mjs"
#: The same file as the page imports it.
CLIENT_URL = "/page/vendor/livekit-client.esm.mjs"
#: What to do when it is missing: one line, for the page and for the log.
BUILD_HINT = ("the LiveKit web client is not built: run `make livekit-client` "
              "(npm ci in web/, then it is copied into the page)")
#: Where the page asks what its LiveKit mode needs (not under /page: webrtc's static files
#: own every path there).
CONFIG_PATH = "/livekit/page"


def client_built() -> bool:
    return CLIENT.is_file()


def mount_page(app: FastAPI, context: AppContext) -> None:
    """Tell the page about LiveKit at CONFIG_PATH; serve `/` and `/page/*` if webrtc does not."""
    if not client_built():  # a warning where someone is about to open the page
        level = logging.WARNING if context.config.mode == "dev" else logging.INFO
        log.log(level, "%s; the page at / cannot join LiveKit rooms until then", BUILD_HINT)
    webrtc = "webrtc" in context.kinds

    async def page_config() -> JSONResponse:
        """Looked at on every load, so a client built while the server runs is picked up."""
        built = client_built()
        return JSONResponse({"client": CLIENT_URL if built else None,
                             "build": None if built else BUILD_HINT,
                             "topic": DATA_TOPIC, "webrtc": webrtc},
                            headers={"Cache-Control": "no-store"})

    app.add_api_route(CONFIG_PATH, page_config, methods=["GET"],
                      dependencies=[Depends(context.require_api_key)])
    if not webrtc:
        mount_page_files(app)
