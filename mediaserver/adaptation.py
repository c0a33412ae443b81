"""Bandwidth adaptation of one media session: which layers of which streams each receiver
gets, when its video pauses and resumes, what each publisher is capped at, what both sides
are told.

Two paths, chosen per receiver (receiver_bandwidth.py). A receiver sending transport-wide
feedback is re-decided ten times a second from our own estimate of its downlink: streams are
thinned by temporal layer, lower priority first, paused one by one only when even their base
layer does not fit, and probed back up. Any other receiver keeps the once-a-second REMB-and-
loss path (bandwidth.py): temporal layers by its estimate, all video paused below the floor.

Publishers are capped (REMB) once a second at what their receivers can use: the best
receiver of a layered stream sets it (the others get fewer layers instead of pulling it
down), the tightest one of a stream without layers, both within the store's share.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .bandwidth import (
    app_limited,
    congested,
    layered_publisher_cap,
    pick_temporal_layer,
    publisher_cap,
)
from .bwe.allocator import StreamDemand
from .bwe.downlink import Decision

if TYPE_CHECKING:
    from .consumer import Consumer
    from .participant import Participant
    from .producer import Producer
    from .router import Router

AUDIO_BPS = 48_000  # Opus as browsers send it (32 kbit/s) with its headers, 50 packets/s
DECIDE_EVERY_S = 0.1
LAYER_SILENT_S = 1.0  # a simulcast encoding silent this long is off (its sender's choice)
PEAK_DECAY = 0.85  # per second: a layer's price falls back slowly after a busy second
VIDEO_OVERHEAD = 1.05  # headers, on the link, of full-size video packets
PRIORITY_SHOPPER = 2


class Adaptation:
    def __init__(self, router: Router) -> None:
        self.router = router
        self._measured_at = 0.0
        self._decided_at: dict[str, float] = {}
        # Per video consumer, during a decision: its (encoding, temporal layer, bitrate)s.
        self._options: dict[Consumer, list[tuple[Producer, int, float]]] = {}

    # Measurements (once a second) ---------------------------------------------------------
    def measure(self, live: list[Participant], now: float) -> None:
        elapsed = max(now - self._measured_at, 1e-3) if self._measured_at else None
        self._measured_at = now
        for participant in live:
            for consumer in participant.consumers.values():
                if elapsed is not None:
                    consumer.bitrate_bps = (consumer.octets - consumer.octets_mark) * 8 / elapsed
                consumer.octets_mark = consumer.octets
            for producer in participant.producers.values():
                if elapsed is not None:
                    producer.bitrate_bps = (producer.octets - producer.octets_mark) * 8 / elapsed
                producer.octets_mark = producer.octets
                if producer.layered:
                    octets = producer.layer_octets
                    if elapsed is not None:
                        producer.layer_bps[:] = [o * 8 / elapsed for o in octets]
                        producer.layer_peak[:] = [max(now_bps, old * PEAK_DECAY) for now_bps, old
                                                  in zip(producer.layer_bps,
                                                         producer.layer_peak, strict=True)]
                    octets[:] = [0, 0, 0, 0]

    # Every tick (50 ms): receivers on transport-cc ----------------------------------------
    def tick(self, now: float, reports: bool) -> None:
        router = self.router
        live = [p for p in router.participants.values() if p.peer.connected and not p.closed]
        if reports:
            self.measure(live, now)
        share = router.store_share(router.spec.store_id)
        for receiver in live:
            bandwidth = receiver.bandwidth
            if bandwidth.transport_cc(now):
                if now - self._decided_at.get(receiver.id, 0.0) >= DECIDE_EVERY_S:
                    self._decided_at[receiver.id] = now
                    cap = share.downlink_bps if receiver.id.startswith("staff:") else None
                    self._decide(receiver, now, cap)
            elif reports:
                self._remb_path(receiver, now, share.downlink_bps)
        if reports:
            self._cap_publishers(live, share.uplink_bps, now)
            if router.tryon is not None:  # try-on encoders follow their receivers
                router.tryon.adapt(live, AUDIO_BPS)

    def _demands(self, receiver: Participant, now: float) -> list[StreamDemand]:
        demands = []
        self._options.clear()
        for (source_id, kind), consumer in receiver.consumers.items():
            producer = consumer.producer
            if producer is None:
                continue
            if kind != "video":
                demands.append(StreamDemand(consumer, kind,
                                            [max(producer.bitrate_bps, AUDIO_BPS)]))
                continue
            options = self._video_options(producer, now)
            self._options[consumer] = options
            rates = [rate for _, _, rate in options]
            target = consumer.switching or producer
            tid = consumer.layers.max_tid if consumer.layers is not None else 2
            current = -1 if consumer.paused and not consumer.holding else next(
                (i for i, (p, t, _) in enumerate(options) if p is target and t >= tid),
                len(options) - 1)
            demands.append(StreamDemand(consumer, "video", rates,
                                        self._priority(receiver, source_id), current))
        return demands

    def _video_options(self, producer: Producer, now: float) -> list[tuple[Producer, int, float]]:
        """What a receiver of this camera can be given, from the least to the most: each
        temporal layer of each simulcast encoding (lowest resolution first) that is sending
        now, with its bitrate (made non-decreasing, so 'more' never costs less)."""
        source = self.router.participants.get(producer.participant_id)
        group = [producer]
        if source is not None and producer.rid is not None:
            # Only encodings sending now: a browser turns its top ones off when its own
            # uplink shrinks, and a receiver left on one would freeze.
            group = [p for p in sorted(source.producers.values(), key=lambda p: p.spatial)
                     if p.kind == "video" and p.rid is not None
                     and now - p.last_packet_at < LAYER_SILENT_S] or [producer]
        options: list[tuple[Producer, int, float]] = []
        floor = 0.0
        for p in group:
            rates = p.layer_rates(peak=True) if p.layered else [p.bitrate_bps]
            for tid, rate in enumerate(rates):
                floor = max(floor, rate * VIDEO_OVERHEAD)
                options.append((p, tid if p.layered else 2, floor))
        return options

    def _priority(self, receiver: Participant, source_id: str) -> int:
        """Who matters most on this receiver's screen: the shopper for staff; for the
        shopper, whoever joined first (the staff member who took the call)."""
        if source_id.startswith("shopper:"):
            return PRIORITY_SHOPPER
        order = list(self.router.participants)
        return -order.index(source_id) if source_id in order else -len(order)

    def _decide(self, receiver: Participant, now: float, cap_bps: float | None) -> None:
        demands = self._demands(receiver, now)
        decision: Decision = receiver.bandwidth.downlink.update(now, demands, cap_bps)
        receiver.available_bps = receiver.bandwidth.downlink.available_bps(cap_bps)
        layers = decision.allocation.layers
        for demand in demands:
            if demand.kind != "video":
                continue
            consumer: Consumer = demand.key  # type: ignore[assignment]
            self._apply(receiver, consumer, layers.get(consumer, -1),
                        self._options.get(consumer, []), now)
        if decision.paused_changed is not None:
            self._tell_paused(receiver, paused=decision.paused_changed, reason="weak connection")
        if decision.probe is not None:
            carrier = next((c for c in receiver.consumers.values() if c.kind == "video"
                            and c.rtx_payload_type is not None and c.producer is not None),
                           None)
            receiver.bandwidth.start_probe(decision.probe, decision.allocation.used_bps,
                                           carrier, receiver.peer.send_rtp)

    def _apply(self, receiver: Participant, consumer: Consumer, layer: int,
               options: list[tuple[Producer, int, float]], now: float) -> None:
        if layer < 0 or not options:
            if layer < 0 and not consumer.paused:
                consumer.pause()
                self._tell_layer(receiver, consumer, paused=True)
            return
        target, tid, _ = options[min(layer, len(options) - 1)]
        if consumer.paused and not consumer.holding:
            consumer.resume(now)
        current = consumer.producer
        if target is not current:
            # At the target's next keyframe; going down, the current one stops now.
            consumer.switch_to(target, now, hold=current is not None
                               and target.spatial < current.spatial)
        elif consumer.switching is not None:
            consumer.cancel_switch()
        if target.layered:
            consumer.set_max_layer(min(tid, 2))
        self._tell_layer(receiver, consumer, paused=False)

    # Once a second: receivers on REMB -----------------------------------------------------
    def _remb_path(self, receiver: Participant, now: float, downlink_bps: float | None) -> None:
        bandwidth = receiver.bandwidth
        loss = receiver.worst_video_loss()
        sent = sum(c.bitrate_bps for c in receiver.consumers.values())
        bandwidth.remb.on_loss(loss, delivered_bps=sent * (1.0 - loss))
        available = bandwidth.remb.bps
        if receiver.id.startswith("staff:") and downlink_bps is not None:
            available = min(available, downlink_bps)
        receiver.available_bps = available
        # A store's configured downlink is a real limit; a REMB that only mirrors how
        # little we send is not (see bandwidth.app_limited).
        store_bound = available < bandwidth.remb.bps
        remb = bandwidth.remb.remb_bps
        change = bandwidth.gate.update(
            available - AUDIO_BPS, now,
            app_limited=not store_bound and app_limited(remb, sent, loss),
            congested=store_bound or congested(remb, sent, loss))
        if change is not None:
            for consumer in receiver.consumers.values():
                if consumer.kind != "video":
                    continue
                if change:
                    consumer.pause()
                else:
                    consumer.resume(now)  # at a keyframe, without a sequence gap
            self._tell_paused(receiver, paused=change, reason="low bandwidth")
        if gate_paused := bandwidth.gate.paused:
            return
        for consumer in receiver.consumers.values():
            producer = consumer.producer
            if producer is not None and producer.rid is not None \
                    and now - producer.last_packet_at >= LAYER_SILENT_S:
                # Its simulcast encoding stopped (the sender's uplink): the best one left.
                active = self._video_options(producer, now)
                if active and active[-1][0] is not producer:
                    consumer.switch_to(active[-1][0], now)
            if producer is None or not producer.layered or gate_paused:
                continue
            layers = consumer.layers
            if layers is not None and layers.current_tid < layers.max_tid:
                # An up-switch still waits for a switch point since the last second:
                # a keyframe is one (want_keyframe throttles it per publisher).
                producer.want_keyframe(now)
            current = 2 if layers is None else layers.max_tid
            consumer.set_max_layer(pick_temporal_layer(
                producer.layer_rates(), available - AUDIO_BPS, current))
            self._tell_layer(receiver, consumer, paused=False)

    # Publishers (once a second) -----------------------------------------------------------
    def _cap_publishers(self, live: list[Participant], uplink_bps: float | None,
                        now: float) -> None:
        for publisher in live:
            video = [p for p in publisher.producers.values() if p.kind == "video"]
            if not video:
                continue
            allocated, estimated = self._budgets(live, publisher, video, now)
            budgets = allocated + estimated
            share = None if uplink_bps is None or not publisher.id.startswith("staff:") \
                else uplink_bps - AUDIO_BPS
            layered = next((p for p in video if p.layered), None)
            if layered is not None:
                # Receivers on the allocator already got their layers within their budget;
                # for the others, the tightest must still fit the base layer.
                rates = layered.layer_rates()
                cap = layered_publisher_cap(budgets, audio_bps=0.0, share_bps=share,
                                            base_layer_share=0.0)
                if cap is not None and estimated and rates[-1] > 0:
                    cap = min(cap, max(min(estimated) * rates[-1] / max(rates[0], 1.0),
                                       min(estimated)))
            else:
                cap = publisher_cap(budgets, audio_bps=0.0, share_bps=share)
            if cap is None:
                continue
            publisher.send_remb(cap, [p.ssrc for p in video])
            for producer in video:
                self.router.caps[producer.ssrc] = cap

    def _budgets(self, live: list[Participant], publisher: Participant,
                 video: list[Producer], now: float) -> tuple[list[float], list[float]]:
        """What each receiver of this publisher's video can give it, after audio: from the
        allocation (transport-cc receivers), from the estimate (REMB ones)."""
        allocated: list[float] = []
        estimated: list[float] = []
        for receiver in live:
            if receiver is publisher:
                continue
            consumers = [c for c in receiver.consumers.values() if c.producer in video]
            if not consumers:
                continue
            bandwidth = receiver.bandwidth
            if bandwidth.transport_cc(now):
                allocation = bandwidth.downlink.allocation
                if allocation is None:
                    continue
                allocated += [allocation.budgets.get(c, 0.0) for c in consumers
                              if allocation.layers.get(c, -1) >= 0]
            elif not bandwidth.gate.paused:
                estimated.append(receiver.available_bps - AUDIO_BPS)
        return allocated, estimated

    # What people are told -----------------------------------------------------------------
    def _tell_paused(self, receiver: Participant, *, paused: bool, reason: str) -> None:
        """All of a receiver's video paused (or back): both sides say why."""
        router = self.router
        code = "video_paused" if paused else "video_resumed"
        text = f"video paused: {reason}" if paused else "video resumed"
        for (source_id, kind) in receiver.consumers:
            if kind == "video":
                router.notify(source_id, {"type": "media.notice", "code": code,
                                          "message": text, "peer": receiver.id,
                                          "direction": "sending"})
        router.notify(receiver.id, {"type": "media.notice", "code": code, "message": text,
                                    "direction": "receiving"})
        router.fallbacks += paused

    def _tell_layer(self, receiver: Participant, consumer: Consumer, *, paused: bool) -> None:
        """A receiver's tile of one source: its frame rate (temporal layers) or paused."""
        forwarded = None if paused else consumer.forwarded_layer
        if forwarded == 2:
            forwarded = None  # all of them again: what the receiver shows as normal
        state = ("paused", None) if paused else ("live", forwarded)
        if state == (consumer.notified_layer or ("live", None)):
            return
        consumer.notified_layer = state
        self.router.notify(receiver.id, {"type": "media.layer", "from": consumer.source_id,
                                         "kind": "video", "layer": forwarded, "layers": 3,
                                         "paused": paused})
