"""A participant's one WebRTC connection to the SFU: its producers, its consumers, its RTCP.

Incoming RTP is demultiplexed by SSRC (new SSRCs are matched to an m-section by payload
type, so publishers that announce no SSRC in their SDP work too). Incoming RTCP carries the
receiver's view of our consumers (loss, jitter, RTT, NACK, PLI/FIR, REMB) and the
publisher's sender reports.
"""

from __future__ import annotations

import logging
import struct
import time
from typing import TYPE_CHECKING, Any

from aiortc import RTCRtpSender, RTCSessionDescription
from aiortc.rtp import (
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    pack_remb_fci,
    unpack_remb_fci,
)

from . import h264
from .aiortc_adapter import PeerAdapter, RecvSlot, RelayTrack, SendSlot, fmtp_of
from .bwe.arrivals import ArrivalRecorder, twcc_number
from .bwe.twcc import FMT as TWCC_FMT
from .bwe.twcc import PT_RTPFB, parse_feedback
from .connectivity import ConnectionRecord
from .consumer import Consumer
from .ice_candidates import announce_public
from .loss_detector import build_nack
from .producer import Producer
from .receiver_bandwidth import ReceiverBandwidth
from .rtp_header import extension_value, parse_header
from .simulcast_sdp import RID_URI, RRID_URI, offered_simulcast, receive_simulcast

if TYPE_CHECKING:
    from .router import Router

log = logging.getLogger(__name__)

RTCP_PSFB_FIR = 4
# An unannounced SSRC may replace a stream that has been silent this long (see
# _on_other_rtp); announced ones always may.
TAKEOVER_SILENCE_S = 1.0
RTX_WINDOW = 3000  # retransmissions older than this many packets are useless anyway
RTCP_PSFB_APP = 15  # REMB


class NegotiationError(Exception):
    """The participant's SDP could not be applied; the message says why."""


def check_sdp(sdp: str) -> None:
    """Refuse descriptions aiortc would accept but cannot connect with, naming what lacks."""
    if not sdp.startswith("v=0"):
        raise NegotiationError("invalid SDP: it must start with v=0")
    lines = sdp.splitlines()
    if not any(line.startswith(("m=audio", "m=video")) for line in lines):
        raise NegotiationError("invalid SDP: no audio or video m-section")
    for attribute in ("a=ice-ufrag:", "a=ice-pwd:", "a=fingerprint:"):
        if not any(line.startswith(attribute) for line in lines):
            raise NegotiationError(f"invalid SDP: no {attribute[2:-1]} attribute")


def ntp_now() -> int:
    now = time.time() + 2208988800
    return (int(now) << 32) | int((now % 1) * (1 << 32))


class Participant:
    def __init__(self, participant_id: str, router: Router, peer: PeerAdapter) -> None:
        self.id = participant_id
        self.router = router
        self.clock = router.clock
        self.peer = peer
        self.producers: dict[int, Producer] = {}  # by SSRC (RTX SSRCs map to their stream)
        self.rtx_ssrcs: dict[int, Producer] = {}
        self.consumers: dict[tuple[str, str], Consumer] = {}  # (source participant, kind)
        self.consumer_by_ssrc: dict[int, Consumer] = {}
        self.slot_of: dict[tuple[str, str], SendSlot] = {}
        # What this participant's client was last told carries whom (media.sources): mid ->
        # (source participant, kind). Browsers cannot tell otherwise whose tile is whose.
        self.sources_told: dict[str, tuple[str, str]] = {}
        self.remb_bps: int | None = None
        self.bandwidth = ReceiverBandwidth(router.video_floor_bps, peer.history)
        self.available_bps: float = self.bandwidth.remb.bps
        # Arrival times of what this participant sends, for its transport-wide feedback
        # (None until its negotiation agrees on transport-cc).
        self.arrivals: ArrivalRecorder | None = None
        # Simulcast: mid -> rids (lowest resolution first) it sends, and their extension ids.
        self.simulcast: dict[str, list[str]] = {}
        self._rid_ext = self._rrid_ext = 0
        # SSRC -> rid learnt by a previous connection of the same participant (ICE restart).
        self.known_rids: dict[int, str] = {}
        # This connection attempt: how it came up (candidate types) or why it did not.
        self.connection = ConnectionRecord(time.monotonic())
        self.bad_packets = 0
        self.nacks_sent = 0
        self.rembs_sent = 0
        self._pt_map: dict[int, tuple[RecvSlot, Any]] = {}
        self._renegotiating = False
        self._renegotiate_again = False
        self.closed = False
        peer.on_rtp = self.on_rtp
        peer.on_rtcp = self.on_rtcp
        peer.on_connected = self._on_connected
        peer.on_slot_ready = router.reconcile
        peer.on_closed = lambda: router.participant_lost(self)

    # Negotiation --------------------------------------------------------------------------
    async def handle_offer(self, sdp: str) -> str:
        pc = self.peer.pc
        if pc.signalingState != "stable":
            raise NegotiationError("a negotiation is already in progress; answer it first")
        await self._set_remote(sdp, "offer")
        self.peer.adopt_transceivers()
        for transceiver in pc.getTransceivers():
            if transceiver.sender.track is None and transceiver.kind in ("audio", "video"):
                pc.addTrack(RelayTrack(transceiver.kind))
        self._prefer_session_codec()
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
        self._learn_payload_types()
        self._follow_transport_cc()
        self._follow_simulcast(offered_simulcast(sdp))
        self.router.reconcile()
        return announce_public(receive_simulcast(pc.localDescription.sdp, self.simulcast),
                               self.router.public_addresses)

    async def handle_answer(self, sdp: str) -> None:
        pc = self.peer.pc
        if pc.signalingState != "have-local-offer":
            raise NegotiationError("no offer from the server is waiting for an answer")
        await self._set_remote(sdp, "answer")
        self._learn_payload_types()
        self._follow_transport_cc()
        self._renegotiating = False
        if self._renegotiate_again:
            self._renegotiate_again = False
            await self.renegotiate()
        self.router.reconcile()

    async def _set_remote(self, sdp: str, kind: str) -> None:
        """Apply the participant's SDP; any refusal becomes a NegotiationError that says why."""
        check_sdp(sdp)
        try:
            await self.peer.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
        except Exception as exc:
            raise NegotiationError(f"invalid {kind}: {exc}") from None

    async def renegotiate(self) -> None:
        """Send the participant a server offer (new or removed streams)."""
        if self._renegotiating or self.peer.pc.signalingState != "stable":
            self._renegotiate_again = True
            return
        self._renegotiating = True
        self._prefer_session_codec()
        offer = await self.peer.create_offer()
        await self.peer.pc.setLocalDescription(offer)
        self.router.notify(self.id, {"type": "media.offer", "sdp": announce_public(
            receive_simulcast(self.peer.pc.localDescription.sdp, self.simulcast),
            self.router.public_addresses)})

    def _prefer_session_codec(self) -> None:
        mime = self.router.video_mime
        if mime is None:
            return
        capabilities = RTCRtpSender.getCapabilities("video").codecs
        chosen = [c for c in capabilities if c.mimeType.lower() == mime and (
            self.router.h264_fmtp is None or h264.same_profile(fmtp_of(c),
                                                               self.router.h264_fmtp))]
        rtx = [c for c in capabilities if c.mimeType.lower() == "video/rtx"]
        for transceiver in self.peer.pc.getTransceivers():
            if transceiver.kind == "video":
                transceiver.setCodecPreferences(chosen + rtx)

    def _follow_simulcast(self, offered: dict[str, list[str]]) -> None:
        """The m-sections the participant sends simulcast on (their rids, low to high),
        and the extension ids that label its encodings."""
        self.simulcast = offered
        self._rid_ext = self.peer.extension_id(RID_URI)
        self._rrid_ext = self.peer.extension_id(RRID_URI)

    def _follow_transport_cc(self) -> None:
        """Stamp what we send and report what we receive once both sides agreed on
        transport-wide numbers (kept across renegotiations: the id never changes)."""
        if self.peer.use_transport_cc():
            ext_id = self.peer.history.ext_id
            if self.arrivals is None or self.arrivals.ext_id != ext_id:
                self.arrivals = ArrivalRecorder(ext_id)
        else:
            self.arrivals = None

    def _learn_payload_types(self) -> None:
        for slot in self.peer.recv_slots:
            if slot.transceiver.currentDirection not in ("sendrecv", "recvonly"):
                continue  # an m-section we only send on: its codecs say nothing of input
            for codec in self.peer.negotiated_codecs(slot.transceiver):
                self._pt_map[codec.payloadType] = (slot, codec)

    # Media --------------------------------------------------------------------------------
    def _on_connected(self) -> None:
        self.connection.connected(time.monotonic(), self.peer.selected_pair())
        self.router.participant_connected(self)

    def on_rtp(self, data: bytes) -> None:
        """Hot path: demultiplex one decrypted RTP packet."""
        header = parse_header(data)
        if header is None:
            self.bad_packets += 1
            return
        payload_type, marker, seq, timestamp, ssrc, offset = header
        producer = self.producers.get(ssrc)
        now = time.monotonic()
        arrivals = self.arrivals
        if arrivals is not None:  # its transport-wide number, for the publisher's estimator
            number = twcc_number(data, arrivals.ext_id)
            if number >= 0:
                arrivals.record(number, int(now * 1e6))
        if producer is not None and payload_type == producer.payload_type:
            producer.receive(data, marker, seq, timestamp, offset, now)
        else:
            self._on_other_rtp(data, payload_type, marker, seq, timestamp, ssrc, offset)
        clock = self.clock
        if now >= clock.due:  # the server's 50 ms feedback work rides on packet arrivals
            clock.run(now)

    def _on_other_rtp(self, data: bytes, payload_type: int, marker: int, seq: int,
                      timestamp: int, ssrc: int, offset: int) -> None:
        """First packet of a stream, retransmissions (RTX), or garbage.

        An SSRC nobody announced must not take over a live stream: a packet with a
        corrupted SSRC (it still authenticates: SRTP checks who sent it, not what it says)
        would otherwise replace the publisher's camera for every receiver. So a new SSRC
        is a new stream when the SDP announced it, or when the stream it would replace has
        been silent for TAKEOVER_SILENCE_S; an RTX SSRC when announced, or as the first
        for its stream.
        """
        producer = self.rtx_ssrcs.get(ssrc)
        if producer is None:
            mapped = self._pt_map.get(payload_type)
            if mapped is None:
                self.bad_packets += 1
                return
            slot, codec = mapped
            mime = codec.mimeType.lower()
            rids = self.simulcast.get(slot.mid or "") if slot.kind == "video" else None
            if rids:
                if not self._new_simulcast_stream(data, ssrc, slot, codec, rids):
                    return
                if mime != f"{slot.kind}/rtx":
                    self.on_rtp(data)
                    return
                producer = self.rtx_ssrcs[ssrc]
            elif mime == f"{slot.kind}/rtx":
                apt = codec.parameters.get("apt")
                producer = next((p for p in self.producers.values()
                                 if p.payload_type == apt and p.kind == slot.kind), None)
                if producer is None:
                    return
                if ssrc not in slot.rtx_ssrcs and producer in self.rtx_ssrcs.values():
                    self.bad_packets += 1
                    return
                self.rtx_ssrcs[ssrc] = producer
            else:
                live = next((p for p in self.producers.values() if p.kind == slot.kind
                             and time.monotonic() - p.last_packet_at < TAKEOVER_SILENCE_S),
                            None)
                if live is not None and ssrc not in slot.ssrcs:
                    self.bad_packets += 1
                    return
                self._new_producer(ssrc, slot, codec)
                self.on_rtp(data)
                return
        end = len(data) - data[-1] if data[0] & 0x20 else len(data)
        if end <= offset + 2:
            return  # a padding-only bandwidth probe (browsers send these on RTX): no media
        # RFC 4588: the original sequence number leads the payload.
        original_seq = int.from_bytes(data[offset:offset + 2], "big")
        highest = producer.sequence.highest_raw
        if highest is not None and not -RTX_WINDOW < ((original_seq - highest + 0x8000)
                                                      & 0xFFFF) - 0x8000 <= 100:
            return  # not a retransmission of anything recent: never let it move the stream
        restored = bytes((data[0] & 0xDF,)) + data[1:offset] + data[offset + 2:end]
        producer.receive(restored, marker, original_seq, timestamp, offset, time.monotonic())

    def _new_simulcast_stream(self, data: bytes, ssrc: int, slot: RecvSlot, codec: Any,
                              rids: list[str]) -> bool:
        """A new SSRC on an m-section that receives simulcast: the encoding it carries is in
        its rtp-stream-id (repaired-rtp-stream-id for retransmissions). Another SSRC for
        the same rid replaces that encoding only; no label, or one not offered: refused."""
        is_rtx = codec.mimeType.lower() == f"{slot.kind}/rtx"
        raw = extension_value(data, self._rrid_ext if is_rtx else self._rid_ext)
        rid = raw.decode("ascii", "replace") if raw else self.known_rids.get(ssrc)
        if rid not in rids:
            self.bad_packets += 1
            return False
        if is_rtx:
            apt = codec.parameters.get("apt")
            producer = next((p for p in self.producers.values() if p.rid == rid
                             and p.payload_type == apt and p.kind == slot.kind), None)
            if producer is None:
                return False
            for old_ssrc in [s for s, p in self.rtx_ssrcs.items() if p is producer]:
                del self.rtx_ssrcs[old_ssrc]
            self.rtx_ssrcs[ssrc] = producer
            return True
        self._new_producer(ssrc, slot, codec, rid=rid, spatial=rids.index(rid))
        return True

    def simulcast_ssrcs(self) -> dict[int, str]:
        """SSRC -> rid of every simulcast stream (and retransmission stream) seen so far."""
        out = {p.ssrc: p.rid for p in self.producers.values() if p.rid is not None}
        out.update({s: p.rid for s, p in self.rtx_ssrcs.items() if p.rid is not None})
        return out

    def _new_producer(self, ssrc: int, slot: RecvSlot, codec: Any, *, rid: str | None = None,
                      spatial: int = 0) -> None:
        rtx_pt = next((c.payloadType for c in self.peer.negotiated_codecs(slot.transceiver)
                       if c.mimeType.lower().endswith("/rtx")
                       and c.parameters.get("apt") == codec.payloadType), None)
        old = [p for p in self.producers.values() if p.kind == slot.kind and p.rid == rid]
        for p in old:  # a new SSRC on the same m-section (and rid) replaces the old stream
            self.producers.pop(p.ssrc, None)
        for rtx_ssrc in [s for s, p in self.rtx_ssrcs.items() if p in old]:
            del self.rtx_ssrcs[rtx_ssrc]  # its retransmissions go with it (and its history)
        producer = Producer(self.id, slot.kind, ssrc, codec.mimeType, codec.payloadType,
                            codec.clockRate, rtx_pt, self._send_pli, rid=rid, spatial=spatial)
        self.producers[ssrc] = producer
        log.info("%s publishes %s %s (ssrc %d%s)", self.id, slot.kind, codec.mimeType, ssrc,
                 f", simulcast {rid}" if rid else "")
        self.router.producer_added(self, producer, replaced=old)

    def _send_pli(self, producer: Producer) -> None:
        self.peer.send_rtcp(bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=self.peer.rtcp_ssrc(),
                                                 media_ssrc=producer.ssrc)))

    def on_rtcp(self, data: bytes) -> None:
        now = time.monotonic()
        data = self._take_transport_feedback(data, now)
        if not data:
            return
        try:
            packets = RtcpPacket.parse(data)
        except ValueError:
            self.bad_packets += 1
            return
        for packet in packets:
            if isinstance(packet, RtcpSrPacket):
                producer = self.producers.get(packet.ssrc)
                if producer is not None:
                    info = packet.sender_info
                    producer.sr_ntp, producer.sr_rtp = info.ntp_timestamp, info.rtp_timestamp
                    producer.sr_at = now
                    self.router.forward_sender_report(producer)
                self._on_reports(packet.reports, now)
            elif isinstance(packet, RtcpRrPacket):
                self._on_reports(packet.reports, now)
            elif isinstance(packet, RtcpRtpfbPacket):
                consumer = self.consumer_by_ssrc.get(packet.media_ssrc)
                if consumer is not None and packet.fmt == RTCP_RTPFB_NACK:
                    consumer.retransmit(packet.lost, now)
            elif isinstance(packet, RtcpPsfbPacket):
                self._on_psfb(packet, now)

    def _take_transport_feedback(self, data: bytes, now: float) -> bytes:
        """Handle the transport-wide feedback in a compound RTCP packet; return the rest.

        aiortc's parser reads it as a NACK (and refuses the whole compound when its length
        is not a multiple of four words), so it never reaches aiortc.
        """
        pos, rest, found = 0, [], False
        n = len(data)
        while pos + 4 <= n:
            end = pos + ((data[pos + 2] << 8 | data[pos + 3]) + 1) * 4
            if end > n:
                break
            if data[pos + 1] == PT_RTPFB and data[pos] & 0x1F == TWCC_FMT:
                found = True
                try:
                    self.bandwidth.on_feedback(parse_feedback(data[pos:end]), now)
                except ValueError:
                    self.bad_packets += 1
            else:
                rest.append(data[pos:end])
            pos = end
        if not found:
            return data
        return b"".join(rest) + data[pos:]

    def _on_psfb(self, packet: RtcpPsfbPacket, now: float) -> None:
        if packet.fmt == RTCP_PSFB_APP:
            try:
                self.remb_bps, _ = unpack_remb_fci(packet.fci)
            except (ValueError, struct.error):  # aiortc's parser: struct.error if truncated
                self.bad_packets += 1
                return
            self.bandwidth.remb.on_remb(self.remb_bps)
            self.bandwidth.downlink.estimator.on_remb(self.remb_bps)
            return
        target = packet.media_ssrc
        if packet.fmt == RTCP_PSFB_FIR and len(packet.fci) >= 4:
            target = int.from_bytes(packet.fci[:4], "big")
        consumer = self.consumer_by_ssrc.get(target)
        if consumer is not None and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            consumer.plis += 1
            if consumer.producer is not None:
                consumer.producer.want_keyframe(now)

    def _on_reports(self, reports: list[RtcpReceiverInfo], now: float) -> None:
        for report in reports:
            consumer = self.consumer_by_ssrc.get(report.ssrc)
            if consumer is None:
                continue
            consumer.rr_fraction_lost = report.fraction_lost
            consumer.rr_jitter = report.jitter
            if report.lsr:
                middle = (ntp_now() >> 16) & 0xFFFFFFFF
                rtt = ((middle - report.lsr - report.dlsr) & 0xFFFFFFFF) / 65536.0
                if rtt < 10:
                    consumer.rtt_s = rtt

    # Periodic feedback to the publisher ----------------------------------------------------
    def send_remb(self, bitrate_bps: float, ssrcs: list[int]) -> None:
        """Cap what this participant publishes (browsers honour REMB without transport-cc)."""
        packet = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=self.peer.rtcp_ssrc(), media_ssrc=0,
                                fci=pack_remb_fci(int(bitrate_bps), ssrcs))
        self.peer.send_rtcp(bytes(packet))
        self.rembs_sent += 1

    @property
    def video_paused(self) -> bool:
        return self.bandwidth.video_paused

    def worst_video_loss(self) -> float:
        losses = [c.rr_fraction_lost for c in self.consumers.values()
                  if c.kind == "video" and not c.paused and c.producer is not None]
        return max(losses, default=0) / 256.0

    def send_feedback(self, now: float, *, reports: bool) -> None:
        """NACK what publishers lost; every second, receiver reports."""
        # 20 times a second for every participant: only streams with gaps do any work.
        for producer in self.producers.values():
            if producer.loss.pending:
                lost = producer.loss.due_nacks(now, 0.05)
                if lost:
                    # Not aiortc's RtcpRtpfbPacket: its packer fails across the 65535 -> 0
                    # wrap.
                    self.peer.send_rtcp(build_nack(self.peer.rtcp_ssrc(), producer.ssrc, lost))
                    self.nacks_sent += 1
        arrivals = self.arrivals
        if arrivals is not None:
            # Browsers take a feedback only for one of their own sending SSRCs (libwebrtc
            # drops it otherwise, and its estimate then decays as if nothing came back).
            arrivals.media_ssrc = next(iter(self.producers), 0)
            for feedback in arrivals.feedback(self.peer.rtcp_ssrc()):
                self.peer.send_rtcp(feedback)
        if reports and self.producers:
            rtcp_ssrc = self.peer.rtcp_ssrc()
            blocks = []
            for producer in self.producers.values():
                lsr = (producer.sr_ntp >> 16) & 0xFFFFFFFF
                dlsr = int((now - producer.sr_at) * 65536) if producer.sr_at else 0
                blocks.append(producer.stats.report_block(producer.ssrc, lsr, dlsr))
            self.peer.send_rtcp(bytes(RtcpRrPacket(ssrc=rtcp_ssrc, reports=blocks)))

    # Consumers ----------------------------------------------------------------------------
    def free_send_slot(self, kind: str) -> SendSlot | None:
        used = {id(s) for s in self.slot_of.values()}
        for slot in self.peer.send_slots:
            if slot.kind == kind and id(slot) not in used and \
                    slot.transceiver.currentDirection in ("sendrecv", "sendonly"):
                return slot
        return None

    def attach(self, source_id: str, kind: str, slot: SendSlot,
               producer: Producer | None) -> Consumer | None:
        codec = next((c for c in slot.codecs if producer is not None
                      and c.mimeType.lower() == producer.mime_type), None)
        if codec is None:
            return None
        rtx = next((c.payloadType for c in slot.codecs if c.mimeType.lower().endswith("/rtx")
                    and c.parameters.get("apt") == codec.payloadType), None)
        consumer = Consumer(source_id, kind, slot.ssrc, codec.payloadType, codec.clockRate,
                            self.peer.send_rtp, slot.rtx_ssrc, rtx)
        # A stream added while this receiver is on audio only (say, a colleague joins) is
        # paused too; resuming unpauses every video consumer at once.
        consumer.paused = kind == "video" and self.bandwidth.video_paused
        self.consumers[(source_id, kind)] = consumer
        self.consumer_by_ssrc[slot.ssrc] = consumer
        self.slot_of[(source_id, kind)] = slot
        return consumer

    def describe(self) -> dict[str, Any]:
        return {
            "participant_id": self.id,
            "connected": self.peer.connected,
            "connection": self.connection.describe(self.peer.ice_state()),
            "remb_bps": self.remb_bps,
            "estimated_bps": round(self.available_bps),
            "video_paused": self.video_paused,
            "downlink": self.bandwidth.describe(),
            "uplink_feedback": None if self.arrivals is None else self.arrivals.describe(),
            "bad_packets": self.bad_packets + self.peer.bad_packets,
            "handler_errors": self.peer.handler_errors,
            "publishing": [{"kind": p.kind, "codec": p.mime_type, "ssrc": p.ssrc,
                            "temporal_layers": p.layered, "rid": p.rid,
                            "bitrate_bps": round(p.bitrate_bps),
                            "layer_bps": [round(b) for b in p.layer_rates()],
                            "packets": p.packets, "keyframe_requests": p.keyframe_requests,
                            "discarded_packets": p.sequence.discarded,
                            "duplicate_packets": p.duplicates,
                            "sequence_restarts": p.sequence.restarts}
                           for p in self.producers.values()],
            "receiving": [{"from": c.source_id, "kind": c.kind, "ssrc": c.ssrc,
                           "codec": c.producer.mime_type if c.producer else None,
                           "bitrate_bps": round(c.bitrate_bps),
                           "paused": c.paused,
                           "packets": c.packets, "retransmissions": c.retransmissions,
                           "resends_skipped": c.resends_skipped,
                           "forwarded_layer": c.forwarded_layer,
                           "rid": c.producer.rid if c.producer else None,
                           "switching_to": c.switching.rid if c.switching else None,
                           "allocated": self._allocated(c),
                           "layer_switches": c.layer_switches,
                           "fraction_lost": c.rr_fraction_lost / 256, "rtt_ms":
                           round(c.rtt_s * 1000, 1), "waiting_keyframe": c.waiting_keyframe}
                          for c in self.consumers.values()],
        }

    def _allocated(self, consumer: Consumer) -> int | None:
        """The option the allocator chose for a consumer (its index; -1: paused)."""
        allocation = self.bandwidth.downlink.allocation
        return None if allocation is None else allocation.layers.get(consumer)

    async def close(self) -> None:
        self.closed = True
        self.bandwidth.stop_probe()
        for consumer in self.consumers.values():
            consumer.bind(None, time.monotonic())
        await self.peer.close()
