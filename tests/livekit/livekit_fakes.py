"""Stand-ins for LiveKit: its Twirp room service on 127.0.0.1, and livekit.rtc's objects.

`FakeLiveKitServer` answers `/twirp/livekit.RoomService/*` as livekit-server does: protobuf or
JSON bodies, the bearer token checked with livekit-api's own `TokenVerifier` (and the grant each
call needs), Twirp's JSON errors. Any GET (a client's signaling WebSocket, `/rtc...`) is only
recorded, in `connections` and `tokens`, and refused with a 404: no signaling is spoken here. `FakeRtc`
is a module-like namespace with livekit.rtc's names; its rooms call their event handlers from a
thread of their own, as a native SDK may, and anything a handler raises there is kept in
`errors`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

from google.protobuf.json_format import MessageToDict, Parse
from livekit import api

API_KEY = "devkey"
API_SECRET = "secret-for-tests-that-is-long-enough-0123"

STANDARD, INGRESS, EGRESS, SIP, AGENT = 0, 1, 2, 3, 4
KIND_AUDIO, KIND_VIDEO = 1, 2
SOURCE_CAMERA, SOURCE_MICROPHONE, SOURCE_SCREENSHARE = 1, 2, 3
RGBA, ABGR, ARGB, BGRA, RGB24 = 0, 1, 2, 3, 4  # livekit.rtc's VideoBufferType values
_PIXEL_BYTES = {RGBA: 4, ABGR: 4, ARGB: 4, BGRA: 4, RGB24: 3}

_REQUESTS = {"CreateRoom": (api.CreateRoomRequest, "room_create"),
             "DeleteRoom": (api.DeleteRoomRequest, "room_create"),
             "ListParticipants": (api.ListParticipantsRequest, "room_admin")}


class FakeLiveKitServer:
    """LiveKit's room service at http://127.0.0.1:PORT, rooms kept in memory."""

    def __init__(self, api_key: str = API_KEY, api_secret: str = API_SECRET) -> None:
        self.verifier = api.TokenVerifier(api_key, api_secret)
        self.rooms: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, dict[str, Any], str]] = []  # method, body, content type
        self.refused: list[str] = []
        self.connections: list[str] = []  # the paths (and queries) of GET requests
        self.tokens: list[str] = []  # the token each presented (query access_token, or bearer)
        self._failures: list[tuple[str, int, str, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"ws://127.0.0.1:{self.port}"
        threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True).start()

    def __enter__(self) -> FakeLiveKitServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail(self, method: str, status: int, code: str, message: str) -> None:
        with self._lock:
            self._failures.append((method, status, code, message))

    def calls(self, method: str) -> list[dict[str, Any]]:
        return [body for name, body, _ in self.requests if name == method]

    def _answer(self, method: str, auth: str, raw: bytes,
                content_type: str) -> tuple[int, bytes, str]:
        request_type, grant = _REQUESTS.get(method, (None, ""))
        if request_type is None:
            return _error(404, "bad_route", f"no such method {method}")
        try:
            claims = self.verifier.verify(auth.removeprefix("Bearer "))
        except Exception as error:
            self.refused.append(str(error))
            return _error(401, "unauthenticated", "invalid token")
        if not claims.video or not getattr(claims.video, grant):
            return _error(403, "permission_denied", f"needs {grant}")
        if content_type.startswith("application/json"):
            message = Parse(raw.decode() or "{}", request_type())
        else:
            message = request_type.FromString(raw)
        body = MessageToDict(message, preserving_proto_field_name=True)
        with self._lock:
            self.requests.append((method, body, content_type))
            for index, (name, status, code, text) in enumerate(self._failures):
                if name == method:
                    del self._failures[index]
                    return _error(status, code, text)
        if method == "CreateRoom":
            self.rooms[message.name] = body
            reply: Any = api.Room(name=message.name, sid=f"RM_{message.name}",
                                  empty_timeout=message.empty_timeout)
        elif method == "DeleteRoom":
            if self.rooms.pop(message.room, None) is None:
                return _error(404, "not_found", "requested room does not exist")
            reply = api.DeleteRoomResponse()
        else:
            reply = api.ListParticipantsResponse()
        if content_type.startswith("application/json"):
            return 200, json.dumps(MessageToDict(reply)).encode(), "application/json"
        return 200, reply.SerializeToString(), "application/protobuf"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                prefix = "/twirp/livekit.RoomService/"
                method = self.path.removeprefix(prefix) if self.path.startswith(prefix) else ""
                status, body, kind = fake._answer(method, self.headers.get("Authorization", ""),
                                                  raw, self.headers.get("Content-Type", ""))
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                bearer = self.headers.get("Authorization", "").removeprefix("Bearer ")
                with fake._lock:
                    fake.connections.append(self.path)
                    fake.tokens.append((query.get("access_token") or [bearer])[0])
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        return Handler


def _error(status: int, code: str, message: str) -> tuple[int, bytes, str]:
    return status, json.dumps({"code": code, "msg": message}).encode(), "application/json"


# ----------------------------------------------------------------- livekit.rtc


@dataclass
class FakeAudioFrame:
    data: bytes
    sample_rate: int
    num_channels: int
    samples_per_channel: int


class FakeAudioSource:
    def __init__(self, sample_rate: int, num_channels: int, queue_size_ms: int = 1000,
                 loop: Any = None) -> None:
        self.sample_rate, self.num_channels = sample_rate, num_channels
        self.frames: list[FakeAudioFrame] = []
        self.cleared = 0
        self.closed = False

    async def capture_frame(self, frame: FakeAudioFrame) -> None:
        assert frame.sample_rate == self.sample_rate
        assert frame.samples_per_channel * 2 * frame.num_channels == len(frame.data)
        self.frames.append(frame)
        await asyncio.sleep(0)

    def clear_queue(self) -> None:
        self.cleared += 1

    async def aclose(self) -> None:
        self.closed = True

    @property
    def pcm(self) -> bytes:
        return b"".join(frame.data for frame in self.frames)


class FakeVideoFrame:
    """livekit.rtc's VideoFrame: (width, height, type, data); `data` a memoryview."""

    def __init__(self, width: int, height: int, type: int, data: bytes | bytearray | memoryview) -> None:
        assert len(data) == width * height * _PIXEL_BYTES[type], "the SDK refuses a short buffer"
        self.width, self.height, self.type = width, height, type
        self.data = memoryview(bytes(data))


class FakeVideoSource:
    """VideoSource(width, height): capture_frame is synchronous, as the real one's is."""

    def __init__(self, width: int, height: int, *, is_screencast: bool = False) -> None:
        self.width, self.height = width, height
        self.frames: list[FakeVideoFrame] = []
        self.closed = False

    def capture_frame(self, frame: FakeVideoFrame, *, timestamp_us: int = 0,
                      rotation: int = 0, metadata: Any = None) -> None:
        self.frames.append(frame)

    async def aclose(self) -> None:
        self.closed = True


@dataclass
class FakeTrack:
    name: str
    source: Any = None
    kind: int = KIND_AUDIO
    streams: list[Any] = field(default_factory=list)

    def push(self, pcm: bytes, rate: int = 48000) -> None:
        """Audio from the remote participant (from any thread)."""
        for stream in self.streams:
            stream.feed(FakeAudioFrame(pcm, rate, 1, len(pcm) // 2))

    def show(self, rgb: bytes, width: int, height: int) -> None:
        """A camera picture from the remote participant (from any thread), as RGB24 (what
        the streams asked for)."""
        for stream in self.streams:
            assert stream.format == RGB24
            stream.feed(FakeVideoFrame(width, height, RGB24, rgb))


class FakeLocalAudioTrack:
    @staticmethod
    def create_audio_track(name: str, source: FakeAudioSource) -> FakeTrack:
        return FakeTrack(name, source)


class FakeLocalVideoTrack:
    @staticmethod
    def create_video_track(name: str, source: FakeVideoSource) -> FakeTrack:
        return FakeTrack(name, source, kind=KIND_VIDEO)


class FakeAudioStream:
    def __init__(self, track: FakeTrack, sample_rate: int = 48000, num_channels: int = 1,
                 loop: Any = None) -> None:
        self.track, self.sample_rate, self.num_channels = track, sample_rate, num_channels
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self.closed = False
        track.streams.append(self)

    def feed(self, frame: FakeAudioFrame) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, SimpleNamespace(frame=frame))

    def __aiter__(self) -> FakeAudioStream:
        return self

    async def __anext__(self) -> Any:
        return await self._queue.get()

    async def aclose(self) -> None:
        self.closed = True
        if self in self.track.streams:
            self.track.streams.remove(self)


class FakeVideoStream:
    """VideoStream(track, loop, capacity, format): a ring of `capacity` events, as the SDK's."""

    def __init__(self, track: FakeTrack, loop: Any = None, capacity: int = 0,
                 format: int | None = None) -> None:
        self.track, self.capacity, self.format = track, capacity, format
        self._loop = asyncio.get_running_loop()
        self._events: list[Any] = []
        self._ready = asyncio.Event()
        self.closed = False
        track.streams.append(self)

    def feed(self, frame: FakeVideoFrame) -> None:
        self._loop.call_soon_threadsafe(self._put, SimpleNamespace(
            frame=frame, timestamp_us=0, rotation=0, metadata=None))

    def _put(self, event: Any) -> None:
        if self.capacity > 0 and len(self._events) == self.capacity:
            del self._events[0]
        self._events.append(event)
        self._ready.set()

    def __aiter__(self) -> FakeVideoStream:
        return self

    async def __anext__(self) -> Any:
        while not self._events:
            self._ready.clear()
            await self._ready.wait()
        return self._events.pop(0)

    async def aclose(self) -> None:
        self.closed = True
        if self in self.track.streams:
            self.track.streams.remove(self)


@dataclass
class FakeParticipant:
    identity: str
    name: str = ""
    kind: int = STANDARD
    attributes: dict[str, str] = field(default_factory=dict)


class FakeLocalParticipant:
    def __init__(self) -> None:
        self.published: list[tuple[FakeTrack, Any]] = []
        self.data: list[tuple[bytes, bool, str]] = []

    async def publish_track(self, track: FakeTrack, options: Any = None) -> Any:
        self.published.append((track, options))
        return SimpleNamespace(sid="TR_bot", track=track)

    async def publish_data(self, payload: bytes | str, *, reliable: bool = True,
                           destination_identities: list[str] | None = None,
                           topic: str = "") -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        self.data.append((data, reliable, topic))


class FakeRoom:
    """A room as livekit.rtc's Room shows it to the bot; the test plays everyone else."""

    def __init__(self, rtc: FakeRtc, loop: Any = None) -> None:
        self._rtc = rtc
        self.handlers: dict[str, list[Any]] = {}
        self.local_participant = FakeLocalParticipant()
        self.remote_participants: dict[str, FakeParticipant] = {}
        self.connected_with: tuple[str, str] | None = None
        self.disconnected = False
        rtc.rooms.append(self)

    def on(self, event: str, callback: Any = None) -> Any:
        self.handlers.setdefault(event, []).append(callback)
        return callback

    async def connect(self, url: str, token: str, options: Any = None) -> None:
        if self._rtc.refuse:
            raise RuntimeError(self._rtc.refuse)
        self.connected_with = (url, token)

    async def disconnect(self) -> None:
        self.disconnected = True

    # the test's side: events arrive from another thread, as from a native SDK

    def emit(self, event: str, *args: Any) -> None:
        def call() -> None:
            for handler in self.handlers.get(event, []):
                try:
                    handler(*args)
                except Exception as error:  # kept for the test: a handler must not raise
                    self._rtc.errors.append(error)

        thread = threading.Thread(target=call)
        thread.start()
        thread.join()

    def join(self, identity: str, kind: int = STANDARD, audio: bool = True,
             attributes: dict[str, str] | None = None, name: str = "") -> FakeTrack | None:
        participant = FakeParticipant(identity, name or identity, kind, attributes or {})
        self.remote_participants[identity] = participant
        self.emit("participant_connected", participant)
        if not audio:
            return None
        track = FakeTrack(f"mic-{identity}")
        self.emit("track_subscribed", track,
                  SimpleNamespace(sid=f"TR_{identity}", source=SOURCE_MICROPHONE), participant)
        return track

    def camera(self, identity: str, source: int = SOURCE_CAMERA) -> FakeTrack:
        """`identity` publishes a video track (its camera, or a screen share) the bot gets."""
        track = FakeTrack(f"camera-{identity}", kind=KIND_VIDEO)
        self.emit("track_subscribed", track,
                  SimpleNamespace(sid=f"TR_{identity}_video", source=source),
                  self.remote_participants[identity])
        return track

    def leave(self, identity: str) -> None:
        participant = self.remote_participants.pop(identity)
        self.emit("participant_disconnected", participant)

    def send_data(self, data: bytes, topic: str, sender: str | None) -> None:
        participant = self.remote_participants.get(sender) if sender else None
        self.emit("data_received", SimpleNamespace(data=data, kind=1, participant=participant,
                                                   topic=topic))

    def dtmf(self, digit: str, sender: str) -> None:
        self.emit("sip_dtmf_received", SimpleNamespace(code=0, digit=digit,
                                                       participant=self.remote_participants[sender]))


class FakeRtc:
    """What the transport uses of livekit.rtc, with the same names."""

    AudioFrame = FakeAudioFrame
    AudioSource = FakeAudioSource
    AudioStream = FakeAudioStream
    LocalAudioTrack = FakeLocalAudioTrack
    VideoFrame = FakeVideoFrame
    VideoSource = FakeVideoSource
    VideoStream = FakeVideoStream
    LocalVideoTrack = FakeLocalVideoTrack
    VideoBufferType = SimpleNamespace(RGBA=RGBA, ABGR=ABGR, ARGB=ARGB, BGRA=BGRA, RGB24=RGB24)
    TrackPublishOptions = staticmethod(lambda **options: SimpleNamespace(**options))
    TrackSource = SimpleNamespace(SOURCE_CAMERA=SOURCE_CAMERA, SOURCE_MICROPHONE=SOURCE_MICROPHONE,
                                  SOURCE_SCREENSHARE=SOURCE_SCREENSHARE)
    TrackKind = SimpleNamespace(KIND_AUDIO=KIND_AUDIO, KIND_VIDEO=KIND_VIDEO)
    ParticipantKind = SimpleNamespace(PARTICIPANT_KIND_STANDARD=STANDARD,
                                      PARTICIPANT_KIND_SIP=SIP, PARTICIPANT_KIND_AGENT=AGENT)

    def __init__(self) -> None:
        self.rooms: list[FakeRoom] = []
        self.errors: list[Exception] = []
        self.refuse: str | None = None
        self._ids = itertools.count(1)

    def Room(self, loop: Any = None) -> FakeRoom:
        return FakeRoom(self, loop)

    @property
    def room(self) -> FakeRoom:
        return self.rooms[-1]
