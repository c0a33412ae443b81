"""mediaserver/aiortc_adapter.py directly: the one module that reaches into aiortc.

Server offers (renegotiation) must keep the payload types and RTP header extension ids the
peer chose earlier. Browsers number them differently from aiortc (Chromium: VP8 96, opus
111, sdes:mid 4...), and Chromium refuses an offer that renumbers an extension. The peer
here is an aiortc offer rewritten to Chromium's numbering, so the test needs no browser
(tests/test_browser_call.py covers the browser itself: the try-on mirror m-section).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aioice.ice import CandidatePair
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.codecs import HEADER_EXTENSIONS
from aiortc.mediastreams import AudioStreamTrack
from aiortc.rtcdtlstransport import SRTP_PROFILES
from aiortc.rtp import RtcpPsfbPacket

from mediaserver.aiortc_adapter import PeerAdapter, RelayTrack

from .media_peers import ColourCamera

pytestmark = pytest.mark.integration

MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"


def _renumber(sdp: str, pt_map: dict[int, int], ext_map: dict[int, int]) -> str:
    def pt(match: re.Match[str]) -> str:
        return match.group(1) + str(pt_map.get(int(match.group(2)), int(match.group(2))))

    sdp = re.sub(r"(a=(?:rtpmap|fmtp|rtcp-fb):)(\d+)", pt, sdp)
    sdp = re.sub(r"(apt=)(\d+)", pt, sdp)
    sdp = re.sub(r"^(m=\w+ \d+ \S+ )([\d ]+)$", lambda m: m.group(1) + " ".join(
        str(pt_map.get(int(p), int(p))) for p in m.group(2).split()), sdp, flags=re.MULTILINE)
    def ext(match: re.Match[str]) -> str:
        old = int(match.group(1))
        return f"a=extmap:{ext_map.get(old, old)}"

    return re.sub(r"a=extmap:(\d+)", ext, sdp)


def _extmap(section: str) -> dict[str, int]:
    return {uri: int(i) for i, uri in re.findall(r"a=extmap:(\d+)(?:/\w+)? (\S+)", section)}


def _payload_types(section: str) -> dict[str, int]:
    return {name.lower(): int(p) for p, name in re.findall(r"a=rtpmap:(\d+) ([\w-]+)/", section)}


async def test_server_offer_keeps_the_peers_numbering() -> None:
    client = RTCPeerConnection()
    client.addTrack(AudioStreamTrack())
    client.addTrack(ColourCamera((0, 0, 255)))
    await client.setLocalDescription(await client.createOffer())
    ours = _payload_types(client.localDescription.sdp)
    # Chromium's numbers: opus 111, VP8 96 (its RTX 125); sdes:mid 4, abs-send-time 9.
    mapping = {ours["opus"]: 111, ours["vp8"]: 96}
    rtx = re.search(rf"a=fmtp:(\d+) apt={ours['vp8']}\b", client.localDescription.sdp)
    assert rtx is not None
    mapping[int(rtx.group(1))] = 125
    ids = {e.id: {MID: 4, ABS_SEND_TIME: 9}.get(e.uri, e.id)
           for kind in ("audio", "video") for e in HEADER_EXTENSIONS[kind]}
    browser_offer = _renumber(client.localDescription.sdp, mapping, ids)

    server = PeerAdapter()
    try:
        await server.pc.setRemoteDescription(RTCSessionDescription(browser_offer, "offer"))
        server.adopt_transceivers()
        for transceiver in server.pc.getTransceivers():
            server.pc.addTrack(RelayTrack(transceiver.kind))
        await server.pc.setLocalDescription(await server.pc.createAnswer())
        server.add_send_slot("video", stream_id="tryon-mirror")  # a new m-section

        offer = await server.create_offer()
        sections = offer.sdp.split("\nm=")[1:]
        assert len(sections) == 3
        for section in sections:
            assert _extmap(section)[MID] == 4, section
            if section.startswith("video"):
                assert _extmap(section)[ABS_SEND_TIME] == 9, section
                assert _payload_types(section)["vp8"] == 96, section
                assert re.search(r"a=fmtp:125 apt=96\b", section), section
            else:
                assert _payload_types(section)["opus"] == 111, section
        # The new m-section is named for the browser, and the offer is one aiortc accepts.
        assert "tryon-mirror" in sections[2]
        await server.pc.setLocalDescription(offer)

        # aiortc's module-wide defaults were left alone for every other connection.
        assert {e.uri: e.id for e in HEADER_EXTENSIONS["video"]}[MID] == 1
        plain = PeerAdapter()
        plain.pc.addTrack(RelayTrack("video"))
        fresh = await plain.pc.createOffer()
        assert _extmap(fresh.sdp)[MID] == 1 and _payload_types(fresh.sdp)["vp8"] != 96
        await plain.close()
    finally:
        await server.close()
        await client.close()


async def connect(server: PeerAdapter, client: RTCPeerConnection) -> None:
    """The client offers what it has added, the server answers with relay tracks; returns
    once the server side is connected (DTLS done, packet path hooked)."""
    connected = asyncio.Event()
    server.on_connected = connected.set
    await client.setLocalDescription(await client.createOffer())
    await server.pc.setRemoteDescription(client.localDescription)
    server.adopt_transceivers()
    for transceiver in server.pc.getTransceivers():
        server.pc.addTrack(RelayTrack(transceiver.kind))
    await server.pc.setLocalDescription(await server.pc.createAnswer())
    await client.setRemoteDescription(server.pc.localDescription)
    await asyncio.wait_for(connected.wait(), 10)


@contextlib.asynccontextmanager
async def audio_peer(profile: bytes | None = None
                     ) -> AsyncIterator[tuple[PeerAdapter, RTCPeerConnection]]:
    """A connected server adapter and aiortc client sending audio; ``profile`` forces the
    SRTP profile DTLS negotiates."""
    server = PeerAdapter()
    client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        client.addTrack(AudioStreamTrack())
        if profile is not None:
            client_dtls = client.getTransceivers()[0].sender.transport
            client_dtls._srtp_profiles = [p for p in SRTP_PROFILES
                                          if p.openssl_profile == profile]
        await connect(server, client)
        yield server, client
    finally:
        await client.close()
        await server.close()


async def test_sending_follows_a_new_nominated_pair() -> None:
    """When the remote nominates another pair (no ICE restart), aioice switches to it and
    our sending, Python and native, must too: same remote, the other local address."""
    import mediaserver.aiortc_adapter as adapter

    previous = adapter._host_addresses
    adapter.use_host_addresses(["127.0.0.1", "127.0.0.2"])
    server = PeerAdapter()
    client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        client.addTrack(AudioStreamTrack())
        await connect(server, client)
        assert not server.follow_nominated_pair()  # nothing moved yet

        first = server._pair
        connection = server._connection
        other = next(p for p in connection._protocols if p is not first.protocol)
        connection._nominated[1] = CandidatePair(other, first.remote_candidate)
        arrivals: list[tuple[str, int]] = []
        for protocol in client.getTransceivers()[0].receiver.transport.transport \
                ._connection._protocols:
            original = protocol.datagram_received

            def record(data: bytes, addr: tuple[str, int], original: Any = original) -> None:
                arrivals.append(addr)
                original(data, addr)
            protocol.datagram_received = record

        assert server.follow_nominated_pair()
        assert server._addr == first.remote_addr
        local = other.transport.get_extra_info("sockname")
        target = server.native_target
        assert target is not None and target.valid and target.connected
        with socket.socket(fileno=os.dup(target.fd)) as sock:  # the target's own socket
            assert sock.getsockname() == local
            assert sock.getpeername() == first.remote_addr
        server.send_rtcp(bytes(RtcpPsfbPacket(fmt=1, ssrc=1, media_ssrc=2)))
        for _ in range(50):
            if arrivals:
                break
            await asyncio.sleep(0.02)
        assert arrivals and arrivals[-1] == local
    finally:
        await client.close()
        await server.close()
        adapter.use_host_addresses(previous)


@pytest.mark.parametrize("profile", [b"SRTP_AEAD_AES_256_GCM", b"SRTP_AEAD_AES_128_GCM",
                                     b"SRTP_AES128_CM_SHA1_80"])
async def test_outgoing_rtp_is_protected_for_the_negotiated_profile(profile: bytes) -> None:
    """With an AES-GCM profile our RTP is protected by mediaserver._srtp_gcm under keys
    exported again from the DTLS session; with any other, by aiortc's libsrtp session. Either
    way the peer's own libsrtp (aiortc here, a browser's in a call) decrypts it."""
    import mediaserver.aiortc_adapter as adapter

    async with audio_peer(profile) as (server, client):
        client_dtls = client.getTransceivers()[0].sender.transport
        server_dtls = server.pc.getTransceivers()[0].receiver.transport
        assert server_dtls._ssl.get_selected_srtp_profile() == profile
        assert server._tx_native is not None
        owner = server._tx_native[2]
        if adapter._srtp_gcm is not None and profile in adapter.GCM_PROFILES:
            assert isinstance(owner, adapter._srtp_gcm.Protector)
            assert server._protect == owner.protect
        else:
            assert owner is server_dtls._tx_srtp

        arrived: list[bytes] = []
        for protocol in client_dtls.transport._connection._protocols:
            original = protocol.datagram_received

            def capture(data: bytes, addr: tuple[str, int], original: Any = original) -> None:
                if 127 < data[0] < 192 and not 191 < data[1] < 224:
                    arrived.append(data)  # RTP: ours to check, not aiortc's to play
                else:
                    original(data, addr)
            protocol.datagram_received = capture
        sent = [bytes((0x80, 111)) + (65530 + i & 0xFFFF).to_bytes(2, "big")
                + (960 * i).to_bytes(4, "big") + (0x5EED).to_bytes(4, "big") + os.urandom(60)
                for i in range(12)]  # across the sequence number wrap
        for packet in sent:
            server.send_rtp(packet)
        for _ in range(100):
            if len(arrived) == len(sent):
                break
            await asyncio.sleep(0.02)
        assert [client_dtls._rx_srtp.unprotect(d) for d in arrived] == sent


async def test_garbage_is_dropped_and_handler_failures_are_logged_apart(
        caplog: pytest.LogCaptureFixture) -> None:
    """Undecryptable datagrams count as bad packets. A packet that decrypts but makes the
    handler raise is a server bug: counted apart, logged with its traceback once (not per
    packet), and the packets after it are handled."""
    async with audio_peer() as (server, _):
        handled: list[bytes] = []
        failures = 3

        def on_rtp(packet: bytes) -> None:
            nonlocal failures
            if failures:
                failures -= 1
                raise KeyError("a handler bug")
            handled.append(packet)
        server.on_rtp = on_rtp
        pair = server._pair
        for garbage in (bytes((0x80, 111)) + os.urandom(40), bytes((0x80, 200)) + bytes(30)):
            pair.protocol.datagram_received(garbage, pair.remote_addr)
        assert server.bad_packets == 2 and server.handler_errors == 0

        with caplog.at_level("ERROR", logger="mediaserver.aiortc_adapter"):
            for _ in range(100):  # aiortc's audio track: 50 packets a second
                if len(handled) >= 5:
                    break
                await asyncio.sleep(0.02)
        assert len(handled) >= 5, "packets after the failures are handled"
        assert server.handler_errors == 3 and server.bad_packets == 2
        logged = [r for r in caplog.records if "forwarding failed" in r.getMessage()]
        assert len(logged) == 1 and logged[0].exc_info is not None


@pytest.mark.parametrize("profile", [b"SRTP_AEAD_AES_256_GCM", b"SRTP_AES128_CM_SHA1_80"])
async def test_a_packet_srtp_refuses_is_dropped_and_counted(profile: bytes) -> None:
    """SRTP refuses to protect a packet more than 1023 behind the newest sent on its SSRC
    (a retransmission asked for far too late). The send drops it and counts it; raising
    would cut short the caller's loop over the other receivers."""
    async with audio_peer(profile) as (server, _):
        def packet(seq: int) -> bytes:
            return bytes((0x80, 111)) + seq.to_bytes(2, "big") + bytes(4) \
                + (0xC0FFEE).to_bytes(4, "big") + bytes(40)
        server.send_rtp(packet(5000))
        server.send_rtp(packet(4990))  # a retransmission in time: sent
        assert server.send_errors == 0
        server.send_rtp(packet(5000 - 1100))
        assert server.send_errors == 1
        server.send_rtp(packet(5001))  # the stream goes on
        assert server.send_errors == 1
