"""Compositing geometry and blend arithmetic, on synthetic garments with known answers."""

from __future__ import annotations

import fractions

import numpy as np
import pytest

from mediaserver.tryon import Garment, Placement, composite
from mediaserver.tryon.frames import bgr_from_video_frame, video_frame_from_bgr

pytestmark = pytest.mark.unit

W, H = 640, 480


def _garment(width: int = 120, height: int = 80, alpha: int = 255,
             marker_right: bool = False) -> Garment:
    image = np.zeros((height, width, 4), np.uint8)
    image[:, :] = (255, 0, 0, alpha)  # blue
    if marker_right:
        image[:, width * 3 // 4:] = (0, 0, 255, alpha)  # red right quarter
    return Garment(id="test", name="Test", sku="T", category="top", image=image,
                   neck=(width / 2, 0.0), shoulder_width=float(width))


def _at(x: float, y: float, shoulder_width: float, angle: float = 0.0) -> Placement:
    return Placement(neck_x=x, neck_y=y, shoulder_width=shoulder_width, angle=angle,
                     face=(0, 0, 1, 1), frame_size=(W, H))


def _frame() -> np.ndarray:
    frame = np.full((H, W, 3), 100, np.uint8)
    frame[::7] = 37  # some structure, so "unchanged" is a real check
    frame.setflags(write=False)
    return frame


def test_half_alpha_blends_evenly_and_leaves_the_rest_identical() -> None:
    frame = _frame()
    garment = _garment(alpha=128)
    out = composite(frame, garment, _at(320, 200, 120))
    inside = out[210:270, 270:370].reshape(-1, 3).astype(int)
    under = frame[210:270, 270:370].reshape(-1, 3).astype(int)
    expected = (np.array([255, 0, 0]) * 128 + under * 127) / 255
    assert np.abs(inside - expected).max() <= 2
    outside = np.ones((H, W), bool)
    outside[199:282, 259:382] = False
    assert np.array_equal(out[outside], frame[outside])


def test_opaque_garment_covers_exactly_its_box() -> None:
    frame = _frame()
    out = composite(frame, _garment(), _at(320, 200, 120))
    drawn = np.any(out != frame, axis=2)
    ys, xs = np.nonzero(drawn)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == pytest.approx((260, 380, 200, 280), abs=1)
    assert np.all(out[205:275, 265:375] == (255, 0, 0))


def test_positive_angle_turns_clockwise_on_screen() -> None:
    frame = _frame()
    out = composite(frame, _garment(marker_right=True), _at(320, 200, 120, angle=90))
    red = np.all(out == (0, 0, 255), axis=2)
    ys, xs = np.nonzero(red)
    # The right edge turned a quarter clockwise about the neck: it now hangs below it.
    assert ys.min() > 200 + 20 and abs(xs.mean() - 320) < 45
    blue_ys, _ = np.nonzero(np.all(out == (255, 0, 0), axis=2))
    assert blue_ys.min() < 200 - 20  # the left part now points up


@pytest.mark.parametrize("shoulder_width", [12.0, 30.0, 60.0, 240.0, 400.0])
def test_scale_and_pyramid_levels_keep_size_and_anchor(shoulder_width: float) -> None:
    frame = _frame()
    garment = _garment(width=400, height=200)
    out = composite(frame, garment, _at(320, 100, shoulder_width))
    ys, xs = np.nonzero(np.any(out != frame, axis=2))
    assert xs.max() - xs.min() + 1 == pytest.approx(shoulder_width, abs=3)
    assert (xs.max() + xs.min()) / 2 == pytest.approx(320, abs=2)
    assert ys.min() == pytest.approx(100, abs=2)


def test_garment_outside_the_frame_returns_the_frame_itself() -> None:
    frame = _frame()
    assert composite(frame, _garment(), _at(-500, 200, 120)) is frame
    partly = composite(frame, _garment(), _at(10, 470, 120))
    assert partly is not frame and np.any(partly != frame)


def test_frame_conversions_round_trip_and_keep_timing() -> None:
    rng = np.random.default_rng(3)
    image = np.clip(rng.normal(128, 40, (H, W, 3)), 0, 255).astype(np.uint8)
    image = np.ascontiguousarray(np.repeat(np.repeat(image[::8, ::8], 8, 0), 8, 1))
    # Even: OpenCV I420 (error ~2, chroma subsampling). Odd: PyAV's own conversion, which
    # loses more at the odd edge (~7.4 measured for PyAV alone).
    for size, tolerance in (((H, W), 3), ((241, 321), 9)):
        picture = np.ascontiguousarray(image[:size[0], :size[1]])
        first = video_frame_from_bgr(picture)
        first.pts, first.time_base = 3000, fractions.Fraction(1, 90_000)
        frame = video_frame_from_bgr(picture, template=first)
        assert frame.format.name == "yuv420p"
        assert (frame.pts, frame.time_base) == (3000, fractions.Fraction(1, 90_000))
        back = bgr_from_video_frame(frame)
        assert back.shape == picture.shape
        assert np.abs(back.astype(int) - picture).mean() < tolerance
