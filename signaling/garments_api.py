"""The garment catalogue over HTTP: the shopper widget's picker and operators' uploads.

- ``GET /api/garments`` (shopper, staff, operator): whether try-on is on, and each
  garment's id, name, SKU, category and a small PNG thumbnail as a data URL (so the
  picker needs no second, unauthenticated image endpoint).
- ``POST /api/garments`` (operator): a JSON body with the sidecar metadata
  (``mediaserver/tryon/catalogue.py``) and ``image_base64``, an RGBA PNG. The catalogue
  validates it (PNG signature, declared size before decoding, alpha channel, anchors
  inside the image) and a bad file is refused with ``invalid_garment`` and the reason.
  With ``tryon.garments_dir`` set it is written there, so it survives a restart.
- ``DELETE /api/garments/{garment_id}`` (operator).

The catalogue is loaded on first use (drawing the samples and importing OpenCV cost about
half a second), so deployments that never use try-on never pay for it. Calls running
when a garment is replaced or removed keep drawing the copy they resolved.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import Field

from . import params
from .config import TryOnConfig
from .http_api import JsonNumber, _Body, parse_body, principal
from .model import Role
from .protocol import ErrorCode, ProtocolError

if TYPE_CHECKING:
    from mediaserver.tryon import Catalogue, Garment

log = logging.getLogger(__name__)

routes = web.RouteTableDef()
MAX_UPLOAD_BYTES = 12 * 1024 * 1024  # base64 of the catalogue's 8 MiB PNG limit, plus JSON
MAX_BASE64_CHARS = 4 * -(-8 * 1024 * 1024 // 3)  # the catalogue's MAX_PNG_BYTES, encoded
THUMBNAIL_SIDE = 96
# The catalogue strips its text fields and refuses an empty result: a field needs one
# character that str.strip() keeps. These are the characters str.isspace() is true for,
# spelled so that pydantic's regex engine and JSON Schema's read them alike.
PYTHON_WHITESPACE = (r"\t\n\u000b\u000c\r\u001c-\u001f\u0020\u0085\u00a0\u1680"
                     r"\u2000-\u200a\u2028\u2029\u202f\u205f\u3000")
NOT_BLANK = f"[^{PYTHON_WHITESPACE}]"
# What base64.b64decode(validate=True) decodes: whole 4-character groups, padded at the end.
BASE64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"


class GarmentAnchors(_Body):
    neck: list[JsonNumber] = Field(min_length=2, max_length=2,
                                   description="neckline centre [x, y] in image pixels")
    shoulder_width: JsonNumber = Field(gt=0,
                                       description="seam-to-seam width in image pixels")


def _text_field() -> Any:
    return Field(min_length=1, max_length=200, pattern=NOT_BLANK)


class GarmentBody(_Body):
    id: str = Field(min_length=1, max_length=64, pattern=params.anchored(
        params.GARMENT_ID_PATTERN))
    name: str = _text_field()
    sku: str = _text_field()
    category: str = _text_field()
    anchors: GarmentAnchors
    # The pattern is published here and enforced by GarmentStore.add, which refuses text
    # that is not base64 as it refuses a bad PNG: 400 invalid_garment, with the reason.
    image_base64: str = Field(
        min_length=1, max_length=MAX_BASE64_CHARS,
        description="the RGBA PNG (at most 8 MiB, 4096 px a side, 8 megapixels), base64; "
        "the anchors must lie inside it", json_schema_extra={
            "pattern": BASE64_PATTERN, "contentEncoding": "base64",
            "contentMediaType": "image/png"})


GARMENT_ID = params.Path("garment_id", params.Text(64, params.GARMENT_ID_PATTERN), "garment",
                         ErrorCode.UNKNOWN_GARMENT)


class GarmentStore:
    """The server's catalogue: samples and the shop's folder, loaded once."""

    def __init__(self, config: TryOnConfig) -> None:
        self.config = config
        self._catalogue: Catalogue | None = None
        self._public: dict[str, tuple[Garment, dict[str, Any]]] = {}  # thumbnails made once

    @property
    def catalogue(self) -> Catalogue:
        if self._catalogue is None:
            from mediaserver.tryon import Catalogue

            catalogue = Catalogue.with_samples() if self.config.samples else Catalogue()
            folder = self.config.garments_dir
            if folder is not None:
                folder.mkdir(parents=True, exist_ok=True)
                # Lenient: one broken file must not hide the rest of the shop's garments.
                for problem in catalogue.load_folder(folder, strict=False):
                    log.warning("garment skipped: %s", problem)
            self._catalogue = catalogue
        return self._catalogue

    def add(self, body: GarmentBody) -> Garment:
        from mediaserver.tryon import GarmentError
        from mediaserver.tryon.catalogue import garment_from_bytes

        try:
            png = base64.b64decode(body.image_base64, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError(ErrorCode.INVALID_GARMENT,
                                "image_base64: not valid base64") from None
        metadata = body.model_dump(exclude={"image_base64"})
        try:
            garment = garment_from_bytes(png, metadata, source="upload")
        except GarmentError as exc:
            raise ProtocolError(ErrorCode.INVALID_GARMENT, str(exc)) from None
        if garment.id in self.catalogue:
            raise ProtocolError(ErrorCode.INVALID_STATE,
                                f"garment {garment.id!r} exists; delete it first")
        folder = self.config.garments_dir
        if folder is not None:
            _write_atomically(folder / f"{garment.id}.png", png)
            _write_atomically(folder / f"{garment.id}.json",
                              json.dumps(garment.metadata(), indent=2).encode())
        return self.catalogue.add(garment)

    def listing(self) -> list[dict[str, Any]]:
        out = []
        for garment in sorted(self.catalogue, key=lambda g: g.id):
            cached = self._public.get(garment.id)
            if cached is None or cached[0] is not garment:
                cached = self._public[garment.id] = (garment, garment_public(garment))
            out.append(cached[1])
        return out

    def remove(self, garment_id: str) -> None:
        if garment_id not in self.catalogue:
            raise ProtocolError(ErrorCode.UNKNOWN_GARMENT, f"no garment {garment_id!r}")
        self.catalogue.remove(garment_id)
        folder = self.config.garments_dir
        if folder is not None:
            for suffix in (".png", ".json"):
                (folder / f"{garment_id}{suffix}").unlink(missing_ok=True)


def _write_atomically(path: Path, data: bytes) -> None:
    """Write then rename, so a crash never leaves a half-written PNG to fail at start."""
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def garment_public(garment: Garment) -> dict[str, Any]:
    """What clients see: metadata and a small thumbnail (PNG data URL)."""
    import cv2

    scale = THUMBNAIL_SIDE / max(garment.width, garment.height)
    size = (max(1, round(garment.width * scale)), max(1, round(garment.height * scale)))
    small = cv2.resize(garment.image, size, interpolation=cv2.INTER_AREA)
    ok, png = cv2.imencode(".png", small)
    thumbnail = "data:image/png;base64," + base64.b64encode(png.tobytes()).decode() \
        if ok else None
    return {"id": garment.id, "name": garment.name, "sku": garment.sku,
            "category": garment.category, "thumbnail": thumbnail}


GARMENTS = web.AppKey("garments", GarmentStore)


@routes.get("/api/garments")
async def list_garments(request: web.Request) -> web.Response:
    principal(request, Role.SHOPPER, Role.STAFF, Role.OPERATOR)
    store = request.app[GARMENTS]
    return web.json_response({
        "enabled": store.config.enabled, "stores": store.config.stores,
        "garments": store.listing()})


@routes.post("/api/garments")
async def add_garment(request: web.Request) -> web.Response:
    principal(request, Role.OPERATOR)
    body = await _large_body(request)
    garment = request.app[GARMENTS].add(body)
    return web.json_response({"garment": garment_public(garment)})


@routes.delete("/api/garments/{garment_id}")
async def delete_garment(request: web.Request) -> web.Response:
    principal(request, Role.OPERATOR)
    garment_id = GARMENT_ID.read(request)
    request.app[GARMENTS].remove(garment_id)
    return web.json_response({"garment": {"id": garment_id}})


async def _large_body(request: web.Request) -> GarmentBody:
    """The app caps bodies at 64 KiB (client_max_size); a garment PNG is bigger, so this
    one route reads the stream itself, under its own limit."""
    if request.content_length is not None and request.content_length > MAX_UPLOAD_BYTES:
        raise ProtocolError(ErrorCode.MESSAGE_TOO_LARGE,
                            f"body is {request.content_length} bytes, limit {MAX_UPLOAD_BYTES}")
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(256 * 1024):  # b"" at the end of the body
        size += len(chunk)
        if size > MAX_UPLOAD_BYTES:
            raise ProtocolError(ErrorCode.MESSAGE_TOO_LARGE,
                                f"body exceeds the {MAX_UPLOAD_BYTES} byte limit")
        chunks.append(chunk)
    return parse_body(b"".join(chunks), GarmentBody)
