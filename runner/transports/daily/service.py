"""A bot per session in a Daily room: get the room and tokens, run the session, clean up after.

Rooms runner creates are deleted once their session is over and the bot has left (unless
RUNNER_DAILY_KEEP_ROOMS), from a task the server waits for at shutdown, so a stopping server
still tidies up. Rooms it did not create (DAILY_ROOM_URL, --room-url) are never deleted.
`RoomService` is the half every room transport shares (LiveKit's too): run a session in a room,
keep a bot in one fixed room, let a room go once its bot has left. Providers whose rooms are
Daily rooms (Tavus) subclass `DailyService`: they get their rooms their own way (and
`room_to_join` for --room-url), and say which transport joins one (`_transport`) and how it is
let go (`_release`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar

from runner.context import AppContext
from runner.sessions import Outcome, Session, SessionRefused
from runner.transports.base import Transport, check_options
from runner.transports.daily import rooms
from runner.transports.daily.dialin import DialinCall
from runner.transports.daily.rest import ApiError, DailyApiError, DailyRest
from runner.transports.daily.rooms import RoomGrant
from runner.transports.daily.sdk import DailySdk, Sdk
from runner.transports.daily.transport import DEFAULT_BOT_NAME, DailyTransport

log = logging.getLogger("runner.daily")

CLEANUP_TIMEOUT = 15.0
REJOIN_PAUSE = 1.0
MAX_REJOIN_BACKOFF = 60.0


class RoomService:
    """Sessions in rooms a bot joins: the half every room transport (Daily, Tavus, LiveKit) shares."""

    kind: ClassVar[str]
    transport_type: ClassVar[type[Transport]]

    def __init__(self, context: AppContext) -> None:
        self.context = context
        self.config = context.config
        self.options = context.bot.options_for(self.kind)
        check_options(self.kind, self.options, self.transport_type.options)
        self.bot_name: str = self.options.get("bot_name", DEFAULT_BOT_NAME)
        self._video: bool = self.options.get("video", False)
        self._cleanups: set[asyncio.Task[None]] = set()

    @property
    def fixed_room(self) -> str | None:
        """The one room a bot keeps itself in from startup (--room-url), if any."""
        return self.config.daily_room_url

    async def room_to_join(self) -> RoomGrant:
        """The fixed room, and the bot's way in."""
        raise NotImplementedError

    # ----------------------------------------------------------------- sessions

    def launch(self, session: Session, grant: RoomGrant, *, dialin: DialinCall | None = None,
               wait: bool = True) -> asyncio.Task[Outcome]:
        """Run the bot in the room in the background; clean up the room once it is over."""
        session.info.room_url = grant.url
        try:
            transport = self._transport(session, grant, dialin=dialin, wait=wait)
        except BaseException:
            session.abandon()
            self._after(self._release(grant, used=False))
            raise
        task = session.start(transport)
        self._after(self._cleanup(task, transport, grant))
        return task

    def _transport(self, session: Session, grant: RoomGrant, *, dialin: DialinCall | None,
                   wait: bool) -> Any:
        """The transport that joins `grant`'s room; it has `left()`, awaited before `_release`."""
        raise NotImplementedError

    async def stay_in_room(self) -> None:
        """--room-url: keep a bot in the room, a fresh session each time the last one ends.

        A visit nobody came to (the join failed, Daily refused the token, the server was full)
        backs off exponentially, so a broken room does not spin.
        """
        failures = 0
        while not self.context.sessions.draining:
            try:
                came = await self._visit()
            except SessionRefused as refused:
                log.warning("not joining %s yet: %s", self.fixed_room, refused)
                came = False
            if came is None:
                return
            failures = 0 if came else failures + 1
            await asyncio.sleep(min(REJOIN_PAUSE * 2 ** failures, MAX_REJOIN_BACKOFF))

    async def _visit(self) -> bool | None:
        """One session in the --room-url room: did anybody come (None: the server stopped)."""
        session = self.context.sessions.open(self.kind, room_url=self.fixed_room)
        try:
            grant = await self.room_to_join()
        except ApiError as error:
            session.abandon()
            log.error("cannot join %s: %s", self.fixed_room, error)
            return False
        except BaseException:
            session.abandon()
            raise
        task = self.launch(session, grant, wait=False)
        try:
            await asyncio.wait({task})
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
        if session.outcome is Outcome.SHUTDOWN:
            return None
        return _somebody_came(session)

    # ----------------------------------------------------------------- cleanup

    async def close(self) -> None:
        """At shutdown: let pending room clean-ups finish."""
        if self._cleanups:
            await asyncio.wait(self._cleanups, timeout=CLEANUP_TIMEOUT)

    def _after(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    async def _cleanup(self, task: asyncio.Task[Outcome], transport: Any,
                       grant: RoomGrant) -> None:
        await asyncio.wait({task})
        try:
            await transport.left()
        except Exception:
            log.exception("leaving the %s room %s failed", self.kind, grant.url)
        await self._release(grant, used=True)

    async def _release(self, grant: RoomGrant, *, used: bool) -> None:
        """Let a session's room go once its bot has left it (nothing to do by default)."""


class DailyService(RoomService):
    """Everything the Daily routes share: the REST client, the SDK, the bot's options."""

    kind: ClassVar[str] = "daily"
    transport_type: ClassVar[type[Transport]] = DailyTransport

    def __init__(self, context: AppContext, rest: DailyRest | None) -> None:
        super().__init__(context)
        self.rest = rest
        self._sdk: Sdk | None = None

    @property
    def sdk(self) -> Sdk:
        """daily-python, initialised on the first session (not at import, not for --help)."""
        if self._sdk is None:
            self._sdk = DailySdk()
        return self._sdk

    # ----------------------------------------------------------------- rooms

    async def room_for_start(self, room_overrides: Mapping[str, Any] | None,
                             token_overrides: Mapping[str, Any] | None) -> RoomGrant:
        """DAILY_ROOM_URL if set, else a new private room; an owner token for the bot and a
        separate, non-owner token for the person."""
        rest = self._rest()
        exp = rooms.expiry(self.config.max_duration)
        if self.config.daily_start_room_url:
            url = self.config.daily_start_room_url
            name, created = rooms.room_name(url), False
        else:
            room = await rest.create_room(rooms.room_properties(exp, room_overrides), private=True)
            url, name, created = room.url, room.name, True
        try:
            bot = await rest.create_token(rooms.bot_token_properties(name, exp, self.bot_name))
            client = await rest.create_token(rooms.client_token_properties(name, exp, token_overrides))
        except BaseException:
            if created:
                self._after(self._delete(name))
            raise
        return RoomGrant(url=url, name=name, bot_token=bot, client_token=client, created=created)

    async def room_for_dialin(self, call: DialinCall) -> RoomGrant:
        """A new room that takes one SIP dial-in leg, and an owner token for the bot.

        Public, like the rooms in Daily's own dial-in guide: whether a SIP leg may enter a
        private room could not be checked without Daily. Its name is random and it is deleted.
        """
        rest = self._rest()
        exp = rooms.expiry(self.config.max_duration)
        room = await rest.create_room(rooms.dialin_room_properties(exp, call.caller), private=False)
        try:
            token = await rest.create_token(rooms.bot_token_properties(room.name, exp, self.bot_name))
        except BaseException:
            self._after(self._delete(room.name))
            raise
        return RoomGrant(url=room.url, name=room.name, bot_token=token, created=True)

    async def room_to_join(self) -> RoomGrant:
        """--room-url: that room, with an owner token when DAILY_API_KEY allows minting one."""
        url = self.config.daily_room_url or ""
        name = rooms.room_name(url)
        if self.rest is None:
            return RoomGrant(url=url, name=name, bot_token=None)
        await self.rest.get_room(name)  # a missing room is a clear error here, not a failed join
        exp = rooms.expiry(self.config.max_duration)
        token = await self.rest.create_token(rooms.bot_token_properties(name, exp, self.bot_name))
        return RoomGrant(url=url, name=name, bot_token=token)

    def _transport(self, session: Session, grant: RoomGrant, *, dialin: DialinCall | None,
                   wait: bool) -> Any:
        if self.context.bot.pipecat:  # the bot joins with Pipecat's DailyTransport
            from runner.handover import daily_session

            return daily_session(session.info, grant.url, grant.bot_token)
        return DailyTransport(
            session.info, self.sdk, room_url=grant.url, token=grant.bot_token,
            bot_name=self.bot_name, video=self._video,
            wait_timeout=self.config.daily_wait_timeout if wait else None,
            eject_on_hangup=dialin is not None,
            on_dialin_ready=self._connect_caller(dialin) if dialin else None,
        )

    async def close(self) -> None:
        """At shutdown: let pending room clean-ups finish, then close the REST client."""
        await super().close()
        if self.rest is not None:
            await self.rest.aclose()

    async def _release(self, grant: RoomGrant, *, used: bool) -> None:
        """Let a session's room go: delete it if runner created it (a used one is kept with
        RUNNER_DAILY_KEEP_ROOMS, for looking at afterwards; it still expires)."""
        if grant.created and not (used and self.config.daily_keep_rooms):
            await self._delete(grant.name)

    async def _delete(self, name: str) -> None:
        try:
            await self._rest().delete_room(name)
        except DailyApiError as error:
            log.warning("could not delete Daily room %s (it expires on its own): %s", name, error)

    def _connect_caller(self, call: DialinCall) -> Callable[[str], Awaitable[None]]:
        async def connect(sip_endpoint: str) -> None:
            log.info("dial-in ready at %s; connecting call %s", sip_endpoint, call.call_id)
            await self._rest().pinless_call_update(call.call_id, call.call_domain, sip_endpoint)

        return connect

    def _rest(self) -> DailyRest:
        if self.rest is None:
            raise DailyApiError("POST", "rooms", 0, "no-api-key", "DAILY_API_KEY is not set")
        return self.rest


def _somebody_came(session: Session) -> bool:
    transport = session.transport
    return transport is not None and transport.stats.connected_at is not None
