"""What to simulate: the run's options and the consultations they make. Pure logic.

Every consultation gets a store and a skill from the mix, a kind (video or audio-only), and
whether a second staff member tries to join and whether try-on is switched on. Stores are
split between worker processes, and each store's staff are simulated by the worker that
runs its shoppers: a conversation is offered to staff of its store only (the stores the
tool sets up do not overflow), so a shopper and the staff member who serves them share a
process, and with it a clock and the sender's log that latency is measured against.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MEDIA_PATHS = ("raw", "aiortc")


@dataclass
class Options:
    sessions: int = 4
    ramp_per_s: float = 2.0  # consultations started per second
    call_s: float = 10.0  # media time per call
    chat_messages: int = 2  # messages each side sends before escalating
    audio_only_share: float = 0.0
    second_staff_share: float = 0.0
    tryon_share: float = 0.0
    stores: int = 2
    skills: list[str] = field(default_factory=lambda: ["guitars", "pianos"])
    language: str = "en"
    workers: int = 1
    decode_sample: int = 1  # per worker: in this many consultations the shopper decodes
    url: str | None = None  # a running deployment; None: start a server
    operator_token: str | None = None
    auth_secret: str | None = None  # to mint staff tokens for a deployment
    staff: bool = True  # False: no simulated staff (every session should fail unassigned)
    assign_timeout_s: float = 15.0
    step_timeout_s: float = 15.0
    seed: int = 1
    out_dir: Path = Path("bench-results")
    cache_dir: Path | None = None
    client_address: str | None = "127.0.0.1"  # ICE host address of the simulated clients
    quiet: bool = False
    server_cpu: int | None = 0
    store_prefix: str = "bench"
    # "raw": packet-level peers (raw_peer.py), about 2.7x cheaper per consultation; "aiortc":
    # a full RTCPeerConnection per participant (media_peer.py), kept to compare against.
    # The sampled decoding receivers are aiortc peers either way.
    media_path: str = "raw"

    def __post_init__(self) -> None:
        if self.media_path not in MEDIA_PATHS:
            raise ValueError(f"media path must be one of {', '.join(MEDIA_PATHS)}: "
                             f"{self.media_path!r}")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["out_dir"] = str(self.out_dir)
        out["cache_dir"] = str(self.cache_dir) if self.cache_dir else None
        for secret in ("operator_token", "auth_secret"):
            out[secret] = "***" if out[secret] else None
        return out


@dataclass(frozen=True)
class SessionPlan:
    index: int
    start_s: float  # after the run's start
    store: str
    skill: str
    kind: str  # "video" or "audio"
    second_staff: bool
    tryon: bool
    decode: bool = False


@dataclass(frozen=True)
class StaffSpec:
    id: str
    store: str
    skills: tuple[str, ...]
    # The colleague invited into calls: online (only online staff can be invited) but with
    # no skill, so routing never offers them a conversation of their own.
    helper: bool = False


def store_ids(options: Options) -> list[str]:
    count = max(options.stores, options.workers)
    return [f"{options.store_prefix}{i + 1}" for i in range(count)]


def plan_sessions(options: Options) -> list[SessionPlan]:
    """Consultations in start order; shares are exact in expectation (seeded draws)."""
    rng = random.Random(options.seed)
    stores = store_ids(options)
    plans = []
    for i in range(options.sessions):
        plans.append(SessionPlan(
            index=i, start_s=i / options.ramp_per_s if options.ramp_per_s > 0 else 0.0,
            store=stores[i % len(stores)], skill=options.skills[(i // len(stores))
                                                               % len(options.skills)],
            kind="audio" if rng.random() < options.audio_only_share else "video",
            second_staff=rng.random() < options.second_staff_share,
            tryon=rng.random() < options.tryon_share))
    return plans


def split_by_worker(options: Options, plans: list[SessionPlan]) -> list[list[SessionPlan]]:
    """Stores go round-robin to workers; each worker runs its stores' consultations and
    the first ``decode_sample`` video consultations of each worker decode for real."""
    stores = store_ids(options)
    worker_of = {s: i % options.workers for i, s in enumerate(stores)}
    out: list[list[SessionPlan]] = [[] for _ in range(options.workers)]
    for plan in plans:
        out[worker_of[plan.store]].append(plan)
    for group in out:
        sampled = 0
        for i, plan in enumerate(group):
            if plan.kind == "video" and sampled < options.decode_sample:
                group[i] = SessionPlan(**{**asdict(plan), "decode": True})
                sampled += 1
    return out


def staff_roster(options: Options, plans: list[SessionPlan]) -> list[StaffSpec]:
    """One staff member per consultation of each (store, skill), all of whom can be busy at
    once, plus one colleague per store when some consultation wants a second staff."""
    counts: dict[tuple[str, str], int] = {}
    for plan in plans:
        counts[(plan.store, plan.skill)] = counts.get((plan.store, plan.skill), 0) + 1
    roster = [StaffSpec(f"{store}-{skill}-{n + 1}", store, (skill,))
              for (store, skill), count in sorted(counts.items()) for n in range(count)]
    helper_stores = sorted({p.store for p in plans if p.second_staff})
    roster += [StaffSpec(f"{store}-helper", store, (), helper=True)
               for store in helper_stores]
    return roster
