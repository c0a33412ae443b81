from __future__ import annotations

import pytest

from signaling.model import Channel, ConversationContext, Presence, StaffMember
from signaling.routing import Candidate, can_serve, choose_staff, matching

pytestmark = pytest.mark.unit


def cand(
    sid: str,
    store: str = "s1",
    *,
    load: int = 0,
    idle_since: float = 0.0,
    presence: Presence = Presence.ONLINE,
    skills: frozenset[str] = frozenset({"guitars"}),
    languages: frozenset[str] = frozenset(),
    channels: frozenset[Channel] = frozenset(Channel),
    max_conversations: int = 2,
) -> Candidate:
    staff = StaffMember(
        id=sid, name=sid.title(), store_id=store, skills=skills, languages=languages,
        max_conversations=max_conversations, channels=channels,
    )
    return Candidate(staff=staff, presence=presence, load=load, last_activity_at=idle_since)


def pick(ctx: ConversationContext, cands: list[Candidate], **kw: object) -> str | None:
    staff = choose_staff(ctx, cands, **kw)  # type: ignore[arg-type]
    return None if staff is None else staff.id


GUITARS_S1 = ConversationContext(store_id="s1", skill="guitars")


def test_requested_store_preferred_over_less_loaded_other_store() -> None:
    cands = [cand("far", "s2", load=0), cand("near", "s1", load=1)]
    assert pick(GUITARS_S1, cands) == "near"


def test_overflow_to_other_store_when_requested_store_full() -> None:
    cands = [cand("near", "s1", load=2), cand("far", "s2", load=1)]
    assert pick(GUITARS_S1, cands) == "far"


def test_overflow_false_never_picks_another_store() -> None:
    cands = [cand("near", "s1", load=2), cand("far", "s2")]
    assert pick(GUITARS_S1, cands, overflow=False) is None
    assert [c.staff.id for c in matching(GUITARS_S1, cands, overflow=False,
                                         need_free_slot=False)] == ["near"]


def test_no_store_requested_considers_everyone_as_one_tier() -> None:
    ctx = ConversationContext(skill="guitars")
    cands = [cand("a", "s1", load=1), cand("b", "s2", load=0)]
    assert pick(ctx, cands) == "b"
    assert pick(ctx, cands, overflow=False) == "b"


def test_least_loaded_by_ratio_not_absolute_load() -> None:
    # part-timer: 1 of 2 slots used (50 %); full-timer: 2 of 5 (40 %) -> full-timer.
    cands = [cand("part", load=1, max_conversations=2), cand("full", load=2, max_conversations=5)]
    assert pick(GUITARS_S1, cands) == "full"


def test_equal_ratio_prefers_lower_absolute_load() -> None:
    cands = [cand("big", load=2, max_conversations=4), cand("small", load=1, max_conversations=2)]
    assert pick(GUITARS_S1, cands) == "small"


def test_longest_idle_breaks_load_ties() -> None:
    cands = [cand("recent", idle_since=500.0), cand("idle", idle_since=100.0),
             cand("mid", idle_since=300.0)]
    assert pick(GUITARS_S1, cands) == "idle"


def test_staff_id_is_final_tie_break_regardless_of_input_order() -> None:
    a, b = cand("alice"), cand("bob")
    assert pick(GUITARS_S1, [a, b]) == pick(GUITARS_S1, [b, a]) == "alice"


@pytest.mark.parametrize("presence", [Presence.AWAY, Presence.BUSY_IN_STORE, Presence.OFFLINE])
def test_non_online_staff_never_routed(presence: Presence) -> None:
    c = cand("x", presence=presence)
    assert pick(GUITARS_S1, [c]) is None
    assert not can_serve(c, GUITARS_S1, need_free_slot=False)


def test_declined_staff_excluded_even_if_best() -> None:
    cands = [cand("best", idle_since=0.0), cand("other", idle_since=100.0)]
    assert pick(GUITARS_S1, cands, exclude={"best"}) == "other"
    assert pick(GUITARS_S1, cands, exclude={"best", "other"}) is None


def test_declined_home_staff_falls_through_to_overflow() -> None:
    cands = [cand("near", "s1"), cand("far", "s2")]
    assert pick(GUITARS_S1, cands, exclude=["near"]) == "far"


def test_skill_required_when_set() -> None:
    pianist = cand("p", skills=frozenset({"pianos"}))
    assert pick(GUITARS_S1, [pianist]) is None
    assert pick(ConversationContext(store_id="s1", skill="pianos"), [pianist]) == "p"
    assert pick(ConversationContext(store_id="s1"), [pianist]) == "p"  # no skill asked


def test_language_filtering_and_unrestricted_staff() -> None:
    ctx = ConversationContext(store_id="s1", skill="guitars", language="de")
    french = cand("fr", languages=frozenset({"fr"}))
    german = cand("de", languages=frozenset({"de", "en"}), idle_since=100.0)
    anyone = cand("any", languages=frozenset(), idle_since=50.0)
    assert not can_serve(french, ctx)
    assert can_serve(german, ctx) and can_serve(anyone, ctx)
    assert pick(ctx, [french, german]) == "de"
    assert pick(ctx, [french]) is None
    assert pick(ctx, [french, german, anyone]) == "any"  # idle longer than "de"


def test_channel_filtering() -> None:
    chat_only = cand("chat", channels=frozenset({Channel.CHAT}))
    video_ok = cand("vid", channels=frozenset({Channel.CHAT, Channel.VIDEO}), idle_since=9.0)
    video = ConversationContext(store_id="s1", skill="guitars", channel=Channel.VIDEO)
    assert pick(video, [chat_only]) is None
    assert pick(video, [chat_only, video_ok]) == "vid"
    assert pick(GUITARS_S1, [chat_only, video_ok]) == "chat"


def test_full_staff_not_chosen_but_counted_when_no_free_slot_needed() -> None:
    full = cand("full", load=2, max_conversations=2)
    assert not can_serve(full, GUITARS_S1)
    assert can_serve(full, GUITARS_S1, need_free_slot=False)
    assert pick(GUITARS_S1, [full]) is None


def test_matching_puts_requested_store_first_and_respects_free_slot() -> None:
    cands = [cand("far", "s2"), cand("near_full", "s1", load=2), cand("near", "s1"),
             cand("away", "s1", presence=Presence.AWAY)]
    ids = [c.staff.id for c in matching(GUITARS_S1, cands, overflow=True, need_free_slot=False)]
    assert ids == ["near_full", "near", "far"]
    ids = [c.staff.id for c in matching(GUITARS_S1, cands, overflow=True, need_free_slot=True)]
    assert ids == ["near", "far"]


def test_accepts_one_shot_iterables() -> None:
    cands = [cand("near", "s1", load=2), cand("far", "s2")]
    assert pick(GUITARS_S1, iter(cands)) == "far"  # type: ignore[arg-type]
