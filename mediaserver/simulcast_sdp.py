"""Simulcast in the SDP: what a browser offers to send, and what we answer to receive it.

A browser sending its camera as several encodings (`sendEncodings` with `rid`s: quarter,
half and full resolution) says so per m-section with `a=rid:<id> send` and
`a=simulcast:send <id>;<id>;...`; it sends them only if the answer has the mirror image
(`a=rid:<id> recv`, `a=simulcast:recv ...`). aiortc knows nothing of either, so its
answers and offers are completed here, as text, for the m-sections that receive simulcast.
SSRCs of simulcast streams are not in the SDP: packets carry the `rtp-stream-id` header
extension (`repaired-rtp-stream-id` for retransmissions), whose URIs aiortc is taught to
accept (aiortc_adapter.enable_simulcast_extensions).

Plain text functions, no I/O.
"""

from __future__ import annotations

import re

RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
RRID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
_SIMULCAST_SEND = re.compile(r"^a=simulcast:send (\S+)", re.MULTILINE)
_RID_SEND = re.compile(r"^a=rid:(\S+) send", re.MULTILINE)
_MID = re.compile(r"^a=mid:(\S+)", re.MULTILINE)


def _sections(sdp: str) -> tuple[str, list[str]]:
    """The session part and each m-section, as text (line endings kept)."""
    parts = re.split(r"(?m)^(?=m=)", sdp)
    return parts[0], parts[1:]


# Our web client's rids: quarter, half and full resolution. It lists them full first, so a
# server that does not take simulcast gets the full one (browsers then send only the first).
KNOWN_ORDER = {"q": 0, "h": 1, "f": 2}


def offered_simulcast(sdp: str) -> dict[str, list[str]]:
    """mid -> the rids a browser offers to send on it, lowest resolution first: ours
    (q, h, f) by their meaning, others in the order offered (low to high, by convention).

    Alternatives (`a;b`'s `,` lists) and paused rids (`~`) keep their first, usable form.
    """
    out: dict[str, list[str]] = {}
    for section in _sections(sdp)[1]:
        if not section.startswith("m=video"):
            continue
        simulcast, mid = _SIMULCAST_SEND.search(section), _MID.search(section)
        if simulcast is None or mid is None:
            continue
        declared = set(_RID_SEND.findall(section))
        rids = [alt.split(",")[0].lstrip("~") for alt in simulcast.group(1).split(";")]
        rids = [r for r in rids if r in declared]
        if all(r in KNOWN_ORDER for r in rids):
            rids.sort(key=KNOWN_ORDER.__getitem__)
        if len(rids) > 1:
            out[mid.group(1)] = rids
    return out


def receive_simulcast(sdp: str, receiving: dict[str, list[str]]) -> str:
    """Our SDP (an answer or a re-offer) with `a=rid:<id> recv` and `a=simulcast:recv` added
    to each m-section (by mid) that receives these rids."""
    if not receiving:
        return sdp
    eol = "\r\n" if "\r\n" in sdp else "\n"
    head, sections = _sections(sdp)
    out = [head]
    for section in sections:
        mid = _MID.search(section)
        rids = receiving.get(mid.group(1)) if mid else None
        if rids and "a=simulcast:" not in section:
            body = section if section.endswith(eol) else section + eol
            section = body + "".join(f"a=rid:{rid} recv{eol}" for rid in rids) \
                + f"a=simulcast:recv {';'.join(rids)}{eol}"
        out.append(section)
    return "".join(out)
