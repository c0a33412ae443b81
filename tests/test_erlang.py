"""Erlang C against values derived by hand and against a published worked example."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from signaling.erlang import (
    average_speed_of_answer,
    erlang_b,
    erlang_c,
    required_servers,
    service_level,
    traffic_erlangs,
)

pytestmark = pytest.mark.unit


def test_two_erlangs_on_three_servers_by_hand() -> None:
    """A = 2 Erlangs, N = 3 servers, derived by hand two ways.

    Direct formula: C = (A^N/N! * N/(N-A)) / (sum_{k<N} A^k/k! + A^N/N! * N/(N-A))
      A^3/3! = 8/6 = 4/3, times N/(N-A) = 3/1 -> 4;  sum = 1 + 2 + 4/2 = 5;  C = 4/9.
    Erlang B recursion: B1 = 2/3, B2 = (4/3)/(2 + 4/3) = 2/5, B3 = (4/5)/(3 + 4/5) = 4/19;
      C = N B / (N - A(1 - B)) = (12/19) / (3 - 30/19) = 12/27 = 4/9.
    """
    assert erlang_b(2, 3) == pytest.approx(float(Fraction(4, 19)), abs=1e-15)
    assert erlang_c(2, 3) == pytest.approx(4 / 9, abs=1e-15)
    # Mean wait: C * AHT / (N - A) = 4/9 AHT.
    assert average_speed_of_answer(2, 3, 90.0) == pytest.approx(40.0)
    # Service level 1 - C e^(-(N-A) t/AHT); with t = AHT ln 2 the exponential is 1/2: 7/9.
    assert service_level(2, 3, 90.0, 90.0 * math.log(2)) == pytest.approx(7 / 9)
    # One server, A = 0.5: M/M/1, where the probability of waiting is the utilisation.
    assert erlang_c(0.5, 1) == pytest.approx(0.5)


def test_published_example_100_calls_per_half_hour() -> None:
    """The pyworkforce 0.1.0 README example (https://pypi.org/project/pyworkforce/0.1.0/),
    also the classic Call Centre Helper worked example: 100 calls per 30 minutes, AHT 3 min,
    target 80% answered within 20 s. Published result: 14 positions, service level
    0.8883500191794669, waiting probability 0.1741319335950498, occupancy 0.7142857142857143.

    Traffic: 200 calls/h x 180 s / 3600 = 10 Erlangs; occupancy = 10 / 14.
    """
    a = traffic_erlangs(200, 180)
    assert a == 10
    assert erlang_c(a, 14) == pytest.approx(0.1741319335950498, rel=1e-12)
    assert service_level(a, 14, 180, 20) == pytest.approx(0.8883500191794669, rel=1e-12)
    assert a / 14 == pytest.approx(0.7142857142857143)
    # 13 agents fall short (79.6%), which is why 14 is the answer.
    assert service_level(a, 13, 180, 20) < 0.8
    assert required_servers(200, 180, 0.8, 20) == 14


def test_edges() -> None:
    assert erlang_c(0, 0) == 0.0 and erlang_c(0, 5) == 0.0  # no traffic: nobody waits
    assert erlang_c(3, 3) == 1.0 and erlang_c(4, 3) == 1.0  # overloaded: everybody waits
    assert service_level(4, 3, 60, 20) == 0.0
    assert average_speed_of_answer(3, 3, 60) == math.inf
    assert required_servers(0, 180, 0.8, 20) == 0
    # A target out of reach within max_servers: None rather than a wrong number.
    assert required_servers(200, 180, 0.8, 20, max_servers=13) is None
    # Large traffic stays finite and sane (the recursion does not overflow).
    assert 0 < erlang_c(500, 520) < 1
    for bad in ((-1, 2), (math.nan, 2), (1, -1), (1, 1.5)):
        with pytest.raises(ValueError):
            erlang_c(*bad)
    with pytest.raises(ValueError):
        required_servers(10, 0, 0.8, 20)
    with pytest.raises(ValueError):
        required_servers(10, 180, 0, 20)


def test_required_servers_is_the_smallest_that_meets_the_target() -> None:
    for rate, aht, share, wait in ((30, 240, 0.8, 60), (360, 240, 0.9, 15), (1, 600, 0.5, 0)):
        n = required_servers(rate, aht, share, wait)
        assert n is not None
        a = traffic_erlangs(rate, aht)
        assert service_level(a, n, aht, wait) >= share
        assert n - 1 <= a or service_level(a, n - 1, aht, wait) < share
