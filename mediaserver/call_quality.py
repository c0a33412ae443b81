"""Per-call media quality totals, for the business reports (issue 7) when a call ends.

Nothing here runs per packet. The backend's feedback work (every 50 ms while media flows,
run on a packet arrival, see feedback_clock; once a second with reports) calls
`CallQualityMonitor.sample`, which reads counters consumers and producers
already keep (`last_out_at`, `packets`, `rr_fraction_lost`, `rtt_s`, the publisher's
`ReceiveStats`). A 50 ms sampling step is ten times finer than the freeze threshold, so a
freeze is never missed; its measured length is off by at most one step.

Definitions:

- Freeze: a gap of more than FREEZE_GAP_S in the video forwarded to one receiver while that
  receiver's video was not paused (audio-only fallback is counted separately) and its
  publisher was sending (a camera turned off is not a freeze). Video the receiver never
  started getting is not a freeze: startup is measured elsewhere.
- Uplink loss: per publisher video stream, packets lost after the server's retransmission
  requests (RFC 3550 cumulative lost / expected); the call's worst stream.
- Downlink loss: per receiver video stream, the loss its RTCP receiver reports give, weighted
  by the packets forwarded in each one-second interval; the call's worst stream.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from signaling.media import CallQuality

if TYPE_CHECKING:
    from .consumer import Consumer
    from .participant import Participant
    from .producer import Producer

__all__ = ["FREEZE_GAP_S", "CallQualityMonitor", "FreezeDetector"]

FREEZE_GAP_S = 0.5


class FreezeDetector:
    """Freezes of one forwarded video stream, from periodic looks at when it last moved.

    Pure state machine: `observe(now, last_out_at, eligible)` with numbers only, so the
    definition can be tested without any media.
    """

    __slots__ = ("_eligible_since", "_frozen_from", "freezes", "frozen_s")

    def __init__(self) -> None:
        self.freezes = 0
        self.frozen_s = 0.0
        self._eligible_since: float | None = None
        self._frozen_from: float | None = None

    def observe(self, now: float, last_out_at: float, eligible: bool) -> None:
        """`last_out_at`: when the stream last forwarded a packet (0: never);
        `eligible`: not paused and the publisher is sending right now."""
        if not eligible or last_out_at <= 0:
            self._end(now if self._frozen_from is not None else 0.0)
            self._eligible_since = None if not eligible else now
            return
        if self._eligible_since is None:
            self._eligible_since = now
        # A stream that just became eligible (resumed, publisher back) gets a full gap's
        # grace from that moment, not from its last packet before the pause.
        moved_at = max(last_out_at, self._eligible_since)
        if now - moved_at > FREEZE_GAP_S:
            if self._frozen_from is None:
                self._frozen_from = moved_at
                self.freezes += 1
        elif self._frozen_from is not None:
            self._end(last_out_at)

    def _end(self, at: float) -> None:
        if self._frozen_from is not None:
            self.frozen_s += max(0.0, at - self._frozen_from)
            self._frozen_from = None

    def total_frozen_s(self, now: float) -> float:
        """Frozen time so far, counting a freeze still under way up to `now`."""
        running = 0.0 if self._frozen_from is None else max(0.0, now - self._frozen_from)
        return self.frozen_s + running


@dataclass(slots=True)
class _Stream:
    """One forwarded stream (receiver, source, kind) across consumer objects and rejoins."""

    kind: str
    consumer: Consumer | None = None
    producer: Producer | None = None
    packets_before: int = 0  # packets of earlier consumer objects of this stream
    packets_mark: int = 0  # for the per-second loss weighting
    lost_weighted: float = 0.0
    weighted_packets: int = 0
    freeze: FreezeDetector | None = None

    def packets(self) -> int:
        return self.packets_before + (self.consumer.packets if self.consumer else 0)


class CallQualityMonitor:
    """Watches one media session's streams and sums them up when the call ends."""

    def __init__(self, started_at: float) -> None:
        self.started_at = started_at
        self._last_sample = started_at
        self._streams: dict[tuple[str, str, str], _Stream] = {}
        self._uplink: dict[tuple[str, int], tuple[int, int]] = {}  # (expected, lost)
        self._audio_only_s = 0.0
        self._max_rtt_s: float | None = None
        self._last_at = started_at
        self._connected: set[str] = set()

    @property
    def measured(self) -> bool:
        """Whether any participant's media ever connected: a call in which nobody connected
        (a chat-only client, a negotiation that never finished) has no quality to report."""
        return bool(self._connected)

    def sample(self, participants: Iterable[Participant], now: float, reports: bool) -> None:
        """Look at every stream once; `reports` on the once-a-second tick (loss, RTT)."""
        step = max(0.0, now - self._last_sample)
        self._last_sample = now
        self._last_at = now
        for receiver in participants:
            if receiver.closed:
                continue
            if receiver.peer.connected:
                self._connected.add(receiver.id)
            if receiver.video_paused and receiver.peer.connected:
                self._audio_only_s += step
            for (source_id, kind), consumer in receiver.consumers.items():
                # Audio has no freezes: its counters only need the once-a-second look.
                if reports or kind == "video":
                    self._sample_stream(receiver.id, source_id, kind, consumer, now, reports)
            if reports:
                for producer in receiver.producers.values():
                    if producer.kind == "video" and producer.stats.expected > 0:
                        self._uplink[(receiver.id, producer.ssrc)] = (
                            producer.stats.expected, max(0, producer.stats.cumulative_lost))

    def _sample_stream(self, receiver_id: str, source_id: str, kind: str, consumer: Consumer,
                       now: float, reports: bool) -> None:
        key = (receiver_id, source_id, kind)
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _Stream(kind, freeze=FreezeDetector()
                                                  if kind == "video" else None)
        if stream.consumer is not consumer:  # a rejoin made a new consumer object
            stream.packets_before += stream.consumer.packets if stream.consumer else 0
            stream.consumer = consumer
            stream.packets_mark = 0
        producer = consumer.producer
        if stream.freeze is not None:
            sending = producer is not None and producer.packets > 0 and \
                now - producer.last_packet_at <= FREEZE_GAP_S
            if producer is not stream.producer:
                stream.freeze.observe(now, 0.0, False)  # a new publisher stream: fresh start
            stream.freeze.observe(now, consumer.last_out_at, sending and not consumer.paused)
        stream.producer = producer
        if not reports:
            return
        if consumer.rtt_s > 0:
            self._max_rtt_s = max(self._max_rtt_s or 0.0, consumer.rtt_s)
        if kind == "video":
            sent = consumer.packets - stream.packets_mark
            stream.packets_mark = consumer.packets
            if sent > 0 and not consumer.paused:
                stream.lost_weighted += sent * consumer.rr_fraction_lost / 256.0
                stream.weighted_packets += sent

    def summary(self, fallbacks: int) -> CallQuality:
        """The totals so far; `fallbacks` is the router's audio-only switch count."""
        now = self._last_at
        video = [s for s in self._streams.values() if s.kind == "video"]
        freezes = sum(s.freeze.freezes for s in video if s.freeze)
        frozen = sum(s.freeze.total_frozen_s(now) for s in video if s.freeze)
        downlink = [s.lost_weighted / s.weighted_packets for s in video if s.weighted_packets]
        uplink = [lost / expected for expected, lost in self._uplink.values()]
        worst_down = max(downlink) if downlink else None
        worst_up = max(uplink) if uplink else None
        both = [x for x in (worst_down, worst_up) if x is not None]
        return CallQuality(
            measured_s=round(max(0.0, now - self.started_at), 3),
            video_freezes=freezes,
            freeze_s=round(frozen, 3),
            audio_only_fallbacks=fallbacks,
            audio_only_s=round(self._audio_only_s, 3),
            loss_fraction=max(both) if both else None,
            uplink_loss_fraction=worst_up,
            downlink_loss_fraction=worst_down,
            max_rtt_ms=None if self._max_rtt_s is None else round(self._max_rtt_s * 1000, 1),
            video_packets_forwarded=sum(s.packets() for s in video),
            audio_packets_forwarded=sum(s.packets() for s in self._streams.values()
                                        if s.kind == "audio"),
        )
