"""The operator dashboard in French and German, in real Chromium.

A browser whose language is French (Playwright's `locale="fr-FR"`: navigator.languages and
Intl) gets the whole dashboard in French, numbers included: a decimal comma, a narrow
no-break space before "%", the euro sign after the amount. The language picker switches to
German at once (no reload), remembers the choice on this device over the browser's
language, and a refused token is explained in the page's language.

The server is seeded with test_reports_api.py's conversations (two orders: 899 and 50 EUR).
Like the other browser tests, the inner test runs inside a private network namespace
(browser_harness.run_in_private_network); it is skipped when collected normally.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from signaling.model import Role

from .browser_harness import ARTIFACTS, CHROMIUM, api, run_in_private_network
from .harness import ServerProcess, seeded_server

pytestmark = pytest.mark.browser

INSIDE = "SHOPCALL_I18N_DASHBOARD_INSIDE"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
NNBSP, NBSP = "\u202f", "\u00a0"


@pytest.mark.timeout(200)
def test_dashboard_languages_in_a_browser() -> None:
    run_in_private_network(f"{Path(__file__).resolve()}::test_inside_private_network",
                           INSIDE, expect_passed=1, timeout_s=180)


def _french_number(value: float, decimals: int) -> str:
    """How Intl writes `value` in French: narrow no-break space groups, decimal comma."""
    text = f"{value:,.{decimals}f}"
    return text.replace(",", NNBSP).replace(".", ",")


def _german_number(value: float, decimals: int) -> str:
    text = f"{value:,.{decimals}f}"
    return text.replace(",", "#").replace(".", ",").replace("#", ".")


@pytest.mark.skipif(not os.environ.get(INSIDE),
                    reason="run by test_dashboard_languages_in_a_browser inside a private "
                           "network namespace")
@pytest.mark.timeout(150)
def test_inside_private_network(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from .test_reports_api import _seed

    ARTIFACTS.mkdir(exist_ok=True)
    with seeded_server(tmp_path, _seed, missed_after_s=0.5) as (server, data), \
            sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            _scenario(server, data, browser)
        except BaseException:
            print(f"--- server log ---\n{server.log.read_text()[-4000:]}")
            raise
        finally:
            browser.close()


def _scenario(server: ServerProcess, data: dict[str, Any], browser: Any) -> None:
    from playwright.sync_api import expect

    operator = server.token(Role.OPERATOR, "maya")
    kpis = api(server, f"/api/reports/kpis?from={data['began'] - 1}", operator)["figures"]
    revenue = kpis["revenue_EUR"]["value"]
    conversion = kpis["conversion_rate"]["value"]
    assert revenue == 949.0, revenue  # 899 + 50: four digits, so a group separator shows

    ctx = browser.new_context(locale="fr-FR", viewport={"width": 1360, "height": 900})
    ctx.set_default_timeout(15000)
    errors: list[str] = []
    page = ctx.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        page.goto(f"{server.base_url}/dashboard#token={operator}")
        page.wait_for_selector("body[data-loaded]")

        def tile(key: str) -> Any:
            return page.locator(f"#tiles .tile[data-figure='{key}']")

        # French from the browser's languages: the page, its texts and its numbers.
        expect(page.locator("html")).to_have_attribute("lang", "fr")
        expect(page.locator("#language")).to_have_value("fr")
        assert page.title() == "Tableau de bord opérateur · shopcall"
        expect(page.locator("#who")).to_have_text("Connecté en tant que maya")
        expect(page.locator("#daily-title")).to_have_text(
            "Conversations et demandes manquées par jour")
        expect(page.locator("#staff-table thead th").nth(1)).to_have_text("Magasin")
        expect(page.locator("#period option[value='7']")).to_have_text("7 derniers jours")
        expect(page.locator("#sign-out")).to_have_text("Se déconnecter")
        expect(tile("conversion_rate").locator(".label")
               ).to_have_text("Conversion")
        expect(tile("missed").locator(".label")).to_have_text("Manquées")
        expect(page.locator("#status")).to_contain_text("conversations ouvertes du")

        # 949 EUR: "949,00 €" (no-break space before the sign); 1/2 orders: "50,0 %".
        expect(tile("revenue_EUR").locator(".value")).to_have_text(
            f"{_french_number(revenue, 2)}{NBSP}€")
        expect(tile("conversion_rate").locator(".value")).to_have_text(
            f"{_french_number(conversion * 100, 1)}{NNBSP}%")
        assert "," in tile("conversion_rate").locator(".value").inner_text()
        # The satisfaction axis counts in French too (1,0 ... 5,0 has no decimals: 1 ... 5),
        # and the chart's weekday labels are French ("lun. 13").
        labels = page.locator("#chart-daily text.axis").evaluate_all(
            "els => els.map((e) => e.textContent)")
        assert any(re.match(r"^(lun|mar|mer|jeu|ven|sam|dim)\.", t) for t in labels), labels
        # A figure's drawer and a conversation's record, in French.
        tile("missed").click()
        drawer = page.locator("#drawer")
        expect(drawer.locator("#drawer-note")).to_have_text("1 conversation")
        drawer.locator("#drawer-list button").first.click()
        expect(drawer.locator("#drawer-detail")).to_contain_text("manquée")
        expect(drawer.locator("#drawer-detail dt").first).to_have_text("Ouverte")
        page.screenshot(path=str(ARTIFACTS / "dashboard-fr.png"), full_page=True)
        page.keyboard.press("Escape")

        # The picker: German at once, with German numbers, without a reload.
        loaded = page.evaluate("document.body.dataset.loaded")
        page.select_option("#language", "de")
        expect(page.locator("html")).to_have_attribute("lang", "de")
        expect(page.locator("#who")).to_have_text("Angemeldet als maya")
        expect(page.locator("#daily-title")).to_have_text(
            "Gespräche und verpasste Anfragen pro Tag")
        expect(tile("missed").locator(".label")).to_have_text("Verpasst")
        expect(tile("revenue_EUR").locator(".value")).to_have_text(
            f"{_german_number(revenue, 2)}{NBSP}€")
        expect(tile("conversion_rate").locator(".value")).to_have_text(
            f"{_german_number(conversion * 100, 1)}{NBSP}%")
        expect(page.locator("#status")).to_contain_text("Gespräche eröffnet")
        assert page.evaluate("document.body.dataset.loaded") == loaded  # no new load
        assert page.title() == "Betreiber-Dashboard · shopcall"

        # The choice stays on this device, over the browser's French.
        page.reload()
        page.wait_for_selector("body[data-loaded]")
        expect(page.locator("#language")).to_have_value("de")
        expect(page.locator("#sign-out")).to_have_text("Abmelden")
        page.screenshot(path=str(ARTIFACTS / "dashboard-de.png"), full_page=True)
        assert not errors, errors
    finally:
        ctx.close()

    # A refused token, explained in French with the operator's hint.
    other = browser.new_context(locale="fr-FR")
    try:
        refused = other.new_page()
        refused.goto(f"{server.base_url}/dashboard#token={server.token(Role.STAFF, 'alice')}")
        expect(refused.locator("#signin-error")).to_contain_text(
            "Ce jeton n'est pas un jeton opérateur")
        expect(refused.locator("#signin-title")).to_have_text("Connexion opérateur")
        # Switching language on the sign-in form re-says the error in German.
        refused.select_option("#language", "de")
        expect(refused.locator("#signin-error")).to_contain_text(
            "Dieses Token ist kein Betreiber-Token")
    finally:
        other.close()
