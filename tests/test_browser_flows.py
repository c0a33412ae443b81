"""The shopper widget and the staff console in real Chromium, beyond the happy path: what the
widget offers follows who is available, a waiting shopper sees their place in line, a message
left when nobody was free is answered from the console and found on return, and a cut
WebSocket comes back without losing the conversation. Also: the staff console's "New request"
toast goes away as soon as the request is taken.

These flows need no camera, so they share one Chromium (one browser context per person) and
each test starts its own server, configured for what it checks. Like every browser test they
run inside a private network namespace (see tests/browser_harness.py).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from signaling.model import Role

from .browser_harness import (
    api,
    browser_server,
    dump_failure,
    launch,
    new_context,
    page_errors,
    run_in_private_network,
    snap,
)
from .harness import ServerProcess

pytestmark = pytest.mark.browser

INSIDE = "SHOPCALL_BROWSER_FLOWS_INSIDE"
INNER_TESTS = 4
CHANNEL_BUTTONS = {"chat": "Start a chat", "video": "Video call", "audio": "Audio call"}
# The same buttons on a page whose widget is configured in French (language: 'fr').
CHANNEL_BUTTONS_FR = {"chat": "Démarrer un chat", "video": "Appel vidéo", "audio": "Appel audio"}


@pytest.mark.timeout(420)
def test_browser_flows() -> None:
    run_in_private_network(str(Path(__file__).resolve()), INSIDE, expect_passed=INNER_TESTS,
                           timeout_s=400)


inside = pytest.mark.skipif(not os.environ.get(INSIDE),
                            reason="run by test_browser_flows inside a private network namespace")


# Fixtures (inside the namespace) ------------------------------------------------------------

@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = launch(pw)
        try:
            yield chromium
        finally:
            chromium.close()


class People:
    """Browser contexts opened by one test (one per person), closed and checked at the end."""

    def __init__(self, browser: Any, name: str) -> None:
        self.browser = browser
        self.name = name
        self.console: list[str] = []
        self.contexts: list[Any] = []

    def context(self, who: str, **options: Any) -> Any:
        ctx = new_context(self.browser, self.console, who, **options)
        self.contexts.append(ctx)
        return ctx

    def staff(self, server: ServerProcess, staff_id: str, *, online: bool = True,
              ctx: Any = None) -> Any:
        """A staff console signed in (token in the fragment), optionally set online."""
        from playwright.sync_api import expect

        page = (ctx or self.context(f"staff-{staff_id}")).new_page()
        page.goto(f"{server.base_url}/staff#token={server.token(Role.STAFF, staff_id)}")
        expect(page.locator("#conn")).to_have_text("Connected")
        if online:
            page.locator("label.p-online").click()
            expect(page.locator("#presence")).to_have_attribute("data-status", "online")
        return page

    def close(self) -> None:
        for ctx in self.contexts:
            ctx.close()


@pytest.fixture
def people(browser: Any, request: pytest.FixtureRequest) -> Iterator[People]:
    """The test's browser contexts; on failure, screenshots and stats before they close."""
    crowd = People(browser, request.node.name)
    failed_before = request.session.testsfailed
    yield crowd
    if request.session.testsfailed > failed_before:
        dump_failure(request.node.name, crowd.contexts, crowd.console)
    crowd.close()
    errors = page_errors(crowd.console)
    assert not errors, "\n".join(crowd.console)


def open_widget(page: Any, server: ServerProcess) -> Any:
    """The demo shop page with the widget opened from the product's call to action."""
    page.goto(server.shop_url)
    page.get_by_role("button", name="Ask a guitar expert").click()
    return page.locator("#shopcall-widget")


def availability(page: Any, query: str) -> dict[str, Any]:
    """What the server says right now, asked the way the widget asks."""
    return page.evaluate(
        """(q) => {
          // shopcall's origin, from the shop page's widget tag (the page is the shop's own)
          const server = new URL(document.querySelector('script[src*="widget.js"]').src).origin;
          return fetch(server + '/api/availability?' + q, {cache: 'no-store'})
            .then((r) => r.json());
        }""", query)


def check_channels(widget: Any, offered: dict[str, Any],
                   labels: dict[str, str] = CHANNEL_BUTTONS) -> None:
    """Exactly the channels the server says can be served are offered, no others."""
    from playwright.sync_api import expect

    for channel, label in labels.items():
        button = widget.locator(".channels").get_by_role("button", name=label, exact=True)
        if offered[channel]:
            expect(button).to_be_visible()
        else:
            expect(button).to_have_count(0)


def format_wait(seconds: float | None) -> str:
    """The widget's wording of a wait estimate (ui.js formatWait)."""
    if seconds is None:
        return ""
    if seconds < 60:
        return "less than a minute"
    minutes = math.floor(seconds / 60 + 0.5)
    return f"about {minutes} minute{'' if minutes == 1 else 's'}"


def record_frames(page: Any) -> list[dict[str, Any]]:
    """Every JSON frame the page's WebSockets receive, in order (read by the test later)."""
    frames: list[dict[str, Any]] = []

    def on_socket(ws: Any) -> None:
        def on_frame(payload: Any) -> None:
            try:
                frames.append(json.loads(payload))
            except (TypeError, ValueError):
                pass
        ws.on("framereceived", on_frame)

    page.on("websocket", on_socket)
    return frames


# Tests --------------------------------------------------------------------------------------

@inside
def test_channels_follow_availability(tmp_path: Path, people: People) -> None:
    """Nobody online: only "leave a message". Alice (guitars, every channel) online: chat,
    video and audio. Bob (pianos, chat and audio only) online: a pianos page offers chat and
    audio but no video. Each time the buttons are exactly what /api/availability says."""
    from playwright.sync_api import expect

    with browser_server(tmp_path / "server") as server:
        shopper = people.context("shopper").new_page()
        widget = open_widget(shopper, server)
        guitars = "store=lyon&skill=guitars&language=en"
        expect(widget.get_by_role("button", name="Send message")).to_be_visible()
        offered = availability(shopper, guitars)
        assert not (offered["chat"] or offered["audio"] or offered["video"]), offered
        assert offered["message"], offered
        check_channels(widget, offered)
        expect(widget.get_by_text("All our specialists are busy right now")).to_be_visible()
        expect(widget.get_by_label("Your message")).to_be_visible()
        expect(widget.get_by_label("How can we reach you?")).to_be_visible()

        alice = people.staff(server, "alice")
        shopper.reload()
        shopper.get_by_role("button", name="Ask a guitar expert").click()
        expect(widget.locator(".presence")).to_contain_text("1 specialist online")
        offered = availability(shopper, guitars)
        assert offered["chat"] and offered["audio"] and offered["video"], offered
        check_channels(widget, offered)
        expect(widget.get_by_role("button", name="Leave us a message")).to_be_visible()

        # A pianos page (the widget's config from window.ShopcallConfig): Alice cannot serve
        # it, Bob can, but he takes no video.
        alice.locator("label.p-away").click()
        expect(alice.locator("#presence")).to_have_attribute("data-status", "away")
        people.staff(server, "bob")
        pianos_ctx = people.context("pianos-shopper")
        pianos_ctx.add_init_script("window.ShopcallConfig = {skill: 'pianos', store: 'lyon',"
                                   " language: 'fr', product: 'Upright piano U1'};")
        pianos = pianos_ctx.new_page()
        widget = open_widget(pianos, server)
        # language: 'fr' is the widget's language too (web_client/locales/fr/widget.json).
        expect(widget.locator(".presence")).to_contain_text("1 spécialiste en ligne")
        offered = availability(pianos, "store=lyon&skill=pianos&language=fr")
        assert offered["chat"] and offered["audio"] and not offered["video"], offered
        check_channels(widget, offered, CHANNEL_BUTTONS_FR)


@inside
def test_queue_position_and_stale_offer_toast(tmp_path: Path, people: People) -> None:
    """Dave (one conversation at a time) is busy with a first shopper: a second shopper is
    offered chat only, waits in line with the position and wait estimate the server computed,
    and is taken when Dave is free. Dave's console has two devices open; the "New request"
    toast disappears from both the moment the request is accepted on one."""
    from playwright.sync_api import expect

    with browser_server(tmp_path / "server", offer_timeout_s=60.0) as server:
        dave_ctx = people.context("dave")
        dave = people.staff(server, "dave", ctx=dave_ctx)
        dave_tablet = people.staff(server, "dave", online=False, ctx=dave_ctx)
        expect(dave_tablet.locator("#presence")).to_have_attribute("data-status", "online")

        first = people.context("first-shopper").new_page()
        widget = open_widget(first, server)
        widget.locator(".channels").get_by_role("button", name="Start a chat").click()
        widget.locator("#sc-input").fill("Hi, is the D-14 in stock in Lyon?")
        widget.locator("#sc-input").press("Enter")

        new_request = "New request from a shopper"
        for page in (dave, dave_tablet):
            expect(page.locator(".toast", has_text=new_request)).to_be_visible()
            expect(page.locator(".offer")).to_have_count(1)
        dave.locator(".offer").get_by_role("button", name="Accept").click()
        expect(dave.locator("article.conv")).to_have_count(1)
        # The toast goes in the same step that opens the column: no waiting for it to expire.
        assert dave.locator(".toast", has_text=new_request).count() == 0
        expect(dave_tablet.locator(".offer")).to_have_count(0)
        assert dave_tablet.locator(".toast", has_text=new_request).count() == 0
        expect(widget.locator(".sub")).to_contain_text("Dave is helping you")

        # The second shopper: Dave is at his limit, so no call is offered, only chat.
        second = people.context("second-shopper").new_page()
        frames = record_frames(second)
        widget2 = open_widget(second, server)
        offered = availability(second, "store=lyon&skill=guitars&language=en")
        assert offered["chat"] and not offered["video"] and not offered["audio"], offered
        check_channels(widget2, offered)
        widget2.locator(".channels").get_by_role("button", name="Start a chat").click()
        banner = widget2.locator(".banner")
        expect(banner).to_contain_text("in line")

        def latest_position() -> tuple[int, float | None]:
            """The last position the server told this page: in the conversation.open ack
            (the conversation summary) or in queue.position events."""
            found = None
            for frame in frames:
                if frame.get("type") == "ack":
                    frame = frame.get("result", {}).get("conversation", {})
                elif frame.get("type") != "queue.position":
                    continue
                if frame.get("position") is not None:
                    found = (frame["position"], frame.get("estimated_wait_s"))
            assert found is not None, frames
            return found

        position, wait = latest_position()
        assert position == 1 and wait is not None and wait > 0, (position, wait)
        expect(banner).to_contain_text(f"You are number {position} in line")
        expect(banner).to_contain_text(f"wait {format_wait(wait)}")
        snap(second, "widget-queue")
        expect(dave.locator("#queue tbody tr")).to_have_count(1)

        # Dave ends the first conversation; the waiting shopper is offered to him and taken.
        column = dave.locator("article.conv").first
        column.get_by_role("button", name="End conversation").click()
        column.get_by_role("button", name="End", exact=True).click()
        expect(dave.locator(".offer")).to_have_count(1)
        dave.locator(".offer").get_by_role("button", name="Accept").click()
        expect(widget2.locator(".sub")).to_contain_text("Dave is helping you")
        expect(banner).to_be_hidden()
        # The shopper may hear of it before Dave's page has the accept's answer; the offer
        # and its toast go in the same step there, so wait for the one, then check the other.
        expect(dave.locator(".offer")).to_have_count(0)
        assert dave.locator(".toast", has_text=new_request).count() == 0


@inside
def test_async_message_answered_and_seen_on_return(tmp_path: Path, people: People) -> None:
    """Nobody is online: the shopper leaves a message with a contact and closes the tab as
    soon as it says "sent". The message is stored then, not when the conversation would
    have been missed (two minutes later here): the operator API lists it at once and Alice's
    console, open but offline, shows it in its inbox without a reload. She answers it; the
    shopper comes back later (same browser, kept session token) and reads the answer."""
    from playwright.sync_api import expect

    with browser_server(tmp_path / "server", missed_after_s=120.0) as server:
        alice = people.staff(server, "alice", online=False)
        expect(alice.locator("#async-empty")).to_be_visible()
        shopper_ctx = people.context("shopper")
        shopper = shopper_ctx.new_page()
        widget = open_widget(shopper, server)
        question = "Could you keep a D-14 for me until Saturday? I'd like to try it in Lyon."
        contact = "julie.martin@example.org"
        widget.get_by_label("Your message").fill(question)
        widget.get_by_label("How can we reach you?").fill(contact)
        widget.get_by_role("button", name="Send message").click()
        expect(widget.get_by_role("heading", name="Thanks, your message is on its way")) \
            .to_be_visible()
        expect(widget).to_contain_text(contact)
        session = shopper.evaluate("() => JSON.parse(localStorage.getItem('shopcall.session'))")
        assert session["token"] and session["awaiting"], session
        shopper.close()  # the shopper leaves the site at once

        operator = server.token(Role.OPERATOR, "ops")
        [left] = api(server, "/api/async-messages", operator)["async_messages"]
        assert left["text"] == question and left["contact"] == contact and not left["answer"]

        item = alice.locator("#async .async-item").filter(has_text=question)
        expect(item).to_be_visible()
        expect(item.get_by_role("link", name=contact)).to_have_attribute(
            "href", f"mailto:{contact}")
        answer = "Of course: it is waiting for you at the Lyon counter until Saturday 7 pm."
        item.get_by_label("Your answer").fill(answer)
        item.get_by_role("button", name="Send answer").click()
        expect(alice.locator(".toast", has_text="Answer sent")).to_be_visible()
        expect(alice.locator("#async-empty")).to_be_visible()
        [stored] = api(server, "/api/async-messages", operator)["async_messages"]
        assert stored["answer"] == answer and stored["answered_by"] == "alice", stored

        # The shopper returns: same browser storage, so the same token finds the answer.
        back = shopper_ctx.new_page()
        back.goto(server.shop_url)
        launcher = back.locator("#shopcall-widget").get_by_role(
            "button", name=re.compile("1 new message"))
        expect(launcher).to_be_visible()
        launcher.click()
        widget = back.locator("#shopcall-widget")
        note = widget.locator(".answer")
        expect(note.get_by_role("heading", name="We answered your message")).to_be_visible()
        expect(note.locator(".asked")).to_have_text(question)
        expect(note.locator(".answer-text")).to_have_text(answer)
        snap(back, "widget-async-answer")
        note.get_by_role("button", name="Dismiss").click()
        expect(note).to_have_count(0)
        back.reload()  # dismissed answers stay dismissed
        back.get_by_role("button", name="Ask a guitar expert").click()
        expect(widget.locator(".view-home, .view-leave").first).to_be_visible()
        expect(widget.locator(".answer")).to_have_count(0)


@inside
def test_reconnect_after_socket_cut_keeps_conversation(tmp_path: Path, people: People) -> None:
    """The shopper's WebSocket is cut mid-conversation (the page sees it close) and new ones
    fail for a while. Meanwhile Alice writes (an event the page cannot receive) and the
    shopper types (nothing to send it on). Once the network is back the page reconnects by
    itself, fetches what it missed, sends what was typed, and the conversation goes on:
    both sides and the database show the same history, once each, in order."""
    from playwright.sync_api import expect

    with browser_server(tmp_path / "server") as server:
        alice = people.staff(server, "alice")
        shopper = people.context("shopper").new_page()
        sockets: list[Any] = []
        network = {"up": True}

        def route(ws: Any) -> None:
            if not network["up"]:
                ws.close(code=1001, reason="network down")
                return
            ws.connect_to_server()
            sockets.append(ws)

        shopper.route_web_socket(re.compile(r"/ws$"), route)
        widget = open_widget(shopper, server)
        widget.locator(".channels").get_by_role("button", name="Start a chat").click()
        texts = ["Hello, does the D-14 have a cutaway version?"]
        widget.locator("#sc-input").fill(texts[0])
        widget.locator("#sc-input").press("Enter")
        alice.locator(".offer").get_by_role("button", name="Accept").click()
        column = alice.locator("article.conv").first
        expect(column.locator(".msg.theirs .text")).to_have_text(texts[0])
        texts.append("No cutaway on the D-14, but the D-14C has one.")
        column.locator("textarea").first.fill(texts[1])
        column.locator("textarea").first.press("Enter")
        expect(widget.locator(".msg.theirs .text")).to_have_text(texts[1])
        assert len(sockets) == 1

        # Cut: the page's socket closes, and reconnecting fails until the network is back.
        network["up"] = False
        sockets[-1].close(code=1001, reason="network cut")
        expect(widget.locator(".conn")).to_be_visible()
        expect(widget.locator(".conn")).to_contain_text(re.compile("Reconnecting|Connection lost"))
        texts.append("It is in stock in Lyon if you want to try it.")
        column.locator("textarea").first.fill(texts[2])
        column.locator("textarea").first.press("Enter")
        expect(column.locator(".msg.mine .text")).to_have_count(2)
        offline_text = "Great, could you set it up with 11s?"
        widget.locator("#sc-input").fill(offline_text)
        widget.locator("#sc-input").press("Enter")
        expect(widget.locator(".msg.pending .text")).to_have_text(offline_text)
        expect(widget.locator(".msg.theirs .text")).to_have_count(1)  # not received yet

        # The network comes back (the browser fires "online"): reconnect, catch up, resend.
        network["up"] = True
        shopper.evaluate("() => window.dispatchEvent(new Event('online'))")
        expect(widget.locator(".conn")).to_be_hidden()
        assert len(sockets) >= 2, "the page did not open a new WebSocket"
        expect(widget.locator(".msg.theirs .text")).to_have_text(texts[1:3])
        expect(widget.locator(".msg.pending")).to_have_count(0)
        texts.append(offline_text)
        expect(column.locator(".msg.theirs .text")).to_have_text([texts[0], texts[3]])

        # And it goes on both ways on the new connection.
        texts.append("Thanks! I'll come on Saturday.")
        widget.locator("#sc-input").fill(texts[4])
        widget.locator("#sc-input").press("Enter")
        expect(column.locator(".msg.theirs .text")).to_have_text([texts[0], texts[3], texts[4]])
        texts.append("See you Saturday!")
        column.locator("textarea").first.fill(texts[5])
        column.locator("textarea").first.press("Enter")
        expect(widget.locator(".msg:not(.pending) .text")).to_have_text(texts)
        expect(widget.locator(".sub")).to_contain_text("Alice is helping you")

        operator = server.token(Role.OPERATOR, "ops")
        [conv] = api(server, "/api/conversations", operator)["conversations"]
        record = api(server, f"/api/conversations/{conv['conversation_id']}", operator)
        assert [m["text"] for m in record["messages"]] == texts
        assert [m["seq"] for m in record["messages"]] == list(range(1, len(texts) + 1))
