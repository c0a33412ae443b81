"""Embedding as shops do it, in real Chromium: the shop's page lives on the shop's own origin.

The allowed case (the widget on the shop's site with a strict CSP, chat and video) is what
every other browser test now does (browser_harness.ShopSite); here, in one Chromium:
- the widget embedded on a site that is not in `[http] allowed_origins` does not appear,
  opens no WebSocket, and a WebSocket that page opens by hand is refused;
- the staff console cannot be framed by a shop page (clickjacking);
- on the allowed site, the widget loads under the documented CSP and talks to the server,
  and the console shows the request.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from signaling.model import Role

from .browser_harness import (
    ShopSite,
    browser_server,
    dump_failure,
    launch,
    new_context,
    page_errors,
    run_in_private_network,
)
from .harness import ServerProcess

pytestmark = pytest.mark.browser

INSIDE = "SHOPCALL_BROWSER_EMBED_INSIDE"


@pytest.mark.timeout(200)
def test_browser_embedding() -> None:
    run_in_private_network(str(Path(__file__).resolve()), INSIDE, expect_passed=1,
                           timeout_s=180)


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = launch(pw)
        try:
            yield chromium
        finally:
            chromium.close()


def ws_connections(server: ServerProcess) -> list[str]:
    import urllib.request

    request = urllib.request.Request(
        server.base_url + "/metrics",
        headers={"Authorization": f"Bearer {server.token(Role.OPERATOR, 'ops')}"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        return [line for line in resp.read().decode().splitlines()
                if line.startswith("shopcall_websocket_connections{")]


@pytest.mark.skipif(not os.environ.get(INSIDE),
                    reason="run by test_browser_embedding inside a private network namespace")
def test_inside(browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    console: list[str] = []
    contexts: list[Any] = []
    foreign = ShopSite("127.0.0.3")  # a site nobody allowed
    try:
        with browser_server(tmp_path / "server") as server:
            foreign.embed(server.base_url)
            # A frame of the staff console, on the shop's page.
            foreign.pages["/frame.html"] = (
                f'<!doctype html><title>frame</title><iframe id="f" src="{server.base_url}'
                '/staff" width="600" height="400"></iframe>').encode()
            try:
                _scenario(browser, server, foreign, console, contexts, expect)
            except BaseException:
                dump_failure("embed", contexts, console)
                raise
    finally:
        foreign.close()


def _scenario(browser: Any, server: ServerProcess, foreign: ShopSite, console: list[str],
              contexts: list[Any], expect: Any) -> None:
    # Not allowed: no widget, no WebSocket.
    ctx = new_context(browser, console, "stranger")
    contexts.append(ctx)
    page = ctx.new_page()
    page.goto(foreign.url)
    expect(page.locator("h1")).to_be_visible()  # the shop's own page renders
    page.wait_for_timeout(1500)
    assert page.locator("#shopcall-widget").count() == 0
    assert any("blocked by CORS policy" in line and "widget.js" in line for line in console), \
        console
    # A page that opens the WebSocket itself is refused at the handshake.
    code = page.evaluate("""(url) => new Promise((resolve) => {
        const ws = new WebSocket(url);
        ws.onopen = () => resolve('open');
        ws.onclose = (e) => resolve(e.code);
    })""", server.ws_url)
    assert code == 1006, code
    assert all(line.endswith(" 0.0") for line in ws_connections(server)), ws_connections(server)

    # The staff console refuses to be framed by a shop's page.
    page.goto(foreign.origin + "/frame.html")
    page.wait_for_timeout(1000)
    frame = page.frame_locator("#f")
    assert frame.locator("#conn").count() == 0  # the console never rendered in the frame
    [child] = [f for f in page.frames if f is not page.main_frame]
    assert child.url.startswith("chrome-error://"), child.url  # blocked, not loaded

    # The allowed shop site: the widget appears under the shop's strict CSP and reaches the
    # server (availability, a token, the WebSocket); the console sees the shopper's request.
    staff_ctx = new_context(browser, console, "staff")
    contexts.append(staff_ctx)
    staff = staff_ctx.new_page()
    staff.goto(f"{server.base_url}/staff#token={server.token(Role.STAFF, 'alice')}")
    expect(staff.locator("#conn")).to_have_text("Connected")
    staff.locator("label.p-online").click()
    shop_ctx = new_context(browser, console, "shopper")
    contexts.append(shop_ctx)
    shopper = shop_ctx.new_page()
    responses: list[Any] = []
    shopper.on("response", lambda r: responses.append(r))
    shopper.goto(server.shop_url)
    csp = next(r for r in responses if r.url == server.shop_url).headers[
        "content-security-policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, csp
    shopper.get_by_role("button", name="Ask a guitar expert").click()
    widget = shopper.locator("#shopcall-widget")
    expect(widget.locator(".presence")).to_contain_text("1 specialist online")
    widget.locator(".channels").get_by_role("button", name="Start a chat").click()
    widget.locator("#sc-input").fill("Is the D-14 in stock in Lyon?")
    widget.locator("#sc-input").press("Enter")
    expect(staff.locator(".offer")).to_be_visible()
    staff.locator(".offer").get_by_role("button", name="Accept").click()
    expect(staff.locator("article.conv .msg.theirs .text")).to_have_text(
        "Is the D-14 in stock in Lyon?")
    expect(widget.locator(".sub")).to_contain_text("Alice is helping you")
    assert not page_errors(console), console
    violations = [line for line in console
                  if "Content Security Policy" in line and "shopper" in line]
    assert not violations, violations
