"""Liveness of connected clients from their heartbeats.

A staff browser that loses its network does not close its WebSocket cleanly; without a
heartbeat deadline the server would keep offering conversations to someone who is gone.
"""

from __future__ import annotations


class HeartbeatMonitor:
    def __init__(self, timeout_s: float) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.timeout_s = timeout_s
        self._last: dict[str, float] = {}

    def beat(self, key: str, now: float) -> None:
        # Never move backwards: a late-delivered older beat must not bring a death forward.
        previous = self._last.get(key)
        if previous is None or now > previous:
            self._last[key] = now

    def forget(self, key: str) -> None:
        """Stop watching `key` (clean disconnect); unknown keys are fine."""
        self._last.pop(key, None)

    def last_beat(self, key: str) -> float | None:
        return self._last.get(key)

    def expired(self, now: float) -> list[str]:
        """Keys silent for longer than the timeout, oldest first; they are forgotten.

        Forgetting them means each death is reported exactly once, so the caller can run its
        cleanup (requeue, presence offline) without tracking what it already handled.
        """
        dead = sorted(
            (k for k, t in self._last.items() if now - t > self.timeout_s),
            key=self._last.__getitem__,
        )
        for k in dead:
            del self._last[k]
        return dead

    def __contains__(self, key: object) -> bool:
        return key in self._last

    def __len__(self) -> int:
        return len(self._last)
