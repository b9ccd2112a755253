"""A bot per session in a LiveKit room: name (or create) the room, mint tokens, clean up after.

Rooms runner creates (`runner-<id>`) are deleted once their session is over and the bot has left
(unless RUNNER_LIVEKIT_KEEP_ROOMS), from the clean-up the room services share, which a stopping
server waits for. Rooms it did not create (LIVEKIT_ROOM_NAME, --room) are never deleted. Tokens
need no server: they are signed here, with the session's id in their identities.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, ClassVar

from runner.context import AppContext
from runner.sessions import Session
from runner.transports.base import Transport
from runner.transports.daily.dialin import DialinCall
from runner.transports.daily.rooms import RoomGrant
from runner.transports.daily.service import RoomService
from runner.transports.livekit import tokens
from runner.transports.livekit.rooms import LiveKitApiError, LiveKitRooms
from runner.transports.livekit.sdk import load_rtc
from runner.transports.livekit.transport import WIRE_RATE, LiveKitTransport

log = logging.getLogger("runner.livekit")

#: Seconds a room runner created stays open with nobody in it, at least: it outlives the wait for
#: the person, and closes itself if runner could not delete it.
MIN_EMPTY_TIMEOUT = 300


class LiveKitService(RoomService):
    """Everything the LiveKit routes share: the keys, the room service, livekit.rtc."""

    kind: ClassVar[str] = "livekit"
    transport_type: ClassVar[type[Transport]] = LiveKitTransport

    def __init__(self, context: AppContext, rooms: LiveKitRooms, keys: tokens.Keys) -> None:
        super().__init__(context)
        self.rooms = rooms
        self.keys = keys
        self.url = rooms.url
        self.sample_rate: int = self.options.get("sample_rate", WIRE_RATE)
        self.ttl = tokens.token_ttl(self.config.max_duration)
        self._rtc: Any = None

    @property
    def rtc(self) -> Any:
        """livekit.rtc, loaded on the first session (not at import, not for --help)."""
        if self._rtc is None:
            self._rtc = load_rtc()
        return self._rtc

    @property
    def fixed_room(self) -> str | None:
        return self.config.livekit_room

    async def room_for_start(self) -> RoomGrant:
        """LIVEKIT_ROOM_NAME if set, else a new room runner creates (and deletes afterwards)."""
        if self.config.livekit_start_room:
            return RoomGrant(url=self.url, name=self.config.livekit_start_room, bot_token=None)
        name = f"runner-{uuid.uuid4().hex[:12]}"
        empty = max(MIN_EMPTY_TIMEOUT, int(self.config.livekit_wait_timeout))
        await self.rooms.create(name, empty)
        log.info("LiveKit room %s created", name)
        return RoomGrant(url=self.url, name=name, bot_token=None, created=True)

    async def room_to_join(self) -> RoomGrant:
        """--room: that room (LiveKit makes it when the bot joins, if it does not exist)."""
        return RoomGrant(url=self.url, name=self.fixed_room or "", bot_token=None)

    def user_token(self, session: Session, grant: RoomGrant) -> str:
        return tokens.user_token(self.keys, grant.name, session.id, self.ttl)

    def _transport(self, session: Session, grant: RoomGrant, *, dialin: DialinCall | None,
                   wait: bool) -> LiveKitTransport:
        token = tokens.bot_token(self.keys, grant.name, session.id, self.bot_name, self.ttl)
        wait_timeout = self.config.livekit_wait_timeout if wait else None
        return LiveKitTransport(session.info, self.rtc, url=self.url, token=token,
                                room_name=grant.name, sample_rate=self.sample_rate,
                                video=self.options.get("video", False),
                                wait_timeout=wait_timeout or None)

    async def _release(self, grant: RoomGrant, *, used: bool) -> None:
        if grant.created and not (used and self.config.livekit_keep_rooms):
            try:
                await self.rooms.delete(grant.name)
            except LiveKitApiError as error:
                log.warning("could not delete LiveKit room %s (it closes itself once empty): %s",
                            grant.name, error)
            else:
                log.info("LiveKit room %s deleted", grant.name)

    async def close(self) -> None:
        await super().close()
        await self.rooms.aclose()
