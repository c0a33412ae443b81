"""The garment catalogue: loading, validating and looking up garments.

A shop adds garments by dropping ``<name>.png`` + ``<name>.json`` into a folder, and later
through an operator upload (``add_from_bytes``). Both come from outside the project, so
every input is checked before it reaches OpenCV, and every failure says which file and
which field is wrong: a shop owner must be able to fix the file from the message alone.

Sidecar format (``<name>.json``)::

    {
      "id": "tshirt-navy",              # [a-z0-9][a-z0-9._-]*, unique in the catalogue
      "name": "Navy T-shirt",
      "sku": "TS-NAVY-M",
      "category": "top",
      "anchors": {
        "neck": [210, 40],              # neckline centre on the shoulder line, pixels
        "shoulder_width": 300           # seam-to-seam width in pixels
      }
    }

Other top-level keys are ignored (a shop may keep its own notes in the file). The PNG
must carry an alpha channel: the transparent part is what lets the customer show through.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .garment import Garment

__all__ = [
    "MAX_PNG_BYTES",
    "MAX_PNG_PIXELS",
    "MAX_PNG_SIDE",
    "MAX_STORED_SIDE",
    "Catalogue",
    "GarmentError",
    "UnknownGarmentError",
    "garment_from_bytes",
    "garment_from_files",
]

#: Upload limits, checked on the PNG header before anything is decoded, so that a small
#: file declaring a gigapixel image (a decompression bomb) is refused without allocating.
MAX_PNG_BYTES = 8 * 1024 * 1024
MAX_PNG_SIDE = 4096
MAX_PNG_PIXELS = 8_000_000
#: Garments are stored at most this large: a 640x480 call draws them ~300 px wide, and a
#: catalogue of full-resolution product shots would otherwise cost tens of MB each.
MAX_STORED_SIDE = 1024

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_TEXT_FIELDS = ("id", "name", "sku", "category")
_MAX_TEXT = 200


class GarmentError(ValueError):
    """A garment file or upload is unusable; the message names the source and the problem."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


class UnknownGarmentError(KeyError):
    """No garment with this id is in the catalogue."""

    def __init__(self, garment_id: str, known: Iterable[str]) -> None:
        known_list = sorted(known)
        super().__init__(garment_id)
        self.garment_id = garment_id
        self.message = (f"unknown garment id {garment_id!r}; catalogue has "
                        f"{', '.join(known_list) if known_list else 'no garments'}")

    def __str__(self) -> str:  # KeyError would otherwise print only the quoted id
        return self.message


class Catalogue:
    """The garments a shop offers, by id.

    Garments are immutable, so a renderer that resolved a garment keeps drawing it even if
    the shop replaces or removes it mid-call; the next ``set_garment`` sees the change.
    """

    def __init__(self, garments: Iterable[Garment] = ()) -> None:
        self._garments: dict[str, Garment] = {}
        for garment in garments:
            self.add(garment)

    @classmethod
    def with_samples(cls) -> Catalogue:
        """A catalogue holding the project's own sample garments (see ``samples``)."""
        from .samples import sample_garments

        return cls(sample_garments())

    @classmethod
    def from_folder(cls, folder: str | Path) -> Catalogue:
        """A catalogue of every garment in ``folder``; raises on the first bad file."""
        catalogue = cls()
        catalogue.load_folder(folder)
        return catalogue

    def __len__(self) -> int:
        return len(self._garments)

    def __iter__(self) -> Iterator[Garment]:
        return iter(list(self._garments.values()))

    def __contains__(self, garment_id: object) -> bool:
        return garment_id in self._garments

    def ids(self) -> list[str]:
        return sorted(self._garments)

    def get(self, garment_id: str) -> Garment:
        try:
            return self._garments[garment_id]
        except KeyError:
            raise UnknownGarmentError(garment_id, self._garments) from None

    def add(self, garment: Garment, *, replace: bool = False) -> Garment:
        """Add a garment; a duplicate id is an error unless ``replace`` (an operator edit)."""
        if not replace and garment.id in self._garments:
            raise GarmentError(f"garment {garment.id!r}",
                               "id is already in the catalogue (ids must be unique)")
        self._garments[garment.id] = garment
        return garment

    def remove(self, garment_id: str) -> None:
        if self._garments.pop(garment_id, None) is None:
            raise UnknownGarmentError(garment_id, self._garments)

    def add_from_bytes(self, png_bytes: bytes, metadata: Mapping[str, Any], *,
                       replace: bool = False) -> Garment:
        """Validate an uploaded PNG + metadata dict (the operator endpoint) and add it."""
        return self.add(garment_from_bytes(png_bytes, metadata, source="upload"),
                        replace=replace)

    def load_folder(self, folder: str | Path, *, strict: bool = True) -> list[GarmentError]:
        """Add every ``*.png`` + ``*.json`` pair in ``folder`` (not recursive).

        With ``strict`` the first bad file raises, naming it (for start-up: a broken
        catalogue should be fixed, not half-served). Without it, bad files are skipped and
        their errors returned, so one broken upload does not hide the rest of the shop.
        A PNG without a sidecar, or a sidecar without a PNG, is an error either way.
        """
        root = Path(folder)
        if not root.is_dir():
            raise GarmentError(str(root), "catalogue folder does not exist")
        errors: list[GarmentError] = []
        stems = sorted({p.stem for p in root.iterdir()
                        if p.is_file() and p.suffix.lower() in (".png", ".json")})
        for stem in stems:
            try:
                self.add(garment_from_files(_find(root, stem, ".png"),
                                            _find(root, stem, ".json")))
            except GarmentError as exc:
                if strict:
                    raise
                errors.append(exc)
        return errors


def _find(root: Path, stem: str, suffix: str) -> Path:
    for candidate in (root / f"{stem}{suffix}", root / f"{stem}{suffix.upper()}"):
        if candidate.is_file():
            return candidate
    other = ".json" if suffix == ".png" else ".png"
    raise GarmentError(str(root / f"{stem}{other}"), f"has no matching {stem}{suffix} file")


def garment_from_files(png_path: str | Path, json_path: str | Path) -> Garment:
    """Load one garment from its PNG and JSON sidecar, validating both."""
    png_path, json_path = Path(png_path), Path(json_path)
    try:
        size = png_path.stat().st_size
    except OSError as exc:
        raise GarmentError(str(png_path), f"cannot read file ({exc.strerror})") from None
    if size > MAX_PNG_BYTES:
        raise GarmentError(str(png_path), f"file is {size} bytes, limit is {MAX_PNG_BYTES}")
    try:
        metadata = json.loads(json_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise GarmentError(str(json_path), f"cannot read file ({exc.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GarmentError(str(json_path), f"metadata is not valid JSON ({exc})") from None
    return garment_from_bytes(png_path.read_bytes(), metadata, source=str(png_path))


def garment_from_bytes(png_bytes: bytes, metadata: Mapping[str, Any], *,
                       source: str = "upload") -> Garment:
    """Validate a PNG and its metadata and build the ``Garment``.

    Checks run cheapest first and before decoding: size, PNG signature, declared
    dimensions; then the decoded image must have an alpha channel that is not entirely
    transparent; then the metadata fields and that the anchors lie inside the image.
    """
    if not isinstance(png_bytes, bytes | bytearray | memoryview):
        raise GarmentError(source, "image must be bytes")
    data = bytes(png_bytes)
    if len(data) > MAX_PNG_BYTES:
        raise GarmentError(source, f"image is {len(data)} bytes, limit is {MAX_PNG_BYTES}")
    width, height = _png_dimensions(data, source)
    if width > MAX_PNG_SIDE or height > MAX_PNG_SIDE or width * height > MAX_PNG_PIXELS:
        raise GarmentError(source, f"image is {width}x{height} pixels, limit is "
                                   f"{MAX_PNG_SIDE} per side and {MAX_PNG_PIXELS} in total")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise GarmentError(source, "PNG data is corrupt (OpenCV cannot decode it)")
    image = _to_bgra8(image, source)
    fields = _validate_metadata(metadata, source)
    neck, shoulder_width = _validate_anchors(metadata["anchors"], width, height, source)
    image, neck, shoulder_width = _limit_size(image, neck, shoulder_width)
    return Garment(image=image, neck=neck, shoulder_width=shoulder_width, **fields)


def _png_dimensions(data: bytes, source: str) -> tuple[int, int]:
    if not data.startswith(_PNG_SIGNATURE):
        kind = _sniff(data)
        raise GarmentError(source, f"not a PNG file{f' (looks like {kind})' if kind else ''}")
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise GarmentError(source, "PNG header is truncated or has no IHDR chunk")
    width, height = struct.unpack(">II", data[16:24])
    if width == 0 or height == 0:
        raise GarmentError(source, f"image is {width}x{height} pixels (empty)")
    return width, height


def _sniff(data: bytes) -> str:
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG, which has no transparency"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    return ""


def _to_bgra8(image: np.ndarray, source: str) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 4:
        channels = 1 if image.ndim == 2 else image.shape[2]
        raise GarmentError(source, f"PNG has no alpha channel ({channels} channel(s)); "
                                   "save it as RGBA with a transparent background")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise GarmentError(source, f"unsupported PNG sample type {image.dtype}")
    if not image[:, :, 3].any():
        raise GarmentError(source, "PNG is fully transparent: nothing would be drawn")
    return image


def _validate_metadata(metadata: Mapping[str, Any], source: str) -> dict[str, str]:
    if not isinstance(metadata, Mapping):
        raise GarmentError(source, f"metadata must be a JSON object, got "
                                   f"{type(metadata).__name__}")
    missing = [key for key in (*_TEXT_FIELDS, "anchors") if key not in metadata]
    if missing:
        raise GarmentError(source, f"metadata is missing field(s): {', '.join(missing)}")
    fields: dict[str, str] = {}
    for key in _TEXT_FIELDS:
        value = metadata[key]
        if not isinstance(value, str) or not value.strip():
            raise GarmentError(source, f"metadata field {key!r} must be a non-empty string")
        if len(value) > _MAX_TEXT:
            raise GarmentError(source, f"metadata field {key!r} is longer than {_MAX_TEXT}")
        fields[key] = value.strip()
    if not _ID_PATTERN.fullmatch(fields["id"]):
        raise GarmentError(source, f"metadata field 'id' {fields['id']!r} must match "
                                   "[a-z0-9][a-z0-9._-]* (at most 64 characters)")
    return fields


def _validate_anchors(anchors: Any, width: int, height: int,
                      source: str) -> tuple[tuple[float, float], float]:
    if not isinstance(anchors, Mapping):
        raise GarmentError(source, "metadata field 'anchors' must be an object")
    missing = [key for key in ("neck", "shoulder_width") if key not in anchors]
    if missing:
        raise GarmentError(source, f"metadata 'anchors' is missing: {', '.join(missing)}")
    neck = anchors["neck"]
    if (not isinstance(neck, list | tuple) or len(neck) != 2
            or not all(_is_number(v) for v in neck)):
        raise GarmentError(source, "anchor 'neck' must be [x, y] in image pixels")
    nx, ny = float(neck[0]), float(neck[1])
    if not (0 <= nx <= width - 1 and 0 <= ny <= height - 1):
        raise GarmentError(source, f"anchor 'neck' ({nx:g}, {ny:g}) is outside the "
                                   f"{width}x{height} image")
    shoulder = anchors["shoulder_width"]
    if not _is_number(shoulder) or shoulder <= 0:
        raise GarmentError(source, "anchor 'shoulder_width' must be a positive number")
    half = float(shoulder) / 2
    if nx - half < -0.5 or nx + half > width - 0.5:
        raise GarmentError(source, f"anchor 'shoulder_width' {float(shoulder):g} around the "
                                   f"neck at x={nx:g} reaches outside the {width} px wide "
                                   "image (shoulders must lie inside the image)")
    return (nx, ny), float(shoulder)


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _limit_size(image: np.ndarray, neck: tuple[float, float],
                shoulder_width: float) -> tuple[np.ndarray, tuple[float, float], float]:
    side = max(image.shape[:2])
    if side <= MAX_STORED_SIDE:
        return image, neck, shoulder_width
    factor = MAX_STORED_SIDE / side
    size = (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[0] * factor)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return small, (neck[0] * factor, neck[1] * factor), shoulder_width * factor
