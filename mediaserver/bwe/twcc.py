"""Transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-cc-
extensions-01), the RTCP message (RTPFB, FMT 15) that Chromium, Firefox and Safari send for
every packet that carried the transport-wide sequence number header extension.

Each feedback says, for a run of transport-wide sequence numbers, which packets arrived and
when (in 250 us steps from a 64 ms reference clock). The SFU parses what receivers send about
the packets it forwarded (its send-side estimate of their downlink), and builds feedback for
what publishers send it (so a browser's own estimator sees its uplink).

Plain functions on bytes, no I/O. Parsing never trusts the input: a truncated or inconsistent
message raises ValueError, whatever it contains.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["FMT", "URI", "Feedback", "build_feedback", "parse_feedback"]

URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
FMT = 15
PT_RTPFB = 205
DELTA_US = 250
REFERENCE_US = 64_000
# A feedback reports at most this many packets (libwebrtc's limit is similar): one covering
# a long gap must not grow without bound.
MAX_STATUS_COUNT = 0xFFFF

_NOT_RECEIVED, _SMALL, _LARGE = 0, 1, 2


@dataclass(slots=True)
class Feedback:
    """One feedback message: `base_seq` and, per packet from it on, the arrival time in
    microseconds on the receiver's clock (None: not received). `arrivals[i]` is for
    sequence number (base_seq + i) & 0xFFFF."""

    sender_ssrc: int
    media_ssrc: int
    base_seq: int
    count: int  # the feedback packet count (wraps at 256)
    arrivals: list[int | None]


def parse_feedback(packet: bytes | memoryview, offset: int = 0) -> Feedback:
    """Parse one RTCP transport-wide feedback starting at `offset` (its RTCP header)."""
    data = memoryview(packet)[offset:]
    if len(data) < 20:
        raise ValueError("transport-cc feedback: too short")
    if data[0] >> 6 != 2 or data[0] & 0x1F != FMT or data[1] != PT_RTPFB:
        raise ValueError("not a transport-cc feedback")
    length = (int.from_bytes(data[2:4], "big") + 1) * 4
    if length > len(data) or length < 20:
        raise ValueError("transport-cc feedback: bad length")
    data = data[:length]
    if data[0] & 0x20:  # padding: the last byte says how much
        pad = data[-1]
        if pad == 0 or pad > length - 20:
            raise ValueError("transport-cc feedback: bad padding")
        data = data[:length - pad]
    sender = int.from_bytes(data[4:8], "big")
    media = int.from_bytes(data[8:12], "big")
    base = int.from_bytes(data[12:14], "big")
    status_count = int.from_bytes(data[14:16], "big")
    reference = int.from_bytes(data[16:19], "big")
    if reference & 0x800000:  # 24-bit signed
        reference -= 1 << 24
    fb_count = data[19]
    if status_count == 0:
        raise ValueError("transport-cc feedback: no packets")
    pos = 20
    symbols: list[int] = []
    while len(symbols) < status_count:
        if pos + 2 > len(data):
            raise ValueError("transport-cc feedback: truncated status chunks")
        chunk = int.from_bytes(data[pos:pos + 2], "big")
        pos += 2
        if chunk & 0x8000 == 0:  # run length: 2-bit symbol, 13-bit run
            symbol = (chunk >> 13) & 0x3
            run = chunk & 0x1FFF
            if symbol == 3 or run == 0:
                raise ValueError("transport-cc feedback: bad run-length chunk")
            symbols.extend([symbol] * min(run, status_count - len(symbols)))
        elif chunk & 0x4000 == 0:  # status vector, 14 one-bit symbols
            for bit in range(13, -1, -1):
                symbols.append((chunk >> bit) & 0x1)
        else:  # status vector, 7 two-bit symbols
            for shift in range(12, -1, -2):
                symbol = (chunk >> shift) & 0x3
                if symbol == 3 and len(symbols) < status_count:
                    raise ValueError("transport-cc feedback: reserved status symbol")
                symbols.append(symbol)
    del symbols[status_count:]
    arrivals: list[int | None] = []
    at = reference * REFERENCE_US
    for symbol in symbols:
        if symbol == _NOT_RECEIVED:
            arrivals.append(None)
            continue
        if symbol == _SMALL:
            if pos + 1 > len(data):
                raise ValueError("transport-cc feedback: truncated deltas")
            delta = data[pos]
            pos += 1
        else:
            if pos + 2 > len(data):
                raise ValueError("transport-cc feedback: truncated deltas")
            delta = int.from_bytes(data[pos:pos + 2], "big", signed=True)
            pos += 2
        at += delta * DELTA_US
        arrivals.append(at)
    return Feedback(sender, media, base, fb_count, arrivals)


def iter_feedback(compound: bytes) -> Iterable[int]:
    """Offsets of the transport-cc messages in a compound RTCP packet."""
    pos = 0
    while pos + 4 <= len(compound):
        length = (int.from_bytes(compound[pos + 2:pos + 4], "big") + 1) * 4
        if compound[pos + 1] == PT_RTPFB and compound[pos] & 0x1F == FMT:
            yield pos
        pos += length


def build_feedback(sender_ssrc: int, media_ssrc: int, base_seq: int,
                   arrivals: Sequence[int | None], count: int) -> bytes:
    """One feedback for packets base_seq.. with these arrival times (microseconds, None if
    lost); the first must have arrived. Deltas that do not fit 16 bits (more than 8 s apart)
    are the caller's to split into another feedback (ValueError here)."""
    if not arrivals or arrivals[0] is None:
        raise ValueError("the first packet of a feedback must have arrived")
    if len(arrivals) > MAX_STATUS_COUNT:
        raise ValueError("too many packets for one feedback")
    reference = arrivals[0] // REFERENCE_US
    at = reference * REFERENCE_US
    symbols = []
    deltas = bytearray()
    for arrival in arrivals:
        if arrival is None:
            symbols.append(_NOT_RECEIVED)
            continue
        # Rounded on the receiver's 250 us grid, accumulated from the rounded times, so
        # errors do not add up over a long feedback.
        delta = round((arrival - at) / DELTA_US)
        at += delta * DELTA_US
        if 0 <= delta <= 0xFF:
            symbols.append(_SMALL)
            deltas.append(delta)
        elif -0x8000 <= delta <= 0x7FFF:
            symbols.append(_LARGE)
            deltas += delta.to_bytes(2, "big", signed=True)
        else:
            raise ValueError("arrival delta too large for one feedback")
    chunks = bytearray()
    i = 0
    while i < len(symbols):
        run = 1
        while i + run < len(symbols) and symbols[i + run] == symbols[i] and run < 0x1FFF:
            run += 1
        if run >= 7:
            chunks += ((symbols[i] << 13) | run).to_bytes(2, "big")
            i += run
            continue
        group = symbols[i:i + 7]
        if len(symbols) - i >= 14 and all(s != _LARGE for s in symbols[i:i + 14]):
            word = 0x8000
            for k, s in enumerate(symbols[i:i + 14]):
                word |= s << (13 - k)
            chunks += word.to_bytes(2, "big")
            i += 14
            continue
        word = 0xC000
        for k, s in enumerate(group):
            word |= s << (12 - 2 * k)
        chunks += word.to_bytes(2, "big")
        i += 7
    body = (sender_ssrc.to_bytes(4, "big") + media_ssrc.to_bytes(4, "big")
            + (base_seq & 0xFFFF).to_bytes(2, "big") + len(arrivals).to_bytes(2, "big")
            + (reference & 0xFFFFFF).to_bytes(3, "big") + bytes((count & 0xFF,))
            + bytes(chunks) + bytes(deltas))
    pad = -len(body) % 4
    if pad:
        body += bytes(pad - 1) + bytes((pad,))
    header = bytes((0x80 | (0x20 if pad else 0) | FMT, PT_RTPFB)) \
        + ((len(body) + 4) // 4 - 1).to_bytes(2, "big")
    return header + body
