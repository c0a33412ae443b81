"""No SRTP packet index is ever used twice for different bytes, on either forwarding path.

SRTP encrypts each packet under a nonce made of its SSRC and packet index (ROC << 16 | SEQ).
Two different packets under the same index reveal the XOR of their payloads (AES-CM reuses
keystream) and, under AES-GCM, let an attacker on the path recover the authentication key and
forge packets. The SFU rewrites every forwarded stream's sequence numbers per receiver, so
this is the SFU's own duty: a late packet from before a re-base (resume after a bandwidth
pause, a publisher rejoining) must never take an outgoing number that was already used.

The audit watches the protected packets as an attacker on the wire would: per SSRC it
estimates each packet's index exactly as the sender's libsrtp does (from the newest index sent
so far) and remembers the ciphertext sent under it. Encryption is deterministic for a given
key and index, so the same index with different ciphertext means different plaintext: reuse.
A retransmission of the same packet (same bytes) is allowed, as in aiortc's sending policy.

The stream is a real VP8 L1T3 publisher feeding a real Producer, with a network that reorders
and delays packets, and a receiver that pauses, resumes, thins layers, NACKs, and whose
publisher rejoins; it runs through the Python forwarding path and through the C fan-out
(protect and sendto from C, to a loopback socket the audit reads).
"""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from pylibsrtp import Policy
from pylibsrtp import Session as SrtpSession

import mediaserver.consumer as consumer_module
from mediaserver.consumer import Consumer
from mediaserver.producer import Producer

pytestmark = pytest.mark.unit

KEY = bytes(range(30))
CLOCK = 90000


def guess_index(highest: int | None, seq: int) -> int:
    """The packet index libsrtp's sender assigns to `seq` (srtp_rdbx_estimate_index)."""
    if highest is None:
        return seq
    roc, local = highest >> 16, highest & 0xFFFF
    if local < 0x8000:
        if seq - local > 0x8000:
            roc -= 1
    elif local - 0x8000 > seq:
        roc += 1
    return (roc << 16) | seq


@dataclass
class IndexAudit:
    """What an attacker on the path sees: (SSRC, index) -> ciphertext, and any reuse."""

    highest: dict[int, int] = field(default_factory=dict)
    sent: dict[tuple[int, int], bytes] = field(default_factory=dict)
    reused: list[tuple[int, int]] = field(default_factory=list)
    packets: int = 0

    def observe(self, srtp_packet: bytes) -> None:
        ssrc = int.from_bytes(srtp_packet[8:12], "big")
        seq = int.from_bytes(srtp_packet[2:4], "big")
        index = guess_index(self.highest.get(ssrc), seq)
        if index > self.highest.get(ssrc, -1):
            self.highest[ssrc] = index
        self.packets += 1
        first = self.sent.setdefault((ssrc, index), srtp_packet)
        if first != srtp_packet:
            self.reused.append((ssrc, index))

    def out_seqs(self, ssrc: int) -> list[int]:
        return sorted(index & 0xFFFF for (s, index) in self.sent if s == ssrc)


def srtp_session() -> SrtpSession:
    # aiortc's sending policy: a packet may be sent again (retransmissions).
    policy = Policy(key=KEY, ssrc_type=Policy.SSRC_ANY_OUTBOUND,
                    srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80)
    policy.allow_repeat_tx = True
    policy.window_size = 1024
    return SrtpSession(policy)


class Wire:
    """The receiver's side of the network: protected packets end up in the audit.

    Python path: the consumer's send protects and hands over directly. Native path: the
    consumer's C target protects and sends to a loopback socket (the Python fallback sends
    through the same SRTP session and socket, as PeerAdapter does), drained into the audit.
    """

    def __init__(self, native: bool) -> None:
        self.audit = IndexAudit()
        self.tx = srtp_session()
        self.target = None
        self.receiver = self.sender = None
        if not native:
            return
        from pylibsrtp._binding import ffi, lib

        from mediaserver import _fanout

        self.receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.receiver.bind(("127.0.0.1", 0))
        self.receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.receiver.setblocking(False)
        self.sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sender.bind(("127.0.0.1", 0))
        self.target = _fanout.Target()
        host, port = self.receiver.getsockname()
        self.target.set(os.dup(self.sender.fileno()), host, port,
                        int(ffi.cast("uintptr_t", ffi.addressof(lib, "srtp_protect"))),
                        int(ffi.cast("uintptr_t", self.tx._srtp[0])), self.tx)

    def send(self, packet: bytes) -> None:
        protected = self.tx.protect(packet)
        if self.sender is None:
            self.audit.observe(protected)
        else:
            self.sender.sendto(protected, self.receiver.getsockname())

    def drain(self) -> None:
        if self.receiver is None:
            return
        while True:
            try:
                self.audit.observe(self.receiver.recv(2048))
            except BlockingIOError:
                return

    def close(self) -> None:
        if self.target is not None:
            self.target.clear()
            self.receiver.close()
            self.sender.close()


@pytest.fixture(params=["python", "native"])
def wire(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Wire]:
    native = request.param == "native"
    if native and consumer_module.native_fanout is None:
        pytest.skip("native fan-out not built or disabled")
    if not native:
        monkeypatch.setattr(consumer_module, "native_fanout", None)
    w = Wire(native)
    yield w
    w.close()


class Publisher:
    """A VP8 L1T3 camera: frames of 1-3 packets, TIDs 0,2,1,2, keyframes when asked."""

    PATTERN = (0, 2, 1, 2)

    def __init__(self, rng: random.Random, ssrc: int, seq0: int) -> None:
        self.rng = rng
        self.ssrc = ssrc
        self.seq = seq0
        self.frame = 0
        self.timestamp = rng.randrange(1 << 32)
        self.keyframe_wanted = True
        self.producer = Producer("pub", "video", ssrc, "video/vp8", 96, CLOCK, 97,
                                 self._keyframe_request)

    def _keyframe_request(self, _producer: Producer) -> None:
        self.keyframe_wanted = True

    def next_frame(self) -> list[tuple[bytes, int, int, int, int]]:
        """One frame's packets as (data, marker, seq, timestamp, offset)."""
        keyframe = self.keyframe_wanted or self.frame % 300 == 0
        self.keyframe_wanted = False
        tid = 0 if keyframe else self.PATTERN[self.frame % 4]
        count = 3 if keyframe else self.rng.randint(1, 2)
        out = []
        for i in range(count):
            start = i == 0
            descriptor = bytes((0x90 if start else 0x80, 0xE0)) \
                + (0x8000 | (self.frame & 0x7FFF)).to_bytes(2, "big") \
                + bytes(((self.frame // 4) & 0xFF, tid << 6 | (tid > 0) << 5))
            vp8_byte = 0x00 if keyframe and start else 0x01
            payload = descriptor + bytes((vp8_byte,)) + self.rng.randbytes(40 + 30 * i)
            marker = int(i == count - 1)
            head = bytes((0x80, 96 | marker << 7)) + (self.seq & 0xFFFF).to_bytes(2, "big") \
                + self.timestamp.to_bytes(4, "big") + self.ssrc.to_bytes(4, "big")
            out.append((head + payload, marker, self.seq & 0xFFFF, self.timestamp, 12))
            self.seq += 1
        self.frame += 1
        self.timestamp = (self.timestamp + CLOCK // 30) & 0xFFFFFFFF
        return out


@dataclass
class Run:
    """What a scenario exercised, so a test can insist the risky cases really happened."""

    late_after_rebase: int = 0
    rebases: int = 0
    nacks: int = 0
    rejoins: int = 0
    layer_changes: int = 0


Packet = tuple[bytes, int, int, int, int]


def run_call(wire: Wire, *, seed: int, frames: int, rtx: bool) -> Run:
    rng = random.Random(seed)
    consumer = Consumer("pub", "video", 0x5EC0A17E, 96, CLOCK, wire.send,
                        0x0DD5EED5, 97 if rtx else None)
    consumer.native = wire.target
    consumer.last_out_seq = 65_400  # the outgoing numbers wrap early: the ROC is exercised
    publisher = Publisher(rng, 0xCAFE0001, 65_000)
    consumer.bind(publisher.producer, 0.0)
    run = Run()
    # The network: (frame step it arrives at, packet, its unwrapped seq, its publisher).
    held: list[tuple[int, Packet, int, Publisher]] = []
    rebased_at: dict[int, int] = {}  # id(publisher) -> unwrapped seq that re-based
    now = 0.0
    resume_at: int | None = None

    def deliver(args: Packet, unwrapped: int, source: Publisher) -> None:
        waiting = consumer.last_in_seq < 0
        source.producer.receive(*args, now)
        if source is not publisher:
            return
        if waiting and consumer.last_in_seq >= 0:
            rebased_at[id(source)] = unwrapped
            run.rebases += 1
        elif not waiting and unwrapped < rebased_at.get(id(source), -1):
            run.late_after_rebase += 1

    for step in range(frames):
        now += 1 / 30
        first = publisher.seq
        for i, args in enumerate(publisher.next_frame()):
            roll = rng.random()
            if roll < 0.04:
                held.append((step + rng.randint(1, 3), args, first + i, publisher))
            elif roll < 0.07:
                held.append((step + rng.randint(8, 40), args, first + i, publisher))
            else:
                deliver(args, first + i, publisher)
        for item in [h for h in held if h[0] <= step]:
            held.remove(item)
            if item[3] is publisher:  # a rejoined publisher's old packets go nowhere
                deliver(item[1], item[2], item[3])
        action = rng.random()
        if resume_at is not None:
            if step >= resume_at:
                consumer.resume(now)
                resume_at = None
        elif action < 0.012:
            consumer.pause()
            resume_at = step + rng.randint(5, 60)
        elif action < 0.017:
            run.layer_changes += 1
            consumer.set_max_layer(rng.choice((0, 1, 2)))
        elif action < 0.020:
            # The publisher drops out and rejoins: new SSRC, new sequence space.
            publisher = Publisher(rng, rng.randrange(1 << 32), rng.randrange(1 << 16))
            consumer.bind(publisher.producer, now)
            run.rejoins += 1
        elif action < 0.12:
            wire.drain()
            sent = wire.audit.out_seqs(consumer.ssrc)[-200:]
            if sent:
                lost = rng.sample(sent, min(len(sent), rng.randint(1, 6)))
                lost += [rng.randrange(1 << 16) for _ in range(rng.randint(0, 2))]
                consumer.retransmit(lost, now + rng.random())
                run.nacks += 1
        wire.drain()
    wire.drain()
    return run


@pytest.mark.parametrize("rtx", [False, True], ids=["nack-resend", "rtx"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_index_sent_twice_with_different_bytes(wire: Wire, rtx: bool, seed: int) -> None:
    run = run_call(wire, seed=seed, frames=2500, rtx=rtx)
    audit = wire.audit
    # The scenario really did the risky things, and the stream really flowed.
    assert audit.packets > 1000, audit.packets
    assert run.rebases >= 3 and run.nacks > 100 and run.layer_changes >= 3
    assert run.late_after_rebase >= 1, "no late packet arrived after a re-base"
    assert not audit.reused, (
        f"{len(audit.reused)} SRTP indices sent twice with different bytes, e.g. "
        f"{[(hex(s), i) for s, i in audit.reused[:5]]}")


def test_issue_reproduction_late_packet_after_resume(wire: Wire) -> None:
    """The case of the report: 1000-1009 forwarded, paused, resumed, keyframe 1100, then a
    late 1099: before the fix, 1099 went out under an outgoing number already used."""
    consumer = Consumer("pub", "video", 0x1234, 96, CLOCK, wire.send)
    consumer.native = wire.target
    publisher = Publisher(random.Random(7), 0xCAFE, 1000)
    consumer.bind(publisher.producer, 0.0)
    frames: list[list[Packet]] = []
    while publisher.seq < 1010:
        frames.append(publisher.next_frame())
    for args in (a for f in frames for a in f if a[2] < 1010):
        publisher.producer.receive(*args, 0.1)
    consumer.pause()
    while publisher.seq < 1099:
        publisher.next_frame()  # sent while paused, not forwarded
    late = publisher.next_frame()  # 1099 (and maybe 1100): held up in the network
    consumer.resume(1.0)
    publisher.keyframe_wanted = True
    keyframe = publisher.next_frame()
    for args in keyframe:
        publisher.producer.receive(*args, 1.1)
    for args in late:
        publisher.producer.receive(*args, 1.2)
    wire.drain()
    sent_before = wire.audit.packets
    assert sent_before >= 10 + len(keyframe)
    assert not wire.audit.reused
    # The late frame from before the keyframe was not forwarded at all.
    assert sent_before == 10 + len(keyframe), sent_before

