"""Converting between PyAV video frames and the BGR arrays the try-on code draws on.

Measured on 640x480 (benchmarks/tryon.py machine): PyAV's own BGR -> yuv420p
(``VideoFrame.from_ndarray(bgr).reformat("yuv420p")``, which is what aiortc's
``Vp8Encoder`` does with a BGR frame) costs ~1.9 ms, while ``cv2.cvtColor`` to I420 costs
~0.2 ms for the same BT.601 limited-range result. That difference is a fifth of the
per-frame budget, so the media path should convert with these helpers, not let the
encoder reformat.
"""

from __future__ import annotations

import cv2
import numpy as np
from av import VideoFrame

__all__ = ["bgr_from_video_frame", "video_frame_from_bgr"]


def bgr_from_video_frame(frame: VideoFrame) -> np.ndarray:
    """A fresh BGR uint8 array (height, width, 3) for a decoded frame."""
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        return cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2BGR_I420)
    return frame.to_ndarray(format="bgr24")


def video_frame_from_bgr(image: np.ndarray, template: VideoFrame | None = None) -> VideoFrame:
    """A yuv420p ``VideoFrame`` ready for the encoder, with the template's timing.

    Odd sizes cannot be I420 in OpenCV; they fall back to PyAV's (slower) conversion.
    """
    height, width = image.shape[:2]
    if width % 2 == 0 and height % 2 == 0:
        frame = VideoFrame.from_ndarray(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420),
                                        format="yuv420p")
    else:
        frame = VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p")
    if template is not None:
        frame.pts = template.pts
        frame.time_base = template.time_base
    return frame
