"""Virtual try-on through the SFU with real aiortc peers on loopback.

The shopper's camera is a real photo of a person (scikit-image's astronaut); the staff
peer decodes what the SFU sends. With try-on on, the staff's frames differ from the
camera in the torso and hardly anywhere else, the shopper's mirror shows the same, and a
garment switch changes the output, all without renegotiation. With try-on off, or in a
store without it, the stream is forwarded untouched and nothing is ever decoded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import cv2
import numpy as np
import pytest

from mediaserver.backend import SfuBackend
from mediaserver.tryon import Catalogue
from mediaserver.tryon.placement import FaceDetector
from mediaserver.tryon.service import TryOnService
from mediaserver.tryon.wiring import MIRROR_STREAM_ID
from signaling.media import MediaSessionSpec, TryOnUnavailable, UnknownGarment
from signaling.model import CallKind

from .media_peers import MediaPeer, PhotoCamera, Received, astronaut_image
from .test_sfu_forwarding import Session

pytestmark = pytest.mark.integration

SHOPPER, STAFF = "shopper:s1", "staff:alice"
BLUE = (255, 0, 0)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return astronaut_image()


@pytest.fixture(scope="module")
def torso(photo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masks of where a garment may be drawn (below the face, a few face widths wide)
    and of where nothing may change (further out, and the face itself)."""
    face = FaceDetector().find_face(photo)
    assert face is not None, "the detector must find the astronaut's face"
    x, y, w, h = face
    cx = x + w / 2
    height, width = photo.shape[:2]
    inside = np.zeros((height, width), bool)
    inside[int(y + 0.9 * h):, int(cx - 1.6 * w):int(cx + 1.6 * w)] = True
    allowed = np.zeros((height, width), bool)
    allowed[int(y + 0.6 * h):, max(0, int(cx - 2.3 * w)):int(cx + 2.3 * w)] = True
    return inside, ~allowed


def changed(frame: np.ndarray, photo: np.ndarray) -> np.ndarray:
    """Pixels clearly different from the camera, beyond what VP8 coding changes."""
    a = cv2.GaussianBlur(frame, (5, 5), 0).astype(np.int16)
    b = cv2.GaussianBlur(photo, (5, 5), 0).astype(np.int16)
    return np.abs(a - b).max(axis=2) > 50


def bgr(received: Received) -> np.ndarray:
    return received.last.to_ndarray(format="bgr24")


async def until(check: Callable[[], bool], what: str, within_s: float = 20.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def make_session(stores: tuple[str, ...]) -> tuple[SfuBackend, Session, TryOnService]:
    service = TryOnService(Catalogue.with_samples(), stores=stores)
    backend = SfuBackend(host_addresses=["127.0.0.1"], tryon=service)
    await backend.start()
    await backend.create_session(MediaSessionSpec(
        "ms_test", "cnv_test", "call_test", CallKind.VIDEO, "lyon", (SHOPPER, STAFF)))
    return backend, Session(backend), service


@pytest.fixture
async def lyon_tryon() -> AsyncIterator[tuple[Session, TryOnService]]:
    backend, session, service = await make_session(("lyon",))
    yield session, service
    for peer in session.peers.values():
        await peer.close()
    await backend.stop()


@pytest.fixture
async def paris_only() -> AsyncIterator[tuple[Session, TryOnService]]:
    backend, session, service = await make_session(("paris",))
    yield session, service
    for peer in session.peers.values():
        await peer.close()
    await backend.stop()


def offers_to(session: Session, participant_id: str) -> int:
    return sum(1 for pid, m in session.notes if pid == participant_id
               and m["type"] == "media.offer")


async def test_tryon_on_staff_view_and_mirror_switch_and_off_without_renegotiation(
        lyon_tryon: tuple[Session, TryOnService], photo: np.ndarray,
        torso: tuple[np.ndarray, np.ndarray]) -> None:
    session, service = lyon_tryon
    inside, outside = torso
    shopper = MediaPeer("shopper", camera=PhotoCamera(photo))
    staff = MediaPeer("staff", BLUE)
    await session.join(SHOPPER, shopper)
    await session.join(STAFF, staff)
    await staff.wait_frames(15)
    # The shopper's mirror slot was negotiated at join (one server offer), before any toggle.
    await until(lambda: shopper.video_from_stream(MIRROR_STREAM_ID) is not None,
                "the mirror m-section")
    offers = offers_to(session, SHOPPER), offers_to(session, STAFF)
    view = staff.video_in()[0]
    assert changed(bgr(view), photo).mean() < 0.01, "try-on off: the camera, untouched"
    router = session.router()
    camera = next(p for p in router.participants[SHOPPER].producers.values()
                  if p.kind == "video")
    assert camera.tap is None and service.streams_started == 0
    consumer = router.participants[STAFF].consumers[(SHOPPER, "video")]
    ssrc = consumer.ssrc

    with pytest.raises(UnknownGarment, match="sample-tshirt"):
        await session.backend.set_tryon("ms_test", SHOPPER, "no-such-shirt")
    assert service.streams_started == 0

    state = await session.backend.set_tryon("ms_test", SHOPPER, "sample-tshirt")
    assert state["enabled"] and state["garment"]["id"] == "sample-tshirt"
    stream = router.tryon.streams[SHOPPER]

    def drawn(received: Received) -> bool:
        diff = changed(bgr(received), photo)
        return bool(diff[inside].mean() > 0.3)

    await until(lambda: stream.live and drawn(view), "the garment on the staff's view")
    diff = changed(bgr(view), photo)
    assert diff[inside].mean() > 0.3, diff[inside].mean()
    assert diff[outside].mean() < 0.02, "changes stay on the torso"
    # Same outgoing stream for the staff: a rebind, not a new SSRC or m-section.
    assert consumer.ssrc == ssrc and consumer.producer is stream.producer
    stats = [s for s in await staff.inbound_stats() if s.kind == "video"]
    assert {s.ssrc for s in stats} == {ssrc}
    assert stats[0].packetsLost < 5, "sequence numbers continue across the switch"

    mirror = shopper.video_from_stream(MIRROR_STREAM_ID)
    assert mirror is not None
    await until(lambda: mirror.frames > 5 and drawn(mirror), "the garment in the mirror")
    # Decoding runs off the event loop: the staff's own video keeps reaching the shopper.
    staff_video = next(r for r in shopper.video_in() if r is not mirror)
    before = staff_video.frames
    await until(lambda: staff_video.frames >= before + 10, "the staff's video to go on")

    # A live garment switch: the torso changes colour.
    tshirt = bgr(view)
    await session.backend.set_tryon("ms_test", SHOPPER, "sample-blazer")
    await until(lambda: changed(bgr(view), tshirt)[inside].mean() > 0.2,
                "the blazer instead of the T-shirt")
    assert changed(bgr(view), tshirt)[outside].mean() < 0.02

    # Off: back to the plain camera on the same stream; the pipeline is gone.
    state = await session.backend.set_tryon("ms_test", SHOPPER, None)
    assert state == {"enabled": False, "garment": None}
    assert not router.tryon.streams and camera.tap is None
    await until(lambda: changed(bgr(view), photo).mean() < 0.01, "the plain camera again")
    assert consumer.ssrc == ssrc and consumer.producer is camera
    assert (offers_to(session, SHOPPER), offers_to(session, STAFF)) == offers, \
        "toggles and switches never renegotiate"


async def test_store_without_tryon_forwards_untouched_and_decodes_nothing(
        paris_only: tuple[Session, TryOnService], photo: np.ndarray) -> None:
    session, service = paris_only
    shopper = MediaPeer("shopper", camera=PhotoCamera(photo))
    staff = MediaPeer("staff", BLUE)
    await session.join(SHOPPER, shopper)
    await session.join(STAFF, staff)
    await staff.wait_frames(30)
    assert changed(bgr(staff.video_in()[0]), photo).mean() < 0.01
    with pytest.raises(TryOnUnavailable, match="not offered in this store"):
        await session.backend.set_tryon("ms_test", SHOPPER, "sample-tshirt")
    router = session.router()
    assert router.tryon is None and service.streams_started == 0
    assert all(p.tap is None for p in router.participants[SHOPPER].producers.values())
    assert shopper.video_from_stream(MIRROR_STREAM_ID) is None, "no mirror slot either"
    assert offers_to(session, SHOPPER) == 0
