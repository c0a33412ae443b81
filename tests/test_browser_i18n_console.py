"""The staff console in the staff member's language, in real Chromium: a browser set to German
(locale de-DE) gets a German console (presence, headings, a shopper's request, the accepted
conversation and its quick replies), and the language picker in the header switches it to
French, which it keeps after a reload (the choice is kept on the device; the page's own
<html lang="en"> does not count).

Like every browser test it runs inside a private network namespace (tests/browser_harness.py).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from signaling.model import Role

from .browser_harness import (
    browser_server,
    dump_failure,
    launch,
    new_context,
    page_errors,
    run_in_private_network,
    snap,
)

pytestmark = pytest.mark.browser

INSIDE = "SHOPCALL_BROWSER_I18N_CONSOLE_INSIDE"


@pytest.mark.timeout(150)
def test_browser_i18n_console() -> None:
    run_in_private_network(str(Path(__file__).resolve()), INSIDE, expect_passed=1,
                           timeout_s=140)


inside = pytest.mark.skipif(not os.environ.get(INSIDE),
                            reason="run by test_browser_i18n_console inside a private network "
                                   "namespace")


class Contexts:
    """Browser contexts opened by the test, closed (and checked for page errors) at the end."""

    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self.console: list[str] = []
        self.opened: list[Any] = []

    def new(self, who: str, **options: Any) -> Any:
        ctx = new_context(self.browser, self.console, who, **options)
        self.opened.append(ctx)
        return ctx


@pytest.fixture
def contexts(request: pytest.FixtureRequest) -> Iterator[Contexts]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = launch(pw)
        crowd = Contexts(chromium)
        failed_before = request.session.testsfailed
        try:
            yield crowd
            if request.session.testsfailed > failed_before:
                dump_failure(request.node.name, crowd.opened, crowd.console)
        finally:
            for ctx in crowd.opened:
                ctx.close()
            chromium.close()
    errors = page_errors(crowd.console)
    assert not errors, "\n".join(crowd.console)


@inside
def test_console_in_german_then_french(tmp_path: Path, contexts: Contexts) -> None:
    from playwright.sync_api import expect

    with browser_server(tmp_path / "server", offer_timeout_s=60.0) as server:
        # A browser in German: the console follows navigator.languages, not <html lang="en">.
        staff = contexts.new("staff-de", locale="de-DE").new_page()
        staff.goto(f"{server.base_url}/staff#token={server.token(Role.STAFF, 'alice')}")
        expect(staff.locator("#conn")).to_have_text("Verbunden")
        expect(staff.locator("html")).to_have_attribute("lang", "de")
        expect(staff.locator("#language")).to_have_value("de")
        expect(staff).to_have_title("Mitarbeiterkonsole · shopcall")
        expect(staff.locator("#presence label span")).to_have_text(
            ["Online", "Abwesend", "Im Laden beschäftigt", "Offline"])
        for heading in ("Anfragen an Sie", "Wartende Kunden", "Hinterlassene Nachrichten"):
            expect(staff.get_by_role("heading", name=heading)).to_be_visible()
        expect(staff.locator("#offers-empty")).to_have_text(
            "Zurzeit keine Anfrage. Setzen Sie Ihren Status auf Online, um Anfragen zu erhalten.")
        staff.get_by_label("Online").check()
        expect(staff.locator("#presence")).to_have_attribute("data-status", "online")
        expect(staff.locator("#offers-empty")).to_have_text("Zurzeit keine Anfrage.")

        # A shopper (the demo shop's English page) asks: the request card is in German.
        shopper = contexts.new("shopper").new_page()
        shopper.goto(server.shop_url)
        shopper.get_by_role("button", name="Ask a guitar expert").click()
        widget = shopper.locator("#shopcall-widget")
        widget.locator(".channels").get_by_role("button", name="Start a chat").click()
        widget.locator("#sc-input").fill("Haben Sie die D-14 in Lyon vorrätig?")
        widget.locator("#sc-input").press("Enter")

        expect(staff.locator(".toast", has_text="Neue Kundenanfrage")).to_be_visible()
        offer = staff.locator(".offer")
        expect(offer.locator(".offer-head strong")).to_have_text("Neue Anfrage")
        expect(offer.locator(".countdown")).to_have_text(re.compile(r"^noch \d+ s$"))
        expect(offer.locator(".tags")).to_contain_text("Produkt GTR-AC-114")
        expect(offer.get_by_role("button", name="Ablehnen")).to_be_visible()
        expect(staff).to_have_title("(1) Mitarbeiterkonsole · shopcall")
        offer.get_by_role("button", name="Annehmen").click()

        column = staff.locator("article.conv")
        expect(column.locator(".conv-title h3")).to_have_text(re.compile(r"^Kunde \w+$"))
        expect(column.locator(".conv-title .state")).to_have_text("angenommen")
        expect(column.locator(".msg.theirs .who")).to_have_text("Kunde")
        expect(column.locator("textarea").first).to_have_attribute(
            "placeholder", re.compile(r"^Antwort schreiben"))
        expect(column.get_by_role("button", name="Gespräch beenden")).to_be_visible()
        expect(staff.locator("#load")).to_have_text(re.compile(r"^1 / \d+ Gespräche?$"))
        quick = column.get_by_role("group", name="Schnellantworten")
        quick.get_by_role("button", name="Begrüßung").click()
        expect(column.locator("textarea").first).to_have_value(
            "Guten Tag! Hier ist Alice von Harmonie Music. Wie kann ich Ihnen helfen?")
        column.locator("textarea").first.press("Enter")
        expect(column.locator(".msg.mine .who")).to_have_text("Sie")
        expect(widget.locator(".msg.theirs .text")).to_have_text(
            "Guten Tag! Hier ist Alice von Harmonie Music. Wie kann ich Ihnen helfen?")
        snap(staff, "console-de")

        # The picker: French, applied at once and kept on this device across reloads.
        staff.locator("#language").select_option("fr")
        expect(staff.locator("#conn")).to_have_text("Connecté")
        expect(staff.locator("#language")).to_have_value("fr")
        for _ in range(2):
            expect(staff.locator("html")).to_have_attribute("lang", "fr")
            expect(staff.locator("#presence label span")).to_have_text(
                ["En ligne", "Absent", "Occupé en magasin", "Hors ligne"])
            expect(staff.get_by_role("heading", name="Demandes pour vous")).to_be_visible()
            # The accepted conversation comes back after the reload, in French.
            expect(column.locator(".conv-title h3")).to_have_text(re.compile(r"^Client \w+$"))
            expect(column.locator(".msg.mine .who")).to_have_text("Vous")
            expect(column.get_by_role("button", name="Terminer la conversation")).to_be_visible()
            assert staff.evaluate("localStorage.getItem('shopcall.staff.language')") == "fr"
            staff.reload()
            expect(staff.locator("#conn")).to_have_text("Connecté")
        snap(staff, "console-fr")
