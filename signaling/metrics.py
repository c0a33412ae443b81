"""Prometheus metrics of the signalling server.

Each application gets its own registry, so several servers in one process (tests) do not
collide and /metrics shows exactly one server's figures.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

ANY_STORE = "any"


class SignalingMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # CPU seconds and resident memory of the server process: what load tests read.
        ProcessCollector(registry=r)
        self.conversations_opened = Counter(
            "shopcall_conversations_opened_total", "Conversations opened by shoppers.",
            ["store", "channel"], registry=r)
        self.conversations_missed = Counter(
            "shopcall_conversations_missed_total",
            "Queued conversations nobody took in time.", ["store", "channel"], registry=r)
        self.conversations_closed = Counter(
            "shopcall_conversations_closed_total", "Conversations closed.",
            ["store", "channel"], registry=r)
        self.queue_wait = Histogram(
            "shopcall_queue_wait_seconds", "Time from opening to a staff member accepting.",
            ["store"], buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600), registry=r)
        self.queue_length = Gauge(
            "shopcall_queue_length", "Conversations waiting for a staff member.", registry=r)
        self.staff_online = Gauge(
            "shopcall_staff_online", "Staff members online (routable) by store.", ["store"],
            registry=r)
        self.ws_connections = Gauge(
            "shopcall_websocket_connections", "Open signalling WebSocket connections.",
            ["role"], registry=r)
        self.message_latency = Histogram(
            "shopcall_message_handling_seconds",
            "Time to handle one inbound signalling message, storage included.", ["type"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=r)
        self.protocol_errors = Counter(
            "shopcall_protocol_errors_total", "Error replies sent, by error code.", ["code"],
            registry=r)
        self.calls_started = Counter(
            "shopcall_calls_started_total", "Audio and video calls started.", ["kind"],
            registry=r)
