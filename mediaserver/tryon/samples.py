"""Sample garments the project draws itself: a t-shirt, a blazer and a scarf.

Drawn with OpenCV at start-up instead of shipped as product photos, so the project has
no third-party artwork to license and nothing binary in the repository. They are simple
flat shapes with a little shading, but recognisable, with soft (anti-aliased) alpha edges
like a real cut-out product shot, and each declares its anchors the same way a shop's
own garment does.

``python -m mediaserver.tryon.samples OUT_DIR`` writes them as PNG + JSON sidecars: an
example of the folder format for shops, and a way to look at them.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from .catalogue import garment_from_bytes
from .garment import Garment

__all__ = ["sample_garments", "write_samples"]


class _Canvas:
    """Colour and alpha drawn separately: colour hard-edged and slightly overdrawn, alpha
    anti-aliased, so edges fade out in alpha without darkening toward black."""

    def __init__(self, width: int, height: int) -> None:
        self.colour = np.zeros((height, width, 3), np.uint8)
        self.alpha = np.zeros((height, width), np.uint8)

    def fill(self, points: Sequence[tuple[float, float]], bgr: tuple[int, int, int]) -> None:
        poly = _poly(points)
        cv2.fillPoly(self.colour, [poly], bgr)
        cv2.polylines(self.colour, [poly], True, bgr, 3)
        cv2.fillPoly(self.alpha, [poly], 255, cv2.LINE_AA)

    def paint(self, points: Sequence[tuple[float, float]], bgr: tuple[int, int, int]) -> None:
        """Colour only, inside what is already opaque (lapels, stripes)."""
        cv2.fillPoly(self.colour, [_poly(points)], bgr, cv2.LINE_AA)

    def line(self, points: Sequence[tuple[float, float]], bgr: tuple[int, int, int],
             thickness: int = 2, closed: bool = False) -> None:
        cv2.polylines(self.colour, [_poly(points)], closed, bgr, thickness, cv2.LINE_AA)

    def cut_ellipse(self, centre: tuple[int, int], axes: tuple[int, int]) -> None:
        cv2.ellipse(self.alpha, centre, axes, 0, 0, 360, 0, -1, cv2.LINE_AA)

    def shade(self, strength: float = 0.22) -> None:
        """Darken toward the sides, as cloth curving around a body does."""
        width = self.colour.shape[1]
        x = np.linspace(-1.0, 1.0, width)
        profile = (1.0 - strength * x**4).astype(np.float32)
        self.colour = (self.colour * profile[None, :, None]).astype(np.uint8)

    def bgra(self) -> np.ndarray:
        return cv2.merge([*cv2.split(self.colour), self.alpha])


def _poly(points: Sequence[tuple[float, float]]) -> np.ndarray:
    return np.array([[round(x), round(y)] for x, y in points], np.int32)


def _mirror(half: Sequence[tuple[float, float]], width: int) -> list[tuple[float, float]]:
    """A symmetric outline from its left half, listed top to bottom."""
    return [*half, *[(width - 1 - x, y) for x, y in reversed(half)]]


def _tshirt() -> tuple[np.ndarray, dict[str, object]]:
    w, h = 360, 380
    navy, rib, seam = (110, 52, 28), (80, 36, 18), (90, 42, 22)
    canvas = _Canvas(w, h)
    canvas.fill(_mirror([(136, 14), (40, 34), (20, 136), (52, 154), (68, 118), (66, 372)], w),
                navy)
    canvas.shade()
    cv2.ellipse(canvas.colour, (180, 14), (52, 46), 0, 0, 180, rib, 9, cv2.LINE_AA)
    canvas.cut_ellipse((180, 14), (44, 38))
    canvas.line([(68, 118), (50, 40)], seam)
    canvas.line([(291, 118), (309, 40)], seam)
    canvas.line([(68, 360), (291, 360)], seam)
    meta = {"id": "sample-tshirt", "name": "Navy crew-neck T-shirt", "sku": "SC-TS-001",
            "category": "top", "anchors": {"neck": [180, 52], "shoulder_width": 280}}
    return canvas.bgra(), meta


def _blazer() -> tuple[np.ndarray, dict[str, object]]:
    w, h = 380, 430
    grey, lapel, shirt, seam = (72, 66, 60), (52, 48, 44), (236, 236, 232), (45, 42, 38)
    canvas = _Canvas(w, h)
    canvas.fill(_mirror([(140, 12), (46, 30), (22, 120), (16, 420), (62, 424), (72, 168),
                         (74, 426)], w), grey)
    canvas.shade(0.3)
    canvas.paint([(148, 8), (231, 8), (190, 212)], shirt)                 # shirt front
    canvas.paint([(140, 12), (188, 210), (150, 150), (120, 60)], lapel)   # left lapel
    canvas.paint([(239, 12), (191, 210), (229, 150), (259, 60)], lapel)   # right lapel
    canvas.line([(188, 214), (188, 426)], seam)                           # front opening
    for y in (250, 310):
        cv2.circle(canvas.colour, (196, y), 6, (30, 28, 26), -1, cv2.LINE_AA)
    canvas.line([(72, 168), (66, 40)], seam)
    canvas.line([(307, 168), (313, 40)], seam)
    canvas.cut_ellipse((190, 10), (40, 34))
    cv2.ellipse(canvas.colour, (190, 10), (46, 40), 0, 10, 170, shirt, 8, cv2.LINE_AA)
    meta = {"id": "sample-blazer", "name": "Charcoal blazer", "sku": "SC-BZ-001",
            "category": "outerwear", "anchors": {"neck": [190, 48], "shoulder_width": 290}}
    return canvas.bgra(), meta


def _scarf() -> tuple[np.ndarray, dict[str, object]]:
    w, h = 300, 340
    red, stripe = (40, 40, 178), (200, 210, 230)
    canvas = _Canvas(w, h)
    loop = cv2.ellipse2Poly((150, 18), (74, 48), 0, 0, 180, 6)
    outer = [(float(x), float(y)) for x, y in loop]
    inner = [(float(x), float(y))
             for x, y in cv2.ellipse2Poly((150, 18), (52, 30), 0, 0, 180, 6)][::-1]
    canvas.fill([*outer, *inner], red)
    left_end = [(104, 52), (150, 62), (140, 300), (96, 296)]
    right_end = [(160, 60), (196, 50), (206, 250), (166, 256)]
    canvas.fill(right_end, (34, 34, 160))
    canvas.fill(left_end, red)
    for y in (120, 150, 240, 270):
        canvas.paint([(96, y), (148, y + 2), (147, y + 12), (96, y + 10)], stripe)
    for x in range(100, 142, 7):                                    # fringe
        canvas.fill([(x, 296), (x + 3, 296), (x + 2, 322), (x, 322)], red)
    canvas.shade(0.15)
    meta = {"id": "sample-scarf", "name": "Red striped scarf", "sku": "SC-SF-001",
            "category": "accessory", "anchors": {"neck": [150, 52], "shoulder_width": 270}}
    return canvas.bgra(), meta


_DRAWERS = (_tshirt, _blazer, _scarf)


@cache
def _encoded() -> tuple[tuple[bytes, dict[str, object]], ...]:
    out = []
    for draw in _DRAWERS:
        image, meta = draw()
        ok, png = cv2.imencode(".png", image)
        assert ok
        out.append((png.tobytes(), meta))
    return tuple(out)


def sample_garments() -> list[Garment]:
    """The sample garments, built through the same validation path as a shop's files."""
    return [garment_from_bytes(png, meta, source=f"sample {meta['id']}")
            for png, meta in _encoded()]


def write_samples(folder: str | Path) -> list[Path]:
    """Write each sample as ``<id>.png`` + ``<id>.json`` into ``folder``; returns the PNGs."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    written = []
    for png, meta in _encoded():
        path = root / f"{meta['id']}.png"
        path.write_bytes(png)
        (root / f"{meta['id']}.json").write_text(json.dumps(meta, indent=2) + "\n",
                                                 encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    for path in write_samples(args.out_dir):
        print(path)


if __name__ == "__main__":
    main()
