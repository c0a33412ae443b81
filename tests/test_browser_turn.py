"""A video call from networks that block UDP, through coturn over TLS (issue 17's scenario).

Three hosts: the hub (shopcall, its SFU and coturn, all on 10.77.0.1), the shopper's home
and the store tablet, each behind its own veth with a route to 10.77.0.1. Real Chromium in
each leaf, the shop's page on its own origin, the widget embedded. Four phases:

1. Open network: the call connects on host candidates (no needless relaying).
2. UDP dropped in both leaves (nftables) and TURN's TCP port too: only TLS to coturn gets
   out. The call connects through the relay: the selected pair's local candidate is `relay`
   over `tls` in getStats on both sides, both decode video, coturn logged the allocations,
   and the operator listing and metrics say `relay`.
3. coturn restarted with another secret (the shop's configuration drifted): the minted
   credentials are refused (401). Both sides say "Could not connect: this network blocks
   calls." with retry and audio only, the call clock stops; the browsers cannot tell why
   (no icecandidateerror for a TURN/TLS 401), the server's check of its relay reports the
   401 in the operator listing and its metric.
4. coturn fixed: the shopper takes "Audio only", the store "Try again"; both connect through
   the relay and the failure is gone from both pages.

The server's browsers load pages over http on the hub's address, which Chromium treats as a
secure origin with --unsafely-treat-insecure-origin-as-secure (a deployment has TLS).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from signaling.model import Role

from . import netns
from .browser_harness import (
    CHROMIUM,
    Cameras,
    api,
    browser_server,
    launch,
    not_runnable,
    run_in_private_network,
    wait_for,
)
from .coturn import Coturn, missing
from .test_browser_call import Contexts, start_video_call
from .test_metrics_and_openapi import samples, value

pytestmark = pytest.mark.browser

INSIDE = "SHOPCALL_BROWSER_TURN_INSIDE"
PREFIX = "SHOPCALL_NETNS_PREFIX"
LEAVES = ["home", "store"]
HUB = "10.77.0.1"  # shopcall, the SFU and coturn, reached from both leaves
TURN_PORT, TURNS_PORT = 3478, 5349
SECRET = "browser-turn-secret-0123456789abcdef"

SELECTED = """
async () => {
  for (const pc of (window.__pcs || []).slice().reverse()) {
    if (pc.connectionState !== 'connected') continue;
    const report = await pc.getStats();
    let pair = null;
    report.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) {
        pair = report.get(s.selectedCandidatePairId);
      }
    });
    const local = pair && report.get(pair.localCandidateId);
    if (local) return { type: local.candidateType, relayProtocol: local.relayProtocol || null,
                        protocol: local.protocol };
  }
  return null;
}
"""


AUDIO_IN = """
async () => {
  let packets = 0;
  for (const pc of window.__pcs || []) {
    if (pc.connectionState !== 'connected') continue;
    (await pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') packets += s.packetsReceived || 0;
    });
  }
  return packets;
}
"""

VIDEO_OUT = """
async () => {
  let packets = 0;
  for (const pc of window.__pcs || []) {
    if (pc.connectionState !== 'connected') continue;
    (await pc.getStats()).forEach((s) => {
      if (s.type === 'outbound-rtp' && s.kind === 'video') packets += s.packetsSent || 0;
    });
  }
  return packets;
}
"""


@pytest.mark.timeout(420)
def test_browser_call_through_turn() -> None:
    if missing():  # installed by `make system-deps`: its absence is a broken set-up
        pytest.fail(missing())
    reason = netns.available() or not_runnable()  # no root / no Chromium: as every browser test
    if reason:
        pytest.skip(reason)
    hosts = netns.Hosts()
    try:
        hosts.create(LEAVES)
        netns.run("ip", "-n", hosts.hub, "addr", "add", f"{HUB}/32", "dev", "lo")
        for leaf in LEAVES:
            link = hosts.links[leaf]
            netns.run("ip", "-n", link.leaf, "route", "add", f"{HUB}/32", "via", link.hub_ip)
        output = run_in_private_network(f"{Path(__file__).resolve()}::test_inside", INSIDE,
                                        expect_passed=1, timeout_s=400, namespace=hosts.hub,
                                        env={PREFIX: hosts.prefix})
        print("\n".join(line for line in output.splitlines() if "turn scenario:" in line))
    finally:
        hosts.close()


def block_udp(hosts: netns.Hosts, leaf: str, blocked: bool) -> None:
    """What a hotel or store network does: no UDP out, and only TLS-looking TCP."""
    nft = ["ip", "netns", "exec", hosts.ns(leaf), "nft"]
    netns.run(*nft, "delete", "table", "inet", "firewall", check=False)
    if not blocked:
        return
    netns.run(*nft, "add", "table", "inet", "firewall")
    netns.run(*nft, "add", "chain", "inet", "firewall", "out",
              "{ type filter hook output priority 0; }")
    netns.run(*nft, "add", "rule", "inet", "firewall", "out", "meta", "l4proto", "udp", "drop")
    netns.run(*nft, "add", "rule", "inet", "firewall", "out", "tcp", "dport",
              str(TURN_PORT), "drop")


# Inside the hub ---------------------------------------------------------------------------

@pytest.mark.skipif(not os.environ.get(INSIDE),
                    reason="run by test_browser_call_through_turn in its network namespaces")
def test_inside(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    hosts = netns.Hosts(prefix=os.environ[PREFIX])
    hosts.attach(LEAVES)
    cams = Cameras(tmp_path)
    contexts = Contexts()
    urls = [f"turn:{HUB}:{TURN_PORT}?transport=udp", f"turn:{HUB}:{TURN_PORT}?transport=tcp",
            f"turns:{HUB}:{TURNS_PORT}?transport=tcp"]
    coturn = Coturn(tmp_path / "coturn", address=HUB, allowed_peers=[HUB], secret=SECRET,
                    port=TURN_PORT, tls_port=TURNS_PORT, extra=("verbose",)).start()
    # Chromium checks the TURN server's certificate like a web site's: trust this one key
    # (a deployment's coturn has a certificate from a public CA).
    trust = f"--ignore-certificate-errors-spki-list={coturn.spki_sha256}"
    turn_config = (f"[media.turn]\nurls = {urls!r}\nsecret = \"{SECRET}\"\n"
                   f"check_ca_file = \"{coturn.cert}\"\ncheck_interval_s = 2\n"
                   ).replace("'", '"')
    try:
        with browser_server(tmp_path / "server", host="0.0.0.0", announced=f'["{HUB}"]',
                            site_host=HUB, public_host=HUB, grace_s=30.0,
                            extra_config=turn_config) as server, sync_playwright() as pw:
            base = server.public_base
            secure = f"--unsafely-treat-insecure-origin-as-secure={base},{server.shop_site.origin}"
            home = launch(pw, cams.shopper, executable=hosts.wrapper("home", CHROMIUM, tmp_path),
                          extra=(secure, trust))
            store = launch(pw, cams.staff, executable=hosts.wrapper("store", CHROMIUM, tmp_path),
                           extra=(secure, trust))
            try:
                coturn = _scenario(server, hosts, coturn, contexts, home, store, base, tmp_path)
            except BaseException:
                from .browser_harness import dump_failure
                dump_failure("turn", contexts.all, contexts.console)
                print(f"--- coturn log ---\n{coturn.log()[-4000:]}")
                raise
            finally:
                home.close()
                store.close()
    finally:
        coturn.stop()


def _connections(server: Any) -> dict[str, dict[str, Any]]:
    ops = server.token(Role.OPERATOR, "ops")
    sessions = api(server, "/api/media-sessions", ops)["media_sessions"]
    return {p["participant_id"]: p["connection"] for s in sessions[-1:]
            for p in s["participants"]}


def _end(call: Any, contexts: Contexts) -> None:
    """Alice ends the conversation (its call with it), and both pages go away."""
    call.column.get_by_role("button", name="End conversation").click()
    call.column.get_by_role("button", name="End", exact=True).click()
    call.staff.wait_for_timeout(500)
    for ctx in contexts.all:
        ctx.close()
    contexts.all.clear()


def _call(server: Any, contexts: Contexts, home: Any, store: Any, base: str) -> Any:
    """A fresh video call (new pages on both sides), both sides decoding."""
    return start_video_call(server, contexts.open(home, "shopper"),
                            contexts.open(store, "alice"), staff_base=base)


def _scenario(server: Any, hosts: netns.Hosts, coturn: Coturn, contexts: Contexts,
              home: Any, store: Any, base: str, tmp_path: Path) -> Coturn:
    from playwright.sync_api import expect

    # 1. Open network: host candidates, no relay.
    call = _call(server, contexts, home, store, base)
    open_s = call.first_frames_s
    first = [page.evaluate(SELECTED) for page in (call.shopper, call.staff)]
    for page in (call.shopper, call.staff):
        # Chromium may start on whichever pair answered first and move to the better one.
        wait_for(page, lambda p=page: (p.evaluate(SELECTED) or {}).get("type") == "host",
                 f"a host pair on the open network (first selected: {first})", 15)
    _end(call, contexts)

    # 2. UDP blocked, TURN/TCP blocked: only TURN over TLS gets out.
    for leaf in LEAVES:
        block_udp(hosts, leaf, True)
    call = _call(server, contexts, home, store, base)
    relayed_s = call.first_frames_s
    for page, who in ((call.shopper, "shopper"), (call.staff, "store")):
        selected = page.evaluate(SELECTED)
        assert selected == {"type": "relay", "relayProtocol": "tls", "protocol": "udp"}, \
            (who, selected)
    log = coturn.log()
    assert log.count("ALLOCATE processed, success") >= 2, log[-3000:]
    wait_for(call.staff, lambda: len(c := _connections(server)) == 2 and all(
        v["outcome"] == "connected" and v["client"] for v in c.values()),
        "both clients' connection reports", 15)
    connections = _connections(server)
    for who, c in connections.items():
        assert c["candidate_type"] == "relay" and c["client"]["relay_protocol"] == "tls", (who, c)
    # Counted once settled, at the server's next once-a-second look.
    wait_for(call.staff, lambda: value(samples(_sync_scrape(server)),
                                       "shopcall_media_connections_total",
                                       outcome="connected", candidate_type="relay") >= 2,
             "both relayed connections counted", 5)
    _end(call, contexts)

    # 3. coturn no longer shares shopcall's secret: the credentials are refused (401).
    coturn.stop()
    coturn = Coturn(tmp_path / "coturn2", address=HUB, allowed_peers=[HUB],
                    secret="a-secret-shopcall-does-not-know", port=TURN_PORT,
                    tls_port=TURNS_PORT, extra=("verbose",), certificate=coturn).start()
    failed_before = value(samples(_sync_scrape(server)), "shopcall_media_connections_total",
                          outcome="failed", candidate_type="none")
    staff = contexts.open(store, "alice").new_page()
    staff.goto(f"{base}/staff#token={server.token(Role.STAFF, 'alice')}")
    expect(staff.locator("#conn")).to_have_text("Connected")
    staff.locator("label.p-online").click()
    shopper = contexts.open(home, "shopper").new_page()
    shopper.goto(server.shop_url)
    shopper.get_by_role("button", name="Ask a guitar expert").click()
    widget = shopper.locator("#shopcall-widget")
    widget.locator(".channels").get_by_role("button", name="Start a chat").click()
    widget.locator("#sc-input").fill("Video, please?")
    widget.locator("#sc-input").press("Enter")
    staff.locator(".offer").get_by_role("button", name="Accept").click()
    column = staff.locator("article.conv").first
    widget.locator(".chat-actions").get_by_role("button", name="Video call").click()
    column.locator(".callbar").get_by_role("button", name="Accept").click()
    widget.locator(".consent").get_by_role("button", name="Turn on camera").click()
    blocked = "Could not connect: this network blocks calls."
    expect(widget.locator(".stage")).to_contain_text(blocked, timeout=40_000)
    expect(column.locator(".stage")).to_contain_text(blocked, timeout=40_000)
    for scope in (widget, column):
        expect(scope.locator(".stage").get_by_role("button", name="Try again")).to_be_visible()
        expect(scope.locator(".stage").get_by_role("button", name="Audio only")).to_be_visible()
    expect(widget.locator(".callbar")).to_contain_text("not connected")
    expect(column.locator(".callbar")).to_contain_text("Video call: not connected")
    assert widget.locator(".call-clock").count() == 0  # the clock stopped with the call
    # Chromium reports no icecandidateerror for a TURN-over-TLS 401 (seen here: only the
    # blocked UDP STUN's 701), so the clients cannot say why; the server's own check of its
    # relay does, beside the failed connections, and coturn logged the refusals.
    ops = server.token(Role.OPERATOR, "ops")
    wait_for(staff, lambda: any(t["ok"] is False for t in api(server, "/api/media-sessions",
                                                             ops)["turn"]),
             "the server's TURN check to fail", 20)
    listing = api(server, "/api/media-sessions", ops)
    assert all("401" in t["error"] for t in listing["turn"] if t["ok"] is False), listing["turn"]
    assert all(c["outcome"] == "failed" and c["failure"]
               for c in _connections(server).values()), _connections(server)
    assert "error 401: Unauthorized" in coturn.log()
    assert value(samples(_sync_scrape(server)), "shopcall_turn_check_ok",
                 url=f"turns:{HUB}:{TURNS_PORT}?transport=tcp") == 0
    after = value(samples(_sync_scrape(server)), "shopcall_media_connections_total",
                  outcome="failed", candidate_type="none")
    assert after >= failed_before + 2, (failed_before, after)

    # 4. The relay is fixed; each side takes the way out it is offered: the shopper joins
    # with sound only, the store tablet tries again. Both connect through the relay, the
    # shopper hears the store (and sends no video), and neither page shows the failure.
    coturn.stop()
    coturn = Coturn(tmp_path / "coturn3", address=HUB, allowed_peers=[HUB], secret=SECRET,
                    port=TURN_PORT, tls_port=TURNS_PORT, extra=("verbose",),
                    certificate=coturn).start()
    widget.locator(".stage").get_by_role("button", name="Audio only").click()
    column.locator(".stage").get_by_role("button", name="Try again").click()
    for page in (shopper, staff):
        wait_for(page, lambda p=page: (p.evaluate(SELECTED) or {}).get("type") == "relay",
                 "a relayed connection after the retry", 30)
    wait_for(shopper, lambda: shopper.evaluate(AUDIO_IN) > 20, "the shopper hearing the store",
             20)
    assert shopper.evaluate(VIDEO_OUT) == 0  # audio only: nothing sent on video
    expect(column.locator(".stage")).not_to_contain_text(blocked)
    expect(widget.locator(".callbar")).to_contain_text("Video call with Alice")
    expect(widget.locator(".callbar")).not_to_contain_text("Could not connect")
    expect(widget.locator(".call-clock")).to_have_count(1)  # the clock runs again
    print(f"turn scenario: camera on to first frames on both sides {open_s:.2f} s on an "
          f"open network (first pairs {first}), {relayed_s:.2f} s through TURN/TLS with UDP "
          "and TURN/TCP silently blocked")
    return coturn


def _sync_scrape(server: Any) -> str:
    import urllib.request

    request = urllib.request.Request(server.base_url + "/metrics", headers={
        "Authorization": f"Bearer {server.token(Role.OPERATOR, 'prometheus')}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.read().decode()
