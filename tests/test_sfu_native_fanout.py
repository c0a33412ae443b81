"""The native fan-out (mediaserver/_fanout.c) against the pure Python Consumer.forward.

Direct tests: an SRTP session pair with a shared key and a UDP socket pair on loopback. The
C path must send what the Python path would (same header rewrite and payload, after SRTP),
keep the plaintext in the consumer's cache, update the same counters, and leave every
consumer that is not in the steady state to Consumer.forward. End to end: a call through the
SFU with real aiortc peers, with the native path on (and proven used) and off.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from pylibsrtp import Policy
from pylibsrtp import Session as SrtpSession

import mediaserver.consumer as consumer_module
from mediaserver.consumer import Consumer
from mediaserver.producer import HISTORY_MASK, HISTORY_SIZE, Producer
from mediaserver.vp8 import TemporalLayerFilter

from .test_sfu_forwarding import (
    session,  # noqa: F401  (fixture)
)

pytestmark = pytest.mark.unit

_fanout = pytest.importorskip("mediaserver._fanout")
if consumer_module.native_fanout is None:  # SHOPCALL_NATIVE_FANOUT=0
    pytest.skip("native fan-out disabled", allow_module_level=True)
fanout = consumer_module.native_fanout

KEY = bytes(range(30))


def srtp_pair() -> tuple[SrtpSession, SrtpSession]:
    tx = SrtpSession(Policy(key=KEY, ssrc_type=Policy.SSRC_ANY_OUTBOUND,
                        srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80))
    rx = SrtpSession(Policy(key=KEY, ssrc_type=Policy.SSRC_ANY_INBOUND,
                        srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80))
    return tx, rx


def srtp_pointers(srtp_session: SrtpSession) -> tuple[int, int]:
    from pylibsrtp._binding import ffi, lib

    return (int(ffi.cast("uintptr_t", ffi.addressof(lib, "srtp_protect"))),
            int(ffi.cast("uintptr_t", srtp_session._srtp[0])))


class Link:
    """A native target sending to a loopback socket, plus the receiver's SRTP session."""

    def __init__(self) -> None:
        self.tx, self.rx = srtp_pair()
        self.receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.receiver.bind(("127.0.0.1", 0))
        self.receiver.settimeout(2)
        self.sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sender.bind(("127.0.0.1", 0))
        self.target = _fanout.Target()
        protect, srtp = srtp_pointers(self.tx)
        host, port = self.receiver.getsockname()
        self.target.set(os.dup(self.sender.fileno()), host, port, protect, srtp, self.tx)

    def received(self) -> bytes:
        return self.rx.unprotect(self.receiver.recv(2048))

    def pending(self) -> bool:
        self.receiver.setblocking(False)
        try:
            self.receiver.recv(2048)
            return True
        except BlockingIOError:
            return False
        finally:
            self.receiver.settimeout(2)

    def close(self) -> None:
        self.target.clear()
        self.receiver.close()
        self.sender.close()


@pytest.fixture
def link() -> Iterator[Link]:
    link = Link()
    yield link
    link.close()


def twins(kind: str = "video") -> tuple[Consumer, Consumer, list[bytes], list[bytes]]:
    """Two consumers in the same state: one for the native path, one Python only."""
    sent_native: list[bytes] = []
    sent_python: list[bytes] = []
    a = Consumer("p1", kind, 0x11223344, 96, 90000, sent_native.append, 0x55667788, 97)
    b = Consumer("p1", kind, 0x11223344, 96, 90000, sent_python.append, 0x55667788, 97)
    b.last_out_seq, b.last_out_ts, b.rtx_seq = a.last_out_seq, a.last_out_ts, a.rtx_seq
    return a, b, sent_native, sent_python


def packets(count: int, seq0: int = 65530, ts0: int = 4294960000
            ) -> Iterator[tuple[bytes, int, int, int, int, bool, float]]:
    """Publisher packets (with a header extension to strip), across both wraps."""
    for i in range(count):
        seq_ext = seq0 + i
        timestamp = (ts0 + 3000 * (i // 3)) & 0xFFFFFFFF
        marker = int(i % 3 == 2)
        ext = bytes((0xBE, 0xDE, 0, 1, 0x10, i & 0xFF, 0, 0))
        head = bytes((0x90, 96 | (marker << 7))) + (seq_ext & 0xFFFF).to_bytes(2, "big") \
            + timestamp.to_bytes(4, "big") + (0xCAFE).to_bytes(4, "big")
        payload = bytes((0x90, 0x80, i & 0x7F)) + os.urandom(50 + 37 * (i % 30))
        yield head + ext + payload, marker, seq_ext, timestamp, 20, i == 0, 100.0 + i / 50


def publisher() -> Producer:
    return Producer("p1", "video", 0xCAFE, "video/vp8", 96, 90000, 97, lambda _: None)


def remember(producer: Producer, args: tuple[bytes, int, int, int, int, bool, float]) -> None:
    """What Producer.receive records before fanning a packet out."""
    data, marker, seq_ext, timestamp, offset, _, _ = args
    producer.history[seq_ext & HISTORY_MASK] = (seq_ext, data, offset, marker, timestamp)


def test_native_output_equals_python_path(link: Link) -> None:
    native, python, sent_native, sent_python = twins()
    native.native = link.target
    native.producer = python.producer = producer = publisher()
    for args in packets(60):
        remember(producer, args)
        fanout(*args, [native])
        python.forward(*args)
    # The first packet re-bases the stream: Python (the consumer's own send), then C.
    assert len(sent_native) == 1 and sent_native[0] == sent_python[0]
    assert link.target.sent == 59 and link.target.dropped == 0 and link.target.errors == 0
    for expected in sent_python[1:]:
        assert link.received() == expected
    assert not link.pending()
    for name in ("last_in_seq", "last_out_seq", "last_out_ts", "last_out_at", "packets",
                 "octets", "seq_offset", "ts_offset"):
        assert getattr(native, name) == getattr(python, name), name
    # Nothing is kept per receiver on the native path, yet every packet it sent is answered
    # to a NACK with the same bytes as the Python path's (rebuilt from the publisher's
    # history), across the sequence number wrap.
    held = [p for p in sent_python if native.cache.get(int.from_bytes(p[2:4], "big"))]
    assert held == sent_python[:1]  # only the re-basing packet, which Python sent
    native.rtx_payload_type = python.rtx_payload_type = None
    for packet in sent_python:
        seq = int.from_bytes(packet[2:4], "big")
        assert native.retransmit([seq], 200.0) == 1
        assert sent_native[-1] == packet
    native.rtx_payload_type = python.rtx_payload_type = 97
    seq = int.from_bytes(sent_python[-1][2:4], "big")
    assert native.retransmit([seq], 200.01) == 0  # asked again within the round trip
    native.retransmit([seq], 200.5)
    assert sent_native[-1][12:] == sent_python[-1][2:4] + sent_python[-1][12:]  # RTX
    # Packets the publisher's history no longer holds, or from before a re-base, are not
    # answered (never with another packet's payload).
    for args in packets(HISTORY_SIZE, seq0=65530 + 60, ts0=0):
        remember(producer, args)
    assert native.retransmit([int.from_bytes(sent_python[5][2:4], "big")], 201.0) == 0
    native.last_in_seq = -1  # waiting for a keyframe: offsets about to change
    assert native.retransmit([int.from_bytes(sent_python[-1][2:4], "big")], 201.0) == 0


def test_target_connects_its_socket_to_the_receiver(link: Link) -> None:
    """send() on a connected socket skips the kernel's per-call route lookup: the target
    connects the ICE pair's socket (shared through the dup) to the receiver's address."""
    assert link.target.connected
    assert link.sender.getpeername() == link.receiver.getsockname()
    link.target.clear()
    assert not link.target.connected and not link.target.valid


def test_reordered_and_stale_packets_match_python(link: Link) -> None:
    native, python, _, sent_python = twins()
    native.native = link.target
    stream = list(packets(10, seq0=1000, ts0=0))
    order = [0, 1, 2, 4, 3, 5, 6, 8, 7, 9]
    for i in order:
        fanout(*stream[i], [native])
        python.forward(*stream[i])
    # a packet from before a re-base (far older than the newest): dropped by both
    old = (stream[0][0], 0, 1000 - 5000, 0, 20, False, 200.0)
    fanout(*old, [native])
    python.forward(*old)
    assert len(sent_python) == 10
    for expected in sent_python[1:]:
        assert link.received() == expected
    assert not link.pending()
    assert (native.last_in_seq, native.last_out_seq, native.packets, native.octets) == \
        (python.last_in_seq, python.last_out_seq, python.packets, python.octets)


def test_non_steady_consumers_are_left_to_python(link: Link) -> None:
    calls: list[str] = []

    class Spy(Consumer):
        __slots__ = ()

        def forward(self, *args: object) -> None:  # type: ignore[override]
            calls.append(self.source_id)
            super().forward(*args)  # type: ignore[arg-type]

    def consumer(name: str) -> Consumer:
        c = Consumer(name, "video", 1, 96, 90000, lambda p: None)
        c.native = link.target
        return c

    steady, paused, layered, fresh, no_target, spy = (
        consumer("steady"), consumer("paused"), consumer("layered"), consumer("fresh"),
        consumer("no_target"), Spy("spy", "video", 1, 96, 90000, lambda p: None))
    spy.native = link.target
    stream = list(packets(3, seq0=10, ts0=0))
    everyone = [steady, paused, layered, no_target, spy]
    for c in everyone:
        c.forward(*stream[0])  # re-based
    paused.paused = True
    layered.layers = TemporalLayerFilter(1)
    layered.producer = SimpleNamespace(descriptor=None)  # type: ignore[assignment]
    no_target.native = None
    calls.clear()
    before = link.target.sent
    forwarded = [c.packets for c in (steady, paused, layered, fresh, no_target, spy)]
    fanout(*stream[1], [*everyone, fresh])
    assert link.target.sent == before + 1  # only `steady` went through C
    assert calls == ["spy"]  # a subclass is not trusted to behave like Consumer.forward
    after = [c.packets for c in (steady, paused, layered, fresh, no_target, spy)]
    # paused: nothing; fresh: waits for a keyframe; the others forwarded once
    assert [b - a for a, b in zip(forwarded, after, strict=True)] == [1, 0, 1, 0, 1, 1]
    # an invalidated target (peer closed) sends nothing natively any more
    link.target.clear()
    assert not link.target.valid
    fanout(*stream[2], [steady])
    assert link.target.sent == before + 1 and steady.packets == after[0] + 1


def test_python_exceptions_propagate() -> None:
    class Boom(Consumer):
        __slots__ = ()

        def forward(self, *args: object) -> None:  # type: ignore[override]
            raise RuntimeError("boom")

    c = Boom("x", "audio", 1, 111, 48000, lambda p: None)
    with pytest.raises(RuntimeError):
        fanout(*next(packets(1)), [c])


def test_peer_adapter_target_invalid_until_connected() -> None:
    from mediaserver.aiortc_adapter import PeerAdapter

    adapter = PeerAdapter()
    assert adapter.native_target is not None and not adapter.native_target.valid
    c = Consumer("x", "video", 1, 96, 90000, adapter.send_rtp)
    assert c.native is adapter.native_target
    assert Consumer("y", "video", 1, 96, 90000, [].append).native is None


def test_unprotector_matches_pylibsrtp_and_refuses_what_it_refuses() -> None:
    """The receive side's native unprotect gives pylibsrtp's plaintext, and refuses
    tampered, replayed, oversize and non-bytes input with an exception (the datagram hook
    counts those as bad packets), never a crash."""
    from pylibsrtp._binding import ffi, lib

    tx, reference = srtp_pair()
    _, rx = srtp_pair()
    unprotect = _fanout.Unprotector(
        int(ffi.cast("uintptr_t", ffi.addressof(lib, "srtp_unprotect"))),
        int(ffi.cast("uintptr_t", rx._srtp[0])), rx).unprotect
    wire = [tx.protect(bytes((0x80, 96, 0, i)) + bytes(8) + os.urandom(40 + 50 * i))
            for i in range(20)]
    for packet in wire:
        assert unprotect(packet) == reference.unprotect(packet)
    with pytest.raises(ValueError):
        unprotect(wire[5])  # a replay
    tampered = bytearray(tx.protect(bytes((0x80, 96, 0, 99)) + bytes(8) + b"payload"))
    tampered[-1] ^= 1
    with pytest.raises(ValueError):
        unprotect(bytes(tampered))
    with pytest.raises(ValueError):
        unprotect(bytes(1501))
    with pytest.raises(TypeError):
        unprotect(bytearray(100))  # type: ignore[arg-type]
    fresh = tx.protect(bytes((0x80, 96, 1, 0)) + bytes(8) + b"still fine")
    assert unprotect(fresh) == reference.unprotect(fresh)


def test_consumer_state_twins_have_the_same_attributes() -> None:
    """Consumer is the same class with or without the extension: same attributes, defaults."""
    from mediaserver.consumer_state import PyConsumerState

    native, python = _fanout.ConsumerState(), PyConsumerState()
    names = set(PyConsumerState.__slots__)
    assert names == {m for m in dir(native) if not m.startswith("_")}
    for name in sorted(names):
        assert getattr(native, name) == getattr(python, name), name
        assert type(getattr(native, name)) is type(getattr(python, name)), name
    assert isinstance(Consumer("s", "video", 1, 96, 90000, lambda _: None), _fanout.ConsumerState)
    state = _fanout.ConsumerState()
    state.ts_offset = -(1 << 33)  # offsets can be negative and exceed 32 bits
    state.last_out_at = 12.5
    state.paused = True
    assert (state.ts_offset, state.last_out_at, state.paused) == (-(1 << 33), 12.5, True)
    with pytest.raises(TypeError):
        state.packets = None  # type: ignore[assignment]


def test_a_target_made_without_init_owns_no_descriptor() -> None:
    """Target.__new__ alone (no __init__) must not claim fd 0 and close it when freed."""
    r, w = os.pipe()
    saved = os.dup(0)
    try:
        os.dup2(r, 0)
        target = _fanout.Target.__new__(_fanout.Target)
        assert target.fd == -1 and not target.valid
        del target
        os.fstat(0)  # still open
    finally:
        os.dup2(saved, 0)
        for fd in (r, w, saved):
            os.close(fd)
