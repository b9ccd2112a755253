"""The bot the worker tests run, imported by each worker process from this file.

One bot whose `?role=` (the session body) picks a behaviour: echo by default, or a way to fail.
`prewarm()` notes each process it ran in, in the file WORKER_TEST_PREWARM_LOG names.
"""

import asyncio
import os
import signal
import time

from runner.transports.base import Dtmf

PREWARMED: list[int] = []


def prewarm() -> None:
    PREWARMED.append(os.getpid())
    path = os.environ.get("WORKER_TEST_PREWARM_LOG")
    if path:
        with open(path, "a") as log:
            log.write(f"{os.getpid()}\n")


async def echo(transport) -> None:
    async for frame in transport.audio(sample_rate=16000):
        await transport.send_audio(frame)


async def after_first_frame(transport) -> None:
    async for _ in transport.audio(sample_rate=16000):
        return


async def phone(transport) -> None:
    """Echo; DTMF 1 places a mark, 9 hangs up (through the provider's REST API)."""

    async def follow() -> None:
        async for event in transport.events():
            if event == Dtmf("1"):
                await transport.mark("m1")
            elif event == Dtmf("9"):
                await transport.hangup("the caller pressed 9")

    events = asyncio.create_task(follow())
    try:
        await echo(transport)
    finally:
        events.cancel()


async def bot(transport) -> None:
    body = transport.session.body or {}
    role = body.get("role", "echo") if isinstance(body, dict) else "echo"
    if role == "whoami":
        await transport.send_message({"pid": os.getpid(), "parent": os.getppid(),
                                      "prewarmed": list(PREWARMED)})
        await echo(transport)
    elif role == "segv":
        await after_first_frame(transport)
        os.kill(os.getpid(), signal.SIGSEGV)
    elif role == "exit":
        await after_first_frame(transport)
        os._exit(3)
    elif role == "raise":
        await after_first_frame(transport)
        raise RuntimeError("boom")
    elif role == "block":
        await after_first_frame(transport)
        time.sleep(float(body.get("seconds", 3)))  # noqa: ASYNC251 - what the test is about
        await echo(transport)
    elif role == "hog":
        hoard = []
        while True:
            hoard.append(b"\x01" * (8 << 20))  # written: resident at once
            await asyncio.sleep(0.02)
    elif role == "phone":
        await phone(transport)
    elif role == "brief":
        await asyncio.sleep(float(body.get("seconds", 0.3)))
    elif role == "bye":
        await transport.send_message({"bye": True})
    else:
        await echo(transport)
