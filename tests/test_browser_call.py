"""Video calls in real Chromium, beyond the happy path of test_browser_e2e.py: reloading the
shopper's page mid-call rejoins the media; "Stop camera" stops sending (the other side shows
"camera off", not a black picture) and "Start camera" brings the picture back; the "switch
camera" control appears only with more than one camera and swaps the camera without
renegotiating; the try-on garment picker appears only when the server has a catalogue; and
the widget on a phone screen is usable by touch and by keyboard alone, with labelled
controls and no horizontal scrolling.

Cameras: the shopper's is a photo of a person, the staff member's a photo of a product (y4m
files for Chromium's fake capture device); the switch-camera test uses Chromium's generated
fake cameras instead, two of them (`device-count=2`), as a file camera is a single device.
Everything runs inside a private network namespace (see tests/browser_harness.py).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from signaling.model import Role

from .browser_harness import (
    PHONE,
    Cameras,
    api,
    assert_sees,
    browser_server,
    dump_failure,
    frames_decoded,
    launch,
    new_context,
    page_errors,
    remote_picture,
    run_in_private_network,
    snap,
    wait_for,
    wait_frames,
)
from .harness import ServerProcess

pytestmark = pytest.mark.browser

INSIDE = "SHOPCALL_BROWSER_CALL_INSIDE"
INNER_TESTS = 6


@pytest.mark.timeout(600)
def test_browser_call_features() -> None:
    run_in_private_network(str(Path(__file__).resolve()), INSIDE, expect_passed=INNER_TESTS,
                           timeout_s=580)


inside = pytest.mark.skipif(not os.environ.get(INSIDE),
                            reason="run by test_browser_call_features inside a private "
                                   "network namespace")

# The shopper's outgoing camera, as the page's peer connection sends it.
VIDEO_SENDER = """
() => {
  const pc = (window.__pcs || []).filter((p) => p.connectionState !== 'closed').at(-1);
  if (!pc) return null;
  const t = pc.getTransceivers().find((x) => x.receiver.track.kind === 'video'
    && ['sendrecv', 'sendonly'].includes(x.direction));
  if (!t) return null;
  const track = t.sender.track;
  return { hasTrack: !!track, state: track && track.readyState, enabled: track && track.enabled,
    deviceId: track && track.getSettings().deviceId, label: track && track.label };
}
"""


# Fixtures (inside the namespace) ------------------------------------------------------------

@pytest.fixture(scope="module")
def pw() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def cams(tmp_path_factory: pytest.TempPathFactory) -> Cameras:
    return Cameras(tmp_path_factory.mktemp("cameras"))


@pytest.fixture(scope="module")
def shopper_browser(pw: Any, cams: Cameras) -> Iterator[Any]:
    browser = launch(pw, cams.shopper)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def staff_browser(pw: Any, cams: Cameras) -> Iterator[Any]:
    browser = launch(pw, cams.staff)
    yield browser
    browser.close()


class Contexts:
    """The browser contexts one test opens; on failure, screenshots and stats first."""

    def __init__(self) -> None:
        self.console: list[str] = []
        self.all: list[Any] = []

    def open(self, browser: Any, who: str, **options: Any) -> Any:
        ctx = new_context(browser, self.console, who, **options)
        self.all.append(ctx)
        return ctx


@pytest.fixture
def contexts(request: pytest.FixtureRequest) -> Iterator[Contexts]:
    opened = Contexts()
    failed_before = request.session.testsfailed
    yield opened
    if request.session.testsfailed > failed_before:
        dump_failure(request.node.name, opened.all, opened.console)
    for ctx in opened.all:
        ctx.close()
    errors = page_errors(opened.console)
    assert not errors, "\n".join(opened.console)


@dataclass
class Call:
    shopper: Any
    widget: Any
    staff: Any
    column: Any
    # From the shopper's "Turn on camera" to both sides decoding a first frame (200 ms polls).
    first_frames_s: float = 0.0


def start_video_call(server: ServerProcess, shopper_ctx: Any, staff_ctx: Any, *,
                     staff_base: str | None = None) -> Call:
    """Alice online; the shopper chats, Alice accepts, the shopper asks for video, Alice
    accepts, the shopper turns the camera on; both sides decode the other's video.
    `staff_base`: where Alice's browser reaches the server (another host's view of it)."""
    from playwright.sync_api import expect

    staff = staff_ctx.new_page()
    staff.goto(f"{staff_base or server.base_url}/staff#token="
               f"{server.token(Role.STAFF, 'alice')}")
    expect(staff.locator("#conn")).to_have_text("Connected")
    staff.locator("label.p-online").click()
    expect(staff.locator("#presence")).to_have_attribute("data-status", "online")

    shopper = shopper_ctx.new_page()
    shopper.goto(server.shop_url)
    shopper.get_by_role("button", name="Ask a guitar expert").click()
    widget = shopper.locator("#shopcall-widget")
    widget.locator(".channels").get_by_role("button", name="Start a chat").click()
    widget.locator("#sc-input").fill("Could you show me the D-14 on video?")
    widget.locator("#sc-input").press("Enter")
    staff.locator(".offer").get_by_role("button", name="Accept").click()
    column = staff.locator("article.conv").first
    expect(widget.locator(".sub")).to_contain_text("Alice is helping you")
    widget.locator(".chat-actions").get_by_role("button", name="Video call").click()
    column.locator(".callbar").get_by_role("button", name="Accept").click()
    widget.locator(".consent").get_by_role("button", name="Turn on camera").click()
    clicked = time.monotonic()
    wait_frames(shopper, "shopper", minimum=1)
    wait_frames(staff, "staff", minimum=1)
    first_frames_s = time.monotonic() - clicked
    wait_frames(shopper, "shopper")
    wait_frames(staff, "staff")
    return Call(shopper, widget, staff, column, first_frames_s)


# Tests --------------------------------------------------------------------------------------

@inside
def test_reload_mid_call_rejoins_media(tmp_path: Path, contexts: Contexts, cams: Cameras,
                                       shopper_browser: Any, staff_browser: Any) -> None:
    """The shopper reloads the page during a video call. The page finds the conversation
    again, conversation.resume gives it the running call's join information, it asks before
    turning the camera back on, and the shopper rejoins without camera: they see the staff
    member again, who sees "camera off". "Start camera" then adds the camera (the one
    renegotiation: the video transceiver starts sending) and both sides decode each other.
    Then the staff member reloads the console: it rejoins the call by itself (their device
    is the shop's) and both sides decode again."""
    from playwright.sync_api import expect

    # A reload must come back within the staff grace period, or the conversation is
    # requeued: give a loaded machine the production default (30 s), not the harness's 1 s.
    with browser_server(tmp_path / "server", grace_s=30.0) as server:
        call = start_video_call(server, contexts.open(shopper_browser, "shopper"),
                                contexts.open(staff_browser, "staff"))
        assert_sees(call.staff, "staff", cams.shopper_thumb, cams.staff_thumb)

        call.shopper.reload()
        widget = call.widget
        consent = widget.locator(".consent")
        expect(consent.get_by_role("heading", name="Rejoin the video call?")).to_be_visible()
        expect(widget.locator(".msg .text").first).to_have_text(
            "Could you show me the D-14 on video?")
        expect(widget.locator(".callbar")).to_contain_text("Video call with Alice")
        # The call never ended: Alice's side still has it.
        expect(call.column.locator(".stage")).to_have_count(1)
        consent.get_by_role("button", name="Join without camera").click()
        wait_frames(call.shopper, "shopper after reload")
        assert_sees(call.shopper, "shopper after reload", cams.staff_thumb, cams.shopper_thumb)
        assert not (call.shopper.evaluate(VIDEO_SENDER) or {}).get("hasTrack")
        off = call.column.locator(".remote-tile .remote-off")
        expect(off).to_contain_text("Shopper's camera is off")

        staff_before = frames_decoded(call.staff)
        call.widget.locator(".stage-controls").get_by_role("button", name="Start camera").click()
        expect(call.widget.locator(".stage-controls").get_by_role(
            "button", name="Stop camera")).to_be_visible()
        wait_frames(call.staff, "staff after the shopper's reload", above=staff_before)
        assert_sees(call.shopper, "shopper after reload", cams.staff_thumb, cams.shopper_thumb)
        assert_sees(call.staff, "staff after the shopper's reload", cams.shopper_thumb,
                    cams.staff_thumb)
        expect(call.column.locator(".remote-tile .remote-off")).to_be_hidden()

        call.staff.reload()
        column = call.staff.locator("article.conv").first
        expect(column.locator(".stage")).to_have_count(1)
        shopper_before = frames_decoded(call.shopper)
        wait_frames(call.staff, "staff after its reload")
        wait_frames(call.shopper, "shopper after the staff's reload", above=shopper_before)
        assert_sees(call.staff, "staff after its reload", cams.shopper_thumb, cams.staff_thumb)
        assert_sees(call.shopper, "shopper after the staff's reload", cams.staff_thumb,
                    cams.shopper_thumb)
        call.widget.locator(".stage-controls").get_by_role("button", name="Hang up").click()
        expect(column.locator(".callbar")).to_contain_text("Call ended")


@inside
def test_camera_off_shows_camera_off_not_black(tmp_path: Path, contexts: Contexts,
                                                cams: Cameras, shopper_browser: Any,
                                                staff_browser: Any) -> None:
    """"Stop camera" stops sending video (no track on the sender, camera released) and the
    staff side shows "camera off" over the tile; "Start camera" brings the shopper's picture
    back. The same the other way round. With one camera there is no "switch camera"; without
    a try-on catalogue on the server there is no garment picker."""
    from playwright.sync_api import expect

    with browser_server(tmp_path / "server") as server:
        call = start_video_call(server, contexts.open(shopper_browser, "shopper"),
                                contexts.open(staff_browser, "staff"))
        shopper, widget, staff, column = call.shopper, call.widget, call.staff, call.column
        controls = widget.locator(".stage-controls")
        before = shopper.evaluate(VIDEO_SENDER)
        assert before["hasTrack"] and before["state"] == "live", before

        # One camera (the y4m file): nothing to switch to.
        cameras = shopper.evaluate("() => navigator.mediaDevices.enumerateDevices()"
                                   ".then((d) => d.filter((x) => x.kind === 'videoinput').length)")
        assert cameras == 1
        expect(controls.get_by_role("button", name="Switch camera")).to_be_hidden()

        # Try-on is off on this server (the default): no garment picker.
        garments = api(server, "/api/garments", server.token(Role.STAFF, "alice"))
        assert garments["enabled"] is False, garments
        expect(widget.locator(".stage-controls")).to_be_visible()
        assert widget.locator(".tryon").count() == 0

        controls.get_by_role("button", name="Stop camera").click()
        expect(controls.get_by_role("button", name="Start camera")).to_be_visible()
        # The button flips at once; replaceTrack(null) completes a moment later.
        wait_for(shopper, lambda: not shopper.evaluate(VIDEO_SENDER)["hasTrack"],
                 "the sender to drop the camera track", timeout_s=5)
        after = shopper.evaluate(VIDEO_SENDER)
        assert not after["hasTrack"], f"the camera still sends (black frames?): {after}"
        expect(widget.locator(".stage-self .self-off")).to_be_visible()
        off = column.locator(".remote-tile .remote-off")
        expect(off).to_be_visible()
        expect(off).to_have_attribute("data-state", "camera-off")  # said, not guessed
        expect(off).to_contain_text("Shopper's camera is off")
        snap(staff, "staff-console-camera-off")

        staff_before = frames_decoded(staff)
        controls.get_by_role("button", name="Start camera").click()
        expect(controls.get_by_role("button", name="Stop camera")).to_be_visible()
        again = shopper.evaluate(VIDEO_SENDER)
        assert again["hasTrack"] and again["state"] == "live", again
        expect(off).to_be_hidden()
        wait_frames(staff, "staff after camera on", above=staff_before)
        assert_sees(staff, "staff after camera on", cams.shopper_thumb, cams.staff_thumb)

        # The staff member's camera, seen from the shopper's side.
        staff_controls = column.locator(".stage-controls")
        staff_controls.get_by_role("button", name="Stop camera").click()
        shopper_off = widget.locator(".remote-tile .remote-off")
        expect(shopper_off).to_contain_text("Alice's camera is off")
        snap(shopper, "widget-call-camera-off")
        staff_controls.get_by_role("button", name="Start camera").click()
        expect(shopper_off).to_be_hidden()
        assert_sees(shopper, "shopper after staff camera on", cams.staff_thumb,
                    cams.shopper_thumb)


# What Chromium says when a server offer renumbers RTP header extensions agreed before.
EXTENSION_REASSIGNED = "RTP extension ID reassignment not supported"

# The self view's track (the local camera, or the try-on mirror) and its decoded frames.
SELF_VIEW = """
async () => {
  const root = document.querySelector('#shopcall-widget').shadowRoot;
  const video = root.querySelector('.self-video');
  const track = video && video.srcObject && video.srcObject.getVideoTracks()[0];
  if (!track) return null;
  let frames = null;
  for (const pc of window.__pcs || []) {
    if (pc.connectionState === 'closed') continue;
    (await pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.trackIdentifier === track.id) frames = s.framesDecoded;
    });
  }
  return { mirror: video.parentElement.classList.contains('is-mirror'), frames,
    label: video.getAttribute('aria-label') };
}
"""


@inside
def test_tryon_garment_picker(tmp_path: Path, contexts: Contexts, cams: Cameras,
                              shopper_browser: Any, staff_browser: Any,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    """On a server that offers try-on, a video call shows the garment picker with the
    catalogue's garments; picking one draws it on the shopper (the staff member's picture
    changes and their console says so) and the shopper's self view switches to the mirror
    the server sends back; "Off" returns to the plain camera."""
    from playwright.sync_api import expect

    monkeypatch.setenv("SHOPCALL_TRYON__ENABLED", "true")
    with browser_server(tmp_path / "server") as server:
        catalogue = api(server, "/api/garments", server.token(Role.STAFF, "alice"))
        assert catalogue["enabled"] and catalogue["garments"], catalogue
        call = start_video_call(server, contexts.open(shopper_browser, "shopper"),
                                contexts.open(staff_browser, "staff"))
        picker = call.widget.locator(".tryon")
        expect(picker).to_be_visible()
        options = picker.locator("label.tryon-opt")
        expect(options).to_have_text(["Off", *[g["name"] for g in catalogue["garments"]]])
        assert picker.get_by_label("Off").is_checked()
        plain = call.shopper.evaluate(SELF_VIEW)
        assert plain and not plain["mirror"], plain

        def staff_change() -> float:
            """How far the staff's picture of the shopper is from the raw camera photo."""
            picture, _ = remote_picture(call.staff)
            return float(np.abs(picture - cams.shopper_thumb).mean())

        before = staff_change()
        garment = catalogue["garments"][0]
        options.filter(has_text=garment["name"]).click()
        expect(picker.locator(".tryon-status")).to_contain_text(garment["name"])
        assert picker.get_by_label(garment["name"]).is_checked()
        expect(call.column.locator(".callbar")).to_contain_text(f"Try-on: {garment['name']}")
        wait_for(call.staff, lambda: staff_change() > before + 8,
                 "the garment on the staff member's picture")
        snap(call.staff, "staff-console-tryon")
        # The mirror came with the server's renegotiation offer (one more m-section), which
        # Chromium accepts only if it keeps the extension ids agreed before.
        assert not any(EXTENSION_REASSIGNED in line for line in contexts.console)
        wait_for(call.shopper, lambda: ((call.shopper.evaluate(SELF_VIEW) or {})
                                        .get("frames") or 0) > 10, "the mirror decoding")
        mirror = call.shopper.evaluate(SELF_VIEW)
        assert mirror["mirror"] and mirror["label"] == "You, with the garment", mirror
        snap(call.shopper, "widget-call-tryon")

        options.filter(has_text="Off").click()
        expect(call.column.locator(".callbar")).not_to_contain_text("Try-on:")
        wait_for(call.shopper, lambda: not (call.shopper.evaluate(SELF_VIEW) or {})
                 .get("mirror", True), "the plain self view")
        wait_for(call.staff, lambda: staff_change() < before + 4,
                 "the staff member's picture back to the plain camera")


@inside
def test_switch_camera_without_renegotiation(tmp_path: Path, contexts: Contexts, pw: Any,
                                             staff_browser: Any) -> None:
    """A device with several cameras gets a "Switch camera" control; each press puts the
    next camera on the same sender with replaceTrack (no new media.offer) and the staff
    member keeps decoding the shopper's video.

    Chromium's generated fake cameras (`device-count=3`) have no facing mode, so this is the
    laptop path: cycle through the device list. The second fake camera delivers Y16 (depth
    camera) frames that WebRTC does not encode, like the infrared cameras many laptops list:
    the switch skips it for the third. The phone path (ask for the opposite `facingMode`)
    cannot be faked with devices here: the choice of constraint is checked on its own."""
    from playwright.sync_api import expect

    three_cameras = launch(pw, fake_devices="device-count=3")
    try:
        with browser_server(tmp_path / "server") as server:
            shopper_ctx = contexts.open(three_cameras, "shopper")
            sent: list[str] = []
            shopper_ctx.on("page", lambda page: page.on("websocket", lambda ws: ws.on(
                "framesent", lambda payload: sent.append(json.loads(payload)["type"]))))
            call = start_video_call(server, shopper_ctx, contexts.open(staff_browser, "staff"))
            shopper, widget, staff = call.shopper, call.widget, call.staff
            devices = shopper.evaluate(
                "() => navigator.mediaDevices.enumerateDevices().then((d) => d"
                ".filter((x) => x.kind === 'videoinput').map((x) => x.deviceId))")
            assert len(devices) == 3, devices
            switch = widget.locator(".stage-controls").get_by_role("button", name="Switch camera")
            expect(switch).to_be_visible()
            offers = sent.count("media.offer")
            assert shopper.evaluate(VIDEO_SENDER)["deviceId"] == devices[0]

            def sending(device: str) -> bool:
                now = shopper.evaluate(VIDEO_SENDER) or {}
                return now.get("deviceId") == device and now.get("state") == "live"

            switch.click()  # to the second camera, which gives no picture: on to the third
            wait_for(shopper, lambda: sending(devices[2]), "the third camera")
            staff_before = frames_decoded(staff)
            wait_frames(staff, "staff after switching cameras", minimum=20, above=staff_before)
            switch.click()
            wait_for(shopper, lambda: sending(devices[0]), "back to the first camera")
            staff_before = frames_decoded(staff)
            wait_frames(staff, "staff after switching back", minimum=20, above=staff_before)
            assert sent.count("media.offer") == offers, "switching cameras renegotiated"
            expect(widget.locator(".stage-self video")).to_have_js_property("paused", False)

            picked = shopper.evaluate("""async (url) => {
              const { nextCameraId, nextCameraConstraint } = await import(url);
              const cams = [{ deviceId: 'front' }, { deviceId: 'back' }];
              return [nextCameraId(cams, 'front'), nextCameraId(cams, 'back'),
                nextCameraId(cams, 'unknown'), nextCameraId([{ deviceId: 'front' }], 'front'),
                nextCameraId([], null),
                nextCameraConstraint({ facingMode: 'user', deviceId: 'front' }, cams),
                nextCameraConstraint({ facingMode: 'environment' }, cams),
                nextCameraConstraint({ deviceId: 'back' }, cams),
                nextCameraConstraint({ facingMode: 'user' }, [{ deviceId: 'front' }])];
            }""", f"{server.base_url}/static/media.js")
            assert picked == [
                "back", "front", "front", None, None,
                {"facingMode": {"exact": "environment"}}, {"facingMode": {"exact": "user"}},
                {"deviceId": {"exact": "front"}}, None], picked
    finally:
        three_cameras.close()


# Phone screen and accessibility -------------------------------------------------------------

# What the keyboard focus is on, through the widget's shadow root.
FOCUSED = """
() => {
  let el = document.activeElement;
  while (el && el.shadowRoot && el.shadowRoot.activeElement) el = el.shadowRoot.activeElement;
  if (!el) return null;
  const label = el.getAttribute('aria-label')
    || (el.labels && el.labels.length ? el.labels[0].textContent : '')
    || el.textContent || el.value || '';
  return { tag: el.tagName.toLowerCase(), name: label.trim().replace(/\\s+/g, ' ') };
}
"""

# Every visible control of the widget: its accessible name (as a screen reader gets it,
# roughly: aria-label, aria-labelledby, <label>, text, title) and its size on screen.
CONTROLS = """
() => {
  const root = document.querySelector('#shopcall-widget').shadowRoot;
  const out = [];
  const nameOf = (el) => {
    if (el.getAttribute('aria-label')) return el.getAttribute('aria-label');
    const by = el.getAttribute('aria-labelledby');
    if (by) return by.split(' ').map((id) => root.getElementById(id)?.textContent || '').join(' ');
    if (el.labels && el.labels.length) return [...el.labels].map((l) => l.textContent).join(' ');
    return el.textContent || el.getAttribute('title') || '';
  };
  for (const el of root.querySelectorAll('button, input, textarea, select, a[href]')) {
    const box = (el.classList.contains('vh-input') && el.closest('label')
      ? el.closest('label') : el).getBoundingClientRect();
    if (!box.width && !box.height) continue;
    const style = getComputedStyle(el);
    if (style.visibility === 'hidden') continue;
    // A link-style button inside a sentence is exempt from the target size (WCAG 2.5.8).
    const inline = el.classList.contains('link') && el.parentElement.tagName === 'P'
      && el.parentElement.textContent.trim() !== el.textContent.trim();
    out.push({ tag: el.tagName.toLowerCase(), type: el.type || '', cls: el.className, inline,
      name: nameOf(el).trim().replace(/\\s+/g, ' '), width: box.width, height: box.height,
      right: box.right, left: box.left });
  }
  const panel = root.querySelector('.panel');
  return { controls: out, viewport: window.innerWidth,
    pageWidth: document.documentElement.scrollWidth,
    panelOverflow: panel && !panel.hidden ? panel.scrollWidth - panel.clientWidth : 0 };
}
"""


def check_phone_screen(page: Any, screen: str) -> None:
    """No horizontal scrolling; every visible control named; every control (except a link
    inside a sentence) at least 44 x 44 CSS pixels, as touch guidelines ask."""
    found = page.evaluate(CONTROLS)
    assert found["pageWidth"] <= found["viewport"], (screen, found["pageWidth"])
    assert found["panelOverflow"] <= 0, (screen, found["panelOverflow"])
    unnamed = [c for c in found["controls"] if not c["name"]]
    assert not unnamed, (screen, unnamed)
    outside = [c for c in found["controls"]
               if c["left"] < -1 or c["right"] > found["viewport"] + 1]
    assert not outside, (screen, outside)
    small = [c for c in found["controls"]
             if not c["inline"] and (c["width"] < 44 or c["height"] < 44)]
    assert not small, (screen, small)


def tab_to(page: Any, name: str, limit: int = 60) -> None:
    """Press Tab until the focused control's name starts with `name`."""
    for _ in range(limit):
        focused = page.evaluate(FOCUSED)
        if focused and focused["name"].startswith(name):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {name!r} (last: {page.evaluate(FOCUSED)})")


def wait_focus(page: Any, name: str) -> None:
    wait_for(page, lambda: ((page.evaluate(FOCUSED) or {}).get("name") or "").startswith(name),
             f"focus on {name!r}")


@inside
def test_phone_screen_keyboard_and_labels(tmp_path: Path, contexts: Contexts, cams: Cameras,
                                          shopper_browser: Any, staff_browser: Any) -> None:
    """The widget on a 390 x 844 touch phone: on every screen of the chat-to-call flow, no
    horizontal overflow, labelled controls, 44 px tap targets; and the whole flow done with
    Tab and Enter only (open, start a chat, write, ask for video, consent, mute, hang up)."""
    from playwright.sync_api import expect

    with browser_server(tmp_path / "server") as server:
        staff = contexts.open(staff_browser, "staff").new_page()
        staff.goto(f"{server.base_url}/staff#token={server.token(Role.STAFF, 'alice')}")
        expect(staff.locator("#conn")).to_have_text("Connected")
        staff.locator("label.p-online").click()
        expect(staff.locator("#presence")).to_have_attribute("data-status", "online")

        shopper = contexts.open(shopper_browser, "phone", **PHONE).new_page()
        shopper.goto(server.shop_url)
        widget = shopper.locator("#shopcall-widget")
        # The widget appears once its catalogues are loaded (no text before its language).
        expect(widget.get_by_role("button").first).to_be_visible()
        check_phone_screen(shopper, "shop page")
        snap(shopper, "phone-shop")

        tab_to(shopper, "Ask a guitar expert")
        shopper.keyboard.press("Enter")
        wait_focus(shopper, "Start a chat")
        check_phone_screen(shopper, "home")
        snap(shopper, "phone-widget-home")
        shopper.keyboard.press("Enter")
        wait_focus(shopper, "Your message")
        shopper.keyboard.type("Hi! Which strings come on the D-14?")
        shopper.keyboard.press("Enter")
        expect(widget.locator(".msg.mine .text")).to_have_text(
            "Hi! Which strings come on the D-14?")

        staff.locator(".offer").get_by_role("button", name="Accept").click()
        column = staff.locator("article.conv").first
        column.locator("textarea").first.fill("Phosphor bronze 12-53. Shall I show you?")
        column.locator("textarea").first.press("Enter")
        expect(widget.locator(".msg.theirs .text")).to_have_text(
            "Phosphor bronze 12-53. Shall I show you?")
        check_phone_screen(shopper, "chat")
        snap(shopper, "phone-widget-chat")

        tab_to(shopper, "Video call")
        shopper.keyboard.press("Enter")
        expect(widget.locator(".callbar")).to_contain_text("requested")
        column.locator(".callbar").get_by_role("button", name="Accept").click()
        expect(widget.locator(".consent")).to_be_visible()
        wait_focus(shopper, "Turn on camera")
        check_phone_screen(shopper, "consent")
        snap(shopper, "phone-widget-consent")
        shopper.keyboard.press("Enter")
        wait_frames(shopper, "phone shopper")
        wait_frames(staff, "staff")
        expect(widget.locator(".remote-tile .remote-off")).to_be_hidden()
        check_phone_screen(shopper, "call")
        snap(shopper, "phone-widget-call")

        tab_to(shopper, "Mute")
        shopper.keyboard.press("Enter")
        expect(widget.get_by_role("button", name="Unmute", exact=True)).to_have_attribute(
            "aria-pressed", "true")
        tab_to(shopper, "Hang up")
        shopper.keyboard.press("Enter")
        expect(widget.locator(".stage")).to_have_count(0)
        expect(column.locator(".callbar")).to_contain_text("Call ended")
        check_phone_screen(shopper, "after the call")


@inside
def test_staff_console_controls_are_labelled(tmp_path: Path, contexts: Contexts,
                                             staff_browser: Any) -> None:
    """Every visible control of the staff console (sign-in, presence, a conversation column
    with its tools) has an accessible name, so the console works with a screen reader."""
    from playwright.sync_api import expect

    names = """
    () => [...document.querySelectorAll('button, input, textarea, select, summary')]
      .filter((el) => el.getClientRects().length || (el.type === 'radio'
        && el.closest('label') && el.closest('label').getClientRects().length))
      .map((el) => ({ tag: el.tagName, cls: el.className, name: (el.getAttribute('aria-label')
        || (el.labels && el.labels.length ? [...el.labels].map((l) => l.textContent).join(' ')
        : '') || el.textContent || el.title || '').trim() }))
    """
    with browser_server(tmp_path / "server") as server:
        page = contexts.open(staff_browser, "staff").new_page()
        page.goto(f"{server.base_url}/staff")
        expect(page.get_by_label("Staff token")).to_be_visible()
        assert not [c for c in page.evaluate(names) if not c["name"]]
        page.get_by_label("Staff token").fill(server.token(Role.STAFF, "alice"))
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#conn")).to_have_text("Connected")
        page.get_by_label("Online").check()
        expect(page.locator("#presence")).to_have_attribute("data-status", "online")

        shopper = contexts.open(staff_browser, "shopper").new_page()
        shopper.goto(server.shop_url)
        shopper.get_by_role("button", name="Ask a guitar expert").click()
        shopper.locator("#shopcall-widget .channels").get_by_role(
            "button", name="Start a chat").click()
        page.locator(".offer").get_by_role("button", name="Accept").click()
        column = page.locator("article.conv").first
        expect(column).to_be_visible()
        for tool in ("Product card", "Transfer"):
            column.locator("summary", has_text=tool).click()
        unnamed = [c for c in page.evaluate(names) if not c["name"]]
        assert not unnamed, unnamed
