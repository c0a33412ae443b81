"""Who should take a conversation: the pure decision, given a snapshot of staff.

The switchboard owns the live state (presence, loads, timers); it builds one `Candidate` per
staff member and asks here. Keeping the decision free of I/O and clocks means every rule of
the routing policy can be pinned down by a plain unit test.

Policy (from the issue): "assign to an available staff member who has the skill, in the
requested store first, then others if allowed; among them the least loaded, then the longest
idle."
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from .model import ConversationContext, Presence, StaffMember


@dataclass(frozen=True, slots=True)
class Candidate:
    staff: StaffMember
    presence: Presence
    # Conversations currently offered to or accepted by this staff member. Offers count so two
    # shoppers are not both pushed at the last free slot while the first offer is pending.
    load: int
    # When they last got or finished a conversation, or came online: the fairness clock.
    last_activity_at: float


def can_serve(c: Candidate, ctx: ConversationContext, *, need_free_slot: bool = True) -> bool:
    """Whether `c` is qualified for `ctx`, ignoring store (store is a preference, not a skill).

    `need_free_slot=False` answers "could they ever take it?", used to tell a shopper who will
    only have to wait from one nobody can serve at all.
    """
    staff = c.staff
    if c.presence != Presence.ONLINE:
        return False
    if ctx.skill is not None and ctx.skill not in staff.skills:
        return False
    # No languages listed means the shop did not restrict them, not that they speak none.
    if ctx.language is not None and staff.languages and ctx.language not in staff.languages:
        return False
    if ctx.channel not in staff.channels:
        return False
    return not need_free_slot or c.load < staff.max_conversations


def _tiers(
    ctx: ConversationContext, candidates: Iterable[Candidate], overflow: bool
) -> tuple[list[Candidate], list[Candidate]]:
    """Split into (requested store, other stores); the second tier is empty unless allowed."""
    if ctx.store_id is None:
        return list(candidates), []
    home: list[Candidate] = []
    others: list[Candidate] = []
    for c in candidates:
        if c.staff.store_id == ctx.store_id:
            home.append(c)
        elif overflow:
            others.append(c)
    return home, others


def _rank(c: Candidate) -> tuple[float, int, float, str]:
    # Ratio first so a part-timer with one slot is not flooded just because their absolute
    # load looks small; staff id last so equal candidates always resolve the same way.
    capacity = max(c.staff.max_conversations, 1)
    return (c.load / capacity, c.load, c.last_activity_at, c.staff.id)


def choose_staff(
    ctx: ConversationContext,
    candidates: Iterable[Candidate],
    *,
    exclude: Collection[str] = (),
    overflow: bool = True,
) -> StaffMember | None:
    """The staff member to offer `ctx` to now, or None if nobody can take it (queue it).

    The requested store is tried first even when another store has someone less loaded: the
    shopper is on that store's page, and local staff can offer pickup or a visit. `exclude`
    holds staff who declined or let the offer expire, so a conversation is not bounced back to
    them.
    """
    for tier in _tiers(ctx, candidates, overflow):
        eligible = [c for c in tier if c.staff.id not in exclude and can_serve(c, ctx)]
        if eligible:
            return min(eligible, key=_rank).staff
    return None


def matching(
    ctx: ConversationContext,
    candidates: Iterable[Candidate],
    *,
    overflow: bool,
    need_free_slot: bool,
) -> list[Candidate]:
    """Everyone who could serve `ctx` under the same store/overflow rule as `choose_staff`.

    Used for availability and wait estimates, which must agree with what routing would do or
    the widget would promise video that no one can then be assigned. Requested store first.
    """
    home, others = _tiers(ctx, candidates, overflow)
    return [c for c in home + others if can_serve(c, ctx, need_free_slot=need_free_slot)]
