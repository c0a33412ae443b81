"""Try-on inside one media session: which stream each receiver gets, and the mirror.

The router's ``reconcile`` stays the one place that wires consumers; it asks this object
two questions. ``forwarded(producer)``: what should receivers get for this publisher's
stream? The try-on stream while one is live for it, else the stream itself. And
``wire_mirror(receiver)``: the shopper's own try-on video, which they receive like
any other stream on a send slot of their own.

The mirror slot is added when a shopper's connection is first wired in a session whose
store offers try-on, not when try-on is first turned on. Adding an m-section needs a
renegotiation; at join it is one more offer/answer while the call is being set up
anyway (nothing is on screen yet), while later it would be a renegotiation in the middle
of the call on the first toggle, which is what the issue rules out. Every toggle and
garment switch afterwards is a consumer rebind only: no SDP. The slot's stream id
(``a=msid``) is ``MIRROR_STREAM_ID``, so a browser tells the mirror from the staff's
video by ``event.streams[0].id`` in ``ontrack``. Stores without try-on get no such slot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from signaling.media import TryOnUnavailable

from .service import TryOnService
from .stream import CODECS, TryOnStream

if TYPE_CHECKING:
    from ..participant import Participant
    from ..producer import Producer

__all__ = ["MIRROR_STREAM_ID", "SessionTryOn"]

MIRROR_STREAM_ID = "tryon-mirror"


class SessionTryOn:
    """The try-on streams of one media session (at most one per participant)."""

    def __init__(self, service: TryOnService, reconcile: Callable[[], None]) -> None:
        self.service = service
        self._reconcile = reconcile
        self.streams: dict[str, TryOnStream] = {}

    def wants_mirror(self, participant_id: str) -> bool:
        return participant_id.startswith("shopper:")

    def forwarded(self, producer: Producer) -> Producer:
        """The stream receivers should get for ``producer``."""
        stream = self.streams.get(producer.participant_id)
        if stream is not None and stream.live and stream.source is producer:
            return stream.producer
        return producer

    def follow_sources(self, participants: Mapping[str, Participant], now: float) -> None:
        """Point each try-on stream at its participant's current camera (rejoins)."""
        for participant_id, stream in self.streams.items():
            participant = participants.get(participant_id)
            camera = None
            if participant is not None and not participant.closed:
                camera = max((p for p in participant.producers.values()
                              if p.kind == "video"), key=lambda p: p.spatial, default=None)
            stream.follow(camera, now)

    def wire_mirror(self, receiver: Participant, now: float) -> bool:
        """Reserve the shopper's mirror slot and bind it; True if an offer must go out."""
        key = (receiver.id, "video")
        slot = receiver.slot_of.get(key)
        renegotiate = False
        if slot is None:
            slot = receiver.peer.add_send_slot("video", stream_id=MIRROR_STREAM_ID)
            receiver.slot_of[key] = slot
            renegotiate = True
        stream = self.streams.get(receiver.id)
        target = stream.producer if stream is not None and stream.live else None
        consumer = receiver.consumers.get(key)
        if consumer is None:
            if target is None or not slot.ready:
                return renegotiate
            consumer = receiver.attach(receiver.id, "video", slot, target)
            if consumer is None:
                return renegotiate
        if consumer.producer is not target:
            consumer.bind(target, now)
        return renegotiate

    def set(self, participant_id: str, garment_id: str | None,
            video_mime: str | None) -> dict[str, Any]:
        """Turn try-on on (or switch garments) or off for one participant.

        Raises ``UnknownGarmentError`` (the catalogue's) for an unknown id and
        ``TryOnUnavailable`` when the call has no video this server can decode.
        """
        if garment_id is None:
            stream = self.streams.pop(participant_id, None)
            if stream is not None:
                self.service.retire(stream)  # its receivers go back to the camera
            self._reconcile()
            return self.state(participant_id)
        garment = self.service.catalogue.get(garment_id)
        stream = self.streams.get(participant_id)
        if stream is None:
            if video_mime is None or video_mime not in CODECS:
                raise TryOnUnavailable("try-on needs a video call with VP8 or H.264 video")
            stream = self.service.open_stream(participant_id, video_mime,
                                              on_live=self._reconcile)
            self.streams[participant_id] = stream
        stream.set_garment(garment.id)
        self._reconcile()
        return self.state(participant_id)

    def adapt(self, live: Iterable[Participant], audio_bps: float) -> None:
        """Once a second: each try-on encoder sends what its tightest receiver takes (the
        camera's publisher is capped by REMB the same way for plain forwarding)."""
        receivers = list(live)
        for stream in self.streams.values():
            rates = [r.available_bps for r in receivers if not r.video_paused
                     and any(c.producer is stream.producer for c in r.consumers.values())]
            if rates:
                stream.set_bitrate(min(rates) - audio_bps)

    def state(self, participant_id: str) -> dict[str, Any]:
        stream = self.streams.get(participant_id)
        if stream is None or stream.garment_id is None:
            return {"enabled": False, "garment": None}
        try:
            garment = self.service.catalogue.get(stream.garment_id)
            public: dict[str, Any] = {"id": garment.id, "name": garment.name,
                                      "sku": garment.sku, "category": garment.category}
        except KeyError:  # removed from the catalogue mid-call: still drawn, by id
            public = {"id": stream.garment_id}
        return {"enabled": True, "garment": public}

    def leave(self, participant_id: str) -> None:
        stream = self.streams.pop(participant_id, None)
        if stream is not None:
            self.service.retire(stream)

    def close(self) -> None:
        for participant_id in list(self.streams):
            self.leave(participant_id)

    def describe(self) -> list[dict[str, Any]]:
        return [stream.describe() for stream in self.streams.values()]

