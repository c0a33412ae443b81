"""Pure statistics: percentiles of small samples and a mergeable log histogram for large
ones (per-packet latencies from several worker processes), so the report's percentiles are
exact for join times and within 1% for packet latencies."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

QUANTILES = (0.5, 0.95, 0.99)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1) of unsorted values; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def summary(values: Sequence[float], scale: float = 1.0, digits: int = 1) -> dict[str, Any]:
    """count, mean, p50/p95/p99 and max, each multiplied by scale (e.g. 1000 for ms)."""
    out: dict[str, Any] = {"count": len(values)}
    if not values:
        return {**out, "mean": None, "p50": None, "p95": None, "p99": None, "max": None}
    out["mean"] = round(sum(values) / len(values) * scale, digits)
    for q in QUANTILES:
        out[f"p{round(q * 100)}"] = round(percentile(values, q) * scale, digits)  # type: ignore[operator]
    out["max"] = round(max(values) * scale, digits)
    return out


class LogHistogram:
    """Counts in logarithmic buckets 1% wide, from 10 µs up; mergeable across processes."""

    GROWTH = 1.01
    FLOOR = 1e-5

    __slots__ = ("buckets", "count", "total", "vmax")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.vmax = 0.0

    def add(self, value: float) -> None:
        index = 0 if value <= self.FLOOR else 1 + int(math.log(value / self.FLOOR,
                                                               self.GROWTH))
        self.buckets[index] = self.buckets.get(index, 0) + 1
        self.count += 1
        self.total += value
        if value > self.vmax:
            self.vmax = value

    def extend(self, values: Iterable[float]) -> None:
        for v in values:
            self.add(v)

    def merge(self, other: LogHistogram) -> None:
        for k, n in other.buckets.items():
            self.buckets[k] = self.buckets.get(k, 0) + n
        self.count += other.count
        self.total += other.total
        self.vmax = max(self.vmax, other.vmax)

    def quantile(self, q: float) -> float | None:
        if not self.count:
            return None
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                if index == 0:
                    return self.FLOOR
                # the bucket's geometric middle
                return min(self.FLOOR * self.GROWTH ** (index - 0.5), self.vmax)
        return self.vmax

    def summary(self, scale: float = 1.0, digits: int = 2) -> dict[str, Any]:
        out: dict[str, Any] = {"count": self.count}
        if not self.count:
            return {**out, "mean": None, "p50": None, "p95": None, "p99": None, "max": None}
        out["mean"] = round(self.total / self.count * scale, digits)
        for q in QUANTILES:
            out[f"p{round(q * 100)}"] = round(self.quantile(q) * scale, digits)  # type: ignore[operator]
        out["max"] = round(self.vmax * scale, digits)
        return out

    def to_json(self) -> dict[str, Any]:
        return {"buckets": {str(k): v for k, v in self.buckets.items()}, "count": self.count,
                "total": self.total, "max": self.vmax}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LogHistogram:
        h = cls()
        h.buckets = {int(k): int(v) for k, v in data["buckets"].items()}
        h.count, h.total, h.vmax = int(data["count"]), float(data["total"]), float(data["max"])
        return h
