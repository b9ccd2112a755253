"""The Tavus transport: the Daily transport, with the bot's voice sent to a replica instead of
published as a track.

A Tavus conversation's room holds the person, the replica (Tavus's participant whose video is
the avatar) and the bot. The bot publishes nothing: what it says leaves as `conversation.echo`
app messages, base64 PCM16 chunks at real-time pace (the shared pacer's, so `clear_audio()` drops
what is not sent yet), one `inference_id` per utterance, the last chunk with `done` true; the
replica speaks them, lips in sync. An utterance ends at `mark()` or once the bot has been quiet
for UTTERANCE_GAP. Barge-in is `conversation.interrupt`.

The replica is known by its user name: its persona's name (as Tavus names it) or its replica id.
It is never taken for the person (no `ClientConnected`, never heard: its microphone is
unsubscribed), and its app messages (Tavus's own conversation events) do not reach the bot.
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Collection, Mapping
from typing import Any, ClassVar

from runner.transports.base import SessionInfo, TransportError
from runner.transports.daily.sdk import Sdk
from runner.transports.daily.transport import DEFAULT_BOT_NAME, LAST_PARTICIPANT_GRACE, DailyTransport

log = logging.getLogger("runner.tavus")

#: The rate of the echoed audio, the one Tavus documents (and the reference library sends).
ECHO_RATE = 24000
#: The smallest echo chunk: 40 ms, as the reference library sends; app messages are not frames.
ECHO_CHUNK_SECONDS = 0.04
#: Quiet this long after the bot's audio has played out ends the utterance.
UTTERANCE_GAP = 0.4
#: The chunk that closes an utterance: this much silence with `done` true.
DONE_SECONDS = 0.04

class TavusTransport(DailyTransport):
    kind = "tavus"
    options: ClassVar[Mapping[str, type]] = {"bot_name": str}
    sample_rate = ECHO_RATE
    min_chunk_seconds = ECHO_CHUNK_SECONDS

    def __init__(self, session: SessionInfo, sdk: Sdk, *, room_url: str, conversation_id: str,
                 replica_names: Collection[str], bot_name: str = DEFAULT_BOT_NAME,
                 wait_timeout: float | None = None,
                 leave_grace: float = LAST_PARTICIPANT_GRACE) -> None:
        # video on: the person's camera is there for the bot that iterates video() (subscribed
        # only then); the bot's own picture is the replica.
        super().__init__(session, sdk, room_url=room_url, token=None, bot_name=bot_name,
                         video=True, wait_timeout=wait_timeout, leave_grace=leave_grace)
        self.conversation_id = conversation_id
        self._replica_names = frozenset(name for name in replica_names if name)
        self._replica: str | None = None
        self._unsubscribed: set[str] = set()
        self._inference: str | None = None
        self._spoken_until = 0.0  # loop time at which the last chunk sent has played out
        self._echo_failed = False

    def _client_settings(self) -> dict[str, Any]:
        """No microphone and no camera: the replica is the bot's voice and face."""
        return {
            "inputs": {"camera": {"isEnabled": False}, "microphone": {"isEnabled": False}},
            "publishing": {"camera": {"isPublishing": False},
                           "microphone": {"isPublishing": False}},
        }

    async def send_video(self, frame: Any) -> None:
        raise TransportError("the tavus transport's video is the replica, which speaks the bot's "
                             "audio: send audio")

    # ----------------------------------------------------------------- speech to the replica

    def _write_audio(self, chunk: bytes) -> None:
        """A paced chunk of the bot's audio: one echo message, part of the current utterance."""
        assert self._hop is not None
        if self._inference is None:
            self._inference = uuid.uuid4().hex
        self._echo(chunk, done=False)
        now = self._hop.loop.time()
        self._spoken_until = now + len(chunk) / (2 * self.wire_rate * self.wire_channels)
        if "utterance" not in self._timers:
            self._later("utterance", self._spoken_until + UTTERANCE_GAP - now, self._quiet)

    def _quiet(self) -> None:
        """The utterance timer: end the utterance if the bot has been quiet long enough."""
        assert self._hop is not None
        left = self._spoken_until + UTTERANCE_GAP - self._hop.loop.time()
        if left > 0.005:
            self._later("utterance", left, self._quiet)
        else:
            self._end_utterance()

    def _end_utterance(self) -> None:
        if self._inference is None or self.ended:
            return
        self._cancel("utterance")
        self._echo(bytes(int(self.wire_rate * DONE_SECONDS) * 2 * self.wire_channels), done=True)
        self._inference = None

    def _mark_played(self, name: str, cleared: bool) -> None:
        if not cleared:
            self._end_utterance()  # a mark closes what was said before it
        super()._mark_played(name, cleared)

    async def _write_clear(self) -> None:
        self._cancel("utterance")
        self._inference = None
        await self._write_message({"message_type": "conversation",
                                   "event_type": "conversation.interrupt",
                                   "conversation_id": self.conversation_id})

    def _echo(self, pcm: bytes, *, done: bool) -> None:
        self._client.send_app_message({
            "message_type": "conversation",
            "event_type": "conversation.echo",
            "conversation_id": self.conversation_id,
            "properties": {"modality": "audio", "inference_id": self._inference,
                           "audio": base64.b64encode(pcm).decode("ascii"), "done": done,
                           "sample_rate": self.wire_rate},
        }, None, completion=self._echo_sent)

    def _echo_sent(self, error: str | None = None) -> None:
        """daily's completion, on its thread: only a failure hops to the loop, to be logged."""
        if error and not self._echo_failed and self._hop is not None:
            self._hop.call(self._echo_error, error)

    def _echo_error(self, error: str) -> None:
        if not self._echo_failed:
            self._echo_failed = True
            log.warning("the bot's speech did not reach the replica: %s (not logged again)", error)

    # ----------------------------------------------------------------- the replica in the room

    def _is_replica(self, participant: Mapping[str, Any]) -> bool:
        info = participant.get("info") or {}
        if participant.get("id") == self._replica and self._replica is not None:
            return True
        names = [info.get(key) for key in ("userName", "userId")]
        return not info.get("isLocal") and any(
            isinstance(name, str) and name in self._replica_names for name in names)

    def _participant_joined(self, participant: Mapping[str, Any]) -> None:
        if not self._is_replica(participant):
            super()._participant_joined(participant)
            return
        participant_id = participant.get("id")
        if not isinstance(participant_id, str):
            return
        if participant_id != self._replica:
            self._replica = participant_id
            log.info("the Tavus replica joined as %s", participant_id)
        if self._joined.is_set() and participant_id not in self._unsubscribed:
            self._unsubscribed.add(participant_id)  # the bot hears the person, never the replica
            self._client.update_subscriptions(participant_settings={
                participant_id: {"media": {"microphone": "unsubscribed"}}})

    def _participant_left(self, participant: Mapping[str, Any], reason: str) -> None:
        if self._is_replica(participant):
            log.info("the Tavus replica left (%s)", reason)
        else:
            super()._participant_left(participant, reason)

    def _app_message(self, message: Any, sender: str) -> None:
        if sender != self._replica or self._replica is None:
            super()._app_message(message, sender)
