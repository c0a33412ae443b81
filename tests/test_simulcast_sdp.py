"""Simulcast in SDP: what a browser offers, what we answer (aiortc does neither)."""

from __future__ import annotations

import pytest

from mediaserver.simulcast_sdp import offered_simulcast, receive_simulcast

pytestmark = pytest.mark.unit

OFFER = "\r\n".join([
    "v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:0", "a=sendrecv",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97", "a=mid:1", "a=sendrecv",
    "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    "a=rid:f send", "a=rid:h send", "a=rid:q send", "a=simulcast:send f;h;q",
    "m=video 9 UDP/TLS/RTP/SAVPF 96", "a=mid:2", "a=recvonly", ""])


def test_our_rids_come_lowest_first_and_others_in_offer_order() -> None:
    assert offered_simulcast(OFFER) == {"1": ["q", "h", "f"]}
    other = OFFER.replace("a=rid:f send", "a=rid:lo send").replace(
        "a=rid:h send", "a=rid:hi send").replace("a=rid:q send\r\n", "").replace(
        "a=simulcast:send f;h;q", "a=simulcast:send lo;~hi,x")
    assert offered_simulcast(other) == {"1": ["lo", "hi"]}
    single = OFFER.replace("a=simulcast:send f;h;q", "a=simulcast:send f")
    assert offered_simulcast(single) == {}  # one encoding is no simulcast
    undeclared = OFFER.replace("a=rid:h send\r\n", "")
    assert offered_simulcast(undeclared) == {"1": ["q", "f"]}


def test_the_answer_receives_exactly_the_offered_rids() -> None:
    answer = OFFER.replace("a=sendrecv", "a=sendrecv").replace(
        "a=rid:f send\r\na=rid:h send\r\na=rid:q send\r\na=simulcast:send f;h;q\r\n", "")
    done = receive_simulcast(answer, {"1": ["q", "h", "f"]})
    video = done.split("m=video")[1]
    assert "a=rid:q recv\r\na=rid:h recv\r\na=rid:f recv\r\na=simulcast:recv q;h;f\r\n" in video
    assert "simulcast" not in done.split("m=video")[2] and "simulcast" not in \
        done.split("m=video")[0]
    assert receive_simulcast(done, {"1": ["q", "h", "f"]}) == done  # idempotent
