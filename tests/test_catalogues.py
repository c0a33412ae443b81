"""Message catalogues of the web client (web_client/locales/<lang>/<namespace>.json).

Fails when a key is missing in any locale, a translation loses or invents a placeholder,
a key used in the code is not in the catalogues, or a text meant for people is written into
the code (or a page) instead of coming from a catalogue.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

WEB = Path(__file__).resolve().parent.parent / "web_client"
LOCALES = WEB / "locales"
LANGUAGES = ("en", "de", "fr")
# The client's own scripts; shop.html is the demo shop's product page (the shop's words).
SCRIPTS = sorted(p for p in WEB.glob("*.js"))
PAGES = [WEB / "staff.html", WEB / "dashboard.html"]
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def catalogue(lang: str) -> dict[str, dict[str, str]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((LOCALES / lang).glob("*.json"))}


def test_every_locale_has_every_key_with_the_same_placeholders() -> None:
    reference = catalogue("en")
    assert reference, "no English catalogue"
    for lang in LANGUAGES:
        other = catalogue(lang)
        assert sorted(other) == sorted(reference), (lang, sorted(other))
        for namespace, messages in reference.items():
            theirs = other[namespace]
            missing, extra = set(messages) - set(theirs), set(theirs) - set(messages)
            assert not missing and not extra, (lang, namespace, sorted(missing), sorted(extra))
            for key, text in messages.items():
                assert key.startswith(namespace + "."), (namespace, key)
                assert isinstance(theirs[key], str) and theirs[key].strip(), (lang, key)
                assert set(_PLACEHOLDER.findall(theirs[key])) == set(
                    _PLACEHOLDER.findall(text)), (lang, key, theirs[key])
                if key.endswith(".one"):
                    assert key[:-4] + ".other" in messages, key


def _code(path: Path) -> str:
    """The script without comments (so prose in comments is not mistaken for UI text)."""
    text = re.sub(r"/\*.*?\*/", "", path.read_text(), flags=re.DOTALL)
    return "\n".join(re.sub(r"(^|\s)//.*$", "", line) for line in text.splitlines())


def test_every_key_the_code_uses_is_in_the_catalogues() -> None:
    known = {k for messages in catalogue("en").values() for k in messages}
    used: set[str] = set()
    for script in SCRIPTS:
        used |= set(re.findall(r"""\bt\(\s*['"]([\w.\-]+)['"]""", _code(script)))
        used |= set(re.findall(r"""data-i18n=['"]([\w.\-]+)['"]""", _code(script)))
    for page in PAGES:
        html = page.read_text()
        used |= set(re.findall(r'data-i18n="([\w.\-]+)"', html))
        for pairs in re.findall(r'data-i18n-attr="([^"]+)"', html):
            used |= {p.split(":", 1)[1].strip() for p in pairs.split(";") if ":" in p}
    plural = {k.rsplit(".", 1)[0] for k in known if k.endswith((".one", ".other"))}
    unknown = sorted(k for k in used if k not in known and k not in plural)
    assert not unknown, unknown


# Where a text for people goes: element text and labels, and the functions that show notes.
_UI_LITERAL = re.compile(
    r"""(?:\b(?:text|title|placeholder|intro|submitLabel|label|remoteLabel)\s*:\s*"""
    r"""|['"]aria-label['"]\s*:\s*|\.textContent\s*=\s*|\.title\s*=\s*"""
    r"""|\b(?:announce|addNote|toast|setCallNote|errorBox|setNotice|alert)\(\s*)"""
    r"""(['"`])([^'"`]*[A-Za-z]{2,}[^'"`]*)\1""")


def test_no_text_for_people_is_written_in_the_scripts() -> None:
    found = []
    for script in SCRIPTS:
        for number, line in enumerate(_code(script).splitlines(), start=1):
            for match in _UI_LITERAL.finditer(line):
                found.append(f"{script.name}:{number}: {match.group(2)!r}")
    assert not found, "texts not from the catalogues:\n  " + "\n  ".join(found)


class _PageText(HTMLParser):
    """Text nodes and text attributes of a page outside any data-i18n element."""

    SKIP = {"script", "style", "code", "pre"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, bool]] = []
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        translated = "data-i18n" in a or any(t for _, t in self.stack)
        attr_keys = {p.split(":", 1)[0].strip() for p in (a.get("data-i18n-attr") or "")
                     .split(";") if ":" in p}
        for name in ("placeholder", "aria-label", "title", "alt"):
            value = a.get(name)
            if value and re.search(r"[A-Za-z]{2,}", value) and name not in attr_keys:
                self.found.append(f"<{tag} {name}={value!r}>")
        if tag not in ("br", "input", "img", "meta", "link", "hr"):
            self.stack.append((tag, translated))

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        if any(tag in self.SKIP for tag, _ in self.stack):
            return
        if re.search(r"[A-Za-z]{2,}", data) and not (self.stack and self.stack[-1][1]):
            self.found.append(data.strip()[:60])


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_text_for_people_is_written_in_the_pages(page: Path) -> None:
    parser = _PageText()
    parser.feed(page.read_text())
    assert not parser.found, "texts without data-i18n:\n  " + "\n  ".join(parser.found)
