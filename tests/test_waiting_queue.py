from __future__ import annotations

import math

import pytest

from signaling.model import ConversationContext
from signaling.waiting_queue import HandleTimeEstimator, WaitingQueue, estimate_wait_s

pytestmark = pytest.mark.unit

GUITARS = ConversationContext(store_id="s1", skill="guitars")
GUITARS_S2 = ConversationContext(store_id="s2", skill="guitars")
GUITARS_DE = ConversationContext(store_id="s1", skill="guitars", language="de")
PIANOS = ConversationContext(store_id="s1", skill="pianos")


def ids(q: WaitingQueue) -> list[str]:
    return [e.conversation_id for e in q]


def test_fifo_order_and_ties_keep_insertion_order() -> None:
    q = WaitingQueue()
    q.push("a", GUITARS, 10.0)
    q.push("b", GUITARS, 20.0)
    q.push("c", GUITARS, 20.0)
    q.push("d", GUITARS, 20.0)
    assert ids(q) == ["a", "b", "c", "d"]
    assert len(q) == 4 and "c" in q and "z" not in q


def test_requeued_conversation_keeps_original_time_and_goes_near_front() -> None:
    q = WaitingQueue()
    q.push("old", GUITARS, 5.0)
    q.push("new1", GUITARS, 30.0)
    q.push("new2", GUITARS, 40.0)
    # "lost" was queued at 20, assigned, then its staff member vanished: back in line at 20.
    entry = q.push("lost", GUITARS, 20.0)
    assert entry.queued_at == 20.0
    assert ids(q) == ["old", "lost", "new1", "new2"]
    assert q.position("lost") == 2


def test_push_existing_id_raises() -> None:
    q = WaitingQueue()
    q.push("a", GUITARS, 1.0)
    with pytest.raises(ValueError, match="'a'"):
        q.push("a", PIANOS, 2.0)
    assert len(q) == 1


def test_remove() -> None:
    q = WaitingQueue()
    for i, cid in enumerate("abc"):
        q.push(cid, GUITARS, float(i))
    assert q.remove("b") is True
    assert q.remove("b") is False
    assert ids(q) == ["a", "c"]
    assert q.position("c") == 2
    q.push("b", GUITARS, 9.0)  # may be queued again after removal
    assert ids(q) == ["a", "c", "b"]


def test_iteration_is_a_snapshot_so_removal_while_iterating_is_safe() -> None:
    q = WaitingQueue()
    for i, cid in enumerate("abcd"):
        q.push(cid, GUITARS, float(i))
    seen = []
    for e in q:
        seen.append(e.conversation_id)
        q.remove(e.conversation_id)
    assert seen == ["a", "b", "c", "d"] and len(q) == 0


def test_positions_are_per_skill_and_language_pool_ignoring_store() -> None:
    q = WaitingQueue()
    q.push("g1", GUITARS, 1.0)
    q.push("p1", PIANOS, 2.0)
    q.push("g2", GUITARS_S2, 3.0)  # other store, same pool: overflow shares the staff
    q.push("de1", GUITARS_DE, 4.0)
    q.push("p2", PIANOS, 5.0)
    q.push("g3", GUITARS, 6.0)
    assert [q.position(c) for c in ("g1", "g2", "g3")] == [1, 2, 3]
    assert [q.position(c) for c in ("p1", "p2")] == [1, 2]
    assert q.position("de1") == 1
    with pytest.raises(KeyError):
        q.position("nope")


def test_expired_returns_oldest_first_at_or_past_deadline_without_removing() -> None:
    q = WaitingQueue()
    q.push("c", GUITARS, 30.0)
    q.push("a", GUITARS, 10.0)
    q.push("b", PIANOS, 20.0)
    assert q.expired(now=69.9, max_wait_s=60.0) == []
    assert [e.conversation_id for e in q.expired(now=70.0, max_wait_s=60.0)] == ["a"]
    assert [e.conversation_id for e in q.expired(now=85.0, max_wait_s=60.0)] == ["a", "b"]
    assert len(q) == 3


def test_nan_queued_at_rejected() -> None:
    with pytest.raises(ValueError):
        WaitingQueue().push("a", GUITARS, math.nan)


def test_estimate_wait_formula() -> None:
    assert estimate_wait_s(1, 2, 120.0) == pytest.approx(60.0)
    assert estimate_wait_s(3, 2, 120.0) == pytest.approx(180.0)
    assert estimate_wait_s(4, 1, 90.0) == pytest.approx(360.0)
    # More staff, shorter wait; same position and handle time.
    assert estimate_wait_s(2, 4, 120.0) < estimate_wait_s(2, 2, 120.0)  # type: ignore[operator]


@pytest.mark.parametrize("slots", [0, -1])
def test_estimate_wait_none_when_nobody_can_serve(slots: int) -> None:
    assert estimate_wait_s(1, slots, 120.0) is None


def test_handle_time_ewma() -> None:
    est = HandleTimeEstimator(100.0, alpha=0.5)
    assert est.value == 100.0
    est.observe(200.0)
    assert est.value == pytest.approx(150.0)
    est.observe(50.0)
    assert est.value == pytest.approx(100.0)


def test_handle_time_default_alpha_moves_slowly() -> None:
    est = HandleTimeEstimator(100.0)
    est.observe(200.0)
    assert est.value == pytest.approx(120.0)


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_handle_time_ignores_garbage(bad: float) -> None:
    est = HandleTimeEstimator(100.0)
    est.observe(bad)
    assert est.value == 100.0


@pytest.mark.parametrize(("initial", "alpha"), [(-1.0, 0.2), (math.nan, 0.2), (10.0, 0.0),
                                                (10.0, 1.5)])
def test_handle_time_rejects_bad_parameters(initial: float, alpha: float) -> None:
    with pytest.raises(ValueError):
        HandleTimeEstimator(initial, alpha)
