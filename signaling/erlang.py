"""Erlang C: how many servers a queue needs so that a target share waits less than a target.

Pure functions, no I/O, so the staffing plan can be checked against published worked examples.

The model (M/M/N, "Erlang C") assumes Poisson arrivals, exponentially distributed handling
times, N identical servers, an unlimited queue and nobody abandoning. Traffic A (Erlangs) is
arrival rate x average handling time (AHT) in the same time unit: 360 conversations an hour of
240 s each are 360 * 240 / 3600 = 24 Erlangs, i.e. 24 servers busy on average.

Shoppers do abandon (shopcall even marks them missed after a while), which Erlang C ignores:
it overestimates waits, so a plan built on it errs towards one server too many, the safe side.
"""

from __future__ import annotations

import math

__all__ = [
    "average_speed_of_answer",
    "erlang_b",
    "erlang_c",
    "required_servers",
    "service_level",
    "traffic_erlangs",
]


def _check(traffic: float, servers: int) -> None:
    if not math.isfinite(traffic) or traffic < 0:
        raise ValueError(f"traffic must be a finite number >= 0, got {traffic!r}")
    if not isinstance(servers, int) or isinstance(servers, bool) or servers < 0:
        raise ValueError(f"servers must be an integer >= 0, got {servers!r}")


def traffic_erlangs(arrival_rate_per_h: float, aht_s: float) -> float:
    """Offered traffic A = arrivals per hour x AHT in hours."""
    if not math.isfinite(arrival_rate_per_h) or arrival_rate_per_h < 0:
        raise ValueError(f"arrival rate must be >= 0, got {arrival_rate_per_h!r}")
    if not math.isfinite(aht_s) or aht_s <= 0:
        raise ValueError(f"AHT must be > 0 seconds, got {aht_s!r}")
    return arrival_rate_per_h * aht_s / 3600.0


def erlang_b(traffic: float, servers: int) -> float:
    """Blocking probability B(A, N) by the recursion B(0) = 1, B(n) = A B(n-1) / (n + A B(n-1)).

    The recursion instead of A^N / N! keeps every intermediate value in [0, 1], so it neither
    overflows nor loses precision at the hundreds of servers a large shop may need.
    """
    _check(traffic, servers)
    b = 1.0
    for n in range(1, servers + 1):
        b = traffic * b / (n + traffic * b)
    return b


def erlang_c(traffic: float, servers: int) -> float:
    """Probability that an arrival has to wait, C(A, N) = N B / (N - A (1 - B)).

    With A >= N the queue grows without bound, so everybody waits (1.0); with no traffic nobody
    does (0.0).
    """
    _check(traffic, servers)
    if traffic == 0:
        return 0.0
    if traffic >= servers:
        return 1.0
    b = erlang_b(traffic, servers)
    return servers * b / (servers - traffic * (1.0 - b))


def service_level(traffic: float, servers: int, aht_s: float, target_wait_s: float) -> float:
    """Share of arrivals answered within target_wait_s: 1 - C(A, N) e^(-(N - A) t / AHT)."""
    if not math.isfinite(aht_s) or aht_s <= 0:
        raise ValueError(f"AHT must be > 0 seconds, got {aht_s!r}")
    if not math.isfinite(target_wait_s) or target_wait_s < 0:
        raise ValueError(f"target wait must be >= 0 seconds, got {target_wait_s!r}")
    pw = erlang_c(traffic, servers)
    if pw >= 1.0:
        return 0.0 if traffic > 0 else 1.0
    return 1.0 - pw * math.exp(-(servers - traffic) * target_wait_s / aht_s)


def average_speed_of_answer(traffic: float, servers: int, aht_s: float) -> float:
    """Mean wait over all arrivals, C(A, N) AHT / (N - A); infinite when A >= N."""
    pw = erlang_c(traffic, servers)
    if traffic == 0:
        return 0.0
    if traffic >= servers:
        return math.inf
    return pw * aht_s / (servers - traffic)


def required_servers(arrival_rate_per_h: float, aht_s: float, target_share: float,
                     target_wait_s: float, max_servers: int = 10_000) -> int | None:
    """Fewest servers N whose service level reaches target_share within target_wait_s.

    0 when nothing arrives; None when even max_servers do not reach the target (a target of
    100% within 0 s, for instance, is never reached with random arrivals).
    """
    if not 0 < target_share <= 1:
        raise ValueError(f"target share must be in (0, 1], got {target_share!r}")
    traffic = traffic_erlangs(arrival_rate_per_h, aht_s)
    if traffic == 0:
        return 0
    # Fewer than A servers can never keep up, so start just above it.
    n = max(1, math.floor(traffic) + 1)
    while n <= max_servers:
        # A hair of tolerance: a target met exactly must not be missed by rounding.
        if service_level(traffic, n, aht_s, target_wait_s) >= target_share - 1e-12:
            return n
        n += 1
    return None
