"""The real daily-python, offline: what can be checked without Daily's servers.

`Daily.init()` is process-wide, so this runs in a child process and leaves the test process alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent

CHILD = textwrap.dedent("""
    import json, threading
    import daily
    from runner.transports.daily.sdk import DailySdk
    from runner.transports.daily.threads import SdkCallbacks

    class Events:
        def __init__(self):
            self.states, self.threads = [], set()

        def on_call_state_updated(self, state):
            self.states.append(state)
            self.threads.add(threading.current_thread().name)

    events = Events()
    sdk = DailySdk()
    DailySdk()  # a second instance must not initialise daily again
    client = sdk.call_client(events)
    source = sdk.audio_source(48000, 1)
    track = sdk.audio_track(source)
    written, wrote = [], threading.Event()

    def done(frames):
        written.append((frames, threading.current_thread().name))
        wrote.set()

    source.write_frames(bytes(1920), completion=done)
    wrote.wait(5)
    camera = sdk.video_source(64, 48, "RGB")
    camera_track = sdk.video_track(camera)
    camera.write_frame(bytes(64 * 48 * 3))
    local = client.participants()["local"]["info"]["isLocal"]
    left = threading.Event()
    client.leave(completion=lambda error: left.set())
    left.wait(5)
    client.release()
    print(json.dumps({
        "track": bool(track.id), "camera_track": bool(camera_track.id), "written": written,
        "local": local, "left": left.is_set(), "states": events.states,
        "threads": sorted(events.threads), "main": threading.main_thread().name,
        "unknown_callbacks": [name for name in dir(SdkCallbacks)
                              if name.startswith("on_") and name not in dir(daily.EventHandler)],
    }))
""")


def test_real_daily_python_works_offline() -> None:
    result = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                            timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["track"] and report["camera_track"] and report["local"] and report["left"]
    (frames, write_thread), = report["written"]
    assert frames == 960  # 20 ms at 48 kHz, completed by a callback
    assert write_thread != report["main"]
    # daily called our forwarding EventHandler, from its own threads
    assert report["states"][-1] == "left"
    assert report["main"] not in report["threads"]
    # every event the transport handles is one daily-python calls (a typo would never fire)
    assert report["unknown_callbacks"] == []
