"""mediaserver/_srtp_gcm.c: AES-GCM SRTP protect for outgoing RTP, against libsrtp.

The SFU protects every forwarded copy with it when DTLS negotiated an AES-GCM profile, in
place of libsrtp, for the same session: so it must produce libsrtp's bytes exactly (same
key derivation, IV, AAD and rollover counter per SSRC), and a browser's libsrtp must take
every packet. The reference here is pylibsrtp with aiortc's sending policy.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator

import pytest
from pylibsrtp import Error as SrtpError
from pylibsrtp import Policy
from pylibsrtp import Session as SrtpSession

import mediaserver.consumer as consumer_module

from .test_sfu_native_fanout import packets, publisher, remember, twins

pytestmark = pytest.mark.unit

_srtp_gcm = pytest.importorskip("mediaserver._srtp_gcm")
_fanout = pytest.importorskip("mediaserver._fanout")

PROFILES = {16: Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 32: Policy.SRTP_PROFILE_AEAD_AES_256_GCM}


def libsrtp(key: bytes, salt: bytes, direction: int) -> SrtpSession:
    """pylibsrtp as aiortc configures it (rtcdtlstransport._setup_srtp)."""
    policy = Policy(key=key + salt, ssrc_type=direction, srtp_profile=PROFILES[len(key)])
    policy.allow_repeat_tx = True
    policy.window_size = 1024
    return SrtpSession(policy)


def rtp(seq: int, ssrc: int, payload: bytes, *, csrcs: int = 0, extension: bytes = b"",
        padding: int = 0) -> bytes:
    first = 0x80 | (0x20 if padding else 0) | (0x10 if extension else 0) | csrcs
    head = struct.pack("!BBHII", first, 96, seq & 0xFFFF, seq * 3000 & 0xFFFFFFFF, ssrc)
    head += b"".join(struct.pack("!I", 1000 + i) for i in range(csrcs))
    if extension:
        head += struct.pack("!HH", 0xBEDE, len(extension) // 4) + extension
    tail = bytes(padding - 1) + bytes((padding,)) if padding else b""
    return head + payload + tail


def traffic() -> Iterator[bytes]:
    """Two interleaved SSRCs across two sequence-number wraps (ROC 0 -> 2), every header
    shape, a retransmission of an earlier packet and one that is reordered."""
    for i in range(140_000):
        seq = 60_000 + i
        if i % 97 == 0:
            yield rtp(seq, 0xA, os.urandom(30), csrcs=2, extension=os.urandom(8), padding=4)
        elif i % 5 == 0:
            yield rtp(seq, 0xB, os.urandom(1 + i % 1100))
        elif i % 1000 == 1:
            yield rtp(seq - 300, 0xA, b"retransmitted")  # older: inside the window
        else:
            yield rtp(seq, 0xA, b"x" * (i % 50))


@pytest.mark.parametrize("key_length", [16, 32], ids=["aes128", "aes256"])
def test_protect_gives_libsrtps_bytes(key_length: int) -> None:
    key, salt = os.urandom(key_length), os.urandom(12)
    ours = _srtp_gcm.Protector(key, salt)
    reference = libsrtp(key, salt, Policy.SSRC_ANY_OUTBOUND)
    receiver = libsrtp(key, salt, Policy.SSRC_ANY_INBOUND)
    count = 0
    for packet in traffic():
        protected = ours.protect(packet)
        assert protected == reference.protect(packet)
        assert len(protected) == len(packet) + _srtp_gcm.TAG_LEN
        if count % 7 == 0:  # a receiver's libsrtp takes it (replays aside)
            assert receiver.unprotect(protected) == packet
        count += 1
    # Sending an identical packet again is allowed (a retransmission without RTX)...
    last = rtp(60_000 + 140_000 - 1, 0xA, b"x" * ((140_000 - 1) % 50))
    assert ours.protect(last) == reference.protect(last)
    # ...but not one more than 1023 packets older than the newest of its SSRC.
    stale = rtp(60_000 + 140_000 - 1 - 1024, 0xA, b"old")
    with pytest.raises(SrtpError):
        reference.protect(stale)
    with pytest.raises(ValueError, match="status 10"):
        ours.protect(stale)


def test_streams_start_like_libsrtp_whatever_their_first_sequence_number() -> None:
    """A new SSRC starts at ROC 0 even when its first sequence number is high, and a
    packet from just before it (seq going backwards over the wrap) stays in ROC 0."""
    key, salt = os.urandom(16), os.urandom(12)
    ours, reference = _srtp_gcm.Protector(key, salt), libsrtp(key, salt,
                                                               Policy.SSRC_ANY_OUTBOUND)
    for ssrc, seqs in ((1, [65535, 0, 1, 65534]), (2, [40000, 40001, 39000]),
                       (3, [5, 3, 70000, 4, 4464])):
        for seq in seqs:
            packet = rtp(seq, ssrc, b"payload")
            if (ssrc, seq) == (3, 4):  # 4460 behind the newest (70000 & 0xFFFF): refused
                with pytest.raises(SrtpError):
                    reference.protect(packet)
                with pytest.raises(ValueError):
                    ours.protect(packet)
                continue
            assert ours.protect(packet) == reference.protect(packet), (ssrc, seq)


def test_bad_input_is_refused_with_an_error() -> None:
    ours = _srtp_gcm.Protector(bytes(16), bytes(12))
    good = rtp(1, 1, b"payload")
    for bad in (b"", good[:11], bytes((0x00,)) + good[1:],  # version 0
                bytes((0x8F,)) + good[1:],  # 15 CSRCs announced, none there
                bytes((0x90,)) + good[1:12] + struct.pack("!HH", 0xBEDE, 200),  # ext too long
                bytes(65530)):
        with pytest.raises(ValueError):
            ours.protect(bad)
    with pytest.raises(TypeError):
        ours.protect("text")  # type: ignore[arg-type]
    for key, salt in ((bytes(24), bytes(12)), (bytes(16), bytes(14))):
        with pytest.raises(ValueError):
            _srtp_gcm.Protector(key, salt)
    with pytest.raises(RuntimeError):
        _srtp_gcm.Protector.__new__(_srtp_gcm.Protector).protect(good)
    assert ours.protect(good) == libsrtp(bytes(16), bytes(12),
                                         Policy.SSRC_ANY_OUTBOUND).protect(good)


@pytest.mark.skipif(consumer_module.native_fanout is None, reason="native fan-out disabled")
def test_native_fanout_protects_with_it_and_shares_the_rollover_state() -> None:
    """The C fan-out calls the Protector through its pointers; the Python path of the same
    receiver (first packet of a stream, retransmissions) protects with the same Protector,
    so both keep one rollover counter per SSRC across the sequence-number wrap."""
    key, salt = os.urandom(32), os.urandom(12)
    protector = _srtp_gcm.Protector(key, salt)
    receiver_srtp = libsrtp(key, salt, Policy.SSRC_ANY_INBOUND)
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    target = _fanout.Target()
    try:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(2)
        sender.bind(("127.0.0.1", 0))
        function, context = protector.pointers
        target.set(os.dup(sender.fileno()), *receiver.getsockname(), function, context,
                   protector)
        native, python, _, sent_python = twins()
        native.send = lambda packet: sender.sendto(protector.protect(packet),
                                                   receiver.getsockname())
        native.native = target
        native.producer = python.producer = producer = publisher()
        for args in packets(40):  # seq 65530.. : the wrap happens on the native path
            remember(producer, args)
            consumer_module.native_fanout(*args, [native])
            python.forward(*args)
        assert target.sent == 39 and target.errors == 0
        for expected in sent_python:  # first packet from Python, the rest from C
            assert receiver_srtp.unprotect(receiver.recv(2048)) == expected
        native.rtx_payload_type = python.rtx_payload_type = None
        seq = int.from_bytes(sent_python[-1][2:4], "big")
        assert native.retransmit([seq], 200.0) == 1  # Python path, after the wrap
        assert receiver.recv(2048) == protector.protect(sent_python[-1])
    finally:
        target.clear()
        receiver.close()
        sender.close()
