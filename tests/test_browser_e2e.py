"""The whole product in real browsers: a shopper on the demo shop page and a staff member in
the staff console, both in headless Chromium, chat, escalate to video through the SFU, see
each other's camera, hang up, rate, and the database keeps the story.

WebRTC must stay on 127.0.0.1: Chromium on the host network picks a non-loopback address
for its candidate pair. So the outer test re-runs this file's inner test inside a private
network namespace (`unshare -n`, only `lo` up), where the server process and Chromium both
live; the inner test is skipped when collected normally.

Cameras are Chromium's fake capture device fed with a y4m file made at test time from real
photos that ship inside scikit-image: the shopper's camera shows a person (astronaut.png),
the staff member's camera shows a product (coffee.png). Each side checks that the picture it
decodes is the other side's photo, not black and not its own.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from signaling.model import Role

from .browser_harness import (
    ARTIFACTS,
    DESKTOP,
    RTP_STATS,
    TRACK_PEER_CONNECTIONS,
    Cameras,
    api,
    assert_sees,
    browser_server,
    launch,
    run_in_private_network,
    wait_frames,
)
from .harness import ServerProcess

pytestmark = pytest.mark.browser

INSIDE = "SHOPCALL_BROWSER_E2E_INSIDE"


@pytest.mark.timeout(200)
def test_browser_video_call_end_to_end() -> None:
    run_in_private_network(f"{Path(__file__).resolve()}::test_inside_private_network", INSIDE,
                           expect_passed=1, timeout_s=180)


# Inner test ----------------------------------------------------------------------------------

@pytest.mark.skipif(not os.environ.get(INSIDE),
                    reason="run by test_browser_video_call_end_to_end inside a private "
                           "network namespace")
def test_inside_private_network(tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    started = time.monotonic()
    ARTIFACTS.mkdir(exist_ok=True)
    cams = Cameras(tmp_path)
    with browser_server(tmp_path / "server") as server, sync_playwright() as pw:
        # One browser per side: each has its own fake camera file.
        shopper_browser = launch(pw, cams.shopper)
        staff_browser = launch(pw, cams.staff)
        try:
            _scenario(server, shopper_browser, staff_browser, cams, expect)
        finally:
            shopper_browser.close()
            staff_browser.close()
    print(f"browser scenario took {time.monotonic() - started:.1f} s")


def _scenario(server: ServerProcess, shopper_browser: Any, staff_browser: Any, cams: Cameras,
              expect: Any) -> None:
    staff_ctx = staff_browser.new_context(viewport=DESKTOP)
    shopper_ctx = shopper_browser.new_context(viewport=DESKTOP)
    for ctx in (staff_ctx, shopper_ctx):
        ctx.add_init_script(TRACK_PEER_CONNECTIONS)
        ctx.set_default_timeout(15000)
    console: list[str] = []
    try:
        _chat_call_and_rate(server, staff_ctx, shopper_ctx, console, cams, expect)
    except BaseException:
        for i, page in enumerate(staff_ctx.pages + shopper_ctx.pages):
            page.screenshot(path=str(ARTIFACTS / f"failure-{i}.png"))
            print(f"--- page {page.url} RTP stats ---")
            for row in page.evaluate(RTP_STATS):
                print(row)
        try:
            print("--- media sessions ---\n" + json.dumps(api(
                server, "/api/media-sessions", server.token(Role.OPERATOR, "ops")), indent=1))
        except OSError as exc:
            print(f"no media sessions: {exc}")
        print("--- browser console ---\n" + "\n".join(console[-80:]))
        raise


def _chat_call_and_rate(server: ServerProcess, staff_ctx: Any, shopper_ctx: Any,
                        console: list[str], cams: Cameras, expect: Any) -> None:

    # Staff signs in (token in the fragment) and goes online.
    staff = staff_ctx.new_page()
    staff.on("console", lambda m: console.append(f"staff {m.type}: {m.text}"))
    staff.on("pageerror", lambda e: console.append(f"staff pageerror: {e}"))
    staff.goto(f"{server.base_url}/staff#token={server.token(Role.STAFF, 'alice')}")
    expect(staff.locator("#conn")).to_have_text("Connected")
    staff.locator("label.p-online").click()
    expect(staff.locator("#presence")).to_have_attribute("data-status", "online")

    # The shopper opens the demo shop page and the widget: video is offered.
    shopper = shopper_ctx.new_page()
    shopper.on("console", lambda m: console.append(f"shopper {m.type}: {m.text}"))
    shopper.on("pageerror", lambda e: console.append(f"shopper pageerror: {e}"))
    shopper.goto(server.shop_url)
    shopper.get_by_role("button", name="Ask a guitar expert").click()
    widget = shopper.locator("#shopcall-widget")
    channels = widget.locator(".channels")
    expect(channels.get_by_role("button", name="Video call")).to_be_visible()
    expect(channels.get_by_role("button", name="Start a chat")).to_be_visible()
    expect(widget.locator(".presence")).to_contain_text("1 specialist online")
    channels.get_by_role("button", name="Start a chat").click()

    question = "Hello! Does the D-14 come with a hard case?"
    widget.locator("#sc-input").fill(question)
    widget.locator("#sc-input").press("Enter")

    # Staff accepts the offer and gets the message sent while waiting; they answer.
    staff.locator(".offer").get_by_role("button", name="Accept").click()
    column = staff.locator("article.conv").first
    expect(column.locator(".msg.theirs .text")).to_have_text(question)
    answer = "Hi! Yes, a hard case is included. Want me to show you on video?"
    column.locator("textarea").first.fill(answer)
    column.locator("textarea").first.press("Enter")
    expect(widget.locator(".msg.theirs .text")).to_have_text(answer)
    expect(widget.locator(".sub")).to_contain_text("Alice is helping you")
    expect(widget.locator(".msg.mine .receipt")).to_contain_text("Read")
    shopper.screenshot(path=str(ARTIFACTS / "widget-chat.png"))

    # The shopper escalates to video; staff accepts; the shopper consents to the camera.
    widget.locator(".chat-actions").get_by_role("button", name="Video call").click()
    column.locator(".callbar").get_by_role("button", name="Accept").click()
    consent = widget.locator(".consent")
    expect(consent.get_by_role("heading", name="Turn on camera?")).to_be_visible()
    shopper.screenshot(path=str(ARTIFACTS / "widget-consent.png"))
    consent.get_by_role("button", name="Turn on camera").click()

    # Both sides negotiate through the SFU and decode the other's camera.
    for page, who in ((shopper, "shopper"), (staff, "staff")):
        stats = wait_frames(page, who)
        live = [s for s in stats if s["framesDecoded"] > 30]
        assert live[0]["local"] == "127.0.0.1" and live[0]["remote"] == "127.0.0.1", stats
        assert live[0]["width"] and live[0]["codec"] in ("video/VP8", "video/H264"), stats
    assert_sees(shopper, "shopper", cams.staff_thumb, cams.shopper_thumb)
    assert_sees(staff, "staff", cams.shopper_thumb, cams.staff_thumb)

    # Browsers publish VP8 as simulcast (full and half resolution: Chromium keeps two
    # encodings for a 640x480 camera), each with temporal layers (L1T3), so the SFU can
    # give a weak link a smaller picture or fewer frames; the operator view shows them.
    if live[0]["codec"] == "video/VP8":
        [media] = api(server, "/api/media-sessions",
                      server.token(Role.OPERATOR, "ops"))["media_sessions"]
        for person in media["participants"]:
            video = [p for p in person["publishing"] if p["kind"] == "video"]
            assert video and all(p["temporal_layers"] for p in video), media
            assert {"f", "h"} <= {p["rid"] for p in video}, video

    expect(column.locator(".quality")).to_contain_text("frames")
    expect(column.locator(".quality")).to_contain_text("In ")
    expect(column.locator(".quality")).to_contain_text("all layers")  # a good link
    expect(widget.locator(".stage-self")).to_be_visible()
    shopper.wait_for_timeout(600)  # let the self view and quality line paint
    shopper.screenshot(path=str(ARTIFACTS / "widget-call.png"))
    staff.screenshot(path=str(ARTIFACTS / "staff-console-call.png"), full_page=True)

    # Mute and camera buttons act on the local tracks.
    widget.get_by_role("button", name="Mute", exact=True).click()
    assert shopper.evaluate(
        "() => window.__pcs.at(-1).getSenders().filter((s) => s.track && s.track.kind === "
        "'audio').every((s) => !s.track.enabled)")
    widget.get_by_role("button", name="Unmute", exact=True).click()

    # The shopper hangs up, ends the chat and rates it.
    widget.locator(".stage-controls").get_by_role("button", name="Hang up").click()
    expect(widget.locator(".stage")).to_have_count(0)
    expect(column.locator(".stage")).to_have_count(0)
    expect(column.locator(".callbar")).to_contain_text("Call ended")
    assert shopper.evaluate("() => window.__pcs.every((pc) => pc.connectionState === 'closed')")
    widget.get_by_role("button", name="End chat").click()
    widget.get_by_role("button", name="Yes, end it").click()
    widget.locator("label.star").nth(4).click()
    widget.locator("label.nps-opt").nth(9).click()
    widget.locator("#sc-comment").fill("Alice showed me the case on video, great help.")
    widget.get_by_role("button", name="Send feedback").click()
    expect(widget.get_by_role("heading", name="Thank you for your feedback!")).to_be_visible()
    expect(column.locator(".ended")).to_contain_text("The shopper ended the conversation")

    # No back-end feed in this shop: Alice records the order from the console.
    outcome = column.locator("details.outcome")
    outcome.locator("summary").click()
    outcome.get_by_label("Yes").check()
    outcome.get_by_label("Order value").fill("649")
    outcome.get_by_role("button", name="Save outcome").click()
    expect(outcome.locator("summary")).to_have_text("Outcome · order 649.00 EUR")
    staff.screenshot(path=str(ARTIFACTS / "staff-console-after.png"))

    # The database holds the conversation.
    operator = server.token(Role.OPERATOR, "ops")
    [conv] = api(server, "/api/conversations", operator)["conversations"]
    record = api(server, f"/api/conversations/{conv['conversation_id']}", operator)
    kinds = [e["kind"] for e in record["events"]]
    wanted = ["opened", "accepted", "call_started", "call_ended", "closed", "rated"]
    positions = [kinds.index(k) for k in wanted if k in kinds]
    assert len(positions) == len(wanted) and positions == sorted(positions), kinds
    texts = [m["text"] for m in record["messages"]]
    assert texts == [question, answer], texts
    assert [m["from"] for m in record["messages"]] == ["shopper", "staff"]
    assert record["outcome"] == {**record["outcome"], "order_placed": True,
                                 "order_value": 649.0, "currency": "EUR"}, record["outcome"]
    assert [e["actor"] for e in record["events"] if e["kind"] == "outcome"] == ["staff:alice"]
    [call] = record["calls"]
    assert call["kind"] == "video" and call["started_at"] and call["ended_at"], call
    assert record["rating"]["satisfaction"] == 5 and record["rating"]["recommendation"] == 9
    errors = [line for line in console if "pageerror" in line]
    assert not errors, "\n".join(console)
