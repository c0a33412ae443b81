"""Where a garment goes: find the face, derive neck, shoulder width and tilt from it.

Only the face is detected. The field notes measured OpenCV's upper-body and full-body
Haar cascades missing a real head-to-waist photo and costing up to 670 ms, while the
frontal-face cascade is reliable and cheap on a downscaled copy; the body is then
inferred from head proportions, which vary far less between adults than body shapes do.

Proportions (``BodyProportions``, in units of the Haar face box, which spans roughly
brow to mouth and cheek to cheek, so it is a little smaller than the whole head):

- neckline centre: 1.1 face heights below the face-box centre, along the face's own
  vertical axis (chin is ~0.5 below, the base of the neck ~0.6 below the chin);
- shoulder width, seam to seam: 2.7 face widths (adult biacromial breadth is 2.4-2.9
  face widths; a garment's shoulder seam sits a little outside it);
- tilt: the roll of the line through both eyes (``haarcascade_eye`` on the upper face),
  0 when the two eyes are not both found. The garment follows it fully by default
  (``tilt_follow``), which is right for a tilted camera or a leaning customer; lower
  it if customers tilting only their head should leave the garment upright.

``FaceDetector.detect`` is a pure function of its arguments: it keeps one set of
cascades per thread (``cv2.CascadeClassifier`` is not documented as thread-safe), and
reads nothing else that changes, so the media path can run it in a thread executor.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["BodyProportions", "DetectorConfig", "FaceBox", "FaceDetector", "Placement",
           "placement_from_face"]

FaceBox = tuple[int, int, int, int]


@dataclass(frozen=True)
class Placement:
    """Where to draw a garment in one frame, independent of which garment it is.

    ``neck`` is the frame point for the garment's neck anchor; ``shoulder_width`` the
    frame distance its shoulder anchor width is scaled to; ``angle`` the roll in degrees,
    positive clockwise on screen (the right eye lower than the left). ``face`` and
    ``frame_size`` (width, height) record what it was derived from, so the next detection
    can search near it and reject it if the frame size changed.
    """

    neck_x: float
    neck_y: float
    shoulder_width: float
    angle: float
    face: FaceBox
    frame_size: tuple[int, int]

    @property
    def neck(self) -> tuple[float, float]:
        return self.neck_x, self.neck_y


@dataclass(frozen=True)
class BodyProportions:
    """Body geometry in face-box units; see the module docstring for the reasoning."""

    neck_below_centre: float = 1.1
    shoulder_width: float = 2.7
    tilt_follow: float = 1.0
    max_tilt: float = 30.0


@dataclass(frozen=True)
class DetectorConfig:
    """Haar search parameters.

    The face search runs on a copy ``detect_width`` pixels wide (320 is where the field
    notes measured it still correct at half the cost of 640); ``min_face`` is in those
    pixels, so 30 means a face at least ~60 px wide in a 640x480 call, a customer within
    about two metres of the camera. With a previous face as hint the search first covers
    only ``hint_margin`` face sizes around it, several times cheaper than the whole frame.
    """

    detect_width: int = 320
    scale_factor: float = 1.2
    min_neighbors: int = 5
    min_face: int = 30
    hint_margin: float = 1.0
    eye_crop_width: int = 64
    use_eyes: bool = True


def placement_from_face(face: FaceBox, angle: float, frame_size: tuple[int, int],
                        proportions: BodyProportions = BodyProportions()) -> Placement:
    """Neck, shoulder width and roll for a face box in frame pixels."""
    x, y, w, h = face
    cx, cy = x + w / 2, y + h / 2
    tilt = max(-proportions.max_tilt, min(proportions.max_tilt, angle))
    theta = math.radians(tilt)
    down = proportions.neck_below_centre * h
    # "Down" along the face's own axis: a head rolled clockwise puts the neck down-left.
    return Placement(
        neck_x=cx - down * math.sin(theta),
        neck_y=cy + down * math.cos(theta),
        shoulder_width=proportions.shoulder_width * w,
        angle=tilt * proportions.tilt_follow,
        face=face,
        frame_size=frame_size,
    )


class FaceDetector:
    """Face (and eye) detection with OpenCV's bundled Haar cascades.

    Stateless across calls apart from per-thread cascade objects, so one detector can be
    shared by every stream and called concurrently from executor threads.
    """

    def __init__(self, config: DetectorConfig = DetectorConfig(),
                 proportions: BodyProportions = BodyProportions()) -> None:
        self.config = config
        self.proportions = proportions
        self._local = threading.local()
        self._cascades()  # fail now, not on the first frame, if the cascades are missing

    def _cascades(self) -> tuple[cv2.CascadeClassifier, cv2.CascadeClassifier]:
        cascades = getattr(self._local, "cascades", None)
        if cascades is None:
            cascades = (_load_cascade("haarcascade_frontalface_default.xml"),
                        _load_cascade("haarcascade_eye.xml"))
            self._local.cascades = cascades
        return cascades

    def detect(self, frame_bgr: np.ndarray, hint: Placement | None = None) -> Placement | None:
        """The placement for the most prominent face in the frame, or None.

        With a ``hint`` (the last placement) the face nearest to it wins; without one
        the largest face, i.e. the customer closest to the camera.
        """
        face = self.find_face(frame_bgr, hint.face if _hint_fits(hint, frame_bgr) else None)
        if face is None:
            return None
        angle = self.eye_roll(frame_bgr, face) if self.config.use_eyes else 0.0
        height, width = frame_bgr.shape[:2]
        return placement_from_face(face, angle, (width, height), self.proportions)

    def find_face(self, frame_bgr: np.ndarray, hint: FaceBox | None = None) -> FaceBox | None:
        """The face box in frame pixels, searched on a downscaled grey copy."""
        cfg = self.config
        height, width = frame_bgr.shape[:2]
        factor = min(1.0, cfg.detect_width / width)
        small = frame_bgr if factor == 1.0 else cv2.resize(
            frame_bgr, (round(width * factor), round(height * factor)),
            interpolation=cv2.INTER_AREA)
        grey = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY))
        faces: list[FaceBox] = []
        if hint is not None:
            faces = self._search_near(grey, hint, factor)
        if not faces:
            faces = self._search(grey, 0, 0)
        if not faces:
            return None
        if hint is not None:
            hx, hy = (hint[0] + hint[2] / 2) * factor, (hint[1] + hint[3] / 2) * factor
            best = min(faces, key=lambda f: (f[0] + f[2] / 2 - hx) ** 2
                       + (f[1] + f[3] / 2 - hy) ** 2)
        else:
            best = max(faces, key=lambda f: f[2] * f[3])
        return tuple(round(v / factor) for v in best)  # type: ignore[return-value]

    def _search_near(self, grey: np.ndarray, hint: FaceBox, factor: float) -> list[FaceBox]:
        x, y, w, h = (v * factor for v in hint)
        margin = self.config.hint_margin
        x0, y0 = max(0, int(x - margin * w)), max(0, int(y - margin * h))
        x1 = min(grey.shape[1], int(x + w + margin * w) + 1)
        y1 = min(grey.shape[0], int(y + h + margin * h) + 1)
        if x1 - x0 < self.config.min_face or y1 - y0 < self.config.min_face:
            return []
        return self._search(grey[y0:y1, x0:x1], x0, y0)

    def _search(self, grey: np.ndarray, dx: int, dy: int) -> list[FaceBox]:
        cfg = self.config
        face_cascade, _ = self._cascades()
        found = face_cascade.detectMultiScale(
            grey, scaleFactor=cfg.scale_factor, minNeighbors=cfg.min_neighbors,
            minSize=(cfg.min_face, cfg.min_face))
        return [(int(x) + dx, int(y) + dy, int(w), int(h)) for x, y, w, h in found]

    def eye_roll(self, frame_bgr: np.ndarray, face: FaceBox) -> float:
        """Roll of the face in degrees from the two eyes, 0.0 if they are not both found.

        The upper 60% of the face is cut from the full-resolution frame and scaled to a
        fixed small width, so the cost does not grow with the face size (about 1 ms).
        """
        x, y, w, h = face
        crop = frame_bgr[max(0, y): y + h * 6 // 10, max(0, x): x + w]
        if crop.shape[0] < 8 or crop.shape[1] < 8:
            return 0.0
        out_w = self.config.eye_crop_width
        factor = out_w / crop.shape[1]
        out_h = max(1, round(crop.shape[0] * factor))
        grey = cv2.cvtColor(cv2.resize(crop, (out_w, out_h), interpolation=cv2.INTER_AREA),
                            cv2.COLOR_BGR2GRAY)
        _, eye_cascade = self._cascades()
        eyes = eye_cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=3,
                                            minSize=(out_w // 7, out_w // 7),
                                            maxSize=(out_w // 2, out_w // 2))
        half = out_w / 2
        left = [e for e in eyes if e[0] + e[2] / 2 < half]
        right = [e for e in eyes if e[0] + e[2] / 2 >= half]
        if not left or not right:
            return 0.0
        lx, ly, lw, lh = max(left, key=lambda e: e[2] * e[3])
        rx, ry, rw, rh = max(right, key=lambda e: e[2] * e[3])
        angle = math.degrees(math.atan2((ry + rh / 2) - (ly + lh / 2),
                                        (rx + rw / 2) - (lx + lw / 2)))
        # Beyond this the frontal cascade would not have found the face: a false eye.
        return angle if abs(angle) <= self.proportions.max_tilt else 0.0


def _hint_fits(hint: Placement | None, frame: np.ndarray) -> bool:
    return hint is not None and hint.frame_size == (frame.shape[1], frame.shape[0])


def _load_cascade(name: str) -> cv2.CascadeClassifier:
    path = cv2.data.haarcascades + name
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise RuntimeError(f"OpenCV Haar cascade {path} is missing; try-on needs an "
                           "opencv-python(-headless) 4.x wheel (5.x ships none)")
    return cascade
