"""Who is in the room, in the order they came, and whose voice the bot hears.

Daily renders each participant's microphone separately. The bot hears one person at a time: the
first to join, then, when that person leaves, whoever of the others came first. One voice keeps
speech recognition and turn-taking sane; a mix of several people talking over each other would
not be understood anyway.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class Roster:
    """Remote participants by id, in join order."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._names)

    @property
    def ids(self) -> list[str]:
        return list(self._names)

    @property
    def heard(self) -> str | None:
        """The participant whose audio the bot gets."""
        return next(iter(self._names), None)

    def name(self, participant_id: str) -> str:
        return self._names.get(participant_id, "")

    def join(self, participant: Mapping[str, Any]) -> str | None:
        """Add a remote participant as daily describes it; its id, or None if not one to add."""
        participant_id = participant.get("id")
        info = participant.get("info") or {}
        if not isinstance(participant_id, str) or info.get("isLocal") or participant_id in self._names:
            return None
        self._names[participant_id] = str(info.get("userName") or "")
        return participant_id

    def leave(self, participant: Mapping[str, Any]) -> str | None:
        """Remove a participant; its id, or None if it was not here."""
        participant_id = participant.get("id")
        if not isinstance(participant_id, str) or participant_id not in self._names:
            return None
        del self._names[participant_id]
        return participant_id
