"""One garment, held in the form the compositor needs on every frame.

A garment is validated once (in ``catalogue``) and then never changes, so everything the
per-frame path would otherwise recompute is computed here, at construction: the
premultiplied image (so that warping does not bleed the colour of transparent pixels into
the edges, and blending needs one multiply instead of two) and a small pyramid of
half-size copies (so that shrinking a large garment to a small person never samples with
a step of more than two source pixels, which would alias).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

#: Smallest pyramid level kept: below this a garment is a few pixels wide anyway.
_MIN_LEVEL_SIDE = 24


@dataclass(frozen=True, eq=False)
class Garment:
    """An RGBA garment image and the metadata the shop and the placement need.

    ``image`` is BGRA uint8 (OpenCV channel order, straight alpha). ``neck`` is the centre
    of the neckline on the shoulder line, in image pixels: the point that sits on the base
    of the wearer's neck. ``shoulder_width`` is the distance between the two shoulder
    seams in image pixels: it is what gets scaled to the wearer's shoulder width.
    Construct through ``Catalogue`` (which validates) rather than directly.
    """

    id: str
    name: str
    sku: str
    category: str
    image: np.ndarray
    neck: tuple[float, float]
    shoulder_width: float
    _levels: tuple[np.ndarray, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        image = np.ascontiguousarray(self.image)
        image.setflags(write=False)
        object.__setattr__(self, "image", image)
        object.__setattr__(self, "_levels", _pyramid(_premultiply(image)))

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    def level_for(self, scale: float) -> tuple[np.ndarray, float]:
        """The premultiplied BGRA level to warp for a total ``scale``, and its own factor.

        Picks the smallest level that is still at least as large as the output, so the
        remaining warp shrinks by at most 2x (bilinear sampling stays alias-free) while
        the warp reads as few pixels as possible.
        """
        level = 0
        factor = 1.0
        while level + 1 < len(self._levels) and factor / 2 >= scale:
            level += 1
            factor /= 2
        return self._levels[level], factor

    def metadata(self) -> dict[str, object]:
        """The JSON sidecar form of the metadata (what ``Catalogue`` reads back)."""
        return {
            "id": self.id,
            "name": self.name,
            "sku": self.sku,
            "category": self.category,
            "anchors": {"neck": [self.neck[0], self.neck[1]],
                        "shoulder_width": self.shoulder_width},
        }


def _premultiply(bgra: np.ndarray) -> np.ndarray:
    alpha = bgra[:, :, 3]
    bgr = cv2.cvtColor(bgra, cv2.COLOR_BGRA2BGR)
    premultiplied = cv2.multiply(bgr, cv2.cvtColor(alpha, cv2.COLOR_GRAY2BGR), scale=1 / 255)
    out = cv2.merge([*cv2.split(premultiplied), alpha])
    out.setflags(write=False)
    return out


def _pyramid(image: np.ndarray) -> tuple[np.ndarray, ...]:
    levels = [image]
    while min(levels[-1].shape[:2]) // 2 >= _MIN_LEVEL_SIDE:
        smaller = cv2.pyrDown(levels[-1])
        smaller.setflags(write=False)
        levels.append(smaller)
    return tuple(levels)
