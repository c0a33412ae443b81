"""Query and path parameters: one definition per parameter, read by the handler and described
by the OpenAPI document, so what /api/openapi.json promises is what the handlers enforce.

Each kind checks the raw text against a grammar of its own (Python's `int()` and `float()`
also take " 5", "1_0", "nan" or Arabic-Indic digits, which no client means and no document
describes) and refuses what does not fit with 400 `invalid_message` naming the parameter. A
query parameter given empty is the same as one left out (HTML forms send empty fields); the
document says so with `allowEmptyValue`. A path identifier that cannot name anything is
answered as an unknown one would be (404), except where the handler creates the resource
(400: the caller chose a bad name).

Patterns are written in the subset of regular expressions that Python and ECMA-262 (JSON
Schema's dialect) read the same way: ASCII classes, `(?:...)`, `{m,n}`, alternation.
"""

from __future__ import annotations

import math
import re
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from typing import Any, Protocol

from aiohttp import web

from .protocol import ErrorCode, ProtocolError

# Grammars ------------------------------------------------------------------------------------
ID_PATTERN = r"[A-Za-z0-9_-]{1,64}"  # store and staff ids given in a path
ID_TEXT = "1-64 letters, digits, '-' or '_'"
GARMENT_ID_PATTERN = r"[a-z0-9][a-z0-9._-]{0,63}"  # mediaserver.tryon.catalogue's _ID_PATTERN
INTEGER_PATTERN = r"-?[0-9]+"
# JSON's number grammar: what any client's number-to-text gives ("0.5", "1e-05", "3600").
NUMBER_PATTERN = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"

# Instants: unix seconds below 10^10 (the year 2286), or an ISO 8601 calendar date in 2000-2099
# with an optional time and UTC offset (none: UTC). Day numbers are checked per month, leap
# years included (in 2000-2099 every fourth year), so everything the pattern admits parses.
UNIX_SECONDS_PATTERN = r"[0-9]{1,10}(?:\.[0-9]{1,29})?"
_DAY = (r"20[0-9]{2}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
        r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))"
        r"|20(?:[02468][048]|[13579][26])-02-29")
_TIME = (r"T(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?"
         r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?")
ISO_INSTANT_PATTERN = f"(?:{_DAY})(?:{_TIME})?"
INSTANT_PATTERN = f"{UNIX_SECONDS_PATTERN}|{ISO_INSTANT_PATTERN}"
INSTANT_MAX_LEN = 40


def _iso_weeks_pattern() -> str:
    """ISO weeks of 2000-2099: W01-W52 in every year, W53 in the years that have one."""
    long_years = [y for y in range(2000, 2100) if date(y, 12, 28).isocalendar()[1] == 53]
    return (r"20[0-9]{2}-W(?:0[1-9]|[1-4][0-9]|5[0-2])"
            f"|(?:{'|'.join(map(str, long_years))})-W53")


WEEK_PATTERN = _iso_weeks_pattern()


def anchored(pattern: str) -> str:
    """The JSON Schema form: patterns there match anywhere unless anchored."""
    return f"^(?:{pattern})$"


@cache
def time_zones() -> tuple[str, ...]:
    """IANA names this server's tz database has: exactly what `tz` parameters accept."""
    return tuple(sorted(zoneinfo.available_timezones()))


def _bad(name: str, what: str) -> ProtocolError:
    return ProtocolError(ErrorCode.INVALID_MESSAGE, f"{name}: {what}")


# Kinds -------------------------------------------------------------------------------------
class Kind(Protocol):
    def parse(self, name: str, raw: str) -> Any: ...
    def schema(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Text:
    """Free text up to max_len characters, optionally matching a pattern."""

    max_len: int = 64
    pattern: str | None = None
    what: str = ""  # how a refusal describes the pattern

    def parse(self, name: str, raw: str) -> str:
        if len(raw) > self.max_len:
            raise _bad(name, f"at most {self.max_len} characters")
        if self.pattern is not None and not re.fullmatch(self.pattern, raw):
            raise _bad(name, self.what or f"must match {anchored(self.pattern)}")
        return raw

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "string", "maxLength": self.max_len}
        if self.pattern is not None:
            out["pattern"] = anchored(self.pattern)
        return out


@dataclass(frozen=True)
class Choice:
    values: tuple[str, ...]

    def parse(self, name: str, raw: str) -> str:
        if raw not in self.values:
            raise _bad(name, f"one of {', '.join(self.values)}")
        return raw

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.values)}


@dataclass(frozen=True)
class Integer:
    lo: int
    hi: int

    def parse(self, name: str, raw: str) -> int:
        if not re.fullmatch(INTEGER_PATTERN, raw):
            raise _bad(name, "not an integer")
        try:
            value = int(raw)
        except ValueError:  # more digits than int() converts
            raise _bad(name, f"between {self.lo} and {self.hi}") from None
        if not self.lo <= value <= self.hi:
            raise _bad(name, f"between {self.lo} and {self.hi}")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": self.lo, "maximum": self.hi}


@dataclass(frozen=True)
class Number:
    lo: float
    hi: float
    lo_open: bool = False
    hi_open: bool = False

    def parse(self, name: str, raw: str) -> float:
        if not re.fullmatch(NUMBER_PATTERN, raw):
            raise _bad(name, "not a number")
        value = float(raw)
        below = value <= self.lo if self.lo_open else value < self.lo
        above = value >= self.hi if self.hi_open else value > self.hi
        if not math.isfinite(value) or below or above:
            raise _bad(name, f"between {self.lo} and {self.hi}"
                             f"{' (exclusive)' if self.lo_open or self.hi_open else ''}")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "number",
                "exclusiveMinimum" if self.lo_open else "minimum": self.lo,
                "exclusiveMaximum" if self.hi_open else "maximum": self.hi}


@dataclass(frozen=True)
class Flag:
    def parse(self, name: str, raw: str) -> bool:
        if raw not in ("true", "false"):
            raise _bad(name, "true or false")
        return raw == "true"

    def schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass(frozen=True)
class Instant:
    """Unix seconds or ISO 8601 (see INSTANT_PATTERN); a date alone is 00:00 UTC."""

    def parse(self, name: str, raw: str) -> float:
        if len(raw) <= INSTANT_MAX_LEN:
            if re.fullmatch(UNIX_SECONDS_PATTERN, raw):
                return float(raw)
            if re.fullmatch(ISO_INSTANT_PATTERN, raw):
                parsed = datetime.fromisoformat(raw)
                if parsed.tzinfo is None:
                    parsed = parsed.replace(tzinfo=UTC)
                return parsed.timestamp()
        raise _bad(name, f"not unix seconds or an ISO 8601 date/time in 2000-2099: "
                         f"{raw[:40]!r}")

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "maxLength": INSTANT_MAX_LEN,
                "pattern": anchored(INSTANT_PATTERN)}


@dataclass(frozen=True)
class Week:
    def parse(self, name: str, raw: str) -> tuple[int, int]:
        if not re.fullmatch(WEEK_PATTERN, raw):
            raise _bad(name, f"an ISO week of 2000-2099 such as 2026-W07, got {raw[:20]!r}")
        year, week = raw.split("-W")
        return int(year), int(week)

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": anchored(WEEK_PATTERN)}


@dataclass(frozen=True)
class TimeZone:
    def parse(self, name: str, raw: str) -> zoneinfo.ZoneInfo:
        if raw not in time_zones():
            raise _bad(name, f"unknown time zone {raw[:64]!r} (IANA names such as "
                             "Europe/Paris)")
        return zoneinfo.ZoneInfo(raw)

    def schema(self) -> dict[str, Any]:
        return {"$ref": "#/components/schemas/TimeZone"}


# Parameters ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Query:
    name: str
    kind: Kind
    description: str
    default: Any = None

    def read(self, request: web.Request) -> Any:
        raw = request.query.get(self.name)
        if raw is None or raw == "":
            return self.default
        return self.kind.parse(self.name, raw)

    def openapi(self) -> dict[str, Any]:
        return {"name": self.name, "in": "query", "required": False, "allowEmptyValue": True,
                "description": self.description, "schema": self.kind.schema()}


@dataclass(frozen=True)
class Path:
    """A path segment; `unknown` is the error for one that cannot name anything."""

    name: str
    kind: Text | Integer
    noun: str  # "no {noun} 'x'" when it cannot name anything
    unknown: ErrorCode = ErrorCode.NOT_FOUND

    def read(self, request: web.Request) -> Any:
        raw = request.match_info[self.name]
        try:
            return self.kind.parse(self.name, raw)
        except ProtocolError as exc:
            if self.unknown is ErrorCode.INVALID_MESSAGE:
                raise
            raise ProtocolError(self.unknown, f"no {self.noun} {raw[:64]!r}") from exc

    def openapi(self) -> dict[str, Any]:
        return {"name": self.name, "in": "path", "required": True, "schema": self.kind.schema()}


def only(request: web.Request, params: Iterable[Query]) -> None:
    """Refuse parameters not in `params`, and any given twice (which one would count?)."""
    allowed = {p.name for p in params}
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE,
                            f"unknown query parameter {unknown[0]!r}; expected one of "
                            f"{', '.join(sorted(allowed))}")
    for name in request.query:
        if len(request.query.getall(name)) > 1:
            raise _bad(name, "give it once")


def read_all(request: web.Request, params: Sequence[Query], *,
             strict: bool = False) -> dict[str, Any]:
    """Every parameter's value by name (its default when absent); strict: `only` first."""
    if strict:
        only(request, params)
    return {p.name: p.read(request) for p in params}


__all__ = ["Choice", "Flag", "Instant", "Integer", "Number", "Path", "Query", "Text",
           "TimeZone", "Week", "anchored", "only", "read_all", "time_zones"]
