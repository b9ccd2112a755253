"""The browser page's files (`static/` beside the webrtc transport): served at `/` and `/page/*`
by whichever selected transport offers the page, webrtc or, without it, LiveKit."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "webrtc" / "static"


def mount_page_files(app: FastAPI) -> None:
    app.add_api_route("/", lambda: FileResponse(STATIC / "index.html"), methods=["GET"])
    app.mount("/page", StaticFiles(directory=STATIC), name="page")
