"""Conversations waiting for a staff member, and how long they are likely to wait.

Pure bookkeeping: the switchboard decides when to push, pop and expire; this module only keeps
the order and answers "where am I in line?" and "how long, roughly?".
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from dataclasses import dataclass

from .model import ConversationContext


@dataclass(frozen=True, slots=True)
class QueueEntry:
    conversation_id: str
    ctx: ConversationContext
    queued_at: float


class WaitingQueue:
    """Queued conversations ordered by when they first started waiting.

    Order is by `queued_at`, not by push time: a conversation re-queued because its staff member
    vanished keeps its original `queued_at` and so goes back near the front instead of paying
    for someone else's disconnect. Equal `queued_at` keep push order.
    """

    def __init__(self) -> None:
        self._entries: list[QueueEntry] = []
        self._by_id: dict[str, QueueEntry] = {}

    def push(self, conversation_id: str, ctx: ConversationContext, queued_at: float) -> QueueEntry:
        if conversation_id in self._by_id:
            raise ValueError(f"conversation {conversation_id!r} is already queued")
        if math.isnan(queued_at):
            raise ValueError(f"conversation {conversation_id!r}: queued_at is NaN")
        entry = QueueEntry(conversation_id, ctx, queued_at)
        # bisect_right: after any entry with the same queued_at, so ties keep push order.
        index = bisect.bisect_right(self._entries, queued_at, key=lambda e: e.queued_at)
        self._entries.insert(index, entry)
        self._by_id[conversation_id] = entry
        return entry

    def remove(self, conversation_id: str) -> bool:
        """Drop a conversation (assigned, abandoned or expired); False if it was not queued."""
        entry = self._by_id.pop(conversation_id, None)
        if entry is None:
            return False
        for i, e in enumerate(self._entries):
            if e is entry:
                del self._entries[i]
                break
        return True

    def get(self, conversation_id: str) -> QueueEntry | None:
        return self._by_id.get(conversation_id)

    def __contains__(self, conversation_id: object) -> bool:
        return conversation_id in self._by_id

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[QueueEntry]:
        # A copy, so the caller may remove entries (e.g. when assigning) while iterating.
        return iter(list(self._entries))

    def position(self, conversation_id: str) -> int:
        """1-based place in line among conversations competing for the same staff.

        The pool is (skill, language), not store: with overflow, staff of every store can serve
        any store's shoppers, so a store-keyed position would understate the real line (and an
        overflow-disabled store's shoppers still compete with others for its staff). A guitar
        shopper does not wait behind a piano shopper, though, so the skill and language count.
        Raises KeyError if the conversation is not queued.
        """
        entry = self._by_id[conversation_id]
        pool = _pool(entry.ctx)
        ahead = 0
        for e in self._entries:
            if e is entry:
                return ahead + 1
            if _pool(e.ctx) == pool:
                ahead += 1
        raise AssertionError("queue index out of sync")  # pragma: no cover

    def expired(self, now: float, max_wait_s: float) -> list[QueueEntry]:
        """Entries that have waited `max_wait_s` or more, oldest first; they are not removed."""
        out: list[QueueEntry] = []
        for e in self._entries:
            if e.queued_at + max_wait_s > now:
                break  # sorted by queued_at: everything after waited less
            out.append(e)
        return out


def _pool(ctx: ConversationContext) -> tuple[str | None, str | None]:
    return (ctx.skill, ctx.language)


def estimate_wait_s(position: int, serving_slots: int, avg_handle_s: float) -> float | None:
    """Rough wait for the `position`-th shopper in line, or None if nobody could ever serve it.

    Model: `serving_slots` conversations run in parallel, each lasting `avg_handle_s` on
    average and at uniformly spread stages, so a slot frees on average every
    `avg_handle_s / serving_slots` seconds and the shopper at `position` needs `position` of
    those. It ignores staff logging on or off; it is a hint for the widget, not a promise.
    """
    if serving_slots <= 0:
        return None
    return position * avg_handle_s / serving_slots


class HandleTimeEstimator:
    """Exponentially weighted average of how long conversations take to handle.

    An EWMA follows the shop's current pace (busy Saturday vs. quiet Tuesday) without keeping
    history; `alpha` is the weight of the newest observation.
    """

    __slots__ = ("_alpha", "_value")

    def __init__(self, initial_s: float, alpha: float = 0.2) -> None:
        if not math.isfinite(initial_s) or initial_s < 0:
            raise ValueError(f"initial_s must be a finite non-negative number, got {initial_s}")
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self._value = float(initial_s)
        self._alpha = alpha

    def observe(self, seconds: float) -> None:
        # A clock jump or corrupt record must not poison every later wait estimate.
        if not math.isfinite(seconds) or seconds < 0:
            return
        self._value += self._alpha * (seconds - self._value)

    @property
    def value(self) -> float:
        return self._value
