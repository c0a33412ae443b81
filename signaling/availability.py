"""Which contact channels a shop page should offer right now.

Offering a video button that then lands in a queue is worse than not offering it: the shopper
expected to see someone. So real-time channels are only shown when someone can take them now,
chat is shown whenever someone qualified is online (a short queue is acceptable in text), and
leaving a message is always possible.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .model import Channel, ConversationContext
from .routing import Candidate, matching


@dataclass(frozen=True, slots=True)
class Availability:
    chat: bool
    audio: bool
    video: bool
    message: bool  # asynchronous "leave a message"
    staff_online: int
    free_slots: int

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def compute_availability(
    ctx: ConversationContext, candidates: Iterable[Candidate], *, overflow: bool
) -> Availability:
    """Evaluate every channel for `ctx` (its own `channel` is ignored) under the routing rules.

    Uses `routing.matching`, so the page never offers what `choose_staff` would refuse.
    """
    pool = list(candidates)
    qualified = {
        channel: matching(
            dataclasses.replace(ctx, channel=channel), pool, overflow=overflow,
            need_free_slot=False,
        )
        for channel in Channel
    }
    # Presence, skill, language and store do not depend on the channel, so the union over
    # channels is "matching online staff" (each counted once).
    online = {c.staff.id: c for cs in qualified.values() for c in cs}

    def someone_free(channel: Channel) -> bool:
        return any(c.load < c.staff.max_conversations for c in qualified[channel])

    return Availability(
        chat=bool(qualified[Channel.CHAT]),  # even at full load: chat may queue briefly
        audio=someone_free(Channel.AUDIO),
        video=someone_free(Channel.VIDEO),
        message=True,
        staff_online=len(online),
        free_slots=sum(max(c.staff.max_conversations - c.load, 0) for c in online.values()),
    )
