"""One consultation, shaped like a real one, over the real protocol; and the simulated
staff members who serve them.

Shopper: a token from ``POST /api/shopper-token``, ``hello``, ``conversation.open`` with
context (store, skill, language, page, SKU), chat while it is routed, messages both ways,
``call.propose`` (the escalation), media both ways for ``call_s``, ``call.end``,
``conversation.close`` and ``feedback.submit``. Staff: online with the right skill, they
accept the offer, answer, accept the call and publish too. A consultation may also switch
try-on on (``tryon.set``) and have a colleague try to join the call; both are optional
features of the server, so a refusal is recorded under ``feature_failures`` and the
consultation goes on.

Every step has a timeout; the first step that fails ends the consultation and names the
cause the report groups failures by (``step: error code`` or ``step: timeout``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from .media_peer import LoadPeer, MediaPeer, ice_servers
from .media_source import MediaLoop
from .plan import Options, SessionPlan, StaffSpec
from .raw_peer import MediaClock, PacketLoop, RawPeer
from .signalling import RequestFailed, SignalClient
from .stats import LogHistogram

Progress = Callable[[int, str], None]


@dataclass
class Shared:
    """What the consultations of one worker share."""

    options: Options
    http: aiohttp.ClientSession
    base_url: str
    ws_url: str
    media: MediaLoop
    staff_token: Callable[[str], str]
    progress: Progress
    # The raw media path (options.media_path == "raw"): the loop as packets and the one
    # task that sends every raw peer's media of this worker.
    packets: PacketLoop | None = None
    clock: MediaClock | None = None
    rtt: LogHistogram = field(default_factory=LogHistogram)
    latency: dict[str, LogHistogram] = field(
        default_factory=lambda: {"audio": LogHistogram(), "video": LogHistogram()})
    agents: dict[str, StaffAgent] = field(default_factory=dict)
    offered: dict[str, StaffAgent] = field(default_factory=dict)
    waiting: dict[str, asyncio.Future[StaffAgent]] = field(default_factory=dict)

    def on_offered(self, agent: StaffAgent, conversation_id: str) -> None:
        waiter = self.waiting.pop(conversation_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(agent)
        else:
            self.offered[conversation_id] = agent

    async def wait_offer(self, conversation_id: str, wait_s: float) -> StaffAgent:
        agent = self.offered.pop(conversation_id, None)
        if agent is not None:
            return agent
        waiter: asyncio.Future[StaffAgent] = asyncio.get_running_loop().create_future()
        self.waiting[conversation_id] = waiter
        try:
            return await asyncio.wait_for(waiter, wait_s)
        except TimeoutError:
            raise RequestFailed("not_assigned: timeout",
                                f"no staff member was offered it within {wait_s:g} s") from None
        finally:
            self.waiting.pop(conversation_id, None)


class StaffAgent:
    """A simulated staff member: one console connection, online."""

    def __init__(self, spec: StaffSpec, shared: Shared) -> None:
        self.spec = spec
        self.shared = shared
        self.client: SignalClient | None = None

    async def start(self) -> None:
        client = await SignalClient.connect(self.shared.http, self.shared.ws_url,
                                            self.shared.staff_token(self.spec.id),
                                            self.shared.rtt)
        client.on_event = self._on_event
        self.client = client
        await client.request("presence.set", status="online")

    def _on_event(self, event: dict[str, Any]) -> None:
        if event.get("type") == "conversation.offered":
            conversation = event.get("conversation") or {}
            if conversation.get("conversation_id"):
                self.shared.on_offered(self, conversation["conversation_id"])

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()


class Consultation:
    def __init__(self, plan: SessionPlan, shared: Shared) -> None:
        self.plan = plan
        self.shared = shared
        self.options = shared.options
        self.times: dict[str, float] = {}  # step -> monotonic time
        self.result: dict[str, Any] = {
            "index": plan.index, "store": plan.store, "skill": plan.skill, "kind": plan.kind,
            "second_staff": plan.second_staff, "tryon": plan.tryon, "decode": plan.decode,
            "ok": False, "cause": None, "detail": None, "feature_failures": [],
            "features": {}, "staff_id": None, "chat_messages_delivered": 0}
        self.peers: dict[str, MediaPeer] = {}
        self.clients: list[SignalClient] = []
        self.staff: StaffAgent | None = None

    def _mark(self, step: str) -> float:
        now = time.monotonic()
        self.times[step] = now
        return now

    async def run(self) -> dict[str, Any]:
        self.shared.progress(self.plan.index, "started")
        self._mark("start")
        try:
            await self._run()
            self.result["ok"] = True
            self.shared.progress(self.plan.index, "done")
        except RequestFailed as e:
            self.result["cause"], self.result["detail"] = e.cause, e.detail[:300]
            self.shared.progress(self.plan.index, "failed")
        except Exception as e:  # a bug or an unexpected reply: still a counted failure
            self.result["cause"] = f"error: {type(e).__name__}"
            self.result["detail"] = str(e)[:300]
            self.shared.progress(self.plan.index, "failed")
        finally:
            await self._cleanup()
        self.result["times"] = self._durations()
        return self.result

    # --------------------------------------------------------------------------------
    async def _run(self) -> None:
        o, plan, shared = self.options, self.plan, self.shared
        wait = o.step_timeout_s
        token = await self._shopper_token()
        shopper = await SignalClient.connect(shared.http, shared.ws_url, token, shared.rtt)
        self.clients.append(shopper)

        self._mark("open")
        opened = await shopper.request(
            "conversation.open", wait_s=wait, store=plan.store, skill=plan.skill,
            language=o.language, channel="chat", sku=f"SKU-{plan.index % 97:04d}",
            page_url=f"https://shop.example.com/{plan.store}/{plan.skill}/{plan.index}")
        cid = opened["conversation"]["conversation_id"]
        self.result["conversation_id"] = cid
        if o.chat_messages:  # the shopper writes while being routed, as people do
            await shopper.request("chat.send", wait_s=wait, conversation_id=cid,
                                  text="Hello, I have a question about this product.")
        agent = await shared.wait_offer(cid, o.assign_timeout_s)
        self._mark("offered")
        self.staff = agent
        self.result["staff_id"] = agent.spec.id
        staff = agent.client
        assert staff is not None
        await staff.request("conversation.accept", wait_s=wait, conversation_id=cid)
        await shopper.expect("conversation.accepted", wait, conversation_id=cid)
        self._mark("assigned")
        shared.progress(plan.index, "assigned")

        delivered = 0
        for n in range(o.chat_messages):
            await staff.request("chat.send", wait_s=wait, conversation_id=cid,
                                text=f"Of course! Answer {n + 1}: it is in stock in "
                                     f"{plan.store}.")
            await shopper.expect("chat.message", wait, message__conversation_id=cid,
                                 message__from="staff")
            delivered += 1
            if n + 1 < o.chat_messages:
                await shopper.request("chat.send", wait_s=wait, conversation_id=cid,
                                      text=f"Thanks. And follow-up question {n + 1}?")
                await staff.expect("chat.message", wait, message__conversation_id=cid,
                                   message__from="shopper")
                delivered += 1
        self.result["chat_messages_delivered"] = delivered

        # Escalation.
        self._mark("escalate")
        call = (await shopper.request("call.propose", wait_s=wait, conversation_id=cid,
                                      kind=plan.kind))["call"]
        call_id = call["call_id"]
        await staff.expect("call.proposed", wait, call__call_id=call_id)
        staff_join = (await staff.request("call.accept", wait_s=wait,
                                          call_id=call_id))["join"]
        shopper_join = (await shopper.expect("call.started", wait,
                                             call__call_id=call_id))["join"]
        self._mark("call_started")
        if not shopper_join.get("media_available", True):
            raise RequestFailed("call.started: media_unavailable",
                                "the deployment has no media server")
        video = plan.kind == "video"
        shopper_peer = self._peer("shopper", shopper, call_id, shopper_join, video,
                                  lambda: self._logs_except("shopper"))
        staff_peer = self._peer("staff", staff, call_id, staff_join, video,
                                lambda: self._logs_except("staff"))
        await asyncio.gather(self._negotiate(shopper, call_id, shopper_peer),
                             self._negotiate(staff, call_id, staff_peer))
        self._mark("negotiated")
        if plan.tryon:
            await self._feature("tryon", self._tryon(shopper, token, call_id))
        if plan.second_staff:
            await self._feature("second_staff", self._second_staff(staff, call_id, video))

        kind = "video" if video else "audio"
        await self._wait_first_media(kind, wait)
        shared.progress(plan.index, "in_call")
        # Hold the call for call_s from the start of media.
        remaining = self.times["call_started"] + o.call_s - time.monotonic()
        if remaining > 0:
            await asyncio.sleep(remaining)
        if shopper.closed.is_set() or staff.closed.is_set():
            raise RequestFailed("call: connection_closed", "during the call")

        self._mark("hangup")
        await shopper.request("call.end", wait_s=wait, call_id=call_id)
        await staff.expect("call.ended", wait, call_id=call_id)
        now = time.monotonic()
        for peer in self.peers.values():
            await peer.close(now)
        await shopper.request("conversation.close", wait_s=wait, conversation_id=cid)
        await staff.expect("conversation.closed", wait, conversation_id=cid)
        await shopper.expect("feedback.requested", wait, conversation_id=cid)
        await shopper.request("feedback.submit", wait_s=wait, conversation_id=cid,
                              satisfaction=5, recommendation=9,
                              comment="Load test: very helpful.")
        self._mark("rated")

    async def _shopper_token(self) -> str:
        url = self.shared.base_url + "/api/shopper-token"
        try:
            async with self.shared.http.post(url) as response:
                body = await response.json(content_type=None)
                if response.status != 200:
                    code = body.get("code") if isinstance(body, dict) else None
                    raise RequestFailed(f"shopper-token: {code or response.status}",
                                        str(body)[:200])
                return str(body["token"])
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            raise RequestFailed("shopper-token: connection", repr(e)) from None

    def _peer(self, name: str, client: SignalClient, call_id: str, join: dict[str, Any],
              video: bool, remote_logs: Callable[[], list[Any]]) -> MediaPeer:
        shared = self.shared
        decode = self.plan.decode and name == "shopper"
        peer: MediaPeer
        if decode or shared.packets is None or shared.clock is None:
            # Decoding needs aiortc's jitter buffer and decoder: the sample stays there.
            peer = LoadPeer(f"{self.plan.index}-{name}", shared.media, video=video,
                            remote_logs=remote_logs, latency=shared.latency,
                            decode=decode, servers=ice_servers(join))
        else:
            peer = RawPeer(f"{self.plan.index}-{name}", shared.clock, shared.packets,
                           video=video, remote_logs=remote_logs, latency=shared.latency,
                           servers=join.get("ice_servers") or [])
        self.peers[name] = peer

        # A colleague's client takes part in several calls at once: each call's handler
        # passes other calls' offers down the chain.
        previous = client.on_media_offer

        async def on_server_offer(message: dict[str, Any]) -> None:
            if message.get("call_id") != call_id or peer.closed:
                if previous is not None and message.get("call_id") != call_id:
                    await previous(message)
                return
            async with peer.negotiating:
                sdp = await peer.answer_offer(message["sdp"])
                with contextlib.suppress(RequestFailed):
                    await client.request("media.answer", call_id=call_id, sdp=sdp)

        client.on_media_offer = on_server_offer
        return peer

    def _logs_except(self, name: str) -> list[Any]:
        return [log for peer_name, peer in self.peers.items() if peer_name != name
                for log in peer.logs]

    async def _negotiate(self, client: SignalClient, call_id: str, peer: MediaPeer) -> None:
        async with peer.negotiating:
            offer = await peer.offer()
            answer = await client.request("media.offer", wait_s=self.options.step_timeout_s,
                                          call_id=call_id, sdp=offer)
            await peer.accept_answer(answer["sdp"])

    async def _tryon(self, shopper: SignalClient, token: str, call_id: str) -> None:
        """Switch try-on on with the first garment of the catalogue, as the widget does."""
        url = self.shared.base_url + "/api/garments"
        async with self.shared.http.get(
                url, headers={"Authorization": f"Bearer {token}"}) as response:
            if response.status != 200:
                raise RequestFailed(f"garments: http {response.status}")
            body = await response.json(content_type=None)
        if not body.get("enabled"):
            raise RequestFailed("garments: tryon disabled")
        garments = body.get("garments") or []
        if not garments:
            raise RequestFailed("garments: none")
        await shopper.request("tryon.set", wait_s=self.options.step_timeout_s,
                              call_id=call_id, enabled=True, garment_id=garments[0]["id"])

    async def _second_staff(self, staff: SignalClient, call_id: str, video: bool) -> None:
        """The staff member invites the store's colleague, who joins the running call and
        publishes and receives like the others (the SFU renegotiates everyone)."""
        helper_id = f"{self.plan.store}-helper"
        helper = self.shared.agents.get(helper_id)
        if helper is None or helper.client is None:
            raise RequestFailed("second_staff: no_helper")
        wait = self.options.step_timeout_s
        await staff.request("call.invite", wait_s=wait, call_id=call_id, staff_id=helper_id)
        await helper.client.expect("call.invited", wait, call__call_id=call_id)
        joined = await helper.client.request("call.join", wait_s=wait, call_id=call_id)
        peer = self._peer("helper", helper.client, call_id, joined["join"], video,
                          lambda: self._logs_except("helper"))
        await self._negotiate(helper.client, call_id, peer)

    async def _feature(self, name: str, step: Any) -> None:
        try:
            await step
            self.result["features"][name] = "ok"
        except RequestFailed as e:
            self.result["features"][name] = e.cause
            self.result["feature_failures"].append(f"{name}: {e.cause}")

    async def _wait_first_media(self, kind: str, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        names = ("shopper", "staff")
        while time.monotonic() < deadline:
            if all(self.peers[n].first_packet_at(kind) is not None for n in names):
                return
            await asyncio.sleep(0.01)
        missing = [n for n in names if self.peers[n].first_packet_at(kind) is None]
        raise RequestFailed("media: no_packets", f"no {kind} packets at {', '.join(missing)} "
                            f"within {wait_s:g} s")

    async def _cleanup(self) -> None:
        try:
            await self._collect()
        except Exception as e:  # a report that lacks one session's media beats no report
            self.result["media"] = {}
            self.result.setdefault("cause", None)
            self.result["collect_error"] = f"{type(e).__name__}: {e}"[:300]
        for client in self.clients:
            await client.close()
        if self.staff is not None and self.staff.client is not None \
                and "conversation_id" in self.result:
            self.staff.client.forget(self.result["conversation_id"])

    async def _collect(self) -> None:
        now = time.monotonic()
        for peer in self.peers.values():
            await peer.close(now)
        media: dict[str, Any] = {}
        for name, peer in self.peers.items():
            media[name] = {
                "path": "aiortc" if isinstance(peer, LoadPeer) else "raw",
                "received": peer.received_summaries(),
                "sent_frames": peer.sent_frames(),
                "keyframe_requests": peer.keyframe_requests(),
                "nacks_received": peer.nacks_received,
                "generator_lag_ms": round(peer.generator_lag_s() * 1000, 1),
            }
            for kind in ("audio", "video"):
                at = peer.first_packet_at(kind)
                if at is not None:
                    self.times[f"{name}_first_{kind}"] = at
            key = peer.first_keyframe_at()
            if key is not None:
                self.times[f"{name}_first_keyframe"] = key
        self.result["media"] = media

    def _durations(self) -> dict[str, float | None]:
        """Join times (seconds) from the marks; None when the step was not reached."""
        t = self.times

        def span(a: str, b: str) -> float | None:
            return round(t[b] - t[a], 6) if a in t and b in t and t[b] >= t[a] else None

        kind = "video" if self.plan.kind == "video" else "audio"
        return {
            "open_to_offered": span("open", "offered"),
            "open_to_assigned": span("open", "assigned"),
            "escalate_to_call_started": span("escalate", "call_started"),
            "escalate_to_first_packet": span("escalate", f"shopper_first_{kind}"),
            "escalate_to_first_packet_staff": span("escalate", f"staff_first_{kind}"),
            "escalate_to_first_keyframe": span("escalate", "shopper_first_keyframe"),
            "escalate_to_first_keyframe_staff": span("escalate", "staff_first_keyframe"),
            "total": span("start", "rated"),
            "media_s": span("negotiated", "hangup"),
        }
