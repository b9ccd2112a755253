"""LiveKit's room service, through livekit-api: create the rooms runner names, delete them after.

livekit-api speaks Twirp to `{LIVEKIT_URL as http(s)}/twirp/livekit.RoomService/...` with a
bearer token signed by the API secret. Its failures (a refusal with LiveKit's code and message,
a server that cannot be reached) become one LiveKitApiError, like Daily's and Tavus's, so the
routes report them the same way. The client (an aiohttp session) is made on first use, inside
the event loop that uses it.
"""

from __future__ import annotations

import aiohttp
from livekit import api

from runner.transports.daily.rest import ApiError
from runner.transports.livekit.tokens import Keys

#: Seconds a request to the room service may take.
TIMEOUT = 10.0


class LiveKitApiError(ApiError):
    """LiveKit's room service refused a request (or could not be reached)."""

    provider = "LiveKit"


class LiveKitRooms:
    """The room service calls runner makes: create a room, delete it."""

    def __init__(self, url: str, keys: Keys, *, timeout: float = TIMEOUT) -> None:
        self.url = url
        self._keys = keys
        self._timeout = timeout
        self._api: api.LiveKitAPI | None = None

    def __repr__(self) -> str:
        return f"LiveKitRooms({self.url!r})"

    def _client(self) -> api.LiveKitAPI:
        if self._api is None:
            self._api = api.LiveKitAPI(self.url, self._keys.api_key, self._keys.api_secret,
                                       timeout=aiohttp.ClientTimeout(total=self._timeout),
                                       failover=False)
        return self._api

    async def create(self, name: str, empty_timeout: int) -> None:
        """A room that closes itself `empty_timeout` seconds after its last participant left
        (or if nobody ever came): a crash never leaves one open for long."""
        request = api.CreateRoomRequest(name=name, empty_timeout=empty_timeout,
                                        departure_timeout=empty_timeout)
        await self._call("CreateRoom", self._client().room.create_room(request))

    async def delete(self, name: str) -> None:
        """Close a room now: everyone still in it is disconnected."""
        await self._call("DeleteRoom", self._client().room.delete_room(
            api.DeleteRoomRequest(room=name)))

    async def aclose(self) -> None:
        if self._api is not None:
            await self._api.aclose()
            self._api = None

    async def _call(self, method: str, call: object) -> None:
        path = f"twirp/livekit.RoomService/{method}"
        try:
            await call  # type: ignore[misc]
        except api.TwirpError as error:
            raise LiveKitApiError("POST", path, error.status, error.code, error.message) from None
        except (TimeoutError, aiohttp.ClientError) as error:
            reason = str(error) or type(error).__name__
            raise LiveKitApiError("POST", path, 0, f"LiveKit could not be reached: {reason}") \
                from None
