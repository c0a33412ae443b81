"""A colleague joins a running video call, in real Chromium: Alice, in a call with a
shopper, invites Dave from the staff console; Dave's console shows the invitation, he joins,
and everyone's browser decodes the two other cameras (the SFU renegotiates the new streams
in, keeping the extension ids and payload types Chromium chose). Dave hangs up; the call
goes on between Alice and the shopper.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from signaling.model import Role

from .browser_harness import (
    ARTIFACTS,
    Cameras,
    browser_server,
    launch,
    run_in_private_network,
    wait_for,
    wait_frames,
)
from .test_browser_call import Contexts, start_video_call

pytestmark = pytest.mark.browser

INSIDE = "SHOPCALL_BROWSER_COLLEAGUE_INSIDE"
# Remote video tiles of a page that decode frames.
LIVE_TILES = """
() => [...document.querySelectorAll('video.remote-video'),
       ...[...document.querySelectorAll('*')].filter((e) => e.shadowRoot)
          .flatMap((e) => [...e.shadowRoot.querySelectorAll('video.remote-video')])]
  .filter((v) => v.getVideoPlaybackQuality && v.getVideoPlaybackQuality().totalVideoFrames > 10)
  .length
"""


@pytest.mark.timeout(300)
def test_browser_colleague_joins() -> None:
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
                    reason="run by test_browser_colleague_joins in a private network namespace")
def test_colleague_invited_from_the_console_joins_the_call(
        tmp_path: Path, pw: Any, cams: Cameras, contexts: Contexts) -> None:
    from playwright.sync_api import expect

    shopper_browser, staff_browser = launch(pw, cams.shopper), launch(pw, cams.staff)
    try:
        with browser_server(tmp_path / "server", grace_s=30.0) as server:
            call = start_video_call(server, contexts.open(shopper_browser, "shopper"),
                                    contexts.open(staff_browser, "alice"))
            dave = contexts.open(staff_browser, "dave").new_page()
            dave.goto(f"{server.base_url}/staff#token={server.token(Role.STAFF, 'dave')}")
            expect(dave.locator("#conn")).to_have_text("Connected")
            dave.locator("label.p-online").click()
            expect(dave.locator("#presence")).to_have_attribute("data-status", "online")

            bar = call.column.locator(".callbar")
            bar.get_by_role("button", name="Invite a colleague").click()
            bar.get_by_label("Colleague to invite").fill("dave")
            bar.get_by_role("button", name="Invite", exact=True).click()

            card = dave.locator("article.conv.guest")
            expect(card).to_contain_text("Alice invites you to a video call")
            expect(card).to_contain_text("GTR-AC-114")  # the product the shopper looks at
            card.get_by_role("button", name="Join the call").click()

            # Dave decodes the shopper and Alice; the shopper and Alice decode him too.
            wait_frames(dave, "dave", minimum=60)
            for page, who in ((dave, "dave"), (call.shopper, "shopper"),
                              (call.staff, "alice")):
                wait_for(page, lambda page=page: page.evaluate(LIVE_TILES) >= 2,
                         f"{who} decoding two remote cameras", timeout_s=40)
            # Each tile carries the right person's name (media.sources), not one generic label.
            for tiles, names in ((call.widget.locator(".remote-tile .remote-name"),
                                  ["Alice", "Dave"]),
                                 (call.column.locator(".remote-tile .remote-name"),
                                  ["Dave", "Shopper"]),
                                 (card.locator(".remote-tile .remote-name"),
                                  ["Alice", "Shopper"])):
                wait_for(dave, lambda tiles=tiles, names=names:
                         sorted(tiles.all_text_contents()) == names,
                         f"tiles named {names}", timeout_s=15)
            dave.screenshot(path=str(ARTIFACTS / "staff-console-colleague.png"))

            card.locator(".stage-controls").get_by_role("button", name="Hang up").click()
            expect(card).to_have_count(0)
            # The call goes on without him.
            frames = call.staff.evaluate(LIVE_TILES)
            assert frames >= 1
            expect(call.column.locator(".stage")).to_have_count(1)
            wait_frames(call.staff, "alice after dave left", minimum=30)
    finally:
        shopper_browser.close()
        staff_browser.close()
