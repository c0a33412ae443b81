"""The one place that touches aiortc's and aioice's private internals (aiortc pinned 1.16.0).

aiortc does ICE, DTLS and SDP for us; it must NOT do media. Its RTCRtpReceiver starts a
decoder thread and an RTCP task per track, and its RTCRtpSender encodes frames and sends
sender reports with zero timestamps. So for every transceiver we replace `receiver.receive`
and `sender.send` on the instance with functions that only record the negotiated
parameters. Once DTLS is up we take SRTP/SRTCP datagrams straight from the UDP protocol of
the ICE connection (before aioice's STUN parse and queue, before aiortc's per-packet awaits),
unprotect them synchronously, and send with a synchronous protect + sendto on the nominated
candidate pair (following aioice if the remote nominates another one). The per-packet path
therefore has no await at all. With an AES-GCM profile, outgoing RTP is protected by
mediaserver/_srtp_gcm.c under the same keys (re-exported from the DTLS session, as aiortc
does) instead of libsrtp: same bytes, a fraction of the cost per copy.

Everything here is tested directly by tests/test_sfu_adapter.py; if an aiortc upgrade moves
an attribute, those tests fail first.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aioice.ice
import pylibsrtp
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.sdp import candidate_from_sdp

from .bwe.send_history import SendHistory
from .native import load_extension

_fanout = load_extension()
_srtp_gcm = load_extension("_srtp_gcm")

log = logging.getLogger(__name__)
# a=extmap:<id>[/<direction>] <uri> [attributes]
_EXTMAP = re.compile(r"^a=extmap:(\d+)(/\w+)? (\S+)", re.MULTILINE)
_UFRAG = re.compile(r"^a=ice-ufrag:(\S+)", re.MULTILINE)

AIORTC_VERSION = "1.16.0"
GCM_PROFILES = (b"SRTP_AEAD_AES_128_GCM", b"SRTP_AEAD_AES_256_GCM")
HANDLER_ERROR_LOG_INTERVAL_S = 10.0

_original_get_host_addresses = aioice.ice.get_host_addresses
_host_addresses: list[str] | None = None


def use_host_addresses(addresses: Sequence[str] | None) -> None:
    """Gather ICE host candidates on exactly these addresses (None: aioice's default).

    aioice leaves 127.0.0.1 out of its host candidates; a server on loopback (tests,
    benchmarks) or one that must announce a specific LAN address sets this. Process-wide,
    like the server's configuration it comes from.
    """
    global _host_addresses
    _host_addresses = list(addresses) if addresses else None
    aioice.ice.get_host_addresses = (  # type: ignore[assignment]
        _configured_host_addresses if _host_addresses else _original_get_host_addresses)


def _configured_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    assert _host_addresses is not None
    return [a for a in _host_addresses if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]


TWCC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
_transport_cc_enabled = False


def enable_transport_cc() -> None:
    """Make aiortc's answers and offers negotiate transport-wide congestion control.

    aiortc negotiates only goog-remb and abs-send-time. Browsers then estimate their downlink
    themselves and REMB only mirrors what they receive (it cannot tell that a link came
    back). With transport-cc each browser reports every packet's arrival and the SFU
    estimates and probes (mediaserver/bwe). aiortc takes what to answer from two module
    globals: the codecs' rtcpFeedback (kept where the remote offers it) and the header
    extensions it knows (kept where the remote offers them). Process-wide and idempotent; an
    aiortc client in the same process (tests) then offers them too, and, sending no
    feedback, is simply estimated from REMB as before.
    """
    global _transport_cc_enabled
    if _transport_cc_enabled or os.environ.get("SHOPCALL_TRANSPORT_CC") == "0":
        return  # SHOPCALL_TRANSPORT_CC=0: REMB only (A/B measurements, a browser bug)
    from aiortc import codecs
    from aiortc.rtcrtpparameters import RTCRtcpFeedback, RTCRtpHeaderExtensionParameters

    feedback = RTCRtcpFeedback(type="transport-cc")
    for codec in codecs.CODECS["audio"] + codecs.CODECS["video"]:
        if not codec.mimeType.lower().endswith("/rtx") and feedback not in codec.rtcpFeedback:
            codec.rtcpFeedback.append(feedback)
    used = {e.id for exts in codecs.HEADER_EXTENSIONS.values() for e in exts}
    ext_id = next(i for i in range(1, 15) if i not in used)
    for extensions in codecs.HEADER_EXTENSIONS.values():  # the same lists rtcpeerconnection uses
        if all(e.uri != TWCC_URI for e in extensions):
            extensions.append(RTCRtpHeaderExtensionParameters(id=ext_id, uri=TWCC_URI))
    _transport_cc_enabled = True


def enable_simulcast_extensions() -> None:
    """Let aiortc's answers keep the simulcast stream id extensions a browser offers
    (rtp-stream-id, repaired-rtp-stream-id): without them in the answer, a browser cannot
    label its encodings and sends only one (see simulcast_sdp.py). Idempotent."""
    from aiortc import codecs
    from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters

    from .simulcast_sdp import RID_URI, RRID_URI

    video = codecs.HEADER_EXTENSIONS["video"]
    for uri in (RID_URI, RRID_URI):
        if all(e.uri != uri for e in video):
            used = {e.id for exts in codecs.HEADER_EXTENSIONS.values() for e in exts}
            video.append(RTCRtpHeaderExtensionParameters(
                id=next(i for i in range(1, 15) if i not in used), uri=uri))


def fmtp_of(codec: Any) -> str:
    """An RTCRtpCodecCapability/Parameters' parameters as an SDP fmtp string."""
    return ";".join(f"{k}={v}" for k, v in codec.parameters.items())


def server_h264_fmtps() -> list[str]:
    return [fmtp_of(c) for c in RTCRtpSender.getCapabilities("video").codecs
            if c.mimeType.lower() == "video/h264"]


class RelayTrack(MediaStreamTrack):
    """A send-side placeholder: gives a transceiver its SSRC and msid in the SDP. Its recv is
    never called because the sender's `send` is replaced; media is forwarded as packets."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    async def recv(self) -> Any:  # pragma: no cover - never called by design
        raise RuntimeError("RelayTrack carries forwarded packets, not frames")


@dataclass(slots=True)
class SendSlot:
    """One m-section this peer can send on, with what was negotiated for it."""

    transceiver: RTCRtpTransceiver
    kind: str
    mid: str | None = None
    ssrc: int = 0
    rtx_ssrc: int = 0
    codecs: list[Any] = field(default_factory=list)  # RTCRtpCodecParameters
    ready: bool = False


@dataclass(slots=True)
class RecvSlot:
    """One m-section this peer sends to us on."""

    transceiver: RTCRtpTransceiver
    kind: str
    mid: str | None = None
    ssrcs: list[int] = field(default_factory=list)  # announced in the SDP (a=ssrc)
    rtx_ssrcs: list[int] = field(default_factory=list)  # a=ssrc-group:FID
    codecs: list[Any] = field(default_factory=list)
    ready: bool = False


RtpHandler = Callable[[bytes], None]


class PeerAdapter:
    """A server-side RTCPeerConnection whose media we handle at the packet level."""

    def __init__(self, ice_servers: Sequence[dict[str, Any]] = ()) -> None:
        # The SFU passes none: clients reach its host candidates (through their relay when
        # their network blocks UDP), so its answer needs no round trip and no TURN
        # allocation is spent on its side. The load tool's raw peers (clients) pass the
        # join's servers. iceServers must be set even empty: aiortc adds a public STUN
        # server otherwise.
        self.pc = RTCPeerConnection(RTCConfiguration(
            iceServers=[RTCIceServer(**s) for s in ice_servers],
            bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.send_slots: list[SendSlot] = []
        self.recv_slots: list[RecvSlot] = []
        self.on_rtp: RtpHandler = _drop
        self.on_rtcp: RtpHandler = _drop
        self.on_connected: Callable[[], None] = _nothing
        self.on_slot_ready: Callable[[], None] = _nothing
        self.on_closed: Callable[[], None] = _nothing
        self._sendto: Callable[[bytes, Any], None] | None = None
        self._addr: Any = None
        self._protect: Callable[[bytes], bytes] | None = None
        self._protect_rtcp: Callable[[bytes], bytes] | None = None
        self._unprotect: Callable[[bytes], bytes] | None = None
        self._unprotect_rtcp: Callable[[bytes], bytes] | None = None
        self._hooked: list[Any] = []
        self._connection: Any = None  # aioice's Connection, once hooked
        self._pair: Any = None  # the nominated pair we send on
        # What the C fan-out protects with: (srtp_protect-like function, its context, the
        # object that owns the context), libsrtp's or _srtp_gcm's.
        self._tx_native: tuple[int, int, Any] | None = None
        self._rtcp_ssrc: int | None = None
        # Where mediaserver._fanout sends this peer's forwarded RTP (set once connected,
        # cleared on close/failure); consumers hold it, see Consumer.native.
        self.native_target: Any = _fanout.Target() if _fanout is not None else None
        # Transport-wide numbers of everything sent to this peer (see bwe/send_history.py):
        # the native target's when there is one, so C and Python sends share them.
        self.history: Any = self.native_target if self.native_target is not None \
            else SendHistory()
        enable_transport_cc()
        enable_simulcast_extensions()
        self.bad_packets = 0
        self.handler_errors = 0
        self.send_errors = 0  # packets SRTP refused to protect (see send_rtp)
        self._handler_error_logged_at = -HANDLER_ERROR_LOG_INTERVAL_S
        # What protects outgoing RTP once connected: "aes-gcm" (_srtp_gcm) or "libsrtp".
        self.srtp_protect: str | None = None
        self.connected = False
        self._closed = False
        self.pc.on("connectionstatechange", self._on_state)

    # ICE --------------------------------------------------------------------------------
    def remote_ufrag(self) -> str | None:
        """The ICE username fragment of the peer's current description."""
        remote = self.pc.remoteDescription
        match = _UFRAG.search(remote.sdp) if remote is not None else None
        return match.group(1) if match else None

    async def add_remote_candidate(self, candidate: str, sdp_mid: str | None,
                                   sdp_mline_index: int | None) -> None:
        """A trickled candidate ("candidate:..." or "a=candidate:..."), or end-of-candidates
        (empty). aioice keeps checking pairs as candidates arrive and reports failure only
        after end-of-candidates. ValueError when the candidate cannot be parsed."""
        if self.pc.remoteDescription is None:
            raise ValueError("no offer applied yet")
        if not candidate:
            await self.pc.addIceCandidate(None)
            return
        line = candidate.removeprefix("a=").removeprefix("candidate:")
        try:
            parsed = candidate_from_sdp(line)
            parsed.port = int(parsed.port)
        except Exception:  # aiortc asserts, indexes and converts without checks
            raise ValueError("unreadable candidate (want the RTCIceCandidate.candidate "
                             "string, e.g. 'candidate:1 1 udp 2130706431 192.0.2.1 50000 "
                             "typ host')") from None
        if not 0 < parsed.port < 65536 or parsed.type not in ("host", "srflx", "prflx",
                                                               "relay"):
            raise ValueError("unreadable candidate: bad port or type")
        if parsed.protocol.lower() != "udp":
            return  # the SFU listens on UDP only: a TCP candidate could never pair
        parsed.sdpMid = sdp_mid
        parsed.sdpMLineIndex = sdp_mline_index if sdp_mid is None else None
        try:
            await self.pc.addIceCandidate(parsed)
        except ValueError:
            return  # after end-of-candidates (aioice refuses more): nothing to do

    def ice_state(self) -> str:
        """aiortc's ICE connection state: new, checking, completed, failed or closed."""
        return self.pc.iceConnectionState

    def selected_pair(self) -> dict[str, Any] | None:
        """Candidate types of the pair media flows on (no addresses: they are personal
        data), e.g. {"local": "host", "remote": "relay", "protocol": "udp"}."""
        pair = self._pair
        if pair is None and self._connection is not None:
            pair = self._connection._nominated.get(1)
        if pair is None:
            return None
        return {"local": pair.local_candidate.type, "remote": pair.remote_candidate.type,
                "protocol": pair.local_candidate.transport.lower()}

    # Negotiation ------------------------------------------------------------------------
    def adopt_transceivers(self) -> None:
        """Neutralise aiortc's media handling on transceivers we have not seen yet."""
        known = {id(s.transceiver) for s in self.send_slots}
        for transceiver in self.pc.getTransceivers():
            if id(transceiver) in known:
                continue
            send = SendSlot(transceiver, transceiver.kind)
            recv = RecvSlot(transceiver, transceiver.kind)
            transceiver.sender.send = self._make_send(send)  # type: ignore[method-assign]
            transceiver.receiver.receive = self._make_receive(recv)  # type: ignore[method-assign]
            self.send_slots.append(send)
            self.recv_slots.append(recv)

    def _make_send(self, slot: SendSlot) -> Callable[[Any], Any]:
        async def send(parameters: Any) -> None:
            sender = slot.transceiver.sender
            slot.mid = parameters.muxId
            slot.ssrc = sender._ssrc
            slot.rtx_ssrc = sender._rtx_ssrc
            slot.codecs = list(parameters.codecs)
            slot.ready = True
            self.on_slot_ready()
        return send

    def _make_receive(self, slot: RecvSlot) -> Callable[[Any], Any]:
        async def receive(parameters: Any) -> None:
            slot.mid = parameters.muxId
            slot.codecs = list(parameters.codecs)
            slot.ssrcs = [e.ssrc for e in parameters.encodings if e.ssrc]
            slot.rtx_ssrcs = [e.rtx.ssrc for e in parameters.encodings
                              if e.rtx is not None and e.rtx.ssrc]
            slot.ready = True
        return receive

    def add_send_slot(self, kind: str, stream_id: str | None = None) -> SendSlot:
        """A new sendonly m-section (renegotiation needed) for one more forwarded stream.

        ``stream_id`` names the stream in the SDP's ``a=msid`` (what a browser sees as
        ``event.streams[0].id``), e.g. so a shopper can tell their try-on mirror apart.
        """
        transceiver = self.pc.addTransceiver(RelayTrack(kind), direction="sendonly")
        if stream_id is not None:
            transceiver.sender._stream_id = stream_id  # aiortc writes it into a=msid
        self.adopt_transceivers()
        return next(s for s in self.send_slots if s.transceiver is transceiver)

    async def create_offer(self) -> RTCSessionDescription:
        """A server offer (renegotiation) that keeps what was agreed with this peer before.

        aiortc numbers payload types and RTP header extensions its own way in every offer
        it makes, ignoring an earlier negotiation. After a browser's offer chose other
        numbers, Chromium refuses such an offer ("RTP extension ID reassignment not
        supported"), and a re-numbered payload type would be misread on both sides. So
        while aiortc builds the offer, each kind's codecs are the ones negotiated before
        (the peer's payload types) and each extension URI keeps the peer's id; new
        m-sections get the same numbering as the existing ones of their kind.
        """
        import aiortc.rtcpeerconnection as rpc

        negotiated: dict[str, list[Any]] = {}
        for transceiver in self.pc.getTransceivers():
            if transceiver.currentDirection is not None and transceiver._codecs:
                negotiated.setdefault(transceiver.kind, list(transceiver._codecs))
        agreed: dict[str, int] = {}
        remote = self.pc.remoteDescription
        if remote is not None:
            for match in _EXTMAP.finditer(remote.sdp):
                agreed.setdefault(match.group(3), int(match.group(1)))
        used = set(agreed.values())
        extensions: dict[str, list[Any]] = {}
        for kind, defaults in rpc.HEADER_EXTENSIONS.items():
            extensions[kind] = []
            for extension in defaults:
                ext_id = agreed.get(extension.uri)
                if ext_id is None:
                    ext_id = next(i for i in range(1, 15) if i not in used)
                    used.add(ext_id)
                    agreed[extension.uri] = ext_id
                extensions[kind].append(dataclasses.replace(extension, id=ext_id))
        original_filter = rpc.filter_preferred_codecs
        original_extensions = rpc.HEADER_EXTENSIONS

        def keep_negotiated(codecs: list[Any], preferred: list[Any]) -> list[Any]:
            kind = codecs[0].mimeType.split("/")[0].lower() if codecs else ""
            return original_filter(negotiated.get(kind, codecs), preferred)

        rpc.filter_preferred_codecs = keep_negotiated  # type: ignore[assignment]
        rpc.HEADER_EXTENSIONS = extensions  # type: ignore[assignment]
        try:
            return await self.pc.createOffer()
        finally:
            rpc.filter_preferred_codecs = original_filter
            rpc.HEADER_EXTENSIONS = original_extensions

    @staticmethod
    def negotiated_codecs(transceiver: RTCRtpTransceiver) -> list[Any]:
        """Codecs both sides support on an m-section, once its remote side is known."""
        return list(getattr(transceiver, "_codecs", []))

    def extension_id(self, uri: str) -> int:
        """The peer's id for a header extension it offered (0 if it did not)."""
        remote = self.pc.remoteDescription
        if remote is None:
            return 0
        return next((int(m.group(1)) for m in _EXTMAP.finditer(remote.sdp)
                     if m.group(3) == uri), 0)

    def transport_cc_id(self) -> int:
        """The id of the transport-wide sequence number extension both sides agreed on (in
        the remote description, and in ours), or 0 when transport-cc is not negotiated."""
        local, remote = self.pc.localDescription, self.pc.remoteDescription
        if local is None or remote is None:
            return 0
        ids = [int(m.group(1)) for m in _EXTMAP.finditer(remote.sdp) if m.group(3) == TWCC_URI]
        ours = {int(m.group(1)) for m in _EXTMAP.finditer(local.sdp) if m.group(3) == TWCC_URI}
        if not ids or ids[0] not in ours or "transport-cc" not in local.sdp:
            return 0
        return ids[0]

    def rtcp_ssrc(self) -> int:
        """The SSRC this peer's feedback (RR, NACK, PLI, REMB) is sent from."""
        ssrc = self._rtcp_ssrc
        if ssrc is None:  # fixed for the connection's life: aiortc draws it at addTrack
            ssrc = self._rtcp_ssrc = self.pc.getTransceivers()[0].sender._ssrc
        return ssrc

    # Packet I/O -------------------------------------------------------------------------
    def _on_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected" and not self.connected:
            if self._hook():
                self.connected = True
                self.on_connected()
        elif state in ("failed", "closed") and not self._closed:
            self._closed = True
            self.connected = False
            self._sendto = None
            if self.native_target is not None:
                self.native_target.clear()
            self.on_closed()

    def _hook(self) -> bool:
        transceivers = self.pc.getTransceivers()
        if not transceivers:
            return False
        dtls = transceivers[0].receiver.transport
        connection = dtls.transport._connection
        pair = connection._nominated.get(1)
        if pair is None or dtls._tx_srtp is None or dtls._rx_srtp is None:
            log.warning("peer connected without a nominated pair or SRTP keys")
            return False
        gcm = self._gcm_protector(dtls)
        # Every RTP packet of this session is protected by one of the two, never both: each
        # tracks the rollover counter of the SSRCs it has sent.
        self._protect = gcm.protect if gcm is not None else dtls._tx_srtp.protect
        self._protect_rtcp = dtls._tx_srtp.protect_rtcp
        self._unprotect = self._native_unprotect(dtls._rx_srtp) or dtls._rx_srtp.unprotect
        self._unprotect_rtcp = dtls._rx_srtp.unprotect_rtcp
        self._connection = connection
        self._tx_native = self._native_protect(dtls._tx_srtp, gcm)
        self.srtp_protect = "aes-gcm" if gcm is not None else "libsrtp"
        log.debug("SRTP profile %s, outgoing RTP protected by %s",
                  dtls._ssl.get_selected_srtp_profile().decode(), self.srtp_protect)
        self._use_pair(pair)
        for protocol in connection._protocols:
            original = protocol.datagram_received
            protocol.datagram_received = self._make_datagram_hook(original)
            self._hooked.append((protocol, original))
        return True

    def _use_pair(self, pair: Any) -> None:
        self._pair = pair
        self._sendto = pair.protocol.transport.sendto
        self._addr = pair.remote_addr
        if self.native_target is not None:
            self.native_target.clear()
        self._set_native_target(pair)

    def follow_nominated_pair(self) -> bool:
        """Send on the pair aioice has nominated now, if it changed (True when it did).

        A controlling browser may nominate another pair without an ICE restart (a better
        path became usable); aioice then sends on it, and so must we. Our connected socket
        (see `_set_native_target`) only hears its own remote, so such a move can only be
        to a pair on another local socket. Called once a second, off the packet path.
        """
        if self._connection is None or not self.connected:
            return False
        pair = self._connection._nominated.get(1)
        if pair is None or pair is self._pair:
            return False
        log.info("peer moved to another candidate pair (%s -> %s)",
                 pair.local_candidate.type, pair.remote_candidate.type)
        self._use_pair(pair)
        return True

    @staticmethod
    def _native_unprotect(session: Any) -> Callable[[bytes], bytes] | None:
        """libsrtp's srtp_unprotect on pylibsrtp's session, called from C: the same result
        as ``session.unprotect`` (ValueError instead of pylibsrtp.Error when a packet does
        not authenticate) at half the cost per received packet. None: pure Python."""
        if _fanout is None:
            return None
        try:
            from pylibsrtp._binding import ffi, lib

            function = int(ffi.cast("uintptr_t", ffi.addressof(lib, "srtp_unprotect")))
            pointer = int(ffi.cast("uintptr_t", session._srtp[0]))
            return _fanout.Unprotector(function, pointer, session).unprotect  # type: ignore[no-any-return]
        except Exception:  # an upgrade moved something: stay on pylibsrtp
            log.warning("native SRTP unprotect unavailable", exc_info=True)
            return None

    @staticmethod
    def _gcm_protector(dtls: Any) -> Any | None:
        """A `_srtp_gcm.Protector` for this DTLS session's outgoing RTP, when it negotiated
        an AES-GCM profile. The keys are exported again from the DTLS session exactly as
        aiortc's `_setup_srtp` does (same label, length and halves for our DTLS role)."""
        if _srtp_gcm is None:
            return None
        try:
            name = dtls._ssl.get_selected_srtp_profile()
            if name not in GCM_PROFILES:
                return None
            profile = next(p for p in dtls._srtp_profiles if p.openssl_profile == name)
            material = dtls._ssl.export_keying_material(
                b"EXTRACTOR-dtls_srtp", 2 * (profile.key_length + profile.salt_length))
            key = profile.get_key_and_salt(material, 1 if dtls._role == "server" else 0)
            return _srtp_gcm.Protector(key[:profile.key_length], key[profile.key_length:])
        except Exception:  # an upgrade moved something: libsrtp protects, as before
            log.warning("AES-GCM SRTP protect unavailable; libsrtp protects", exc_info=True)
            return None

    @staticmethod
    def _native_protect(session: Any, gcm: Any | None) -> tuple[int, int, Any] | None:
        """(function, context, owner) for the C fan-out: `gcm`'s when there is one, else
        libsrtp's srtp_protect on pylibsrtp's session (same thread, so its state stays
        consistent with pylibsrtp's own protect). The target keeps the owner alive."""
        if gcm is not None:
            function, context = gcm.pointers
            return function, context, gcm
        try:
            from pylibsrtp._binding import ffi, lib

            return (int(ffi.cast("uintptr_t", ffi.addressof(lib, "srtp_protect"))),
                    int(ffi.cast("uintptr_t", session._srtp[0])), session)
        except Exception:  # an upgrade moved something: stay on the Python path
            log.warning("native fan-out unavailable (libsrtp)", exc_info=True)
            return None

    def _set_native_target(self, pair: Any) -> None:
        """Give the C fan-out this peer's socket, address and SRTP protect, if it can send.

        Only plain UDP pairs (host/srflx: aioice's StunProtocol); TURN-relayed ones wrap
        data and keep the Python path. The fd is a dup owned by the target, so it cannot be
        reused for another socket before the target is cleared. The target connects the
        socket to the remote address (no route lookup per send): from then on the kernel
        drops datagrams from anyone else, which also keeps strangers' garbage off the
        packet path.
        """
        target, native = self.native_target, self._tx_native
        if target is None or native is None or type(pair.protocol) is not aioice.ice.StunProtocol:
            return
        try:
            fd = os.dup(pair.protocol.transport.get_extra_info("socket").fileno())
        except Exception:  # an upgrade moved something: stay on the Python path
            log.warning("native fan-out unavailable for this peer", exc_info=True)
            return
        try:
            target.set(fd, pair.remote_addr[0], pair.remote_addr[1], *native)
        except Exception:
            os.close(fd)
            log.warning("native fan-out unavailable for this peer", exc_info=True)

    def _make_datagram_hook(self, original: Callable[[bytes, Any], None]
                            ) -> Callable[[bytes, Any], None]:
        unprotect, unprotect_rtcp = self._unprotect, self._unprotect_rtcp
        assert unprotect is not None and unprotect_rtcp is not None

        def datagram_received(data: bytes, addr: Any) -> None:
            first = data[0] if data else 0
            if not 127 < first < 192:
                original(data, addr)  # STUN (consent checks) and DTLS go to aioice/aiortc
                return
            rtcp = len(data) > 1 and 191 < data[1] < 224
            try:
                packet = unprotect_rtcp(data) if rtcp else unprotect(data)
            except Exception:
                # Garbage, replays and undecryptable packets are dropped; one participant's
                # bad packets never reach the others or end the connection.
                self.bad_packets += 1
                return
            try:
                (self.on_rtcp if rtcp else self.on_rtp)(packet)
            except Exception:
                # An authenticated packet that a handler failed on is a bug, not garbage:
                # counted apart and logged (not per packet), and the call goes on.
                self.handler_errors += 1
                self._log_handler_error()
        return datagram_received

    def _log_handler_error(self) -> None:
        now = time.monotonic()
        if now - self._handler_error_logged_at >= HANDLER_ERROR_LOG_INTERVAL_S:
            self._handler_error_logged_at = now
            log.exception("forwarding failed on a packet (%d so far on this peer; logged at "
                          "most every %.0f s)", self.handler_errors,
                          HANDLER_ERROR_LOG_INTERVAL_S)

    def send_rtp(self, packet: bytes) -> None:
        """Protect and send one RTP packet now; silently dropped when not connected.

        SRTP refuses to protect a packet numbered more than its window (1024) behind the
        newest sent on its SSRC (a retransmission asked for too late): that one packet is
        dropped and counted, and the caller, often a loop over receivers, goes on.
        """
        sendto = self._sendto
        if sendto is not None:
            try:
                protected = self._protect(self.history.stamp(packet))  # type: ignore[misc]
            except (ValueError, pylibsrtp.Error):
                self.send_errors += 1
                return
            sendto(protected, self._addr)

    def use_transport_cc(self) -> bool:
        """Stamp transport-wide numbers from now on if this negotiation agreed on them."""
        ext_id = self.transport_cc_id()
        self.history.ext_id = ext_id
        return ext_id > 0

    def send_rtcp(self, packet: bytes) -> None:
        sendto = self._sendto
        if sendto is not None:
            try:
                protected = self._protect_rtcp(packet)  # type: ignore[misc]
            except (ValueError, pylibsrtp.Error):
                self.send_errors += 1
                return
            sendto(protected, self._addr)

    async def close(self) -> None:
        self._sendto = None
        if self.native_target is not None:
            self.native_target.clear()
        for protocol, original in self._hooked:
            protocol.datagram_received = original
        self._hooked.clear()
        self.on_rtp = self.on_rtcp = _drop
        # Shielded: cancelling a caller must not cancel aiortc's internal "closed" future,
        # or aiortc's own close task later fails on it (InvalidStateError).
        await asyncio.shield(self.pc.close())


def _drop(_: bytes) -> None:
    return None


def _nothing() -> None:
    return None
