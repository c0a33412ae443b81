from __future__ import annotations

import pytest

from signaling.presence import HeartbeatMonitor

pytestmark = pytest.mark.unit


def test_expired_after_timeout_and_reported_once() -> None:
    m = HeartbeatMonitor(timeout_s=30.0)
    m.beat("alice", 0.0)
    m.beat("bob", 10.0)
    assert m.expired(30.0) == []  # exactly at the timeout: not yet older than it
    assert m.expired(30.1) == ["alice"]
    assert m.last_beat("alice") is None and "alice" not in m
    assert m.expired(31.0) == []  # reported once only
    assert m.expired(100.0) == ["bob"]
    assert len(m) == 0


def test_beat_keeps_key_alive() -> None:
    m = HeartbeatMonitor(timeout_s=30.0)
    m.beat("alice", 0.0)
    m.beat("alice", 25.0)
    assert m.expired(50.0) == []
    assert m.last_beat("alice") == 25.0
    assert m.expired(55.5) == ["alice"]


def test_late_older_beat_does_not_move_last_beat_back() -> None:
    m = HeartbeatMonitor(timeout_s=30.0)
    m.beat("alice", 20.0)
    m.beat("alice", 5.0)
    assert m.last_beat("alice") == 20.0
    assert m.expired(40.0) == []


def test_forget_stops_watching() -> None:
    m = HeartbeatMonitor(timeout_s=1.0)
    m.beat("alice", 0.0)
    m.forget("alice")
    m.forget("never-seen")
    assert m.expired(100.0) == []
    assert m.last_beat("alice") is None


def test_multiple_deaths_oldest_first() -> None:
    m = HeartbeatMonitor(timeout_s=10.0)
    m.beat("c", 3.0)
    m.beat("a", 1.0)
    m.beat("b", 2.0)
    m.beat("alive", 50.0)
    assert m.expired(55.0) == ["a", "b", "c"]
    assert m.last_beat("alive") == 50.0


def test_beat_after_death_revives() -> None:
    m = HeartbeatMonitor(timeout_s=10.0)
    m.beat("a", 0.0)
    assert m.expired(20.0) == ["a"]
    m.beat("a", 21.0)
    assert m.last_beat("a") == 21.0
    assert m.expired(40.0) == ["a"]


@pytest.mark.parametrize("timeout", [0.0, -5.0])
def test_rejects_non_positive_timeout(timeout: float) -> None:
    with pytest.raises(ValueError):
        HeartbeatMonitor(timeout)
