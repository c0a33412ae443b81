"""A Producer is one RTP stream a participant sends us (mediasoup's word for it).

It tracks what arrives (sequence numbers extended and validated, loss to NACK, statistics
for receiver reports, the publisher's latest sender report) and hands every packet to its
consumers. Keyframe requests to the publisher are throttled here, whoever asks for them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from . import consumer as _consumer_module
from . import h264, vp8
from .loss_detector import LossDetector
from .sequence_validator import SequenceValidator
from .stream_stats import ReceiveStats

if TYPE_CHECKING:
    from .consumer import Consumer

KEYFRAME_REQUEST_INTERVAL_S = 0.5


def _always(data: bytes, offset: int) -> bool:
    return True


# VP8 is not here: its descriptor is parsed in `receive`, which also needs the layer fields.
KEYFRAME_DETECTORS: dict[str, Callable[[bytes, int], bool]] = {"video/h264": h264.is_keyframe}

# Received packets kept per publisher stream to answer receivers' NACKs: ~2.5 s of 1.5 Mbps
# video. One reference per received packet, shared by every receiver (each rebuilds its
# own header on a retransmission), instead of one copy per packet and receiver.
HISTORY_SIZE = 512
HISTORY_MASK = HISTORY_SIZE - 1

# (extended seq, packet, payload offset, marker, timestamp)
HistoryEntry = tuple[int, bytes, int, int, int]


class Producer:
    __slots__ = (
        "bitrate_bps",
        "clock_rate",
        "consumers",
        "descriptor",
        "duplicates",
        "history",
        "is_keyframe",
        "keyframe_requested_at",
        "keyframe_requests",
        "kind",
        "last_packet_at",
        "layer_bps",
        "layer_octets",
        "layer_peak",
        "layered",
        "loss",
        "mime_type",
        "octets",
        "octets_mark",
        "packets",
        "participant_id",
        "payload_type",
        "request_keyframe",
        "rid",
        "rtx_payload_type",
        "sequence",
        "spatial",
        "sr_at",
        "sr_ntp",
        "sr_rtp",
        "ssrc",
        "stats",
        "switchers",
        "tap",
        "vp8",
    )

    def __init__(self, participant_id: str, kind: str, ssrc: int, mime_type: str,
                 payload_type: int, clock_rate: int, rtx_payload_type: int | None,
                 request_keyframe: Callable[[Producer], None], *, rid: str | None = None,
                 spatial: int = 0) -> None:
        self.participant_id = participant_id
        # Simulcast: which encoding of its camera this is (None: the only one), and its
        # rank from the lowest resolution (0) up.
        self.rid = rid
        self.spatial = spatial
        # Consumers switching to this encoding: they move here at its next keyframe (until
        # then they keep the one they have, so the picture never stops).
        self.switchers: list[Consumer] = []
        self.kind = kind
        self.ssrc = ssrc
        self.mime_type = mime_type.lower()
        self.payload_type = payload_type
        self.rtx_payload_type = rtx_payload_type
        self.clock_rate = clock_rate
        self.is_keyframe = KEYFRAME_DETECTORS.get(self.mime_type, _always)
        self.vp8 = self.mime_type == "video/vp8"
        # The VP8 descriptor of the packet being fanned out, read by consumers that thin
        # temporal layers (a tuple the parser makes anyway, so no extra object per packet).
        self.descriptor: vp8.DescriptorFields | None = None
        # Temporal layers (VP8 L1T3): set once a packet carries a TID. Octets per TID feed
        # layer_bps (measured once a second by the router), from which it picks each
        # constrained receiver's highest layer.
        self.layered = False
        self.layer_octets = [0, 0, 0, 0]
        self.layer_bps = [0.0, 0.0, 0.0, 0.0]
        # What each layer costs at its busiest lately (decaying): the price the allocator
        # pays for it, since a layer's rate swings (keyframes, its sender's own estimate).
        self.layer_peak = [0.0, 0.0, 0.0, 0.0]
        self.consumers: list[Consumer] = []
        self.history: list[HistoryEntry | None] = [None] * HISTORY_SIZE
        self.sequence = SequenceValidator()
        self.stats = ReceiveStats(clock_rate)
        self.loss = LossDetector()
        self.request_keyframe = request_keyframe
        self.keyframe_requested_at = -1e9
        self.keyframe_requests = 0
        self.sr_ntp = 0
        self.sr_rtp = 0
        self.sr_at = 0.0
        self.packets = 0
        self.octets = 0
        self.octets_mark = 0
        self.bitrate_bps = 0.0  # measured once a second, off the hot path
        self.duplicates = 0
        self.last_packet_at = 0.0
        # Set only while this stream feeds the try-on pipeline (mediaserver/tryon/stream.py):
        # every other stream pays one None check per packet for it.
        self.tap: Callable[[bytes, int, int, int, int, bool, float], None] | None = None

    def receive(self, data: bytes, marker: int, seq: int, timestamp: int, offset: int,
                now: float) -> None:
        """Hot path: one call per received packet, fan-out to every consumer."""
        if data[0] & 0x20:  # rare: padding, which must not reach receivers as payload
            end = len(data) - data[-1]
            if end < offset:
                return
            data = bytes((data[0] & 0xDF,)) + data[1:end]
        seq_ext = self.sequence.extend(seq, now)
        if seq_ext is None:
            return  # a jump in numbering, on probation (see sequence_validator.py)
        history = self.history
        entry = history[seq_ext & HISTORY_MASK]
        if entry is not None and entry[0] >= seq_ext:
            # Received already, or older than the history: forwarding it again would only
            # confuse receivers' jitter buffers (a retransmission we asked for fills a gap,
            # so it is never in the history).
            self.duplicates += 1
            return
        self.stats.on_packet(seq_ext, timestamp, now)
        self.loss.on_packet(seq_ext, now)
        size = len(data) - offset
        self.packets += 1
        self.octets += size
        self.last_packet_at = now
        if self.vp8:
            fields = self.descriptor = vp8.descriptor_fields(data, offset)
            if fields is None:
                keyframe = False
            else:
                keyframe = fields[9]
                tid = fields[6]
                if tid >= 0:
                    self.layer_octets[tid] += size
                    self.layered = True
        else:
            keyframe = self.is_keyframe(data, offset)
        history[seq_ext & HISTORY_MASK] = (seq_ext, data, offset, marker, timestamp)
        if keyframe and self.switchers:  # rare: a simulcast switch lands on this keyframe
            for consumer in list(self.switchers):
                if consumer.switching is self:
                    consumer.land_switch(self, now)
            self.switchers.clear()
        fanout = _consumer_module.native_fanout
        if fanout is not None:  # one C call: rewrite, protect and send per receiver
            fanout(data, marker, seq_ext, timestamp, offset, keyframe, now, self.consumers)
        else:
            for consumer in self.consumers:
                consumer.forward(data, marker, seq_ext, timestamp, offset, keyframe, now)
        tap = self.tap
        if tap is not None:
            tap(data, marker, seq_ext, timestamp, offset, keyframe, now)

    def recalled(self, seq_ext: int) -> HistoryEntry | None:
        """A packet received with this extended sequence number, if still in the history."""
        entry = self.history[seq_ext & HISTORY_MASK]
        return entry if entry is not None and entry[0] == seq_ext else None

    def layer_rates(self, *, peak: bool = False) -> list[float]:
        """Bitrate of each temporal layer together with the layers below it (index = TID);
        `peak`: their recent peaks instead of the last second's."""
        total = 0.0
        rates = []
        for bps in (self.layer_peak if peak else self.layer_bps)[:3]:
            total += bps
            rates.append(total)
        return rates

    def want_keyframe(self, now: float) -> bool:
        """Ask the publisher for a keyframe, at most once per 500 ms whoever asks."""
        if self.kind != "video" or now - self.keyframe_requested_at < KEYFRAME_REQUEST_INTERVAL_S:
            return False
        self.keyframe_requested_at = now
        self.keyframe_requests += 1
        self.request_keyframe(self)
        return True
