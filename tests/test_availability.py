from __future__ import annotations

import json

import pytest

from signaling.availability import Availability, compute_availability
from signaling.model import Channel, ConversationContext, Presence, StaffMember
from signaling.routing import Candidate

pytestmark = pytest.mark.unit

ALL = frozenset(Channel)
CHAT_ONLY = frozenset({Channel.CHAT})


def cand(
    sid: str,
    store: str = "s1",
    *,
    load: int = 0,
    presence: Presence = Presence.ONLINE,
    channels: frozenset[Channel] = ALL,
    skills: frozenset[str] = frozenset({"guitars"}),
    max_conversations: int = 2,
) -> Candidate:
    staff = StaffMember(id=sid, name=sid, store_id=store, skills=skills,
                        max_conversations=max_conversations, channels=channels)
    return Candidate(staff=staff, presence=presence, load=load, last_activity_at=0.0)


CTX = ConversationContext(store_id="s1", skill="guitars")


def test_nobody_online_offers_only_message() -> None:
    a = compute_availability(CTX, [cand("x", presence=Presence.AWAY)], overflow=True)
    assert a == Availability(chat=False, audio=False, video=False, message=True,
                             staff_online=0, free_slots=0)


def test_full_staff_still_offers_chat_but_not_realtime() -> None:
    a = compute_availability(CTX, [cand("x", load=2)], overflow=True)
    assert (a.chat, a.audio, a.video, a.message) == (True, False, False, True)
    assert (a.staff_online, a.free_slots) == (1, 0)


def test_realtime_needs_a_free_slot_on_a_staff_member_supporting_it() -> None:
    cands = [
        cand("chatter", channels=CHAT_ONLY),  # free but chat only
        cand("video_full", load=2),  # supports video but full
    ]
    a = compute_availability(CTX, cands, overflow=True)
    assert (a.chat, a.audio, a.video) == (True, False, False)
    assert (a.staff_online, a.free_slots) == (2, 2)

    cands.append(cand("audio_free", channels=frozenset({Channel.CHAT, Channel.AUDIO})))
    a = compute_availability(CTX, cands, overflow=True)
    assert (a.chat, a.audio, a.video) == (True, True, False)
    assert (a.staff_online, a.free_slots) == (3, 4)


def test_staff_without_chat_channel_does_not_enable_chat() -> None:
    a = compute_availability(CTX, [cand("v", channels=frozenset({Channel.VIDEO}))],
                             overflow=True)
    assert (a.chat, a.audio, a.video, a.staff_online) == (False, False, True, 1)


def test_ctx_channel_is_ignored() -> None:
    cands = [cand("x")]
    for channel in Channel:
        a = compute_availability(ConversationContext(store_id="s1", skill="guitars",
                                                     channel=channel), cands, overflow=True)
        assert (a.chat, a.audio, a.video) == (True, True, True)


def test_overflow_rule_matches_routing() -> None:
    cands = [cand("far", "s2"), cand("near_full", "s1", load=2)]
    assert compute_availability(CTX, cands, overflow=True).video is True
    closed = compute_availability(CTX, cands, overflow=False)
    assert (closed.chat, closed.video, closed.staff_online, closed.free_slots) == (
        True, False, 1, 0)


def test_skill_mismatch_and_offline_not_counted() -> None:
    cands = [cand("piano", skills=frozenset({"pianos"})), cand("off", presence=Presence.OFFLINE),
             cand("busy", presence=Presence.BUSY_IN_STORE), cand("ok", load=1,
                                                                  max_conversations=3)]
    a = compute_availability(CTX, cands, overflow=True)
    assert (a.staff_online, a.free_slots) == (1, 2)


def test_to_json() -> None:
    a = compute_availability(CTX, [cand("x", load=1)], overflow=True)
    payload = a.to_json()
    assert json.loads(json.dumps(payload)) == {
        "chat": True, "audio": True, "video": True, "message": True,
        "staff_online": 1, "free_slots": 1,
    }


def test_accepts_one_shot_iterable() -> None:
    a = compute_availability(CTX, iter([cand("x")]), overflow=True)
    assert (a.chat, a.video, a.staff_online) == (True, True, 1)
