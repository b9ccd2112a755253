"""Stand-ins for Daily: its REST API on 127.0.0.1, and daily-python's objects on their own thread.

`FakeDailyApi` answers as Daily's documented REST API does (room objects, meeting tokens,
`{"error", "info"}` failures, 404 on unknown rooms) and can be told to fail next. `FakeSdk`
hands out objects with daily-python's method names whose callbacks and completions run on one
worker thread, as daily-python's do; anything they raise there (such as asyncio refusing a call
from the wrong thread in debug mode) is kept in `errors` for the test to check.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import queue
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from conftest import wait_for

API_KEY = "sk-test-4f1c9b2e7d"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class FakeDailyApi:
    """Daily's REST API at http://127.0.0.1:PORT/v1, with rooms and tokens kept in memory.

    Another API in Daily's style subclasses it: its `prefix`, `_refusal` (authentication) and
    `_route`."""

    prefix = "/v1"

    def __init__(self, api_key: str = API_KEY, domain: str = "fake.daily.co") -> None:
        self.api_key = api_key
        self.domain = domain
        self.requests: list[Recorded] = []
        self.rooms: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, dict[str, Any]] = {}
        self._failures: list[tuple[str, str, int, dict[str, Any], dict[str, str]]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}{self.prefix}"
        threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeDailyApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_room(self, name: str) -> str:
        url = f"https://{self.domain}/{name}"
        self.rooms[name] = {"name": name, "url": url, "privacy": "public", "config": {}}
        return url

    def fail(self, method: str, path: str, status: int, body: dict[str, Any] | None = None,
             headers: dict[str, str] | None = None) -> None:
        """The next `method path` (path after /v1, prefix match) is answered with this instead."""
        with self._lock:
            self._failures.append((method, path, status, body or {}, headers or {}))

    def calls(self, method: str, path: str = "") -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path.startswith(path)]

    def _answer(self, method: str, path: str, headers: dict[str, str],
                body: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._lock:
            self.requests.append(Recorded(method, path, headers, body))
            for failure in self._failures:
                if failure[0] == method and path.startswith(failure[1]):
                    self._failures.remove(failure)
                    return failure[2], failure[3], failure[4]
        return self._refusal(headers) or self._route(method, path, body)

    def _refusal(self, headers: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return 400, {"error": "authorization-header-error"}, {}
        if auth != f"Bearer {self.api_key}":
            return 401, {"error": "authentication-error"}, {}
        return None

    def _route(self, method: str, path: str, body: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
        parts = path.strip("/").split("/")
        if method == "POST" and parts == ["rooms"]:
            name = f"room-{next(self._ids)}"
            self.add_room(name)
            self.rooms[name].update(privacy=body.get("privacy", "public"),
                                    config=body.get("properties", {}))
            return 200, self.rooms[name], {}
        if parts[0] == "rooms" and len(parts) == 2:
            room = self.rooms.get(parts[1])
            if room is None:
                return 404, {"error": "not-found", "info": f"room {parts[1]} not found"}, {}
            if method == "DELETE":
                del self.rooms[parts[1]]
                return 200, {"deleted": True, "name": parts[1]}, {}
            return 200, room, {}
        if method == "POST" and parts == ["meeting-tokens"]:
            token = f"token-{next(self._ids)}"
            self.tokens[token] = body.get("properties", {})
            return 200, {"token": token}, {}
        if method == "POST" and parts == ["dialin", "pinlessCallUpdate"]:
            return 200, {"ok": "true"}, {}
        return 404, {"error": "not-found", "info": f"no route {method} {path}"}, {}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                path = self.path.removeprefix(api.prefix)
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, answer, extra = api._answer(self.command, path, headers, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


# ----------------------------------------------------------------- daily-python stand-in


class FakeSdk:
    """Makes stand-ins for daily-python's objects; all their callbacks run on one worker thread."""

    def __init__(self, join_error: str | None = None, present: tuple[str, ...] = ()) -> None:
        self.join_error = join_error
        self.present = present  # remote participants already in the room when the bot joins
        self.clients: list[FakeCallClient] = []
        self.sources: list[FakeAudioSource] = []
        self.video_sources: list[FakeVideoSource] = []
        self.errors: list[BaseException] = []
        self.callback_threads: set[int] = set()
        self._work: queue.Queue[Callable[[], None]] = queue.Queue()
        self.thread = threading.Thread(target=self._work_loop, name="fake-daily", daemon=True)
        self.thread.start()

    def run(self, func: Callable[..., Any], *args: Any) -> None:
        """Call `func(*args)` on the worker thread, as daily-python calls back."""
        self._work.put(lambda: func(*args))

    def settle(self, timeout: float = 2.0) -> None:
        """Block until the worker thread has run everything queued so far."""
        done = threading.Event()
        self._work.put(done.set)
        assert done.wait(timeout), "the fake daily worker thread is stuck"

    def _work_loop(self) -> None:
        while True:
            job = self._work.get()
            self.callback_threads.add(threading.get_ident())
            try:
                job()
            except BaseException as error:  # the test checks these
                self.errors.append(error)

    @property
    def client(self) -> FakeCallClient:
        return self.clients[-1]

    def call_client(self, events: object) -> FakeCallClient:
        client = FakeCallClient(self, events)
        self.clients.append(client)
        return client

    def audio_source(self, sample_rate: int, channels: int) -> FakeAudioSource:
        source = FakeAudioSource(self, sample_rate, channels)
        self.sources.append(source)
        return source

    def audio_track(self, source: FakeAudioSource) -> FakeTrack:
        return FakeTrack(f"audio-track-{len(self.sources)}")

    def video_source(self, width: int, height: int, color_format: str) -> FakeVideoSource:
        source = FakeVideoSource(width, height, color_format)
        self.video_sources.append(source)
        return source

    def video_track(self, source: FakeVideoSource) -> FakeTrack:
        return FakeTrack(f"video-track-{len(self.video_sources)}")


@dataclass
class FakeTrack:
    id: str


@dataclass
class FakeAudioData:
    audio_frames: bytes
    sample_rate: int
    num_channels: int = 1
    bits_per_sample: int = 16

    @property
    def num_audio_frames(self) -> int:
        return len(self.audio_frames) // (2 * self.num_channels)


@dataclass
class FakeVideoFrame:
    buffer: bytes
    width: int
    height: int
    color_format: str = "RGB"
    timestamp_us: int = 0


class FakeAudioSource:
    def __init__(self, sdk: FakeSdk, sample_rate: int, channels: int) -> None:
        self.sdk, self.sample_rate, self.channels = sdk, sample_rate, channels
        self.chunks: list[bytes] = []

    @property
    def pcm(self) -> bytes:
        return b"".join(self.chunks)

    def write_frames(self, frame: bytes, completion: Callable[[int], None] | None = None) -> int:
        assert completion is not None, "a blocking write would stall the event loop"
        self.chunks.append(bytes(frame))
        frames = len(frame) // (2 * self.channels)
        self.sdk.run(completion, frames)
        return frames


class FakeVideoSource:
    def __init__(self, width: int, height: int, color_format: str) -> None:
        self.width, self.height, self.color_format = width, height, color_format
        self.frames: list[bytes] = []

    def write_frame(self, frame: bytes) -> None:
        self.frames.append(frame)


class FakeCallClient:
    """daily.CallClient's methods that runner uses, recorded; the room is driven by the test."""

    def __init__(self, sdk: FakeSdk, events: object) -> None:
        self.sdk = sdk
        self.events = events
        self.calls: list[tuple[str, Any]] = []
        self.sent: list[tuple[Any, str | None]] = []
        self.audio_renderers: dict[str, tuple[Callable[..., None], dict[str, Any]]] = {}
        self.video_renderers: dict[str, Callable[..., None]] = {}
        self.joined_with: tuple[str, str | None, dict[str, Any]] | None = None
        self.left = False
        self.released = False

    # what runner calls
    def set_user_name(self, name: str) -> None:
        self.calls.append(("set_user_name", name))

    def update_subscription_profiles(self, profile_settings: Any, completion: Any = None) -> None:
        self.calls.append(("update_subscription_profiles", profile_settings))

    def update_subscriptions(self, participant_settings: Any = None, profile_settings: Any = None,
                             completion: Any = None) -> None:
        self.calls.append(("update_subscriptions", participant_settings))

    def update_inputs(self, input_settings: Any, completion: Any = None) -> None:
        self.calls.append(("update_inputs", input_settings))

    def update_publishing(self, publishing_settings: Any, completion: Any = None) -> None:
        self.calls.append(("update_publishing", publishing_settings))

    def join(self, meeting_url: str, meeting_token: str | None = None,
             client_settings: Any = None, completion: Any = None) -> None:
        self.joined_with = (meeting_url, meeting_token, client_settings)
        error = self.sdk.join_error
        self.sdk.run(completion, None if error else {"participants": {}}, error)
        if not error:
            self.sdk.run(self.events.on_call_state_updated, "joined")

    def participants(self) -> dict[str, Any]:
        remote = {pid: _participant(pid) for pid in self.sdk.present}
        return {"local": {"id": "bot", "info": {"isLocal": True}}, **remote}

    def set_audio_renderer(self, participant_id: str, callback: Callable[..., None],
                           audio_source: str = "microphone", sample_rate: int = 16000,
                           callback_interval_ms: int = 20) -> None:
        self.audio_renderers[participant_id] = (callback, {
            "audio_source": audio_source, "sample_rate": sample_rate,
            "callback_interval_ms": callback_interval_ms})

    def set_video_renderer(self, participant_id: str, callback: Callable[..., None],
                           video_source: str = "camera", color_format: str = "RGBA") -> None:
        self.video_renderers[participant_id] = callback

    def send_app_message(self, message: Any, participant_id: str | None = None,
                         serialize_none: bool = True, completion: Any = None) -> None:
        self.sent.append((message, participant_id))
        self.sdk.run(completion, None)

    def eject_remote_participants(self, ids: list[str], completion: Any = None) -> None:
        self.calls.append(("eject_remote_participants", list(ids)))
        self.sdk.run(completion, None)
        for participant_id in ids:
            self.sdk.run(self.events.on_participant_left, _participant(participant_id), "ejected")

    def leave(self, completion: Any = None) -> None:
        self.calls.append(("leave", None))
        self.left = True
        self.sdk.run(self.events.on_call_state_updated, "left")
        self.sdk.run(completion, None)

    def release(self) -> None:
        assert self.left, "release() before leave() completed"
        self.calls.append(("release", None))
        self.released = True

    # what the test does to the room
    def participant_joins(self, participant_id: str, name: str = "") -> None:
        self.sdk.run(self.events.on_participant_joined, _participant(participant_id, name))

    def participant_leaves(self, participant_id: str, reason: str = "leftCall") -> None:
        self.sdk.run(self.events.on_participant_left, _participant(participant_id), reason)

    def speaks(self, participant_id: str, pcm: bytes, sample_rate: int, frame_ms: int = 20) -> None:
        """Deliver `pcm` through the participant's audio renderer, a frame per callback."""
        size = sample_rate * frame_ms // 1000 * 2
        for offset in range(0, len(pcm), size):
            chunk = pcm[offset:offset + size]
            renderer = self.audio_renderers.get(participant_id)
            if renderer is not None:
                self.sdk.run(renderer[0], participant_id, FakeAudioData(chunk, sample_rate),
                             "microphone")

    def shows(self, participant_id: str, frame: FakeVideoFrame) -> None:
        renderer = self.video_renderers.get(participant_id)
        if renderer is not None:
            self.sdk.run(renderer, participant_id, frame, "camera")

    def app_message(self, message: Any, sender: str) -> None:
        self.sdk.run(self.events.on_app_message, message, sender)

    def dtmf(self, tone: str) -> None:
        self.sdk.run(self.events.on_dtmf_event, {"tone": tone, "sessionId": "sip-1"})

    def dialin_ready(self, sip_endpoint: str) -> None:
        self.sdk.run(self.events.on_dialin_ready, sip_endpoint)

    def removed(self) -> None:
        """Daily took the bot out of the room (ejected, room deleted or expired)."""
        self.sdk.run(self.events.on_call_state_updated, "left")


def _participant(participant_id: str, name: str = "") -> dict[str, Any]:
    return {"id": participant_id, "info": {"isLocal": False, "userName": name}}


@contextlib.asynccontextmanager
async def in_room(transport: Any, sdk: FakeSdk) -> AsyncIterator[None]:
    """Run a room transport until the block ends; on the way out it is closed and must have
    left and released its client, every SDK callback having come on the SDK's own threads."""
    task = asyncio.create_task(transport.run())
    try:
        await wait_for(lambda: transport._joined.is_set() or task.done())
        yield
    finally:
        await transport.close()
        await asyncio.wait_for(task, 5)
        await transport.left()
        sdk.settle()
        assert sdk.errors == []
        assert threading.get_ident() not in sdk.callback_threads
        assert sdk.client.released
