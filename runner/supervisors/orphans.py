"""No process of a server outlives it: the zygote and each worker end when their parent does.

A parent that dies (killed, crashed, or told twice to stop) cannot clean up after itself, so its
children watch for it. The zygote, which has no session and starts no thread (it forks), asks
the kernel to kill it with its server (Linux; elsewhere it ends when the server's socket
closes). A worker is given `grace` seconds to end its session (its loop notices the server's
socket closing and hangs up) and is then ended whatever it is doing, by a thread that looks for
its parent once a second, so a blocked event loop cannot keep it alive.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading

#: prctl(2) option: the signal this process gets when its parent ends.
PR_SET_PDEATHSIG = 1
POLL_SECONDS = 1.0
#: The exit status of a worker ended because its server was gone.
ORPHANED_STATUS = 75


def killed_with_parent() -> None:
    """The zygote: killed when the server ends (Linux), at once."""
    parent = os.getppid()
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:  # it ended before the kernel was asked
        os._exit(ORPHANED_STATUS)


def ended_after_parent(grace: float) -> None:
    """A worker: exits `grace` seconds after its parent has ended, whatever it is doing."""
    threading.Thread(target=_watch, args=(os.getppid(), grace), name="runner-orphan-watch",
                     daemon=True).start()


def _watch(parent: int, grace: float) -> None:
    tick = threading.Event()
    while os.getppid() == parent:
        tick.wait(POLL_SECONDS)
    tick.wait(grace)
    os._exit(ORPHANED_STATUS)
