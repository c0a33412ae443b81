"""Keep docs/protocol.md honest: it must document, with checked examples, exactly the protocol
that signaling/protocol.py defines.

The doc has a "## Client to server" section (one `### <type>` subsection per request type)
and a "## Server to client" section (one `### <type>` subsection per pushed type). Every
```json block holds one JSON object with a "type". Request examples in the client section
must pass `parse_inbound`; examples in the server section whose type is also a request type
(chat.typing, media.offer, ...) must NOT pass it, so a reader can never mistake one for the
other.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from signaling.protocol import INBOUND, OUTBOUND_TYPES, ErrorCode, ProtocolError, parse_inbound

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "protocol.md"
CLIENT = "Client to server"
SERVER = "Server to client"
ERRORS = "Error codes"
CLOSE_CODES = "Close codes"
AUTH = "Authentication and roles"
ENVELOPE = frozenset({"type", "id", "v"})
REPLIES = frozenset({"ack", "error"})
ERROR_CODES = frozenset(code.value for code in ErrorCode)
BIG = 1 << 20

_TICKED = re.compile(r"`([^`]+)`")


@dataclass
class Example:
    section: str
    subsection: str | None
    line: int
    obj: dict[str, Any]

    @property
    def type(self) -> str:
        return self.obj["type"]

    @property
    def is_request(self) -> bool:
        return self.type in INBOUND and "result" not in self.obj and self.type not in REPLIES

    def where(self) -> str:
        return f"docs/protocol.md:{self.line} ({self.section} / {self.subsection})"


@dataclass
class Part:
    """A `## ` section or a `### ` subsection: its title and the prose lines outside fences."""

    title: str
    line: int
    text: list[str] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)


@dataclass
class Doc:
    sections: dict[str, Part]
    subsections: dict[tuple[str, str], Part]
    examples: list[Example]
    problems: list[str]


@functools.cache
def doc() -> Doc:
    sections: dict[str, Part] = {}
    subsections: dict[tuple[str, str], Part] = {}
    examples: list[Example] = []
    problems: list[str] = []
    section: Part | None = None
    subsection: Part | None = None
    fence: str | None = None  # the info string of the open fence
    fence_start = 0
    body: list[str] = []
    for number, line in enumerate(DOC.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.strip()
        if fence is not None:
            if stripped == "```":
                if fence == "json":
                    _example("\n".join(body), fence_start, section, subsection, examples,
                             problems)
                fence = None
            else:
                body.append(line)
            continue
        if stripped.startswith("```"):
            fence, fence_start, body = stripped[3:].strip(), number, []
            if fence.lower().startswith("json") and fence != "json":
                problems.append(f"line {number}: fence info {fence!r} must be exactly 'json' "
                                "(the block would escape checking)")
            continue
        if line.startswith("## "):
            section = Part(line[3:].strip(), number)
            if section.title in sections:
                problems.append(f"line {number}: duplicate section {section.title!r}")
            sections[section.title] = section
            subsection = None
            continue
        if line.startswith("### "):
            if section is None:
                problems.append(f"line {number}: ### heading outside any ## section")
                continue
            subsection = Part(line[4:].strip(), number)
            key = (section.title, subsection.title)
            if key in subsections:
                problems.append(f"line {number}: duplicate heading {subsection.title!r} in "
                                f"{section.title!r}")
            subsections[key] = subsection
            continue
        for part in (section, subsection):
            if part is not None:
                part.text.append(line)
    if fence is not None:
        problems.append(f"line {fence_start}: unclosed code fence")
    for ex in examples:
        sections[ex.section].examples.append(ex)
        if ex.subsection is not None:
            subsections[(ex.section, ex.subsection)].examples.append(ex)
    return Doc(sections, subsections, examples, problems)


def _example(raw: str, line: int, section: Part | None, subsection: Part | None,
             out: list[Example], problems: list[str]) -> None:
    try:
        obj = json.loads(raw)
    except ValueError as exc:
        problems.append(f"line {line}: invalid JSON in example: {exc}")
        return
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        problems.append(f"line {line}: an example must be one JSON object with a string 'type'")
        return
    if section is None:
        problems.append(f"line {line}: example outside any ## section")
        return
    out.append(Example(section.title, subsection.title if subsection else None, line, obj))


def _in(section: str) -> list[Example]:
    return [ex for ex in doc().examples if ex.section == section]


def _sub(section: str, title: str) -> Part:
    part = doc().subsections.get((section, title))
    assert part is not None, f"docs/protocol.md has no '### {title}' under '## {section}'"
    return part


def _paragraph(lines: list[str], marker: str) -> str | None:
    """The paragraph that starts with `marker` (up to the next blank line)."""
    for i, line in enumerate(lines):
        if line.startswith(marker):
            para = [line[len(marker):]]
            for more in lines[i + 1:]:
                if not more.strip():
                    break
                para.append(more)
            return " ".join(para)
    return None


def _table(lines: list[str], first_header: str) -> list[list[str]] | None:
    """Body rows (cells stripped) of the first table whose first header cell is given."""
    for i, line in enumerate(lines):
        cells = _cells(line)
        if cells and cells[0] == first_header:
            rows = []
            for row in lines[i + 2:]:
                if not row.lstrip().startswith("|"):
                    break
                rows.append(_cells(row))
            return rows
    return None


def _cells(line: str) -> list[str]:
    line = line.strip()
    if not line.startswith("|"):
        return []
    return [cell.strip() for cell in line.strip("|").split("|")]


# Structure ----------------------------------------------------------------------------------


def test_doc_parses_cleanly() -> None:
    assert not doc().problems, "\n".join(doc().problems)
    for title in (CLIENT, SERVER, ERRORS, CLOSE_CODES, AUTH):
        assert title in doc().sections, f"docs/protocol.md lacks a '## {title}' section"


def test_only_known_types_have_headings() -> None:
    for (section, title) in doc().subsections:
        if section == CLIENT:
            assert title in INBOUND, f"'### {title}' under '## {CLIENT}' is not a request type"
        if section == SERVER:
            assert title in OUTBOUND_TYPES, \
                f"'### {title}' under '## {SERVER}' is not in OUTBOUND_TYPES"


# Client to server ---------------------------------------------------------------------------


def test_client_section_holds_only_requests_and_replies() -> None:
    for ex in _in(CLIENT):
        assert ex.type in INBOUND or ex.type in REPLIES, \
            f"{ex.where()}: type {ex.type!r} is neither a request type nor ack/error"
        if ex.is_request:
            assert ex.type == ex.subsection, \
                f"{ex.where()}: a {ex.type} example belongs under '### {ex.type}'"


def test_request_examples_validate() -> None:
    requests = [ex for ex in _in(CLIENT) if ex.is_request]
    assert requests
    for ex in requests:
        try:
            parse_inbound(json.dumps(ex.obj), BIG)
        except ProtocolError as exc:
            pytest.fail(f"{ex.where()}: example does not validate: {exc.code}: {exc.message}")


@pytest.mark.parametrize("kind", sorted(INBOUND))
def test_every_request_type_is_documented(kind: str) -> None:
    part = _sub(CLIENT, kind)
    assert any(ex.is_request and ex.type == kind for ex in part.examples), \
        f"'### {kind}' under '## {CLIENT}' has no ```json request example"


@pytest.mark.parametrize("kind", sorted(INBOUND))
def test_sent_by_matches_the_model_roles(kind: str) -> None:
    para = _paragraph(_sub(CLIENT, kind).text, "**Sent by:**")
    assert para is not None, f"'### {kind}' lacks a '**Sent by:**' line"
    assert set(_TICKED.findall(para)) == {role.value for role in INBOUND[kind].roles}, \
        f"'### {kind}': **Sent by:** disagrees with the roles in signaling/protocol.py"


@pytest.mark.parametrize("kind", sorted(INBOUND))
def test_fields_table_matches_the_model(kind: str) -> None:
    model = INBOUND[kind]
    expected = {name: info.is_required() for name, info in model.model_fields.items()
                if name not in ENVELOPE}
    rows = _table(_sub(CLIENT, kind).text, "Field") or []
    documented: dict[str, bool] = {}
    for row in rows:
        names = _TICKED.findall(row[0])
        assert len(names) == 1, f"'### {kind}': fields table row {row!r} must name one field"
        documented[names[0]] = row[2].lower().startswith("yes")
    assert set(documented) == set(expected), \
        f"'### {kind}': fields table lists {sorted(documented)}, the model has {sorted(expected)}"
    for name, required in expected.items():
        assert documented[name] == required, \
            f"'### {kind}': field {name!r} is {'' if required else 'not '}required in the model"


@pytest.mark.parametrize("kind", sorted(INBOUND))
def test_errors_paragraph_names_real_codes(kind: str) -> None:
    para = _paragraph(_sub(CLIENT, kind).text, "**Errors:**")
    assert para is not None, f"'### {kind}' lacks an '**Errors:**' paragraph"
    while (shorter := re.sub(r"\([^()]*\)", "", para)) != para:  # drop explanations
        para = shorter
    unknown = set(_TICKED.findall(para)) - ERROR_CODES
    assert not unknown, f"'### {kind}': **Errors:** names unknown codes {sorted(unknown)}"


def test_replies_echo_a_request_id_of_their_subsection() -> None:
    for (section, title), part in doc().subsections.items():
        if section != CLIENT:
            continue
        ids = {ex.obj.get("id") for ex in part.examples if ex.is_request}
        for ex in part.examples:
            if ex.type in REPLIES:
                assert ex.obj.get("id") in ids, \
                    f"{ex.where()}: reply id {ex.obj.get('id')!r} matches no request in " \
                    f"'### {title}' ({sorted(i for i in ids if i)})"


# Server to client ---------------------------------------------------------------------------


def test_server_section_holds_only_outbound_types() -> None:
    for ex in _in(SERVER):
        assert ex.type in OUTBOUND_TYPES, f"{ex.where()}: {ex.type!r} is not in OUTBOUND_TYPES"
        assert ex.type == ex.subsection, \
            f"{ex.where()}: a {ex.type} example belongs under '### {ex.type}'"
        assert "id" not in ex.obj or ex.type in {"welcome", "pong", *REPLIES}, \
            f"{ex.where()}: pushed events carry no 'id'"


@pytest.mark.parametrize("kind", OUTBOUND_TYPES)
def test_every_outbound_type_is_documented(kind: str) -> None:
    part = _sub(SERVER, kind)
    assert any(ex.type == kind for ex in part.examples), \
        f"'### {kind}' under '## {SERVER}' has no ```json example"


def test_events_sharing_a_request_name_cannot_pass_for_requests() -> None:
    shared = [ex for ex in _in(SERVER) if ex.type in INBOUND]
    assert {ex.type for ex in shared} >= {"chat.typing", "chat.read", "media.offer",
                                           "media.answer"} & set(OUTBOUND_TYPES)
    for ex in shared:
        with pytest.raises(ProtocolError):
            parse_inbound(json.dumps(ex.obj), BIG)


def test_reply_examples_are_well_formed() -> None:
    for ex in doc().examples:
        if ex.type == "ack":
            assert set(ex.obj) == {"type", "id", "result"}, ex.where()
            assert isinstance(ex.obj["result"], dict), ex.where()
        elif ex.type == "error":
            assert {"type", "id", "code", "message"} <= set(ex.obj) <= {
                "type", "id", "code", "message", "details"}, ex.where()
            assert ex.obj["code"] in ERROR_CODES, f"{ex.where()}: unknown code {ex.obj['code']}"


# Tables -------------------------------------------------------------------------------------


def test_error_table_lists_exactly_the_error_codes() -> None:
    rows = _table(doc().sections[ERRORS].text, "Code")
    assert rows, "the '## Error codes' section has no table with a 'Code' column"
    documented = [name for row in rows for name in _TICKED.findall(row[0])]
    assert len(documented) == len(set(documented)), "an error code is listed twice"
    assert set(documented) == ERROR_CODES, (
        f"missing: {sorted(ERROR_CODES - set(documented))}, "
        f"not real codes: {sorted(set(documented) - ERROR_CODES)}")


def test_close_codes_used_by_the_server_are_documented() -> None:
    rows = _table(doc().sections[CLOSE_CODES].text, "Code") or []
    documented = {int(name) for row in rows for name in _TICKED.findall(row[0])}
    used: set[int] = set()
    for source in (ROOT / "signaling").glob("*.py"):
        used |= {int(code) for code in
                 re.findall(r"\bclose\(\s*(?:code=)?(\d{4})\b", source.read_text("utf-8"))}
    assert used, "found no close codes in signaling/*.py: update this test's pattern"
    assert used <= documented, f"close codes used but not documented: {sorted(used - documented)}"


def test_role_table_matches_the_model_roles() -> None:
    section = doc().sections[AUTH].text
    rows = _table(section, "Message")
    assert rows, "the authentication section has no 'Message' role table"
    header = next(_cells(line) for line in section if _cells(line)[:1] == ["Message"])
    roles = header[1:]
    seen: dict[str, set[str]] = {}
    for row in rows:
        allowed = {role for role, cell in zip(roles, row[1:], strict=True)
                   if cell.lower() == "yes"}
        for kind in _TICKED.findall(row[0]):
            assert kind not in seen, f"role table lists {kind} twice"
            seen[kind] = allowed
    assert set(seen) == set(INBOUND), \
        f"role table: missing {sorted(set(INBOUND) - set(seen))}, " \
        f"unknown {sorted(set(seen) - set(INBOUND))}"
    for kind, allowed in seen.items():
        assert allowed == {role.value for role in INBOUND[kind].roles}, \
            f"role table: {kind} is sent by {sorted(r.value for r in INBOUND[kind].roles)}"
