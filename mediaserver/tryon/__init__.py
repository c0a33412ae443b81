"""Virtual try-on: draw a catalogue garment onto the customer's own video.

The package is split so that each piece can be reasoned about and tested alone:

- ``garment``: one garment as an immutable, blend-ready image plus its anchors.
- ``catalogue``: loading and validating garments (PNG + JSON sidecar, or bytes).
- ``samples``: garments the project draws itself, so it ships no third-party art.
- ``placement``: face detection (Haar) and the body proportions derived from it.
- ``tracking``: temporal smoothing, hold-on-miss and the detection schedule.
- ``compositing``: warping a garment to a placement and alpha-blending it (uint8 cv2).
- ``renderer``: the frame-level API the media path calls (``TryOnRenderer``).
- ``frames``: fast BGR <-> yuv420p conversion for PyAV frames around the renderer.
"""

from __future__ import annotations

from .catalogue import Catalogue, GarmentError, UnknownGarmentError
from .compositing import composite
from .garment import Garment
from .placement import BodyProportions, FaceDetector, Placement
from .renderer import TryOnRenderer
from .tracking import PlacementTracker, TrackerConfig

__all__ = [
    "BodyProportions",
    "Catalogue",
    "FaceDetector",
    "Garment",
    "GarmentError",
    "Placement",
    "PlacementTracker",
    "TrackerConfig",
    "TryOnRenderer",
    "UnknownGarmentError",
    "composite",
]
