"""The webrtc Transport: one session, carried by one aiortc peer connection at a time.

The browser offers, we answer (aiortc gathers all its candidates before answering, so the answer
is complete; the client may trickle its own). A renegotiation reuses the peer connection; a
`restart_pc` offer builds a new one and drops the old, while the session, the bot and its queues
carry on. The session ends when the client says `peerLeft`, its pings stop, ICE/DTLS fail or
close, or it never connects within the connect timeout.

Media path and what each stage adds: aiortc's jitter buffer releases a frame when the next one
arrives (20 ms; trimmed from 80, see `trim_jitter_buffer`), the Opus decoder hands 20 ms frames
to `read_audio`, the bot's resampler adds ~1.5 ms, outbound audio waits for the next 20 ms tick
(0-20 ms), Opus encodes (~6.5 ms look-ahead).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import aiortc.rtcsctptransport
import av
from aiortc import (
    RTCConfiguration,
    RTCIceCandidate,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.rtcdtlstransport import RTCCertificate
from aiortc.sdp import candidate_from_sdp

from runner.transports.base import Event, SessionInfo, Transport, _Mailbox
from runner.transports.webrtc.channel import DataChannel
from runner.transports.webrtc.signaling import Candidate, Offer, SignalingError
from runner.transports.webrtc.tracks import (
    WIRE_RATE,
    BotAudioTrack,
    BotVideoTrack,
    LatestFrame,
    as_video_frame,
    read_audio,
    read_video,
    trim_jitter_buffer,
)

# aiortc's 1200-byte SCTP chunks make ~1300-byte datagrams, over the 1280-byte MTU of IPv6 tunnels
# and VPNs, where the data channel then stalls silently; 1100 fits (PROTOCOLS.md §8.6).
aiortc.rtcsctptransport.USERDATA_MAX_LENGTH = 1100

log = logging.getLogger("runner.webrtc")

#: Clients ping every second; this long without one and the client is taken to be gone.
PING_TIMEOUT = 5.0
#: How often the liveness rules are checked.
WATCH_PERIOD = 0.5
#: How long `peerLeft` gets to leave before the peer connection closes under it.
GOODBYE_SECONDS = 0.5
PEER_CLOSE_TIMEOUT = 5.0
VIDEO_BUFFER = 2
#: `trackStatus.receiver_index` -> source, in the clients' transceiver order.
SOURCES = ("microphone", "camera", "screen")


@dataclass(frozen=True)
class TrackStatus(Event):
    """The client turned one of its sources (`microphone`, `camera`, `screen`) on or off."""

    source: str
    enabled: bool


def warm_up() -> None:
    """Make one DTLS certificate now, at startup: the first imports cryptography's backends
    (15-130 ms), which would otherwise stall every session's event loop on the first offer."""
    RTCCertificate.generateCertificate()


def ice_configuration(servers: tuple[Mapping[str, Any], ...]) -> RTCConfiguration:
    """aiortc's configuration for `--ice-servers`; none gives host candidates only (an explicit
    empty list: aiortc's default would silently add a public STUN server)."""
    return RTCConfiguration(iceServers=[
        RTCIceServer(urls=server["urls"], username=server.get("username"),
                     credential=server.get("credential"))
        for server in servers
    ])


def ice_candidate(item: Candidate) -> RTCIceCandidate | None:
    """A trickled candidate for aiortc; None (end-of-candidates) for an empty one."""
    if not item.candidate:
        return None
    text = item.candidate.removeprefix("a=").removeprefix("candidate:")
    try:
        candidate = candidate_from_sdp(text)
    except (AssertionError, ValueError, IndexError):
        raise SignalingError(f"malformed ICE candidate {item.candidate[:80]!r}") from None
    candidate.sdpMid = item.sdp_mid
    candidate.sdpMLineIndex = item.sdp_mline_index
    return candidate


class Peer:
    """One RTCPeerConnection and the tasks reading its tracks."""

    def __init__(self, configuration: RTCConfiguration) -> None:
        self.pc = RTCPeerConnection(configuration)
        self.id = f"pc-{uuid.uuid4().hex}"
        self.created = time.monotonic()
        self.connected = False
        self._tasks: set[asyncio.Task[None]] = set()

    def media(self) -> tuple[RTCRtpTransceiver | None, RTCRtpTransceiver | None,
                             list[RTCRtpTransceiver]]:
        """(microphone, camera, the rest): the first audio and the first video transceiver."""
        transceivers = self.pc.getTransceivers()
        audio = next((t for t in transceivers if t.kind == "audio"), None)
        camera = next((t for t in transceivers if t.kind == "video"), None)
        return audio, camera, [t for t in transceivers if t is not audio and t is not camera]

    def spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        try:
            await asyncio.wait_for(self.pc.close(), PEER_CLOSE_TIMEOUT)
        except Exception:
            log.debug("closing peer %s failed", self.id, exc_info=True)


class WebRTCTransport(Transport):
    """A bot's session with one browser (or any SmallWebRTC client)."""

    kind = "webrtc"
    options: ClassVar[Mapping[str, type]] = {"video": bool}

    def __init__(self, session: SessionInfo, *, ice_servers: tuple[Mapping[str, Any], ...] = (),
                 connect_timeout: float = 30.0, video: bool = False) -> None:
        super().__init__(session, wire_rate=WIRE_RATE)
        self._ice_servers = ice_servers
        self._connect_timeout = connect_timeout
        self._video_on = video
        self._channel = DataChannel(self._receive_message, self._on_signalling)
        self._peer: Peer | None = None
        self._negotiating = asyncio.Lock()
        self._renegotiation_asked = False
        self._video_in: _Mailbox[av.VideoFrame] = _Mailbox(VIDEO_BUFFER)
        self._video_out = LatestFrame()
        self._closing: asyncio.Future[None] | None = None

    @property
    def pc_id(self) -> str | None:
        """The id clients use for the current peer connection."""
        return self._peer.id if self._peer else None

    # ----------------------------------------------------------------- signaling

    async def answer(self, offer: Offer) -> str:
        """Answer an offer: the first, a renegotiation, or a restart on a new peer connection."""
        async with self._negotiating:
            if self._ended.is_set():
                raise SignalingError("that session has ended", 404)
            self._renegotiation_asked = False
            if self._peer is None or offer.restart_pc:
                return await self._answer_on_new_peer(offer.sdp)
            await self._negotiate(self._peer, offer.sdp)
            return self._peer.pc.localDescription.sdp

    async def add_candidates(self, candidates: list[Candidate]) -> None:
        """Trickled client candidates for the current peer connection (empty: end-of-candidates)."""
        parsed = [ice_candidate(item) for item in candidates]
        if self._peer is None:
            return
        for candidate in parsed:
            try:
                await self._peer.pc.addIceCandidate(candidate)
            except ValueError as error:
                raise SignalingError(f"ICE candidate not usable: {error}") from None

    async def _answer_on_new_peer(self, sdp: str) -> str:
        peer = Peer(ice_configuration(self._ice_servers))
        self._watch(peer)
        try:
            await self._negotiate(peer, sdp)
        except BaseException:
            await peer.close()
            raise
        old, self._peer = self._peer, peer
        if old is not None:
            log.info("client restarted its peer connection: %s replaces %s", peer.id, old.id)
            self._channel.forget()
            await old.close()
        return peer.pc.localDescription.sdp

    async def _negotiate(self, peer: Peer, sdp: str) -> None:
        try:
            await peer.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            self._assign_tracks(peer)
            await peer.pc.setLocalDescription(await peer.pc.createAnswer())
        except SignalingError:
            raise
        except Exception as error:  # aiortc's SDP parser raises whatever it trips on
            log.debug("offer rejected", exc_info=True)
            detail = str(error) or type(error).__name__
            raise SignalingError(f"the offer cannot be used: {detail}"[:300]) from None

    def _assign_tracks(self, peer: Peer) -> None:
        """Microphone sendrecv; camera sendrecv once the bot uses video, else inactive (nothing
        is sent or decoded); anything else (screen share, extra tracks) inactive."""
        audio, camera, rest = peer.media()
        if audio is None:
            raise SignalingError("the offer has no audio section: add an audio transceiver")
        audio.direction = "sendrecv"
        trim_jitter_buffer(audio.receiver)
        if audio.sender.track is None:
            audio.sender.replaceTrack(BotAudioTrack(self._outbound))
        if camera is not None:
            camera.direction = "sendrecv" if self._video_on else "inactive"
            if self._video_on and camera.sender.track is None:
                camera.sender.replaceTrack(BotVideoTrack(self._video_out))
        for transceiver in rest:
            transceiver.direction = "inactive"

    def _watch(self, peer: Peer) -> None:
        pc = peer.pc

        @pc.on("track")
        def on_track(track: Any) -> None:
            audio, camera, _ = peer.media()
            if audio is not None and track is audio.receiver.track:
                peer.spawn(read_audio(track, self._receive_audio))
            elif camera is not None and track is camera.receiver.track:
                peer.spawn(read_video(track, self._video_in.put))

        @pc.on("datachannel")
        def on_datachannel(channel: Any) -> None:
            if peer is self._peer:
                self._channel.adopt(channel)

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if peer is not self._peer:
                return
            state = pc.connectionState
            if state == "connected":
                peer.connected = True
                self._set_connected()
            elif state == "failed":
                self._client_left("the connection failed (ICE or DTLS)")
            elif state == "closed":
                self._client_left("the client closed the connection")

    def _on_signalling(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "peerLeft":
            self._client_left("the client left")
        elif kind == "trackStatus":
            index, enabled = message.get("receiver_index"), message.get("enabled")
            if isinstance(index, int) and 0 <= index < len(SOURCES) and isinstance(enabled, bool):
                self._emit(TrackStatus(SOURCES[index], enabled))
        else:
            log.debug("ignored signalling message %r", kind)

    # ----------------------------------------------------------------- video

    async def video(self) -> AsyncIterator[av.VideoFrame]:
        """The client's camera as PyAV VideoFrames (`frame.to_ndarray(format="rgb24")` gives an
        RGB array); the newest frames when the bot reads slowly. The first call turns video on."""
        self._use_video()
        while (frame := await self._video_in.get()) is not None:
            yield frame

    async def send_video(self, frame: Any) -> None:
        """Show a PyAV VideoFrame or an RGB uint8 array (height, width, 3) to the client; the
        newest wins when sent faster than encoded. The first call turns video on."""
        picture = as_video_frame(frame)
        if self._ended.is_set():
            return
        self._use_video()
        self._video_out.put(picture)

    def _use_video(self) -> None:
        """Video starts on first use: the client is asked to offer again, now answered with video."""
        if self._video_on:
            return
        self._video_on = True
        if not self._renegotiation_asked:
            self._renegotiation_asked = True
            self._channel.send_signalling("renegotiate")

    # ----------------------------------------------------------------- lifetime

    async def run(self) -> None:
        try:
            while not self._ended.is_set():
                self._check_liveness()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ended.wait(), WATCH_PERIOD)
        finally:
            await asyncio.shield(self._shutdown())

    def _check_liveness(self) -> None:
        now = time.monotonic()
        peer, last_ping = self._peer, self._channel.last_ping
        if (peer is not None and not peer.connected and self._connect_timeout
                and now - peer.created > self._connect_timeout):
            self._client_left(f"the client did not connect within {self._connect_timeout:g} s")
        elif last_ping is not None and now - last_ping > PING_TIMEOUT:
            self._client_left(f"no keep-alive ping from the client for {PING_TIMEOUT:g} s")

    async def _write_message(self, data: Any) -> None:
        self._channel.send(data)

    async def _close_wire(self, reason: str) -> None:
        await asyncio.shield(self._shutdown())

    def _shutdown(self) -> asyncio.Future[None]:
        """Close once, whoever asks first (the bot hanging up, or `run` seeing the client go)."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._say_goodbye_and_close())
        return self._closing

    async def _say_goodbye_and_close(self) -> None:
        self._video_in.end()
        if self._channel.open:
            self._channel.send_signalling("peerLeft")
            await self._channel.drain(GOODBYE_SECONDS)
        if self._peer is not None:
            await self._peer.close()

