"""SfuBackend: the selective forwarding unit behind signalling's MediaBackend interface."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from signaling.media import (
    CallQuality,
    ConnectionReport,
    IceCandidate,
    MediaNegotiationError,
    MediaSessionSpec,
    MediaUnavailable,
    Notify,
    TryOnUnavailable,
    UnknownGarment,
)

from .aiortc_adapter import use_host_addresses
from .bandwidth import StoreBudget, session_share
from .call_quality import CallQualityMonitor
from .connectivity import ClientView, ConnectionOutcomes
from .feedback_clock import FeedbackClock
from .metrics import SfuCollector, Totals, participant_totals
from .participant import NegotiationError
from .router import Router

if TYPE_CHECKING:
    from .tryon.service import TryOnService

log = logging.getLogger(__name__)

FEEDBACK_INTERVAL_S = 0.05  # NACKs to publishers, keyframe requests again, freeze sampling
REPORT_INTERVAL_S = 1.0  # receiver reports to publishers, bandwidth adaptation


class SfuBackend:
    def __init__(self, *, host_addresses: Sequence[str] = (),
                 public_addresses: Sequence[str] = (), video_floor_kbps: float = 100,
                 store_budget: Callable[[str], StoreBudget] | None = None,
                 tryon: TryOnService | None = None) -> None:
        self.tryon = tryon  # None: no virtual try-on, every stream is only forwarded
        self.connections = ConnectionOutcomes()  # attempts by outcome, for /metrics
        self.video_floor_bps = video_floor_kbps * 1000
        self.store_budget = store_budget or (lambda _store: StoreBudget())
        use_host_addresses(host_addresses or None)
        self.public_addresses = list(public_addresses)
        self.routers: dict[str, Router] = {}
        self.quality: dict[str, CallQualityMonitor] = {}  # by session id, for the reports
        self._notify: Notify = lambda _pid, _msg: None
        self._ticker: asyncio.Task[None] | None = None
        # Driven by received packets (see feedback_clock), shared by every session.
        self.clock = FeedbackClock(self._feedback, FEEDBACK_INTERVAL_S)
        self.retired = Totals()
        self.retired_fallbacks = 0
        self.collector = SfuCollector(self)

    def bind(self, notify: Notify) -> None:
        self._notify = notify

    async def start(self) -> None:
        self._ticker = asyncio.create_task(self._tick_loop(), name="sfu-ticker")

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        for session_id in list(self.routers):
            await self.close_session(session_id)
        if self.tryon is not None:
            self.tryon.close()

    async def _tick_loop(self) -> None:
        """Once a second: reports and adaptation, and the 50 ms work when no media flows."""
        while True:
            await asyncio.sleep(REPORT_INTERVAL_S)
            now = time.monotonic()
            self.clock.due = now + FEEDBACK_INTERVAL_S
            self._feedback(now, reports=True)

    def _feedback(self, now: float, reports: bool = False) -> None:
        """Every session's feedback; also called from the packet path, so it never raises."""
        for router in list(self.routers.values()):
            try:
                router.tick(now, reports)
                monitor = self.quality.get(router.spec.session_id)
                if monitor is not None:
                    monitor.sample(router.participants.values(), now, reports)
            except Exception:
                log.exception("media session %s: feedback failed", router.spec.session_id)

    async def create_session(self, spec: MediaSessionSpec) -> None:
        # Through a lambda: the notify callback may be bound after sessions exist.
        self.routers[spec.session_id] = Router(
            spec, lambda pid, msg: self._notify(pid, msg),
            video_floor_bps=self.video_floor_bps, store_share=self._share,
            retire=lambda p: self.retired.add(participant_totals(p)), tryon=self.tryon,
            clock=self.clock, outcomes=self.connections,
            public_addresses=self.public_addresses)
        self.quality[spec.session_id] = CallQualityMonitor(time.monotonic())

    def _share(self, store_id: str | None) -> StoreBudget:
        """This session's share of its store's capacity: equal among the store's sessions."""
        if store_id is None:
            return StoreBudget()
        budget = self.store_budget(store_id)
        sessions = sum(1 for r in self.routers.values() if r.spec.store_id == store_id)
        return StoreBudget(session_share(budget.uplink_bps, sessions),
                           session_share(budget.downlink_bps, sessions))

    def _router(self, session_id: str) -> Router:
        router = self.routers.get(session_id)
        if router is None:
            raise MediaUnavailable(f"no media session {session_id}")
        return router

    def join_info(self, session_id: str, participant_id: str) -> dict[str, Any]:
        router = self._router(session_id)
        spec = router.spec
        info = {"session_id": session_id, "call_id": spec.call_id,
                "participant_id": participant_id, "kind": spec.kind.value,
                "media_available": True}
        if router.tryon is not None:
            # Try-on outlives a reload of the shopper's page: the picker must start from
            # what the server still draws, not from "Off".
            info["tryon"] = router.tryon.state(participant_id)
        return info

    async def offer(self, session_id: str, participant_id: str, sdp: str) -> str:
        try:
            return await self._router(session_id).offer(participant_id, sdp)
        except NegotiationError as exc:
            raise MediaNegotiationError(str(exc)) from None

    async def answer(self, session_id: str, participant_id: str, sdp: str) -> None:
        try:
            await self._router(session_id).answer(participant_id, sdp)
        except NegotiationError as exc:
            raise MediaNegotiationError(str(exc)) from None

    async def add_candidate(self, session_id: str, participant_id: str,
                            candidate: IceCandidate) -> None:
        try:
            await self._router(session_id).add_candidate(
                participant_id, candidate.candidate, candidate.sdp_mid,
                candidate.sdp_mline_index, candidate.ufrag)
        except NegotiationError as exc:
            raise MediaNegotiationError(str(exc)) from None

    def connection_report(self, session_id: str, participant_id: str,
                          report: ConnectionReport) -> None:
        router = self.routers.get(session_id)
        if router is not None:
            router.connection_report(participant_id, ClientView(
                report.state, report.candidate_type, report.protocol, report.relay_protocol,
                report.errors))

    async def add_participant(self, session_id: str, participant_id: str) -> None:
        self._router(session_id)

    async def remove_participant(self, session_id: str, participant_id: str) -> None:
        router = self.routers.get(session_id)
        if router is not None:
            await router.leave(participant_id)

    async def close_session(self, session_id: str) -> None:
        router = self.routers.pop(session_id, None)
        self.quality.pop(session_id, None)
        if router is not None:
            await router.close()
            self.retired_fallbacks += router.fallbacks

    def call_quality(self, session_id: str) -> CallQuality | None:
        router, monitor = self.routers.get(session_id), self.quality.get(session_id)
        if router is None or monitor is None or not monitor.measured:
            return None
        return monitor.summary(router.fallbacks)

    async def set_tryon(self, session_id: str, participant_id: str,
                        garment_id: str | None) -> dict[str, Any]:
        """Virtual try-on on (garment id) or off (None) for one participant's camera."""
        router = self._router(session_id)
        if router.tryon is None:
            raise TryOnUnavailable(
                "virtual try-on is not enabled on this server" if self.tryon is None else
                "virtual try-on is not offered in this store" if router.spec.kind.value ==
                "video" else "virtual try-on needs a video call")
        from .tryon.catalogue import UnknownGarmentError

        try:
            return router.tryon.set(participant_id, garment_id, router.video_mime)
        except UnknownGarmentError as exc:
            raise UnknownGarment(str(exc)) from None

    def describe(self) -> list[dict[str, Any]]:
        return [router.describe() for router in self.routers.values()]
