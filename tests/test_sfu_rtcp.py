"""RTCP between the SFU and real aiortc peers: sender reports forwarded in each receiver's
timestamp space, receiver reports to publishers, and receivers' PLI/FIR reaching the
publisher at most once per 500 ms."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiortc.rtp import (
    RTCP_PSFB_PLI,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
)

from mediaserver.metrics import SfuCollector

from .media_peers import MediaPeer
from .test_sfu_forwarding import (
    GREEN,
    session,  # noqa: F401  (fixture)
)
from .test_sfu_forwarding import Session as CallSession

pytestmark = pytest.mark.integration

NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900 (NTP) to 1970 (Unix)


class SenderReportProbe:
    """Records, at one peer, the sender reports it sends and the sender reports and RTP
    packets it receives, by hooking its aiortc senders and receivers."""

    def __init__(self, peer: MediaPeer) -> None:
        self.sent_ntp: set[int] = set()
        # ssrc -> latest (ntp, rtp) pair received; checked packets: (kind, error in seconds)
        self.latest: dict[int, tuple[int, int]] = {}
        self.errors: list[tuple[str, float]] = []
        self.reports = 0
        self.wanted = 0
        self.enough = asyncio.Event()
        for transceiver in peer.pc.getTransceivers():
            self._hook_sender(transceiver.sender)
            self._hook_receiver(transceiver.receiver, transceiver.kind)

    def _hook_sender(self, sender: Any) -> None:
        send = sender._send_rtcp

        async def _send_rtcp(packets: list[Any]) -> None:
            self.sent_ntp.update(p.sender_info.ntp_timestamp for p in packets
                                 if isinstance(p, RtcpSrPacket))
            await send(packets)
        sender._send_rtcp = _send_rtcp

    def _hook_receiver(self, receiver: Any, kind: str) -> None:
        handle_rtcp, handle_rtp = receiver._handle_rtcp_packet, receiver._handle_rtp_packet
        clock = 90000 if kind == "video" else 48000

        async def _handle_rtcp_packet(packet: Any) -> None:
            if isinstance(packet, RtcpSrPacket):
                self.reports += 1
                if self.wanted and self.reports >= self.wanted:
                    self.enough.set()
                self.latest[packet.ssrc] = (packet.sender_info.ntp_timestamp,
                                            packet.sender_info.rtp_timestamp)
            await handle_rtcp(packet)

        async def _handle_rtp_packet(packet: Any, arrival_time_ms: int) -> None:
            pair = self.latest.get(packet.ssrc)
            if pair is not None:
                # What a browser does for lip sync: the packet's capture time on the
                # sender's NTP clock, from the latest report's NTP/RTP pair.
                ntp, rtp = pair
                ticks = ((packet.timestamp - rtp + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
                captured = (ntp >> 32) + (ntp & 0xFFFFFFFF) / 2**32 + ticks / clock
                self.errors.append((kind, time.time() + NTP_EPOCH_OFFSET - captured))
            await handle_rtp(packet, arrival_time_ms)

        receiver._handle_rtcp_packet = _handle_rtcp_packet
        receiver._handle_rtp_packet = _handle_rtp_packet

    async def collect(self, reports: int) -> None:
        """Wait for ``reports`` sender reports, then time packets against the last one."""
        self.wanted = reports
        try:
            async with asyncio.timeout(15):
                await self.enough.wait()
        except TimeoutError:
            raise AssertionError(f"{self.reports} sender reports received") from None
        await asyncio.sleep(0.5)

    def worst(self, kind: str) -> tuple[int, float]:
        errors = [abs(e) for k, e in self.errors if k == kind]
        return len(errors), max(errors, default=float("inf"))


async def test_sender_reports_map_the_publishers_clock_into_each_receivers_stream(
        session: CallSession) -> None:  # noqa: F811
    """Each forwarded sender report keeps the publisher's NTP time and carries the RTP
    timestamp of that instant in the receiver's (rewritten) timestamp space, also after the
    publisher rejoins with new timestamps: packets then map to the time they were sent.
    Outgoing timestamps start at a random offset, so a report passed through unchanged
    would be off by hours."""
    shopper, staff = await session.one_to_one(frames=5)
    publisher, receiver = SenderReportProbe(shopper), SenderReportProbe(staff)
    await receiver.collect(reports=4)
    for kind in ("audio", "video"):
        checked, worst = receiver.worst(kind)
        assert checked >= 20 and worst < 0.25, (kind, checked, worst)
    assert receiver.latest and all(ntp in publisher.sent_ntp
                                   for ntp, _ in receiver.latest.values())

    await shopper.close()  # comes back with new SSRCs and timestamps on the same streams
    back = MediaPeer("shopper-again", GREEN)
    await session.join("shopper:s1", back)
    rejoined, receiver = SenderReportProbe(back), SenderReportProbe(staff)
    await receiver.collect(reports=4)
    for kind in ("audio", "video"):
        checked, worst = receiver.worst(kind)
        assert checked >= 20 and worst < 0.25, (kind, checked, worst)
    assert all(ntp in rejoined.sent_ntp for ntp, _ in receiver.latest.values())


RTCP_PSFB_FIR = 4


def video_transceiver(peer: MediaPeer) -> Any:
    return next(t for t in peer.pc.getTransceivers() if t.kind == "video")


def scrape(call: CallSession) -> dict[str, float]:
    """The SFU's Prometheus counters, as a scrape would read them."""
    return {m.name: m.samples[0].value for m in SfuCollector(call.backend).collect()
            if m.samples}


class PublisherProbe:
    """What the server's RTCP does at the publisher: the PLIs its video sender receives,
    and the receiver report blocks about its streams."""

    def __init__(self, peer: MediaPeer) -> None:
        self.plis: list[float] = []
        self.blocks: list[Any] = []
        for transceiver in peer.pc.getTransceivers():
            self._hook(transceiver.sender)

    def _hook(self, sender: Any) -> None:
        handle = sender._handle_rtcp_packet

        async def _handle_rtcp_packet(packet: Any) -> None:
            if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_PLI \
                    and packet.media_ssrc == sender._ssrc:
                self.plis.append(time.monotonic())
            elif isinstance(packet, RtcpRrPacket):
                self.blocks += [r for r in packet.reports if r.ssrc == sender._ssrc]
            await handle(packet)
        sender._handle_rtcp_packet = _handle_rtcp_packet


async def test_receivers_pli_and_fir_reach_the_publisher_at_most_every_500ms(
        session: CallSession) -> None:  # noqa: F811
    shopper, staff = await session.one_to_one(frames=5)
    publisher = PublisherProbe(shopper)
    receiver = video_transceiver(staff).receiver
    rtcp_ssrc = receiver._RTCRtpReceiver__rtcp_ssrc
    stream = next(s.ssrc for s in await staff.inbound_stats() if s.kind == "video")
    await asyncio.sleep(1.0)  # past the join's request
    assert publisher.plis == []
    requests_before = scrape(session)["shopcall_sfu_keyframe_requests_sent"]

    # A burst of PLIs (a browser's decoder in trouble): one request reaches the publisher.
    for _ in range(5):
        await receiver._send_rtcp(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=rtcp_ssrc,
                                                 media_ssrc=stream))
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    assert len(publisher.plis) == 1

    # FIR names its stream in the FCI (media SSRC 0): after the 500 ms, it gets through.
    await asyncio.sleep(max(0.0, publisher.plis[0] + 0.55 - time.monotonic()))
    await receiver._send_rtcp(RtcpPsfbPacket(fmt=RTCP_PSFB_FIR, ssrc=rtcp_ssrc, media_ssrc=0,
                                             fci=stream.to_bytes(4, "big") + bytes(4)))
    await asyncio.sleep(0.3)
    assert len(publisher.plis) == 2
    assert publisher.plis[1] - publisher.plis[0] >= 0.5
    router = session.router()
    assert router.participants["staff:alice"].consumers[("shopper:s1", "video")].plis == 6
    scraped = scrape(session)
    assert scraped["shopcall_sfu_plis_received"] == 6
    assert scraped["shopcall_sfu_keyframe_requests_sent"] == requests_before + 2


async def test_publisher_gets_receiver_reports_with_its_round_trip_time(
        session: CallSession) -> None:  # noqa: F811
    """The server reports to each publisher once a second, as the receiver of its streams:
    loss, jitter, and LSR/DLSR from which the publisher computes its RTT to the server."""
    shopper, _ = await session.one_to_one(frames=5)
    publisher = PublisherProbe(shopper)
    await asyncio.sleep(3.5)
    ssrcs = {t.sender._ssrc for t in shopper.pc.getTransceivers()}
    assert {b.ssrc for b in publisher.blocks} == ssrcs, "a block for the audio and the video"
    assert all(b.packets_lost == 0 and b.fraction_lost == 0 for b in publisher.blocks)
    assert all(b.jitter < 90000 * 0.03 for b in publisher.blocks), publisher.blocks
    for transceiver in shopper.pc.getTransceivers():
        stats = [s for s in (await transceiver.sender.getStats()).values()
                 if s.type == "remote-inbound-rtp"]
        # aiortc takes an RTT only from a block whose LSR is its latest sender report; on
        # loopback it is a few ms, and a wrong DLSR would add up to the report interval.
        assert stats and stats[0].roundTripTime is not None, transceiver.kind
        assert 0 <= stats[0].roundTripTime < 0.05, stats[0]


async def test_repeated_nacks_resend_each_packet_once_per_round_trip(
        session: CallSession) -> None:  # noqa: F811
    """A receiver repeats its NACKs until the packets arrive; five copies of one NACK in
    one compound packet are answered once. A round trip later, the same NACK is answered
    again (the resent packets may have been lost too)."""
    _, staff = await session.one_to_one(frames=10)
    consumer = session.router().participants["staff:alice"].consumers[("shopper:s1", "video")]
    receiver = video_transceiver(staff).receiver
    rtcp_ssrc = receiver._RTCRtpReceiver__rtcp_ssrc or 1
    lost = [(consumer.last_out_seq - k) & 0xFFFF for k in range(10, 0, -1)]
    nack = bytes(RtcpRtpfbPacket(fmt=1, ssrc=rtcp_ssrc, media_ssrc=consumer.ssrc, lost=lost))
    before = consumer.retransmissions
    await receiver.transport._send_rtp(nack * 5)
    await asyncio.sleep(0.15)
    assert consumer.nacks >= 5
    assert consumer.retransmissions - before == 10 and consumer.resends_skipped == 40
    await receiver.transport._send_rtp(nack)
    await asyncio.sleep(0.1)
    assert consumer.retransmissions - before == 20
