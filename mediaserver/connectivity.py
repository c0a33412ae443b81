"""How each participant's media connection came about, or why it did not.

A connection that never comes up is the failure a store notices first (a tablet behind Wi-Fi
that blocks UDP, a TURN server refusing expired credentials) and the hardest to see: nothing
flows, so nothing else reports it. Each connection attempt (one per offer that starts a new
transport: first join, ICE restart, rejoin) gets a record: the server's view (its ICE state,
the candidate types of the pair that carried media, or the reason it gave up) and the
client's own report (which candidate its browser chose, how it reached its TURN server,
which STUN/TURN errors it saw). Each attempt is counted exactly once, as connected (by
candidate type) or failed, for the `shopcall_media_connections_total` metric. Pure code.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# Longer than browsers take to give up on a pair (Chromium: about 30 s after its last
# candidate), so the client's own failure report usually arrives first.
CONNECT_TIMEOUT_S = 35.0
# How long a connected attempt waits for the client's report before it is counted anyway.
REPORT_WAIT_S = 5.0
CANDIDATE_TYPES = ("host", "srflx", "prflx", "relay")


@dataclass(slots=True)
class ClientView:
    state: str
    candidate_type: str | None = None
    protocol: str | None = None
    relay_protocol: str | None = None
    errors: tuple[tuple[str, int, str], ...] = ()

    def describe(self) -> dict[str, Any]:
        return {"state": self.state, "candidate_type": self.candidate_type,
                "protocol": self.protocol, "relay_protocol": self.relay_protocol,
                "errors": [{"url": u, "code": c, "text": t} for u, c, t in self.errors]}


@dataclass(slots=True)
class ConnectionRecord:
    """One connection attempt of one participant."""

    started_at: float  # monotonic
    outcome: str | None = None  # None while trying; "connected" | "failed"
    pair: dict[str, Any] | None = None
    failure: str | None = None
    connected_at: float | None = None
    client: ClientView | None = None
    counted: bool = False

    def connected(self, now: float, pair: dict[str, Any] | None) -> None:
        if self.outcome is None:
            self.outcome = "connected"
            self.pair = pair
            self.connected_at = now

    def failed(self, reason: str) -> bool:
        """The attempt is over without media; True the first time (log it)."""
        if self.outcome is not None:
            return False
        self.outcome = "failed"
        self.failure = reason
        return True

    def overdue(self, now: float) -> bool:
        return self.outcome is None and now - self.started_at > CONNECT_TIMEOUT_S

    def report(self, view: ClientView) -> None:
        self.client = view

    @property
    def candidate_type(self) -> str:
        return candidate_type(self.pair, self.client) if self.outcome == "connected" \
            else "none"

    def countable(self, now: float) -> bool:
        """Whether to count the attempt now: failures at once; connections once the
        client said which candidate it chose (the server alone cannot always tell a relay:
        a relayed client whose checks arrive before its trickled candidate is learnt as
        peer-reflexive), or REPORT_WAIT_S after connecting without a word from it."""
        if self.counted or self.outcome is None:
            return False
        if self.outcome == "failed" or self.client is not None:
            return True
        return self.connected_at is not None and now - self.connected_at >= REPORT_WAIT_S

    def reason(self, ice_state: str) -> str:
        """Why it failed, in words an operator can act on."""
        errors = self.client.errors if self.client else ()
        if any(code == 401 for _, code, _ in errors):
            return ("the TURN server refused the credentials (401): check media.turn.secret "
                    "against coturn's static-auth-secret, and the clocks")
        if errors:
            url, code, text = errors[0]
            return (f"no candidate pair worked; the client's STUN/TURN server {url} said "
                    f"{code} {text}").rstrip()
        if ice_state == "failed":
            return ("no candidate pair worked (the network blocks the media ports and "
                    "no TURN relay was reachable)")
        return f"no connection within {CONNECT_TIMEOUT_S:g} s (ICE {ice_state})"

    def describe(self, ice_state: str) -> dict[str, Any]:
        return {"ice_state": ice_state, "outcome": self.outcome or "connecting",
                "candidate_type": None if self.outcome != "connected" else self.candidate_type,
                "pair": self.pair,
                "connected_after_s": None if self.connected_at is None
                else round(self.connected_at - self.started_at, 3),
                "failure": self.failure,
                "client": None if self.client is None else self.client.describe()}


def candidate_type(pair: dict[str, Any] | None, client: ClientView | None) -> str:
    """The path's type as an operator means it: relay if either end is a relay (the client
    says so for its own end), else the client side's type as the server saw it."""
    if client is not None and client.candidate_type == "relay":
        return "relay"
    if pair is None:
        return "none"
    local, remote = pair.get("local"), pair.get("remote")
    if "relay" in (local, remote):
        return "relay"
    if client is not None and client.candidate_type in CANDIDATE_TYPES:
        return client.candidate_type
    return remote if remote in CANDIDATE_TYPES else "none"


@dataclass(slots=True)
class ConnectionOutcomes:
    """Counts for the metric, kept by the backend across sessions (they only go up)."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)

    def count(self, record: ConnectionRecord) -> None:
        record.counted = True
        self.counts[(record.outcome or "failed", record.candidate_type)] += 1
