"""The numbers a Consumer changes for every packet it forwards, and where they live.

With the native fan-out built, they are C fields of ``mediaserver._fanout.ConsumerState``,
which ``Consumer`` derives from: the C loop updates them in place for each copy instead of
making new Python ints (five per copy before), and Python code reads and writes them as
ordinary attributes. Without it (no compiler, or ``SHOPCALL_NATIVE_FANOUT=0``) this module's
``__slots__`` class holds the same attributes, so ``Consumer`` is the same either way.
"""

from __future__ import annotations

from .native import load_extension

__all__ = ["ConsumerState"]


class PyConsumerState:
    """Pure Python twin of the C ``ConsumerState`` (same attributes, same defaults)."""

    __slots__ = ("base_in_seq", "last_in_seq", "last_out_at", "last_out_seq", "last_out_ts",
                 "octets", "packets", "paused", "payload_type", "seq_offset", "ssrc",
                 "ts_offset")

    def __init__(self) -> None:
        self.last_in_seq = self.seq_offset = self.ts_offset = self.ssrc = 0
        self.base_in_seq = 0
        self.last_out_seq = self.last_out_ts = self.packets = self.octets = 0
        self.payload_type = 0
        self.last_out_at = 0.0
        self.paused = False


_native = load_extension()
ConsumerState: type = _native.ConsumerState if _native is not None else PyConsumerState
