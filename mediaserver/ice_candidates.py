"""The SFU's ICE candidates as clients should see them, for a server behind 1:1 NAT.

A media server in a cloud often has only a private address on its interface while the
provider maps a public one to it, port for port (an elastic or floating IP). Its host
candidates are then unreachable from shoppers' browsers. Rather than taking a TURN or STUN
allocation for itself (a round trip in every answer, a relay that carries every packet),
the server announces each host candidate once more at the public address, as a server
reflexive candidate with the same port (mediasoup's `announcedAddress`, LiveKit's
`node_ip`): checks sent there reach the host socket through the NAT, and the answer goes
back the same way. Pure SDP text in, SDP text out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# a=candidate:<foundation> <component> <transport> <priority> <address> <port> typ host ...
_HOST = re.compile(r"^a=candidate:(\S+) (\d+) udp \d+ (\S+) (\d+) typ host\b", re.IGNORECASE)
SRFLX_TYPE_PREFERENCE = 100  # RFC 8445 5.1.2.2: below host (126)


def srflx_priority(component: int, local_preference: int = 65535) -> int:
    return (SRFLX_TYPE_PREFERENCE << 24) + (local_preference << 8) + (256 - component)


def announce_public(sdp: str, public_addresses: Sequence[str]) -> str:
    """`sdp` with, after each UDP host candidate line, one server reflexive candidate per
    public address at the same port (the host one stays first: clients on the server's own
    network keep using it)."""
    if not public_addresses:
        return sdp
    out: list[str] = []
    for line in sdp.split("\r\n"):
        out.append(line)
        match = _HOST.match(line)
        if match is None:
            continue
        foundation, component, host, port = match.groups()
        for n, public in enumerate(public_addresses, start=1):
            if public != host:
                out.append(f"a=candidate:{foundation}p{n} {component} udp "
                           f"{srflx_priority(int(component), 65535 - n)} {public} {port} "
                           f"typ srflx raddr {host} rport {port}")
    return "\r\n".join(out)
