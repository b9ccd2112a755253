"""livekit.rtc, imported here and only here.

The transport names livekit.rtc's classes only through the module this returns, so tests hand it
a stand-in with the same names, and `runner --help` never loads LiveKit's native core.
"""

from __future__ import annotations

from typing import Any


def load_rtc() -> Any:
    """The livekit.rtc module (its native library loads on first use, here)."""
    from livekit import rtc

    return rtc
