"""The live progress line on stderr: sessions up, in call, failed, and current rates.

On a terminal it redraws one line; otherwise (CI logs, a file) it prints a line every few
seconds, so long runs still show they are alive.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, label: str = "", quiet: bool = False,
                 stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = self.stream.isatty()
        self.total = total
        self.label = label
        self.states: dict[tuple[int, int], str] = {}  # (worker, index) -> state
        self.server_cpu: float | None = None
        self.server_rss_mb: float | None = None
        self.t0 = time.monotonic()
        self._last_draw = 0.0
        self._last_len = 0
        self._rate_marks: list[tuple[float, int]] = []

    def on_state(self, key: tuple[int, int], state: str) -> None:
        self.states[key] = state

    def count(self, *states: str) -> int:
        return sum(1 for s in self.states.values() if s in states)

    @property
    def started(self) -> int:
        return len(self.states)

    def line(self) -> str:
        now = time.monotonic()
        self._rate_marks.append((now, self.started))
        window = 5.0 if self.tty else 12.0
        self._rate_marks = [m for m in self._rate_marks if now - m[0] <= window]
        span = now - self._rate_marks[0][0]
        rate = (self.started - self._rate_marks[0][1]) / span if span > 0 else 0.0
        failed = self.count("failed")
        finished = failed + self.count("done")
        width = 20
        filled = int(width * finished / self.total) if self.total else width
        bar = "#" * filled + "-" * (width - filled)
        parts = [f"{self.label}[{bar}] {finished}/{self.total} finished",
                 f"up {self.count('started', 'assigned', 'in_call')} "
                 f"(in call {self.count('in_call')})",
                 f"failed {failed}", f"{rate:.1f} starts/s"]
        if self.server_cpu is not None:
            parts.append(f"server CPU {self.server_cpu:.0%}")
        if self.server_rss_mb is not None:
            parts.append(f"RSS {self.server_rss_mb:.0f} MB")
        parts.append(f"{now - self.t0:.0f} s")
        return " | ".join(parts)

    def draw(self, force: bool = False) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        interval = 0.5 if self.tty else 5.0
        if not force and now - self._last_draw < interval:
            return
        self._last_draw = now
        text = self.line()
        if self.tty:
            self.stream.write("\r" + text.ljust(self._last_len))
            self._last_len = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.quiet:
            return
        self.draw(force=True)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def note(self, text: str) -> None:
        if self.quiet:
            return
        if self.tty and self._last_len:
            self.stream.write("\n")
            self._last_len = 0
        self.stream.write(text + "\n")
        self.stream.flush()
