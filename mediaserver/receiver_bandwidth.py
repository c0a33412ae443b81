"""One receiving participant's downlink: how it is estimated and how it is probed.

A receiver that negotiated transport-cc and sends its feedback is estimated on our side
(bwe/downlink.py): we see every packet's arrival, and probe with padding when it could take
more. One that sends none (an older client, an aiortc peer) keeps the REMB-and-loss estimate
of bandwidth.py. The router asks `transport_cc` which one applies; a receiver whose
feedback stops falls back to REMB after FEEDBACK_FRESH_S.

Probe padding: RTP packets with no payload and 255 bytes of padding on the RTX stream of one
of the receiver's video streams (browsers count them for feedback and drop them; a padding
packet on a media stream would need a sequence number of that stream), paced every 10 ms
for the probe's half second: a timer per probe, never per packet of media.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .bandwidth import BandwidthEstimate, VideoGate
from .bwe.downlink import DownlinkController
from .bwe.prober import ProbeCluster
from .bwe.send_history import FeedbackAdapter
from .bwe.twcc import Feedback

if TYPE_CHECKING:
    from .consumer import Consumer

FEEDBACK_FRESH_S = 2.0
PAD_INTERVAL_S = 0.01
PADDING = 255
_PAD = bytes(PADDING - 1) + bytes((PADDING,))


def padding_packet(consumer: Consumer) -> bytes | None:
    """A padding-only packet on the consumer's RTX stream (None without RTX)."""
    pt = consumer.rtx_payload_type
    if pt is None or not consumer.rtx_ssrc:
        return None
    consumer.rtx_seq = seq = (consumer.rtx_seq + 1) & 0xFFFF
    ts = consumer.last_out_ts & 0xFFFFFFFF
    return (bytes((0xA0, pt, seq >> 8, seq & 0xFF)) + ts.to_bytes(4, "big")
            + (consumer.rtx_ssrc & 0xFFFFFFFF).to_bytes(4, "big") + _PAD)


class ReceiverBandwidth:
    """Estimates and probing state of one receiving participant."""

    __slots__ = ("_feedback", "_probe_handle", "downlink", "feedbacks", "gate",
                 "last_feedback_at", "padding_sent", "remb")

    def __init__(self, floor_bps: float, history: object) -> None:
        self.remb = BandwidthEstimate()  # REMB and receiver-report loss
        self.gate = VideoGate(floor_bps)  # the audio-only fallback on that path
        self.downlink = DownlinkController(floor_bps)
        self._feedback = FeedbackAdapter(history)  # type: ignore[arg-type]
        self.last_feedback_at = -1e9
        self.feedbacks = 0
        self.padding_sent = 0
        self._probe_handle: asyncio.TimerHandle | None = None

    def transport_cc(self, now: float) -> bool:
        """Whether this receiver is estimated from its transport-wide feedback now."""
        return now - self.last_feedback_at < FEEDBACK_FRESH_S

    def on_feedback(self, feedback: Feedback, now: float) -> None:
        results = self._feedback.results(feedback)
        self.last_feedback_at = now
        self.feedbacks += 1
        if results:
            self.downlink.on_feedback(results, now)

    @property
    def video_paused(self) -> bool:
        return self.downlink.video_paused if self.transport_cc(time.monotonic()) \
            else self.gate.paused

    def start_probe(self, cluster: ProbeCluster, media_bps: float,
                    carrier: Consumer | None, send: Callable[[bytes], None]) -> None:
        """Send padding on top of `media_bps` for the probe's duration."""
        self.stop_probe()
        if carrier is None:
            return  # nothing to carry padding: the probe is judged on media alone
        loop = asyncio.get_running_loop()
        credit = 0.0

        def pace() -> None:
            nonlocal credit
            now = time.monotonic()
            rate = self.downlink.padding_bps(now, media_bps)
            overused = self.downlink.estimator.last_overuse_s >= cluster.start_s
            if rate <= 0 or now >= cluster.end_s or overused:
                # Queues growing: the probe has its answer; more padding only adds delay.
                self._probe_handle = None
                return
            credit += rate * PAD_INTERVAL_S / 8
            while credit >= PADDING + 12:
                packet = padding_packet(carrier)
                if packet is None:
                    break
                send(packet)
                self.padding_sent += 1
                credit -= len(packet)
            self._probe_handle = loop.call_later(PAD_INTERVAL_S, pace)

        pace()

    def stop_probe(self) -> None:
        if self._probe_handle is not None:
            self._probe_handle.cancel()
            self._probe_handle = None

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {"transport_cc": self.transport_cc(time.monotonic()),
                                  "feedbacks": self.feedbacks,
                                  "padding_packets": self.padding_sent}
        out.update(self.downlink.describe())
        return out
