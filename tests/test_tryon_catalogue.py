"""Garment catalogue: sample garments, the folder format, and clear errors for bad input."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from mediaserver.tryon import Catalogue, GarmentError, UnknownGarmentError
from mediaserver.tryon.catalogue import MAX_STORED_SIDE
from mediaserver.tryon.samples import sample_garments, write_samples

pytestmark = pytest.mark.unit


def _png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def _rgba(width: int = 200, height: int = 160) -> np.ndarray:
    image = np.zeros((height, width, 4), np.uint8)
    cv2.rectangle(image, (20, 10), (width - 21, height - 1), (30, 120, 200, 255), -1)
    return image


def _meta(**overrides: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"id": "shop-coat", "name": "Coat", "sku": "C-1",
                            "category": "outerwear",
                            "anchors": {"neck": [100, 20], "shoulder_width": 150}}
    meta.update(overrides)
    return meta


def test_samples_are_valid_distinct_garments_with_alpha() -> None:
    garments = sample_garments()
    assert {g.id for g in garments} == {"sample-tshirt", "sample-blazer", "sample-scarf"}
    assert {g.category for g in garments} == {"top", "outerwear", "accessory"}
    for garment in garments:
        alpha = garment.image[:, :, 3]
        opaque = (alpha == 255).mean()
        # A cut-out: a solid garment with a transparent surround and soft edges.
        assert 0.15 < opaque < 0.9, (garment.id, opaque)
        assert (alpha == 0).mean() > 0.1
        assert ((alpha > 0) & (alpha < 255)).any(), "edges are not anti-aliased"
        nx, ny = garment.neck
        # The anchor sits on the lower edge of the neck opening: open above, cloth below.
        assert alpha[round(ny) - 6, round(nx)] == 0, garment.id
        assert alpha[round(ny) + 3, round(nx)] == 255, garment.id
    tshirt, blazer = (next(g for g in garments if g.id == i)
                      for i in ("sample-tshirt", "sample-blazer"))
    assert not np.array_equal(tshirt.image[:100, :100], blazer.image[:100, :100])


def test_folder_round_trip(tmp_path: Path) -> None:
    write_samples(tmp_path)
    catalogue = Catalogue.from_folder(tmp_path)
    assert catalogue.ids() == ["sample-blazer", "sample-scarf", "sample-tshirt"]
    for sample in sample_garments():
        loaded = catalogue.get(sample.id)
        assert np.array_equal(loaded.image, sample.image)
        assert (loaded.neck, loaded.shoulder_width, loaded.sku) == \
            (sample.neck, sample.shoulder_width, sample.sku)


def test_add_from_bytes_adds_and_rejects_duplicates() -> None:
    catalogue = Catalogue.with_samples()
    garment = catalogue.add_from_bytes(_png(_rgba()), _meta())
    assert catalogue.get("shop-coat") is garment
    assert garment.neck == (100.0, 20.0) and garment.shoulder_width == 150.0
    with pytest.raises(GarmentError, match="already in the catalogue"):
        catalogue.add_from_bytes(_png(_rgba()), _meta())
    replaced = catalogue.add_from_bytes(_png(_rgba()), _meta(name="Coat v2"), replace=True)
    assert catalogue.get("shop-coat") is replaced


def test_large_garment_is_stored_downscaled_with_anchors() -> None:
    image = _rgba(2000, 1000)
    garment = Catalogue().add_from_bytes(
        _png(image), _meta(anchors={"neck": [1000, 100], "shoulder_width": 1600}))
    assert max(garment.image.shape[:2]) == MAX_STORED_SIDE
    factor = MAX_STORED_SIDE / 2000
    assert garment.neck == pytest.approx((1000 * factor, 100 * factor))
    assert garment.shoulder_width == pytest.approx(1600 * factor)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a size without the pixel data to back it (a bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + chunk + struct.pack(">I", zlib.crc32(chunk[4:]))


@pytest.mark.parametrize(("png", "meta", "problem"), [
    (b"\xff\xd8\xff\xe0 jpeg data", _meta(), "not a PNG file (looks like JPEG"),
    (b"hello", _meta(), "not a PNG file"),
    (_png(np.full((50, 50, 3), 200, np.uint8)), _meta(), "no alpha channel (3 channel"),
    (_png(np.full((50, 50), 200, np.uint8)), _meta(), "no alpha channel (1 channel"),
    (_png(np.zeros((50, 50, 4), np.uint8)), _meta(), "fully transparent"),
    (_png_header_only(20000, 20000), _meta(), "20000x20000 pixels, limit"),
    (_png_header_only(5000, 2000), _meta(), "5000x2000 pixels, limit"),
    (_png_header_only(10, 10) + b"garbage", _meta(), "corrupt"),
    (_png(_rgba()), _meta(sku=None) | {"sku": ""}, "'sku' must be a non-empty string"),
    (_png(_rgba()), {k: v for k, v in _meta().items() if k not in ("sku", "name")},
     "missing field(s): name, sku"),
    (_png(_rgba()), _meta(id="Bad Id!"), "'id' 'Bad Id!' must match"),
    (_png(_rgba()), _meta(anchors={"neck": [100, 20]}), "'anchors' is missing: shoulder_width"),
    (_png(_rgba()), _meta(anchors={"neck": [250, 20], "shoulder_width": 100}),
     "anchor 'neck' (250, 20) is outside the 200x160 image"),
    (_png(_rgba()), _meta(anchors={"neck": [100, -1], "shoulder_width": 100}),
     "outside the 200x160 image"),
    (_png(_rgba()), _meta(anchors={"neck": [100, 20], "shoulder_width": 260}),
     "reaches outside the 200 px wide image"),
    (_png(_rgba()), _meta(anchors={"neck": [100, 20], "shoulder_width": -5}),
     "'shoulder_width' must be a positive number"),
    (_png(_rgba()), _meta(anchors={"neck": "middle", "shoulder_width": 100}),
     "'neck' must be [x, y]"),
    (_png(_rgba()), ["not", "an", "object"], "metadata must be a JSON object"),
])
def test_bad_upload_names_the_problem(png: bytes, meta: Any, problem: str) -> None:
    catalogue = Catalogue()
    with pytest.raises(GarmentError) as info:
        catalogue.add_from_bytes(png, meta)
    assert problem in str(info.value)
    assert str(info.value).startswith("upload: ")
    assert len(catalogue) == 0


def test_folder_errors_name_the_file(tmp_path: Path) -> None:
    write_samples(tmp_path)
    (tmp_path / "broken.png").write_bytes(_png(np.full((40, 40, 3), 9, np.uint8)))
    (tmp_path / "broken.json").write_text(json.dumps(_meta(id="broken")))
    (tmp_path / "lonely.png").write_bytes(_png(_rgba()))
    (tmp_path / "typo.json").write_text("{ not json")
    (tmp_path / "typo.png").write_bytes(_png(_rgba()))

    with pytest.raises(GarmentError, match=r"broken\.png: PNG has no alpha channel"):
        Catalogue.from_folder(tmp_path)

    catalogue = Catalogue()
    errors = catalogue.load_folder(tmp_path, strict=False)
    messages = sorted(str(e) for e in errors)
    assert len(messages) == 3
    assert "broken.png: PNG has no alpha channel" in messages[0]
    assert "lonely.png: has no matching lonely.json file" in messages[1]
    assert "typo.json: metadata is not valid JSON" in messages[2]
    assert catalogue.ids() == ["sample-blazer", "sample-scarf", "sample-tshirt"]

    with pytest.raises(GarmentError, match="does not exist"):
        Catalogue.from_folder(tmp_path / "missing")


def test_unknown_id_names_it_and_the_known_ones() -> None:
    catalogue = Catalogue.with_samples()
    with pytest.raises(UnknownGarmentError) as info:
        catalogue.get("sample-hat")
    assert str(info.value) == ("unknown garment id 'sample-hat'; catalogue has "
                               "sample-blazer, sample-scarf, sample-tshirt")
    with pytest.raises(UnknownGarmentError):
        catalogue.remove("sample-hat")
