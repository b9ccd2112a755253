"""Pictures between Pipecat's image frames and what each runner transport's video takes."""

from __future__ import annotations

import numpy as np
import pytest

# A submodule, not "pipecat": see test_pipecat_websocket.py.
pytest.importorskip("pipecat.frames.frames",
                    reason="runner.pipecat needs the pipecat extra: pip install '.[pipecat]'")

from pipecat.frames.frames import OutputImageRawFrame

from runner.pipecat import _input_image, _runner_picture
from runner.transports.daily.video import VideoFrame


def test_daily_pictures_keep_their_format_both_ways() -> None:
    picture = VideoFrame(bytes(range(24)), 4, 2, "RGBA", "someone")
    frame = _input_image(picture)
    assert (frame.image, frame.size, frame.format) == (picture.image, (4, 2), "RGBA")
    out = _runner_picture("daily", OutputImageRawFrame(picture.image, (4, 2), "RGBA"))
    assert (out.image, out.width, out.height, out.color_format) == (picture.image, 4, 2, "RGBA")


def test_webrtc_gets_an_rgb_array_whatever_the_frame_format() -> None:
    rgba = bytes([10, 20, 30, 255] * 6)
    out = _runner_picture("webrtc", OutputImageRawFrame(rgba, (3, 2), "RGBA"))
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    assert out.reshape(-1, 3).tolist() == [[10, 20, 30]] * 6
