"""A Consumer is one outgoing RTP stream: a producer's packets as one participant sees them.

It owns the receiver-facing identity of the stream (SSRC, payload type, sequence numbers and
timestamps). A consumer outlives producers: when its source participant rejoins (new SSRC,
new sequence space), the consumer is rebound to the new producer and the outgoing stream
continues without a jump, starting at a keyframe.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from .consumer_state import ConsumerState
from .native import load_extension
from .packet_cache import PacketCache, ResendLog
from .rtp_header import build_packet
from .vp8 import TemporalLayerFilter, rewrite_descriptor_head

if TYPE_CHECKING:
    from .producer import Producer

_SEQ = struct.Struct("!H")
MASK16 = 0xFFFF
MASK32 = 0xFFFFFFFF
# A packet is resent at most once per round trip to its receiver (from its receiver
# reports), at most 50 times a second, and every 100 ms while the RTT is unknown.
MIN_RESEND_INTERVAL_S = 0.02
DEFAULT_RESEND_INTERVAL_S = 0.1


class Consumer(ConsumerState):  # type: ignore[misc,valid-type]
    # The per-packet numbers (ssrc, payload_type, last_in_seq, base_in_seq, last_out_seq,
    # last_out_ts, last_out_at, seq_offset, ts_offset, packets, octets, paused) are
    # ConsumerState's.
    __slots__ = (
        "bitrate_bps",
        "cache",
        "clock_rate",
        "holding",
        "kind",
        "last_out_pid",
        "last_out_tl0",
        "layer_switches",
        "layers",
        "nacks",
        "native",
        "notified_layer",
        "octets_mark",
        "pid_offset",
        "plis",
        "producer",
        "rebound",
        "resends",
        "resends_skipped",
        "retransmissions",
        "rr_fraction_lost",
        "rr_jitter",
        "rtt_s",
        "rtx_payload_type",
        "rtx_seq",
        "rtx_ssrc",
        "send",
        "source_id",
        "switching",
        "tl0_offset",
        "waiting_keyframe",
    )

    def __init__(self, source_id: str, kind: str, ssrc: int, payload_type: int,
                 clock_rate: int, send: Callable[[bytes], None],
                 rtx_ssrc: int = 0, rtx_payload_type: int | None = None) -> None:
        super().__init__()
        self.source_id = source_id
        self.kind = kind
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self.rtx_ssrc = rtx_ssrc
        self.rtx_payload_type = rtx_payload_type
        self.rtx_seq = random.randrange(1 << 16)
        self.send = send
        # The receiver's native send target (mediaserver._fanout.Target), when `send` is a
        # PeerAdapter's send_rtp: the adapter owns it and invalidates it on close.
        self.native = getattr(getattr(send, "__self__", None), "native_target", None)
        self.producer: Producer | None = None
        # Simulcast: the encoding this consumer moves to at its next keyframe (or None).
        self.switching: Producer | None = None
        self.holding = False  # paused until the switch lands (see switch_to)
        # ~1.3 s of 1.5 Mbps video: enough to answer NACKs, small enough to stay in cache.
        self.cache = PacketCache(256 if kind == "video" else 64)
        self.resends = ResendLog(256 if kind == "video" else 64)
        self.last_out_seq = random.randrange(1 << 16)
        self.last_out_ts = random.randrange(1 << 32)
        self.last_out_at = 0.0
        self.last_in_seq = -1
        # First input packet of the current re-base: packets from it on went out with the
        # current offsets, so a NACK for them can be answered from the producer's history.
        self.base_in_seq = 0
        self.seq_offset = 0
        self.ts_offset = 0
        self.waiting_keyframe = True
        self.paused = False
        self.packets = 0
        self.octets = 0
        self.retransmissions = 0
        self.resends_skipped = 0
        self.nacks = 0
        self.plis = 0
        self.rr_fraction_lost = 0
        self.rr_jitter = 0
        self.rtt_s = 0.0
        self.bitrate_bps = 0.0  # measured once a second, off the hot path
        self.octets_mark = 0
        # Temporal-layer thinning for a constrained receiver of a VP8 L1T3 publisher. None
        # (the usual case) costs one check per packet; once engaged it stays for the life of
        # the binding, because its drops shifted the outgoing sequence numbers.
        self.layers: TemporalLayerFilter | None = None
        self.layer_switches = 0
        self.notified_layer: int | None = None  # what the receiver was last told
        # VP8 picture numbering across streams (see _rewrite_descriptor).
        self.rebound = False
        self.pid_offset = self.tl0_offset = 0
        self.last_out_pid = random.randrange(1 << 15)
        self.last_out_tl0 = random.randrange(1 << 8)

    def bind(self, producer: Producer | None, now: float) -> None:
        """Follow a (new) producer; the next forwarded packet re-bases seq and timestamp."""
        if self.producer is not None and self in self.producer.consumers:
            self.producer.consumers.remove(self)
        target = self.switching
        if target is not None:
            self.switching = None
            if self in target.switchers:
                target.switchers.remove(self)
        if producer is not None and producer.vp8 and self.packets:
            # Another stream after this one sent pictures: its picture ids must continue
            # ours (see _rewrite_descriptor), which takes the descriptor-rewriting path.
            self.rebound = True
            if self.layers is None:
                self.layers = TemporalLayerFilter(2)
        self.producer = producer
        self.waiting_keyframe = True
        self.last_in_seq = -1
        if self.layers is not None:  # a new sequence space: thin it from scratch
            self.layers = TemporalLayerFilter(self.layers.max_tid)
        if producer is not None:
            producer.consumers.append(self)
            producer.want_keyframe(now)

    def switch_to(self, producer: Producer, now: float, *, hold: bool = False) -> None:
        """Move to another encoding of the same camera (simulcast) at its next keyframe,
        which is asked for. Until then the current one keeps flowing, unless `hold`: going
        down because the link is full, it stops at once, so the new keyframe does not
        queue behind more of what no longer fits. Continuity of the outgoing numbers is
        the re-base's (see forward)."""
        if producer is self.producer:
            self.cancel_switch()
            return
        if self.switching is producer:
            producer.want_keyframe(now)
            return
        self.cancel_switch()
        self.switching = producer
        producer.switchers.append(self)
        producer.want_keyframe(now)
        if hold and not self.paused:
            self.holding = self.paused = True

    def land_switch(self, producer: Producer, now: float) -> None:
        """The switch target's keyframe is here: follow it (Producer.receive calls this
        right before fanning that keyframe out)."""
        self.bind(producer, now)
        if self.holding:
            self.holding = self.paused = False

    def cancel_switch(self) -> None:
        target = self.switching
        if target is not None:
            self.switching = None
            if self in target.switchers:
                target.switchers.remove(self)
        if self.holding:  # back to the current encoding: from its next keyframe
            self.holding = False
            self.paused = False
            self.last_in_seq = -1

    def pause(self) -> None:
        """Stop forwarding (video paused for bandwidth); audio consumers are never paused."""
        self.cancel_switch()
        self.paused = True

    def resume(self, now: float) -> None:
        """Forward again, starting at the next keyframe, without a sequence gap: the next
        forwarded packet re-bases, and nothing from before it goes out (see forward)."""
        self.paused = False
        self.last_in_seq = -1
        if self.producer is not None:
            self.producer.want_keyframe(now)

    def forward(self, data: bytes, marker: int, seq_ext: int, timestamp: int, offset: int,
                keyframe: bool, now: float) -> None:
        """Hot path: rewrite the header for this receiver and send; no await, no logging."""
        if self.paused:
            return
        payload = None
        layers = self.layers
        if layers is not None:
            fields = self.producer.descriptor  # type: ignore[union-attr]
            if fields is not None:
                if not layers.accept(seq_ext, fields[6], fields[1] == 1 and fields[2] == 0,
                                     fields[7], fields[9]):
                    return
                # Gapless numbers and picture ids, so the receiver neither NACKs dropped
                # packets nor waits for dropped frames.
                seq_ext = layers.out_seq_ext(seq_ext)
                payload = self._rewrite_descriptor(
                    data, offset, layers.out_picture_id(fields[3], fields[4]), fields,
                    keyframe and self.last_in_seq < 0)
        if self.last_in_seq < 0:
            if not keyframe:
                return  # a decoder can only start at a keyframe
            # Continue the outgoing stream where it stopped: next seq, and a timestamp that
            # advanced by the wall-clock time since the last packet went out.
            gap = max(1, int((now - self.last_out_at) * self.clock_rate)) \
                if self.last_out_at else 1
            self.seq_offset = self.last_out_seq + 1 - seq_ext
            self.ts_offset = self.last_out_ts + gap - timestamp
            self.base_in_seq = seq_ext
            self.waiting_keyframe = False
        elif seq_ext < self.base_in_seq or seq_ext <= self.last_in_seq - 3000:
            # From before the re-base (a reordered packet or a retransmission that arrives
            # after the keyframe), or too old: with the current offsets it would take an
            # outgoing sequence number already used for another packet, i.e. encrypt
            # different bytes under the same SRTP index (nonce reuse).
            return
        out_seq = (seq_ext + self.seq_offset) & MASK16
        out_ts = (timestamp + self.ts_offset) & MASK32
        packet = build_packet(self.payload_type, marker, out_seq, out_ts, self.ssrc,
                              memoryview(data)[offset:] if payload is None else payload)
        if seq_ext > self.last_in_seq:
            self.last_in_seq = seq_ext
            self.last_out_seq = out_seq
            self.last_out_ts = out_ts
            self.last_out_at = now
        self.cache.put(out_seq, packet)
        self.packets += 1
        self.octets += len(packet) - 12
        self.send(packet)

    def _rewrite_descriptor(self, data: bytes, offset: int, picture_id: int,
                            fields: tuple, rebasing: bool) -> bytes:
        """The packet's payload with its VP8 picture id (and TL0PICIDX) continuing ours.

        Another encoding of the camera (a simulcast switch) or a rejoined publisher numbers
        its pictures from elsewhere; a receiver that sees the numbers go back takes the new
        pictures for old ones and drops them. So from the keyframe a consumer re-bases on,
        both numbers are shifted to follow what it sent last.
        """
        bits = fields[4]
        tl0 = fields[5]
        if rebasing and self.rebound:
            self.rebound = False
            if bits:
                self.pid_offset = (self.last_out_pid + 1 - picture_id) & 0x7FFF
            if tl0 >= 0:
                self.tl0_offset = (self.last_out_tl0 + 1 - tl0) & 0xFF
        if bits:
            picture_id = (picture_id + self.pid_offset) & ((1 << bits) - 1)
            self.last_out_pid = picture_id
        out_tl0 = None
        if tl0 >= 0:
            out_tl0 = (tl0 + self.tl0_offset) & 0xFF
            self.last_out_tl0 = out_tl0
        head, size = rewrite_descriptor_head(memoryview(data)[offset:], picture_id, out_tl0)
        return head + data[offset + size:]

    def retransmit(self, lost: list[int], now: float) -> int:
        """Answer a receiver's NACK from the history of sent packets (RTX if negotiated),
        each packet at most once per round trip (see ResendLog)."""
        self.nacks += 1
        sent = 0
        rtt = self.rtt_s
        interval = max(rtt, MIN_RESEND_INTERVAL_S) if rtt else DEFAULT_RESEND_INTERVAL_S
        resends = self.resends
        for seq in lost:
            if not resends.allow(seq, now, interval):
                self.resends_skipped += 1
                continue
            packet = self.cache.get(seq)
            if packet is None:
                packet = self._rebuild(seq)
                if packet is None:
                    continue
            if self.rtx_payload_type is not None:
                self.rtx_seq = (self.rtx_seq + 1) & MASK16
                # RFC 4588: the original sequence number leads the original payload.
                marker = packet[1] >> 7
                timestamp = int.from_bytes(packet[4:8], "big")
                packet = build_packet(self.rtx_payload_type, marker, self.rtx_seq, timestamp,
                                      self.rtx_ssrc, packet[2:4] + packet[12:])
            self.send(packet)
            sent += 1
        self.retransmissions += sent
        return sent

    def _rebuild(self, out_seq: int) -> bytes | None:
        """A packet the native fan-out sent (it keeps no copy), from the producer's history.

        Only for packets sent with the current offsets (after the last re-base) and without
        layer thinning, whose numbers are a plain shift of the publisher's.
        """
        producer = self.producer
        last_in = self.last_in_seq
        if producer is None or self.layers is not None or last_in < 0:
            return None
        in_seq = last_in - ((last_in - (out_seq - self.seq_offset)) & MASK16)
        if in_seq < self.base_in_seq:
            return None
        entry = producer.recalled(in_seq)
        if entry is None:
            return None  # never received (the server NACKs the publisher itself) or too old
        _, data, offset, marker, timestamp = entry
        return build_packet(self.payload_type, marker, out_seq,
                            (timestamp + self.ts_offset) & MASK32, self.ssrc,
                            memoryview(data)[offset:])

    def set_max_layer(self, max_tid: int) -> None:
        """Forward temporal layers up to ``max_tid`` (2: all of L1T3) from now on."""
        layers = self.layers
        if layers is None:
            if max_tid >= 2:
                return
            layers = self.layers = TemporalLayerFilter(2)
        if layers.max_tid != max_tid:
            layers.max_tid = max_tid
            self.layer_switches += 1

    @property
    def forwarded_layer(self) -> int | None:
        """Highest temporal layer actually forwarded now (None: no layer thinning)."""
        return None if self.layers is None else self.layers.current_tid

    def out_timestamp_for(self, in_timestamp: int) -> int:
        return (in_timestamp + self.ts_offset) & MASK32


def _load_native_fanout() -> Callable[..., None] | None:
    """The C fan-out (mediaserver/_fanout.c), or None: missing, or SHOPCALL_NATIVE_FANOUT=0.

    It forwards steady-state consumers exactly like :meth:`Consumer.forward` and calls
    ``forward`` for every other one.
    """
    _fanout = load_extension()
    if _fanout is None:
        return None
    _fanout.configure(Consumer)
    return _fanout.fanout


native_fanout = _load_native_fanout()
