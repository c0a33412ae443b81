"""Pure parts of issue 17: TURN REST credentials, TURN URLs, connection records and counts."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from mediaserver.connectivity import (
    CONNECT_TIMEOUT_S,
    REPORT_WAIT_S,
    ClientView,
    ConnectionOutcomes,
    ConnectionRecord,
    candidate_type,
)
from signaling.ice_servers import IceServerIssuer, turn_credential, turn_username
from signaling.protocol import ProtocolError, parse_inbound
from signaling.turn_check import parse_turn_url

pytestmark = pytest.mark.unit


def test_credentials_follow_the_turn_rest_scheme_coturn_checks() -> None:
    # The scheme of draft-uberti-behave-turn-rest / coturn's use-auth-secret, computed
    # independently: base64(HMAC-SHA1(secret, "<expiry>:<user>")).
    username = turn_username("shopper:shp_1", 1_718_006_400.9)
    assert username == "1718006400:shopper:shp_1"
    expected = base64.b64encode(hmac.new(b"s3cret", username.encode(), hashlib.sha1)
                                .digest()).decode()
    assert turn_credential("s3cret", username) == expected
    assert turn_credential("other", username) != expected


def test_each_participant_gets_its_own_short_lived_credentials() -> None:
    now = [1000.0]
    issuer = IceServerIssuer([{"urls": ["stun:stun.example.org"]}],
                             turn_urls=["turns:turn.example.org:443?transport=tcp"],
                             turn_secret="k", lifetime_s=600, clock=lambda: now[0])
    a, b = issuer.for_participant("staff:alice"), issuer.for_participant("shopper:s")
    assert a[0] == {"urls": ["stun:stun.example.org"]}
    assert a[1]["username"] == "1600:staff:alice" and b[1]["username"] == "1600:shopper:s"
    assert a[1]["credential"] != b[1]["credential"]
    now[0] = 2000.0
    assert issuer.for_participant("staff:alice")[1]["username"] == "2600:staff:alice"
    assert IceServerIssuer(clock=lambda: 0.0).for_participant("x") == []
    with pytest.raises(ValueError):
        IceServerIssuer(turn_urls=["turn:x"], clock=lambda: 0.0)


@pytest.mark.parametrize(("url", "host", "port", "transport", "tls"), [
    ("turn:turn.example.org", "turn.example.org", 3478, "udp", False),
    ("turn:turn.example.org:3479?transport=tcp", "turn.example.org", 3479, "tcp", False),
    ("turns:turn.example.org:443?transport=tcp", "turn.example.org", 443, "tcp", True),
    ("turns:turn.example.org", "turn.example.org", 5349, "tcp", True),
    ("turn:[2001:db8::1]:3478?transport=udp", "2001:db8::1", 3478, "udp", False),
])
def test_turn_urls(url: str, host: str, port: int, transport: str, tls: bool) -> None:
    target = parse_turn_url(url)
    assert (target.host, target.port, target.transport, target.tls) == (host, port,
                                                                        transport, tls)


@pytest.mark.parametrize("url", ["stun:x", "turns:x?transport=udp", "turn:?transport=udp",
                                 "turn:x?transport=sctp"])
def test_bad_turn_urls(url: str) -> None:
    with pytest.raises(ValueError):
        parse_turn_url(url)


def test_a_record_counts_once_and_says_why_it_failed() -> None:
    record = ConnectionRecord(started_at=100.0)
    assert not record.overdue(100.0 + CONNECT_TIMEOUT_S - 1)
    assert record.overdue(100.0 + CONNECT_TIMEOUT_S + 1)
    assert "no connection within" in record.reason("checking")
    record.report(ClientView("failed", errors=(("turns:t:443", 401, "Unauthorized"),)))
    assert "refused the credentials (401)" in record.reason("failed")
    assert record.failed(record.reason("failed")) and not record.failed("again")
    outcomes = ConnectionOutcomes()
    assert record.countable(200.0)
    outcomes.count(record)
    assert not record.countable(201.0)
    assert outcomes.counts == {("failed", "none"): 1}


def test_a_connection_waits_for_the_clients_word_on_relays() -> None:
    record = ConnectionRecord(started_at=0.0)
    record.connected(1.0, {"local": "host", "remote": "prflx", "protocol": "udp"})
    assert record.candidate_type == "prflx" and not record.countable(2.0)
    assert record.countable(1.0 + REPORT_WAIT_S)
    record.report(ClientView("connected", candidate_type="relay", relay_protocol="tls"))
    assert record.countable(2.0) and record.candidate_type == "relay"
    outcomes = ConnectionOutcomes()
    outcomes.count(record)
    assert outcomes.counts == {("connected", "relay"): 1}
    assert record.describe("completed")["connected_after_s"] == 1.0


def test_candidate_type_of_a_path() -> None:
    host = {"local": "host", "remote": "host", "protocol": "udp"}
    assert candidate_type(host, None) == "host"
    assert candidate_type({**host, "remote": "relay"}, None) == "relay"
    client = ClientView("connected", "srflx")
    assert candidate_type({**host, "remote": "prflx"}, client) == "srflx"
    assert candidate_type(None, None) == "none"


def inbound(raw: str) -> object:
    return parse_inbound(raw, 65536)


def test_candidate_messages_are_validated() -> None:
    ok = inbound('{"type": "media.candidate", "call_id": "c", "candidate": "", '
                       '"ufrag": "u"}')
    assert ok.candidate == "" and ok.sdp_mid is None
    with pytest.raises(ProtocolError):  # a candidate must say which m-section
        inbound('{"type": "media.candidate", "call_id": "c", "candidate": "c:1"}')
    with pytest.raises(ProtocolError):
        inbound('{"type": "media.connection", "call_id": "c", "state": "maybe"}')
    too_many = ",".join(['{"url": "u", "code": 401}'] * 9)
    with pytest.raises(ProtocolError):
        inbound('{"type": "media.connection", "call_id": "c", "state": "failed", '
                      f'"errors": [{too_many}]}}')


def test_a_server_behind_nat_announces_its_public_address() -> None:
    from mediaserver.ice_candidates import announce_public

    sdp = ("v=0\r\nm=audio 40000 UDP/TLS/RTP/SAVPF 111\r\n"
           "a=candidate:f1 1 udp 2130706431 10.0.0.5 40000 typ host\r\n"
           "a=candidate:f2 1 udp 2130706431 10.0.0.6 40002 typ host\r\n"
           "a=end-of-candidates\r\n")
    assert announce_public(sdp, []) == sdp
    out = announce_public(sdp, ["203.0.113.7"]).split("\r\n")
    assert out[2] == "a=candidate:f1 1 udp 2130706431 10.0.0.5 40000 typ host"
    assert out[3].startswith("a=candidate:f1p1 1 udp ") and out[3].endswith(
        " 203.0.113.7 40000 typ srflx raddr 10.0.0.5 rport 40000")
    assert int(out[3].split()[3]) < 2130706431  # below the host candidate
    assert out[5].endswith(" 203.0.113.7 40002 typ srflx raddr 10.0.0.6 rport 40002")
    assert out[-2:] == ["a=end-of-candidates", ""]
    # An address already announced as host is not announced twice.
    assert announce_public(sdp, ["10.0.0.5"]).count("10.0.0.5 40000") == 1
