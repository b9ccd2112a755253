"""Tavus's REST API on 127.0.0.1, in the Daily stand-in's style, and helpers to read what the
bot sent the replica. The Daily stand-ins themselves come from tests/daily/daily_fakes.py."""

from __future__ import annotations

import base64
import itertools
import sys
from pathlib import Path
from typing import Any

_DAILY_TESTS = str(Path(__file__).resolve().parent.parent / "daily")
if _DAILY_TESTS not in sys.path:
    sys.path.append(_DAILY_TESTS)

from daily_fakes import FakeDailyApi, FakeSdk  # noqa: E402

TAVUS_KEY = "tvs-test-9a8b7c6d5e"
PERSONA_NAME = "Echo Persona"
REPLICA_ID = "r79e1c033f"

__all__ = ["PERSONA_NAME", "REPLICA_ID", "TAVUS_KEY", "FakeSdk", "FakeTavusApi", "echoed_pcm",
           "echoes"]


class FakeTavusApi(FakeDailyApi):
    """Tavus's API at http://127.0.0.1:PORT/v2: conversations and personas in memory, errors as
    `{"message": ...}`, and 401 without the right `x-api-key`."""

    prefix = "/v2"

    def __init__(self, api_key: str = TAVUS_KEY) -> None:
        super().__init__(api_key)
        self.conversations: dict[str, dict[str, Any]] = {}
        self._numbers = itertools.count(1)

    def ends(self, conversation_id: str | None = None) -> list[str]:
        """The conversation ids /end was called for, in order (repeats included)."""
        return [r.path.split("/")[2] for r in self.calls("POST", "/conversations/")
                if r.path.endswith("/end") and (conversation_id is None or
                                                r.path.split("/")[2] == conversation_id)]

    def _refusal(self, headers: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        if headers.get("x-api-key") != self.api_key:
            return 401, {"message": "Invalid access token"}, {}
        return None

    def _route(self, method: str, path: str, body: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
        parts = path.strip("/").split("/")
        if method == "POST" and parts == ["conversations"]:
            conversation_id = f"c{next(self._numbers)}"
            conversation = {"conversation_id": conversation_id, "status": "active",
                            "conversation_url": f"https://tavus.daily.co/{conversation_id}",
                            "replica_id": body.get("replica_id"),
                            "persona_id": body.get("persona_id"), "created_at": "now"}
            self.conversations[conversation_id] = conversation
            return 200, conversation, {}
        if method == "POST" and len(parts) == 3 and parts[0] == "conversations" and parts[2] == "end":
            conversation = self.conversations.get(parts[1])
            if conversation is None:
                return 404, {"message": "Conversation not found"}, {}
            conversation["status"] = "ended"
            return 200, {}, {}
        if method == "GET" and len(parts) == 2 and parts[0] == "personas":
            return 200, {"persona_id": parts[1], "persona_name": PERSONA_NAME,
                         "pipeline_mode": "echo"}, {}
        return 404, {"message": f"no route {method} {path}"}, {}


def echoes(sent: list[Any]) -> list[dict[str, Any]]:
    """The `conversation.echo` messages among app messages (or a fake CallClient's `sent`)."""
    messages = [item[0] if isinstance(item, tuple) else item for item in list(sent)]
    return [message for message in messages if isinstance(message, dict)
            and message.get("event_type") == "conversation.echo"]


def echoed_pcm(messages: list[dict[str, Any]]) -> bytes:
    return b"".join(base64.b64decode(m["properties"]["audio"]) for m in messages)
