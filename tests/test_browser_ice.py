"""ICE restart in real Chromium: the shopper's network path dies mid-call (nftables drops
every UDP packet inside the test's private network namespace, while the signalling
WebSocket, on TCP, stays up). The widget notices the dead path, restarts ICE (a new offer
with fresh ICE credentials through the same WebSocket), the server takes it as the same
participant of the same media session, and once the path is back both directions of video
resume, the shopper's with a fresh keyframe for the staff member.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from signaling.model import Role

from .browser_harness import (
    Cameras,
    api,
    assert_sees,
    browser_server,
    frames_decoded,
    launch,
    run_in_private_network,
    wait_for,
    wait_frames,
)
from .test_browser_call import Contexts, start_video_call

pytestmark = pytest.mark.browser

INSIDE = "SHOPCALL_BROWSER_ICE_INSIDE"
CUT_UDP = ("nft add table inet cut && "
           "nft add chain inet cut out '{ type filter hook output priority 0; }' && "
           "nft add rule inet cut out meta l4proto udp drop")
# The page's live connection: its state and its local ICE username fragment.
ICE_STATE = """
() => {
  const pc = (window.__pcs || []).filter((p) => p.connectionState !== 'closed').at(-1);
  if (!pc || !pc.localDescription) return null;
  const ufrag = /a=ice-ufrag:(\\S+)/.exec(pc.localDescription.sdp);
  return { state: pc.connectionState, ufrag: ufrag && ufrag[1] };
}
"""


@pytest.mark.timeout(300)
def test_browser_ice_restart() -> None:
    run_in_private_network(str(Path(__file__).resolve()), INSIDE, expect_passed=1,
                           timeout_s=280)


@pytest.fixture(scope="module")
def pw() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def cams(tmp_path_factory: pytest.TempPathFactory) -> Cameras:
    return Cameras(tmp_path_factory.mktemp("cameras"))


@pytest.fixture
def contexts() -> Iterator[Contexts]:
    opened = Contexts()
    yield opened
    for ctx in opened.all:
        ctx.close()


@pytest.mark.skipif(not os.environ.get(INSIDE),
                    reason="run by test_browser_ice_restart inside a private network namespace")
def test_dead_path_restarts_ice_and_video_resumes(tmp_path: Path, pw: Any, cams: Cameras,
                                                  contexts: Contexts) -> None:
    shopper_browser, staff_browser = launch(pw, cams.shopper), launch(pw, cams.staff)
    cut = False
    try:
        with browser_server(tmp_path / "server", grace_s=30.0) as server:
            call = start_video_call(server, contexts.open(shopper_browser, "shopper"),
                                    contexts.open(staff_browser, "staff"))
            assert_sees(call.staff, "staff", cams.shopper_thumb, cams.staff_thumb)
            before = call.shopper.evaluate(ICE_STATE)
            assert before["state"] == "connected", before
            ops = server.token(Role.OPERATOR, "ops")

            subprocess.run(CUT_UDP, shell=True, check=True)
            cut = True
            # The widget restarts ICE a few seconds after its path went quiet (not after
            # the ~30 s a browser takes to call it failed).
            wait_for(call.shopper, lambda: call.shopper.evaluate(ICE_STATE)["ufrag"]
                     != before["ufrag"], "an ICE restart offer", timeout_s=30)
            staff_frames = frames_decoded(call.staff)
            shopper_frames = frames_decoded(call.shopper)
            time.sleep(1.0)
            subprocess.run("nft delete table inet cut", shell=True, check=True)
            cut = False

            wait_for(call.shopper, lambda: call.shopper.evaluate(ICE_STATE)["state"]
                     == "connected", "the connection back", timeout_s=30)
            # Both directions decode again; the staff member sees the shopper's camera,
            # which restarted at a keyframe the server asked for.
            wait_frames(call.staff, "staff after the restart", above=staff_frames)
            wait_frames(call.shopper, "shopper after the restart", above=shopper_frames)
            assert_sees(call.staff, "staff", cams.shopper_thumb, cams.staff_thumb)
            assert_sees(call.shopper, "shopper", cams.staff_thumb, cams.shopper_thumb)

            # Still one media session, with the same two participants, both connected.
            [session] = api(server, "/api/media-sessions", ops)["media_sessions"]
            people = {p["participant_id"]: p for p in session["participants"]}
            assert len(people) == 2 and all(p["connected"] for p in people.values()), session
            shopper_id = next(pid for pid in people if pid.startswith("shopper:"))
            published = [p for p in people[shopper_id]["publishing"] if p["kind"] == "video"]
            assert published and published[0]["keyframe_requests"] >= 1, session
            assert re.fullmatch(r"\S+", call.shopper.evaluate(ICE_STATE)["ufrag"])
    finally:
        if cut:
            subprocess.run("nft delete table inet cut", shell=True, check=False)
        shopper_browser.close()
        staff_browser.close()
