"""What WebRTC clients send to the signaling routes, read strictly: every mistake is a 4xx with one line.

The shapes are those of the SmallWebRTC clients (PROTOCOLS.md §11): an offer `{sdp, type, pc_id?,
restart_pc?, requestData? | request_data?}` and a trickle patch `{pc_id, candidates: [{candidate,
sdp_mid, sdp_mline_index}]}`, where camelCase keys are accepted too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException


class SignalingError(HTTPException):
    """A request the client must fix: answered with `status` and `{"detail": message}`."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(status, message)


@dataclass(frozen=True)
class Offer:
    sdp: str
    pc_id: str | None = None
    restart_pc: bool = False
    request_data: Any = None


@dataclass(frozen=True)
class Candidate:
    """A trickled remote candidate; an empty `candidate` means end-of-candidates."""

    candidate: str
    sdp_mid: str | None
    sdp_mline_index: int | None


def _optional_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise SignalingError(f"{key!r} must be a string")
    return value or None


def _request_data(data: dict[str, Any]) -> Any:
    """The client's request data, under either spelling the clients use."""
    value = data.get("requestData")
    return data.get("request_data") if value is None else value


def parse_offer(data: dict[str, Any]) -> Offer:
    """An offer from a JSON object (`runner.guards.read_json_object` reads one)."""
    sdp, kind = data.get("sdp"), data.get("type")
    if not isinstance(sdp, str) or not sdp.strip():
        raise SignalingError("'sdp' must be the offer's SDP text")
    if kind != "offer":
        raise SignalingError(f"'type' must be 'offer', not {kind!r}")
    if not sdp.lstrip().startswith("v=0"):
        raise SignalingError("'sdp' is not an SDP session description (it must start with v=0)")
    if "\nm=audio " not in sdp.replace("\r\n", "\n"):
        raise SignalingError("the offer has no audio section: add an audio transceiver")
    restart = data.get("restart_pc")
    if restart is not None and not isinstance(restart, bool):
        raise SignalingError("'restart_pc' must be true or false")
    return Offer(sdp=sdp, pc_id=_optional_str(data, "pc_id"), restart_pc=bool(restart),
                 request_data=_request_data(data))


def parse_patch(data: dict[str, Any]) -> tuple[str, list[Candidate]]:
    """`(pc_id, candidates)` of a trickle PATCH."""
    pc_id = _optional_str(data, "pc_id")
    if pc_id is None:
        raise SignalingError("'pc_id' is required: the id the offer's answer gave")
    raw = data.get("candidates")
    if not isinstance(raw, list):
        raise SignalingError("'candidates' must be a list")
    return pc_id, [_candidate(item) for item in raw]


def _candidate(item: Any) -> Candidate:
    if not isinstance(item, dict):
        raise SignalingError("each candidate must be an object")
    text = item.get("candidate") or ""
    mid = item.get("sdp_mid", item.get("sdpMid"))
    index = item.get("sdp_mline_index", item.get("sdpMLineIndex"))
    if not isinstance(text, str):
        raise SignalingError("'candidate' must be a string")
    if mid is not None and not isinstance(mid, str):
        raise SignalingError("'sdp_mid' must be a string")
    if index is not None and (not isinstance(index, int) or isinstance(index, bool) or index < 0):
        raise SignalingError("'sdp_mline_index' must be a whole number")
    if text and mid is None and index is None:
        raise SignalingError("a candidate needs 'sdp_mid' or 'sdp_mline_index'")
    return Candidate(text, mid, index)
