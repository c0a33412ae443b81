"""Prometheus view of the SFU, computed at scrape time.

The forwarding path only bumps plain integer attributes (a Counter.inc per packet would take
a lock per packet); this collector sums them when Prometheus asks. Counts of participants
that left are folded into `retired` totals first, so counters never go down.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .backend import SfuBackend
    from .participant import Participant


@dataclass(slots=True)
class Totals:
    forwarded_packets: int = 0
    forwarded_bytes: int = 0
    retransmitted_packets: int = 0
    nacks_received: int = 0
    plis_received: int = 0
    nacks_sent: int = 0
    keyframe_requests_sent: int = 0
    rembs_sent: int = 0
    received_packets: int = 0
    bad_packets: int = 0
    handler_errors: int = 0
    layer_switches: int = 0

    def add(self, other: Totals) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


def participant_totals(p: Participant) -> Totals:
    t = Totals(nacks_sent=p.nacks_sent, rembs_sent=p.rembs_sent,
               bad_packets=p.bad_packets + p.peer.bad_packets,
               handler_errors=p.peer.handler_errors)
    for c in p.consumers.values():
        t.forwarded_packets += c.packets
        t.forwarded_bytes += c.octets
        t.retransmitted_packets += c.retransmissions
        t.nacks_received += c.nacks
        t.plis_received += c.plis
        t.layer_switches += c.layer_switches
    for producer in p.producers.values():
        t.keyframe_requests_sent += producer.keyframe_requests
        t.received_packets += producer.packets
        t.bad_packets += producer.sequence.discarded
    return t


# Every series exists from the start (at 0), so dashboards and alerts see them at once.
CONNECTION_SERIES = (*(("connected", t) for t in ("host", "srflx", "prflx", "relay", "none")),
                     ("failed", "none"))

HELP = {
    "forwarded_packets": "RTP packets forwarded to receivers (retransmissions excluded).",
    "forwarded_bytes": "RTP payload bytes forwarded to receivers.",
    "retransmitted_packets": "Packets resent from history in answer to NACKs.",
    "nacks_received": "NACK messages received from receivers.",
    "plis_received": "PLI/FIR keyframe requests received from receivers.",
    "nacks_sent": "NACK messages sent to publishers for packets they lost.",
    "keyframe_requests_sent": "Keyframe requests (PLI) sent to publishers, after throttling.",
    "rembs_sent": "REMB bitrate caps sent to publishers.",
    "received_packets": "RTP packets received from publishers.",
    "bad_packets": "Undecryptable or malformed packets dropped (and wild sequence jumps).",
    "handler_errors": "Authenticated packets the server failed to handle (a bug: see the log).",
    "layer_switches": "Changes of the highest temporal layer forwarded to a receiver.",
}


class SfuCollector(Collector):
    def __init__(self, backend: SfuBackend) -> None:
        self.backend = backend

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        totals = Totals()
        totals.add(self.backend.retired)
        routers = list(self.backend.routers.values())
        participants = [p for r in routers for p in r.participants.values()]
        for p in participants:
            totals.add(participant_totals(p))
        for name, text in HELP.items():
            yield CounterMetricFamily(f"shopcall_sfu_{name}", text, value=getattr(totals, name))
        yield CounterMetricFamily(
            "shopcall_sfu_audio_only_fallbacks", "Receivers switched to audio only.",
            value=self.backend.retired_fallbacks + sum(r.fallbacks for r in routers))
        connections = CounterMetricFamily(
            "shopcall_media_connections",
            "Media connection attempts by outcome and by the candidate type that carried "
            "media (relay: through TURN; failed ones have none).",
            labels=["outcome", "candidate_type"])
        counts = self.backend.connections.counts
        for outcome, kind in CONNECTION_SERIES:
            connections.add_metric([outcome, kind], counts.get((outcome, kind), 0))
        yield connections
        yield GaugeMetricFamily("shopcall_sfu_media_sessions", "Active media sessions.",
                                value=len(routers))
        yield GaugeMetricFamily("shopcall_sfu_participants", "Connected media participants.",
                                value=sum(p.peer.connected for p in participants))
        estimate = GaugeMetricFamily(
            "shopcall_sfu_receiver_estimate_bps",
            "Estimated downlink of each receiving participant (REMB and loss).",
            labels=["session", "participant"])
        for r in routers:
            for p in r.participants.values():
                estimate.add_metric([r.spec.session_id, p.id], p.available_bps)
        yield estimate
