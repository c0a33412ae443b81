"""The web client over HTTPS through nginx (issue 17), in real Chromium: the staff console
loads from https:// through the shipped deploy/nginx/shopcall.conf and connects its WebSocket
over wss:, a shop's page embeds the widget from that https origin, and a chat goes both
ways through the proxy.

Chromium trusts the test's certificate through --ignore-certificate-errors-spki-list with
the hash of that certificate's key (and nothing else: a browser without the flag refuses
the site). Like every browser test this runs inside a private network namespace (see
tests/browser_harness.py), nginx and the server with it.
"""

from __future__ import annotations

import json
import os
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from signaling.model import Role

from .browser_harness import (
    ShopSite,
    dump_failure,
    launch,
    new_context,
    page_errors,
    run_in_private_network,
    snap,
)
from .harness import ServerProcess
from .test_tls import Nginx, make_certs, nginx_binary, server_port

pytestmark = pytest.mark.browser

INSIDE = "SHOPCALL_BROWSER_TLS_INSIDE"
INNER_TESTS = 1


@pytest.mark.timeout(240)
def test_browser_tls() -> None:
    nginx_binary()  # fails with the install hint before the namespace is set up
    run_in_private_network(str(Path(__file__).resolve()), INSIDE, expect_passed=INNER_TESTS,
                           timeout_s=220)


inside = pytest.mark.skipif(not os.environ.get(INSIDE),
                            reason="run by test_browser_tls inside a private network namespace")


def websocket_urls(page: Any) -> list[str]:
    urls: list[str] = []
    page.on("websocket", lambda ws: urls.append(ws.url))
    return urls


@inside
def test_console_and_widget_over_https_through_nginx(tmp_path: Path) -> None:
    """Alice's console over https (HSTS from shopcall, WebSocket over wss, "Connected",
    online); a shopper on the shop's site opens the widget served by that https origin and
    chats; Alice accepts, reads and answers; the shopper reads the answer."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import expect, sync_playwright

    certs = make_certs(tmp_path / "certs")
    console: list[str] = []
    contexts: list[Any] = []
    with ExitStack() as stack:
        site = ShopSite()
        stack.callback(site.close)
        (tmp_path / "server").mkdir()
        server = ServerProcess(tmp_path / "server", max_message_bytes=65536,
                               trusted_proxies='["127.0.0.1"]',
                               allowed_origins=json.dumps([site.origin]))
        server.start()
        stack.callback(server.stop)
        nginx = Nginx(tmp_path / "nginx", certs, server_port(server))
        nginx.start()
        stack.callback(nginx.stop)
        site.embed(nginx.https_url)  # the widget's tag points at the https origin
        pw = stack.enter_context(sync_playwright())
        try:
            # A browser that was not told about the certificate refuses the site: the
            # certificate is checked, and trusted below by its key alone.
            plain = launch(pw)
            try:
                with pytest.raises(PlaywrightError, match="ERR_CERT_AUTHORITY_INVALID"):
                    plain.new_page().goto(nginx.https_url + "/staff")
            finally:
                plain.close()

            browser = launch(pw, extra=(
                f"--ignore-certificate-errors-spki-list={certs.spki_sha256}",))
            stack.callback(browser.close)

            staff_ctx = new_context(browser, console, "alice")
            contexts.append(staff_ctx)
            staff = staff_ctx.new_page()
            staff_sockets = websocket_urls(staff)
            response = staff.goto(f"{nginx.https_url}/staff#token="
                                  f"{server.token(Role.STAFF, 'alice')}")
            assert response is not None and response.status == 200
            assert response.headers.get("strict-transport-security") == "max-age=31536000"
            expect(staff.locator("#conn")).to_have_text("Connected")
            assert staff.evaluate("() => [location.protocol, window.isSecureContext]") == \
                ["https:", True]
            assert staff_sockets == [nginx.wss_url], staff_sockets
            staff.locator("label.p-online").click()
            expect(staff.locator("#presence")).to_have_attribute("data-status", "online")

            shopper_ctx = new_context(browser, console, "shopper")
            contexts.append(shopper_ctx)
            shopper = shopper_ctx.new_page()
            shopper_sockets = websocket_urls(shopper)
            shopper.goto(site.url)
            shopper.get_by_role("button", name="Ask a guitar expert").click()
            widget = shopper.locator("#shopcall-widget")
            widget.locator(".channels").get_by_role("button", name="Start a chat").click()
            question = "Hello, is the D-14 in stock in Lyon?"
            widget.locator("#sc-input").fill(question)
            widget.locator("#sc-input").press("Enter")

            staff.locator(".offer").get_by_role("button", name="Accept").click()
            column = staff.locator("article.conv").first
            expect(column.locator(".msg.theirs .text")).to_have_text(question)
            expect(widget.locator(".sub")).to_contain_text("Alice is helping you")
            answer = "Yes, and we can set it up for you on Saturday."
            column.locator("textarea").first.fill(answer)
            column.locator("textarea").first.press("Enter")
            expect(widget.locator(".msg.theirs .text")).to_have_text(answer)
            assert shopper_sockets and set(shopper_sockets) == {nginx.wss_url}, \
                shopper_sockets
            snap(staff, "tls-staff-console")
        except BaseException:
            dump_failure("browser-tls", contexts, console)
            print(f"--- server log ---\n{server.log.read_text()[-4000:]}")
            print(nginx.logs())
            raise
        finally:
            for ctx in contexts:
                ctx.close()
    errors = page_errors(console)
    assert not errors, "\n".join(console)
