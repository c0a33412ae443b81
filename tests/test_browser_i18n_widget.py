"""The shopper widget speaks the shop's language, in real Chromium: every text comes from the
message catalogues (web_client/locales/<lang>/widget.json), chosen before anything is shown.

One Chromium, one server, the shop's site on its own origin (browser_harness.ShopSite), with
variants of the demo product page:
- <html lang="de"> (no data-language): launcher, panel title, channel buttons and the
  leave-a-message form in German ("Sie"), and the conversations it opens are tagged "de";
- the same page with data-language="fr": French wins over the page's language;
- <html lang="it"> (no catalogue): the browser's languages decide (French), else English;
  a page without a language and a German browser: German, and the conversation is "de";
- window.ShopcallConfig.messages replaces one text, and only that one.
Like every browser test it runs inside a private network namespace (tests/browser_harness.py).
"""

from __future__ import annotations

import asyncio
import os
import threading
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
)
from .harness import ServerProcess, WsClient

pytestmark = pytest.mark.browser

INSIDE = "SHOPCALL_BROWSER_I18N_WIDGET_INSIDE"

# A German-speaking guitar specialist: routing only offers a "de" conversation to staff who
# speak German (the harness's staff speak English and French).
GRETA = """
[[staff]]
id = "greta"
name = "Greta Vogel"
store = "lyon"
skills = ["guitars"]
languages = ["de", "en"]
max_conversations = 3
"""


@pytest.mark.timeout(150)
def test_browser_i18n_widget() -> None:
    run_in_private_network(str(Path(__file__).resolve()), INSIDE, expect_passed=1,
                           timeout_s=130)


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = launch(pw)
        try:
            yield chromium
        finally:
            chromium.close()


class StaffOnline:
    """A staff member online over the signalling protocol (no console page needed), on an
    event loop in its own thread next to Playwright's synchronous API."""

    def __init__(self, server: ServerProcess, staff_id: str) -> None:
        self.server, self.staff_id = server, staff_id
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.client: WsClient | None = None

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=15)

    def __enter__(self) -> StaffOnline:
        self.thread.start()

        async def go_online() -> WsClient:
            client = await WsClient.connect(self.server.ws_url,
                                            self.server.token(Role.STAFF, self.staff_id))
            client.keep_alive()
            await client.ok("presence.set", status="online")
            return client

        self.client = self._run(go_online())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.client is not None:
                self._run(self.client.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5)
            self.loop.close()


def page_variant(server: ServerProcess, path: str, *, lang: str | None,
                 data_language: str | None) -> str:
    """The demo product page served by the shop's site at `path`, with <html lang=...>, the
    widget's data-language (None: no attribute) and no data-title (the catalogue's title)."""
    site = server.shop_site  # type: ignore[attr-defined]
    html = site.pages["/shop.html"].decode()
    for old, new in [('<html lang="en">', f'<html lang="{lang}">' if lang else '<html>'),
                     (' data-language="en"',
                      f' data-language="{data_language}"' if data_language else ''),
                     (' data-title="Harmonie Music experts"', '')]:
        assert old in html, old
        html = html.replace(old, new)
    site.pages[path] = html.encode()
    return site.origin + path


def conversation_languages(server: ServerProcess) -> list[str | None]:
    token = server.token(Role.OPERATOR, "ops")
    return [c["language"] for c in api(server, "/api/conversations", token)["conversations"]]


@pytest.mark.skipif(not os.environ.get(INSIDE),
                    reason="run by test_browser_i18n_widget inside a private network namespace")
def test_inside(browser: Any, tmp_path: Path) -> None:
    console: list[str] = []
    contexts: list[Any] = []
    with browser_server(tmp_path / "server", extra_config=GRETA) as server:
        try:
            _scenario(browser, server, console, contexts)
        except BaseException:
            dump_failure("i18n-widget", contexts, console)
            raise
        finally:
            for ctx in contexts:
                ctx.close()
    assert not page_errors(console), "\n".join(console)


def _scenario(browser: Any, server: ServerProcess, console: list[str],
              contexts: list[Any]) -> None:
    from playwright.sync_api import expect

    german = page_variant(server, "/de.html", lang="de", data_language=None)
    french = page_variant(server, "/fr.html", lang="de", data_language="fr")
    italian = page_variant(server, "/it.html", lang="it", data_language=None)
    unknown = page_variant(server, "/plain-de.html", lang=None, data_language=None)

    def shopper(who: str, url: str, locale: str = "en-US", init: str | None = None) -> Any:
        ctx = new_context(browser, console, who, locale=locale)
        contexts.append(ctx)
        if init:
            ctx.add_init_script(init)
        page = ctx.new_page()
        page.goto(url)
        return page.locator("#shopcall-widget")

    # German page, nobody online: the launcher, the panel and the leave-a-message form.
    widget = shopper("de-shopper", german)
    launcher = widget.get_by_role("button", name="Sprechen Sie mit einem Experten: Chat öffnen")
    expect(launcher).to_be_visible()
    expect(widget).to_have_attribute("lang", "de")
    expect(widget.locator(".launcher-text")).to_have_text("Chat")
    launcher.click()
    expect(widget.locator("#sc-title")).to_have_text("Sprechen Sie mit einem Experten")
    expect(widget.get_by_role("button", name="Chat minimieren")).to_be_visible()
    expect(widget.get_by_text("Alle unsere Fachberater sind gerade im Gespräch.")).to_be_visible()
    expect(widget.locator(".chip")).to_have_text("Zum Produkt: Aurora D-14 Dreadnought")
    contact = widget.get_by_label("Wie können wir Sie erreichen?")
    expect(contact).to_have_attribute("placeholder", "E-Mail-Adresse oder Telefonnummer")
    send = widget.get_by_role("button", name="Nachricht senden")
    send.click()
    expect(widget.get_by_role("alert")).to_have_text("Bitte schreiben Sie Ihre Nachricht.")
    widget.get_by_label("Ihre Nachricht").fill("Haben Sie die D-14 in Lyon vorrätig?")
    contact.fill("kunde@example.de")
    send.click()
    expect(widget.get_by_role("heading", name="Danke, Ihre Nachricht ist unterwegs")) \
        .to_be_visible()
    expect(widget.locator(".view-sent p")).to_have_text(
        "Ein Fachberater antwortet Ihnen unter kunde@example.de. "
        "Die Antwort sehen Sie bei Ihrem nächsten Besuch auch hier.")
    # The conversation behind the message is tagged with the page's language.
    assert conversation_languages(server) == ["de"]

    with StaffOnline(server, "greta"):
        # German page, Greta online: presence and channel buttons in German; a chat is "de".
        widget = shopper("de-chat-shopper", german)
        widget.locator(".launcher").click()
        expect(widget.locator(".presence")).to_have_text("1 Fachberater ist jetzt online")
        channels = widget.locator(".channels")
        for name in ("Chat starten", "Videoanruf", "Sprachanruf"):
            expect(channels.get_by_role("button", name=name, exact=True)).to_be_visible()
        expect(widget.get_by_role("button", name="Hinterlassen Sie uns eine Nachricht")) \
            .to_be_visible()
        channels.get_by_role("button", name="Chat starten").click()
        expect(widget.locator(".sub")).to_have_text("Warten auf einen Fachberater")
        expect(widget.locator("#sc-input")).to_have_attribute(
            "placeholder", "Schreiben Sie Ihre Nachricht…")
        assert conversation_languages(server) == ["de", "de"]

        # The shop's own wording for one text; every other text stays the catalogue's.
        widget = shopper("override-shopper", german, init=(
            "window.ShopcallConfig = {messages: {de: {'widget.channel.chat': 'Jetzt chatten'},"
            " en: {'widget.channel.chat': 'Chat now'}}};"))
        widget.locator(".launcher").click()
        channels = widget.locator(".channels")
        expect(channels.get_by_role("button", name="Jetzt chatten", exact=True)).to_be_visible()
        expect(channels.get_by_role("button", name="Videoanruf", exact=True)).to_be_visible()
        assert channels.get_by_role("button", name="Chat starten").count() == 0

    # data-language="fr" wins over <html lang="de"> (Greta gone, nobody speaks French: the
    # form, in French).
    widget = shopper("fr-shopper", french)
    launcher = widget.get_by_role("button", name="Parlez à un expert : ouvrir le chat")
    launcher.click()
    expect(widget.locator("#sc-title")).to_have_text("Parlez à un expert")
    expect(widget.get_by_text("Tous nos spécialistes sont occupés pour le moment.")) \
        .to_be_visible()
    expect(widget.get_by_label("Comment pouvons-nous vous joindre ?")).to_be_visible()
    expect(widget.get_by_role("button", name="Envoyer le message")).to_be_visible()

    # No Italian catalogue: the browser's language (French), else English.
    widget = shopper("it-fr-shopper", italian, locale="fr-FR")
    expect(widget.get_by_role("button", name="Parlez à un expert : ouvrir le chat")) \
        .to_be_visible()
    widget = shopper("it-shopper", italian, locale="it-IT")
    expect(widget.get_by_role("button", name="Talk to an expert: open chat")).to_be_visible()
    expect(widget).to_have_attribute("lang", "en")
    widget.locator(".launcher").click()
    expect(widget.get_by_text("All our specialists are busy right now.")).to_be_visible()
    expect(widget.get_by_role("button", name="Send message")).to_be_visible()

    # A page that does not say its language, a German browser: German, and the message's
    # conversation is tagged "de" (the widget used to send no language at all).
    widget = shopper("browser-de-shopper", unknown, locale="de-DE")
    widget.locator(".launcher").click()
    widget.get_by_label("Ihre Nachricht").fill("Gibt es die D-14 auch als Linkshänder-Modell?")
    widget.get_by_label("Wie können wir Sie erreichen?").fill("+49 30 1234567")
    widget.get_by_role("button", name="Nachricht senden").click()
    expect(widget.get_by_role("heading", name="Danke, Ihre Nachricht ist unterwegs")) \
        .to_be_visible()
    assert sorted(conversation_languages(server)) == ["de", "de", "de"]
