"""Drawing a garment at a placement: one affine warp and a uint8 alpha blend.

Cost is what matters here (this runs on every frame of every try-on stream): the field
notes measured 0.09 ms for a 300x300 RGBA blend with OpenCV uint8 arithmetic against
2.4 ms for the obvious numpy float version. So the garment is warped straight into the
bounding box it covers in the frame (never a frame-sized layer), and blended as

    out = garment_premultiplied + frame * (255 - alpha) / 255

with ``cv2.multiply``/``cv2.add`` on uint8 (rounded, saturating). Where alpha is 0 the
frame term is ``frame * 255 / 255``, exactly the input, so pixels the garment does not
cover are left bit-identical.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .garment import Garment
from .placement import Placement

__all__ = ["composite", "garment_transform"]


def garment_transform(garment: Garment, placement: Placement) -> tuple[np.ndarray, float]:
    """The 2x3 affine map from garment pixels to frame pixels, and its scale.

    Scales about the garment's neck anchor so its shoulder width matches the placement's,
    rotates by the placement roll (clockwise on screen for positive angles), then moves the
    anchor onto the placement's neck point.
    """
    scale = placement.shoulder_width / garment.shoulder_width
    theta = math.radians(placement.angle)
    cos, sin = scale * math.cos(theta), scale * math.sin(theta)
    gx, gy = garment.neck
    # Image coordinates have y down, so this matrix turns clockwise on screen for theta > 0.
    matrix = np.array([[cos, -sin, placement.neck_x - (cos * gx - sin * gy)],
                       [sin, cos, placement.neck_y - (sin * gx + cos * gy)]])
    return matrix, scale


def composite(frame_bgr: np.ndarray, garment: Garment, placement: Placement, *,
              inplace: bool = False) -> np.ndarray:
    """The frame with the garment drawn at the placement.

    Returns a new array unless ``inplace``; returns ``frame_bgr`` itself (untouched) when
    the garment falls entirely outside the frame, so callers can skip re-encoding work.
    """
    matrix, scale = garment_transform(garment, placement)
    source, factor = garment.level_for(scale)
    # The chosen pyramid level is the full image shrunk by `factor` about the origin.
    matrix = matrix.copy()
    matrix[:, :2] /= factor

    height, width = frame_bgr.shape[:2]
    src_h, src_w = source.shape[:2]
    corners = np.array([[0, 0, 1], [src_w, 0, 1], [0, src_h, 1], [src_w, src_h, 1]], float)
    mapped = corners @ matrix.T
    x0 = max(0, math.floor(mapped[:, 0].min()))
    y0 = max(0, math.floor(mapped[:, 1].min()))
    x1 = min(width, math.ceil(mapped[:, 0].max()) + 1)
    y1 = min(height, math.ceil(mapped[:, 1].max()) + 1)
    if x1 <= x0 or y1 <= y0:
        return frame_bgr

    matrix[0, 2] -= x0
    matrix[1, 2] -= y0
    warped = cv2.warpAffine(source, matrix, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
    out = frame_bgr if inplace else frame_bgr.copy()
    roi = out[y0:y1, x0:x1]
    inverse_alpha = cv2.cvtColor(cv2.bitwise_not(warped[:, :, 3]), cv2.COLOR_GRAY2BGR)
    background = cv2.multiply(roi, inverse_alpha, scale=1 / 255)
    cv2.add(background, cv2.cvtColor(warped, cv2.COLOR_BGRA2BGR), dst=roi)
    return out
