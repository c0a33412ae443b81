from __future__ import annotations

import pytest

from signaling.rate_limit import KeyedRateLimiter, TokenBucket

pytestmark = pytest.mark.unit


def test_starts_full_and_allows_a_burst_then_refuses() -> None:
    b = TokenBucket(rate_per_s=1.0, burst=3)
    assert [b.allow(100.0) for _ in range(4)] == [True, True, True, False]


def test_refills_at_rate() -> None:
    b = TokenBucket(rate_per_s=2.0, burst=2)
    assert b.allow(0.0) and b.allow(0.0)
    assert not b.allow(0.0)
    assert not b.allow(0.25)  # 0.5 tokens
    assert b.allow(0.5)  # 1.0 token
    assert not b.allow(0.5)
    assert b.allow(1.0) and not b.allow(1.0)


def test_refill_capped_at_burst() -> None:
    b = TokenBucket(rate_per_s=10.0, burst=2)
    b.allow(0.0)
    assert [b.allow(1000.0) for _ in range(3)] == [True, True, False]


def test_cost_and_refused_call_spends_nothing() -> None:
    b = TokenBucket(rate_per_s=1.0, burst=5)
    assert b.allow(0.0, cost=4)
    assert not b.allow(0.0, cost=2)
    assert b.allow(0.0, cost=1)  # the refused call did not consume the last token
    assert not b.allow(0.0, cost=0.5)
    assert not TokenBucket(1.0, 5).allow(0.0, cost=6)  # above burst: never


def test_clock_going_backwards_does_not_refill() -> None:
    b = TokenBucket(rate_per_s=1.0, burst=1)
    assert b.allow(100.0)
    assert not b.allow(50.0)
    assert not b.allow(100.5)  # only 0.5 s since the newest time seen
    assert b.allow(101.0)


def test_uses_slots() -> None:
    b = TokenBucket(1.0, 1.0)
    assert not hasattr(b, "__dict__")


@pytest.mark.parametrize(("rate", "burst"), [(-1.0, 1.0), (1.0, 0.0), (1.0, -1.0)])
def test_rejects_bad_parameters(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)
    with pytest.raises(ValueError):
        KeyedRateLimiter(rate, burst)


def test_keys_are_independent() -> None:
    lim = KeyedRateLimiter(rate_per_s=1.0, burst=1)
    assert lim.allow("1.2.3.4", 0.0)
    assert not lim.allow("1.2.3.4", 0.0)
    assert lim.allow("5.6.7.8", 0.0)
    assert lim.allow("1.2.3.4", 1.0)


def test_evicts_least_recently_used_key() -> None:
    lim = KeyedRateLimiter(rate_per_s=0.0, burst=1, max_keys=2)  # no refill: state is visible
    assert lim.allow("a", 0.0)
    assert lim.allow("b", 0.0)
    assert not lim.allow("a", 1.0)  # touches "a": "b" is now least recently used
    assert lim.allow("c", 2.0)  # evicts "b"
    assert len(lim) == 2
    assert not lim.allow("a", 3.0)  # "a" kept its empty bucket
    assert lim.allow("b", 4.0)  # "b" was forgotten and comes back full (evicting "c")
    assert lim.allow("c", 5.0)


def test_rejects_bad_max_keys() -> None:
    with pytest.raises(ValueError):
        KeyedRateLimiter(1.0, 1.0, max_keys=0)
