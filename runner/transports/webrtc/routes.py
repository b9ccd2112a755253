"""The webrtc routes: SmallWebRTC signaling, `/start`, and the page at `/`.

`POST /api/offer` answers an offer (a new session, a renegotiation of a known `pc_id`, or a
`restart_pc`), `PATCH /api/offer` takes trickled candidates, and `/sessions/{id}/api/offer` does
both for a session begun with `POST /start` (the server's dispatcher hands us `transport:
"webrtc"`). A `restart_pc` for a `pc_id` this server does not know (it restarted, as in `runner
dev`) starts a new session, so clients recover on their own. With RUNNER_API_KEY set, signaling
needs the key as every session-starting route does; the page and its files do not.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from runner.context import AppContext, SessionRoute
from runner.guards import read_json_object
from runner.logs import current_session
from runner.sessions import SessionRefused
from runner.transports.base import check_options
from runner.transports.page import mount_page_files
from runner.transports.webrtc.peer import WebRTCTransport, warm_up
from runner.transports.webrtc.registry import Registry
from runner.transports.webrtc.signaling import Offer, SignalingError, parse_offer, parse_patch

#: What `/start` offers a client that asks for default ICE servers while none are configured.
DEFAULT_CLIENT_ICE = ({"urls": ["stun:stun.l.google.com:19302"]},)
#: The telephony transports the page's Phone mode speaks (their `/ws/<provider>` media sockets).
PHONE_PROVIDERS = ("twilio", "telnyx", "plivo", "exotel", "vonage")
#: How long a `/start` session waits for its offer when --connect-timeout is 0 (no limit).
PENDING_SECONDS = 30.0


class Signaling:
    """The signaling handlers, sharing the app context and the registry of peers."""

    def __init__(self, context: AppContext, video: bool) -> None:
        self.context = context
        self.config = context.config
        self.video = video
        self.registry = Registry(self.config.connect_timeout or PENDING_SECONDS,
                                 self.config.max_sessions)
        #: Changes with every server process: the page compares it to tell a restart from a hang-up.
        self.instance = uuid.uuid4().hex

    async def offer(self, request: Request) -> Response:
        offer = parse_offer(await read_json_object(request))
        if offer.pc_id is not None:
            transport = self.registry.find(offer.pc_id)
            if transport is not None:
                return _answer(await transport.answer(offer), transport)
            if not offer.restart_pc:
                raise _unknown_pc(offer.pc_id)
        return await self._new_session(offer, offer.request_data)

    async def session_offer(self, session_id: str, request: Request) -> Response:
        offer = parse_offer(await read_json_object(request))
        transport = self.registry.find(offer.pc_id) if offer.pc_id else None
        if transport is not None and transport.session.id == session_id:
            return _answer(await transport.answer(offer), transport)
        pending = self.registry.take(session_id)
        if pending is None:
            raise SignalingError(f"unknown or expired session {session_id!r}: POST /start again",
                                 404)
        body = pending.body if offer.request_data is None else offer.request_data
        try:
            response = await self._new_session(offer, body, session_id)
        except SignalingError:
            self.registry.put_back(session_id, pending)  # the client may fix its offer and retry
            raise
        if response.status_code != 200:
            self.registry.put_back(session_id, pending)
        return response

    async def patch(self, request: Request) -> Response:
        return await self._patch(request, None)

    async def session_patch(self, session_id: str, request: Request) -> Response:
        return await self._patch(request, session_id)

    async def _patch(self, request: Request, session_id: str | None) -> Response:
        pc_id, candidates = parse_patch(await read_json_object(request))
        transport = self.registry.find(pc_id)
        if transport is None or (session_id is not None and transport.session.id != session_id):
            raise _unknown_pc(pc_id)
        await transport.add_candidates(candidates)
        return JSONResponse({"status": "success"})

    async def start(self, request: Request, body: dict[str, Any]) -> Response:
        sessions = self.context.sessions
        if not sessions.accepting():
            return self.context.refused("the server is draining" if sessions.draining
                                        else "at the session limit")
        try:
            session_id = self.registry.hold(body.get("body"))
        except SessionRefused as refused:
            return self.context.refused(str(refused))
        answer: dict[str, Any] = {"sessionId": session_id}
        servers = self.client_ice_servers(bool(body.get("enableDefaultIceServers")))
        if servers:
            answer["iceConfig"] = {"iceServers": servers}
        return JSONResponse(answer)

    def client_ice_servers(self, defaults: bool = False) -> list[dict[str, Any]]:
        """The configured servers (the ones our peer uses too); else public STUN if asked for."""
        servers = self.config.ice_servers or (DEFAULT_CLIENT_ICE if defaults else ())
        return [dict(server) for server in servers]

    async def page_config(self) -> Response:
        """What the page needs: ICE servers, our instance, the phone providers whose media
        socket (`/ws/<provider>`) is served too, for the page's Phone mode, and whether LiveKit
        is served, for its LiveKit mode."""
        phone = [kind for kind in self.context.kinds if kind in PHONE_PROVIDERS]
        return JSONResponse({"iceServers": self.client_ice_servers(), "instance": self.instance,
                             "phone": phone, "livekit": "livekit" in self.context.kinds},
                            headers={"Cache-Control": "no-store"})

    async def _new_session(self, offer: Offer, body: Any, session_id: str | None = None) -> Response:
        try:
            session = self.context.sessions.open("webrtc", body=body, session_id=session_id)
        except SessionRefused as refused:
            return self.context.refused(str(refused))
        transport: Any
        if self.context.bot.pipecat:  # Pipecat's SmallWebRTCConnection owns the peer
            from runner.handover import PipecatPeer

            transport = PipecatPeer(session.info, self.config.ice_servers,
                                    self.config.connect_timeout)
        else:
            transport = WebRTCTransport(session.info, ice_servers=self.config.ice_servers,
                                        connect_timeout=self.config.connect_timeout,
                                        video=self.video)
        # The peer's tasks start here: they carry the session's tag into their log lines.
        tagged = current_session.set((session.id, session.info.kind))
        try:
            sdp = await transport.answer(offer)
        except BaseException:
            session.abandon()
            await transport.close("the offer was not answered")
            raise
        finally:
            current_session.reset(tagged)
        self.registry.add(transport)
        session.start(transport).add_done_callback(lambda _: self.registry.remove(transport))
        return _answer(sdp, transport)


def _answer(sdp: str, transport: WebRTCTransport) -> Response:
    return JSONResponse({"sdp": sdp, "type": "answer", "pc_id": transport.pc_id})


def _unknown_pc(pc_id: str) -> SignalingError:
    return SignalingError(f"peer connection not found (unknown pc_id {pc_id!r})", 404)


def mount(app: FastAPI, context: AppContext, kinds: list[str]) -> None:
    options = context.bot.options_for("webrtc")
    check_options("webrtc", options, WebRTCTransport.options)
    warm_up()
    signaling = Signaling(context, video=bool(options.get("video", False)))
    app.state.webrtc = signaling
    context.held = signaling.registry
    context.start_handlers["webrtc"] = signaling.start
    keyed = [Depends(context.require_api_key)]

    for path, offer, patch in (("/api/offer", signaling.offer, signaling.patch),
                               ("/sessions/{session_id}/api/offer", signaling.session_offer,
                                signaling.session_patch)):
        context.route(app, SessionRoute("POST", path, "offer", reads_body=True), offer)
        context.route(app, SessionRoute("PATCH", path, "patch", reads_body=True), patch)

    app.add_api_route("/page/config", signaling.page_config, methods=["GET"], dependencies=keyed)
    mount_page_files(app)
