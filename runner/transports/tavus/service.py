"""A Tavus conversation per session: created for `/start`, ended when the session is over.

Conversations are billed while open, so each one runner creates is ended exactly once, whatever
ended its session (the bot returning, raising or hanging up, the person leaving, nobody coming,
the server stopping), from the clean-up the Daily service already runs after the bot has left.
One whose creation was still under way when its request was abandoned is ended once it exists.
A conversation given with `--room-url` is the developer's: runner joins it and never ends it.
"""

from __future__ import annotations

import asyncio
import logging

from runner.context import AppContext
from runner.sessions import Session
from runner.transports.daily import rooms
from runner.transports.daily.dialin import DialinCall
from runner.transports.daily.rooms import RoomGrant
from runner.transports.daily.service import DailyService
from runner.transports.tavus.rest import Conversation, TavusApiError, TavusRest
from runner.transports.tavus.transport import TavusTransport

log = logging.getLogger("runner.tavus")


class TavusService(DailyService):
    """The Daily service, with conversations for rooms."""

    kind = "tavus"
    transport_type = TavusTransport

    def __init__(self, context: AppContext, tavus: TavusRest) -> None:
        super().__init__(context, None)
        self.tavus = tavus
        self._replica_names: tuple[str, ...] | None = None

    async def replica_names(self) -> tuple[str, ...]:
        """The user names the replica may have in the room (looked up once per process)."""
        if self._replica_names is None:
            persona = await self.tavus.persona_name(self.config.tavus_persona_id)
            self._replica_names = (persona, self.config.tavus_replica_id or "")
        return self._replica_names

    async def new_conversation(self) -> RoomGrant:
        """A conversation with the replica and the echo persona; its room is the session's."""
        await self.replica_names()  # a refusal here costs nothing; after the create it would
        replica, persona = self.config.tavus_replica_id or "", self.config.tavus_persona_id
        creating = asyncio.ensure_future(self.tavus.create_conversation(replica, persona))
        try:
            conversation = await asyncio.shield(creating)
        except asyncio.CancelledError:
            self._after(self._end_once_created(creating))
            raise
        log.info("Tavus conversation %s created (%s)", conversation.id, conversation.url)
        return RoomGrant(url=conversation.url, name=conversation.id, bot_token=None, created=True)

    async def room_to_join(self) -> RoomGrant:
        """--room-url: a conversation the developer created; its id ends its URL."""
        url = self.config.daily_room_url or ""
        await self.replica_names()
        return RoomGrant(url=url, name=rooms.room_name(url), bot_token=None)

    def _transport(self, session: Session, grant: RoomGrant, *, dialin: DialinCall | None,
                   wait: bool) -> TavusTransport:
        return TavusTransport(
            session.info, self.sdk, room_url=grant.url, conversation_id=grant.name,
            replica_names=self._replica_names or (), bot_name=self.bot_name,
            wait_timeout=self.config.daily_wait_timeout if wait else None,
        )

    async def _release(self, grant: RoomGrant, *, used: bool) -> None:
        if grant.created:
            await self._end(grant.name)

    async def _end_once_created(self, creating: asyncio.Future[Conversation]) -> None:
        try:
            conversation = await creating
        except Exception:
            return  # never created: nothing to end (the refusal is the request's to report)
        await self._end(conversation.id)

    async def _end(self, conversation_id: str) -> None:
        try:
            await self.tavus.end_conversation(conversation_id)
        except TavusApiError as error:
            log.warning("could not end Tavus conversation %s (Tavus ends it after its own "
                        "timeouts; it is billed until then): %s", conversation_id, error)
        else:
            log.info("Tavus conversation %s ended", conversation_id)

    async def close(self) -> None:
        await super().close()
        await self.tavus.aclose()
