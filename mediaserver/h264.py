"""H.264 RTP helpers for the SFU (RFC 6184): keyframe detection and fmtp matching.

The SFU does not depacketize H.264; it only needs to know where a receiver
can start decoding (IDR or SPS) and whether a publisher's H.264 can be
forwarded to a receiver that negotiated a given fmtp line.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_PROFILE_LEVEL_ID",
    "h264_profile",
    "is_keyframe",
    "packetization_mode",
    "profile_level_id",
    "same_profile",
]

_NAL_IDR = 5
_NAL_SPS = 7
_STAP_A = 24
_FU_A = 28

#: libwebrtc's value when the fmtp has no profile-level-id: Constrained
#: Baseline, level 3.1. (RFC 6184 says 42000A, plain Baseline level 1; we
#: follow libwebrtc because browsers are our only peers, so matching decisions
#: agree with theirs.)
DEFAULT_PROFILE_LEVEL_ID = (0x42, 0xE0, 0x1F)


def is_keyframe(payload: bytes | bytearray | memoryview, offset: int = 0) -> bool:
    """True when this RTP payload (from ``offset``: the forwarding path passes the whole
    packet rather than slice it) carries an IDR slice or an SPS.

    A receiver can start decoding at such a packet, so the SFU uses it to
    answer PLIs and to unmute a new subscriber. Handles single NAL units,
    STAP-A (any aggregated NAL qualifies) and FU-A (only the first fragment,
    S bit set, so that the keyframe is signalled once per NAL unit). Other
    packetizations (STAP-B, MTAP, FU-B) are not used by WebRTC and return
    False.
    """
    n = len(payload)
    if n <= offset:
        return False
    nal_type = payload[offset] & 0x1F
    if nal_type == _FU_A:
        if n < offset + 2:
            return False
        fu_header = payload[offset + 1]
        return bool(fu_header & 0x80) and (fu_header & 0x1F) in (_NAL_IDR, _NAL_SPS)
    if nal_type == _STAP_A:
        pos = offset + 1
        while pos + 2 < n:
            size = (payload[pos] << 8) | payload[pos + 1]
            pos += 2
            if size == 0 or pos + size > n:
                return False
            if payload[pos] & 0x1F in (_NAL_IDR, _NAL_SPS):
                return True
            pos += size
        return False
    return nal_type in (_NAL_IDR, _NAL_SPS)


def _fmtp_params(fmtp: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in fmtp.split(";"):
        key, sep, value = item.partition("=")
        if sep:
            params[key.strip().lower()] = value.strip()
    return params


def profile_level_id(fmtp: str) -> tuple[int, int, int] | None:
    """Return ``(profile_idc, profile_iop, level_idc)`` from an fmtp line.

    Absent parameter -> :data:`DEFAULT_PROFILE_LEVEL_ID`; a value that is not
    six hex digits -> None, so callers refuse to match rather than guess.
    """
    value = _fmtp_params(fmtp).get("profile-level-id")
    if value is None:
        return DEFAULT_PROFILE_LEVEL_ID
    if len(value) != 6:
        return None
    try:
        numeric = int(value, 16)
    except ValueError:
        return None
    return numeric >> 16, (numeric >> 8) & 0xFF, numeric & 0xFF


def packetization_mode(fmtp: str) -> int:
    """packetization-mode from an fmtp line (RFC 6184 default 0 when absent).

    Mode 0 forbids FU-A/STAP-A, so a publisher in mode 1 cannot be forwarded
    to a receiver that only negotiated mode 0. Unparsable values count as 0.
    """
    value = _fmtp_params(fmtp).get("packetization-mode", "0")
    try:
        return int(value)
    except ValueError:
        return 0


# (profile_idc, mask, value, profile name), checked in order. This is the
# table of RFC 6184 section 8.1 as libwebrtc encodes it
# (api/video_codecs/h264_profile_level_id.cc, kProfilePatterns): a bit pattern
# "x1xx0000" on profile_iop means mask=0b10111111, value=0b01000000.
def _pattern(bits: str) -> tuple[int, int]:
    mask = int("".join("0" if c == "x" else "1" for c in bits), 2)
    return mask, int(bits.replace("x", "0"), 2)


_PROFILE_PATTERNS: tuple[tuple[int, int, int, str], ...] = tuple(
    (idc, *_pattern(bits), name)
    for idc, bits, name in (
        (0x42, "x1xx0000", "constrained-baseline"),
        (0x4D, "1xxx0000", "constrained-baseline"),
        (0x58, "11xx0000", "constrained-baseline"),
        (0x42, "x0xx0000", "baseline"),
        (0x58, "10xx0000", "baseline"),
        (0x4D, "0x0x0000", "main"),
        (0x64, "00000000", "high"),
        (0x64, "00001100", "constrained-high"),
        (0xF4, "00000000", "predictive-high-444"),
    )
)


def h264_profile(fmtp: str) -> str | None:
    """Name of the H.264 profile an fmtp line declares, or None if unknown."""
    pli = profile_level_id(fmtp)
    if pli is None:
        return None
    idc, iop, _level = pli
    for p_idc, mask, value, name in _PROFILE_PATTERNS:
        if idc == p_idc and iop & mask == value:
            return name
    return None


def same_profile(a_fmtp: str, b_fmtp: str) -> bool:
    """Whether packets produced under ``a_fmtp`` may be sent to a ``b_fmtp`` receiver.

    Rule (libwebrtc's IsSameH264Profile + its packetization-mode check, from
    the RFC 6184 section 8.1 table): both lines must name the same *profile*
    after classification, so the level is ignored (an SFU cannot transcode,
    and levels are decoder capabilities, not bitstream syntax) while the
    constraint flags matter. Hence 42e01f, 42c01f, 42f01f, 4d801f and 58c01f
    are all Constrained Baseline and match each other, whereas 42001f is
    plain Baseline and does not match 42e01f. Unknown or malformed profiles
    never match, and packetization modes must be equal.
    """
    profile = h264_profile(a_fmtp)
    return (
        profile is not None
        and profile == h264_profile(b_fmtp)
        and packetization_mode(a_fmtp) == packetization_mode(b_fmtp)
    )
