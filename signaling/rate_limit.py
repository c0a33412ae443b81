"""Token-bucket rate limiting for inbound WebSocket messages and public HTTP endpoints.

A token bucket allows short bursts (a shopper pasting several lines) while capping the
sustained rate, which is what protects the server and the staff from floods.
"""

from __future__ import annotations

from collections import OrderedDict


class TokenBucket:
    # __slots__: one of these is consulted per inbound WebSocket message.
    __slots__ = ("_last", "_tokens", "burst", "rate_per_s")

    def __init__(self, rate_per_s: float, burst: float) -> None:
        if not rate_per_s >= 0:
            raise ValueError(f"rate_per_s must be >= 0, got {rate_per_s}")
        if not burst > 0:
            raise ValueError(f"burst must be > 0, got {burst}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = float(burst)  # starts full: a new client may burst immediately
        self._last: float | None = None

    def allow(self, now: float, cost: float = 1.0) -> bool:
        """Spend `cost` tokens if available; a refused call spends nothing."""
        if self._last is None:
            self._last = now
        elif now > self._last:
            # A clock going backwards neither refills nor rewinds, so it cannot be exploited.
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate_per_s)
            self._last = now
        if self._tokens >= cost:
            self._tokens -= cost
            return True
        return False


class KeyedRateLimiter:
    """One bucket per key (e.g. client IP), with bounded memory.

    Beyond `max_keys` the least recently used key is dropped. A dropped key comes back with a
    full bucket, which is what an idle key would have refilled to anyway; only an attacker
    rotating through more than `max_keys` keys gains anything, and per-key limits cannot stop
    that regardless.
    """

    def __init__(self, rate_per_s: float, burst: float, max_keys: int = 10000) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be >= 1, got {max_keys}")
        TokenBucket(rate_per_s, burst)  # validate the parameters once, up front
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def allow(self, key: str, now: float, cost: float = 1.0) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate_per_s, self.burst)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.allow(now, cost)

    def __len__(self) -> int:
        return len(self._buckets)
